/**
 * Containers from a cached image (issue 11): LxcProvider create + start of `count` containers
 * from one spec.image (after the first pull), against the raw tools in the same run: an overlay
 * clone loop (`lxc-copy -s -B overlay` + `lxc-start`) and the busybox template loop
 * (`lxc-create -t busybox` + `lxc-start`). 50 of each, 4 at a time, in an isolated lxcpath.
 * Prints p50s, wall times and ratios; the targets: p50 below 150 ms, ratio to the template
 * loop 0.1 or below, ratio to the overlay clone loop about 1.1. Then the first pull of a 256 MiB
 * tarball from a loopback HTTP server against curl of the same file (target: at least 0.9).
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { chmod, mkdir, mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import { API_VERSION } from '../src/api/v1alpha1/group.js';
import type { Container } from '../src/api/v1alpha1/types.js';
import { validateObject } from '../src/api/v1alpha1/validate.js';
import { ImageCache } from '../src/providers/images/image-cache.js';
import { LxcProvider } from '../src/providers/lxc/lxc-provider.js';
import { LxcTools } from '../src/providers/lxc/lxc-tools.js';
import { type Desired, hostNameOf, specHashOf } from '../src/store/desired.js';
import { objectKey } from '../src/store/object-key.js';

const run = promisify(execFile);

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? Number.NaN;
};

function desiredOf(name: string, spec: Record<string, unknown>): Desired<'Container'> {
  const result = validateObject({ apiVersion: API_VERSION, kind: 'Container', metadata: { name, namespace: 'default' }, spec });
  if (!result.ok) throw new Error(`cannot build the bench object: ${JSON.stringify(result.issues)}`);
  const object = result.object as Container;
  return {
    key: objectKey('dir', 'default', 'Container', name), source: 'dir', object, id: randomUUID(), generation: 1,
    specHash: specHashOf(object.spec), hostName: hostNameOf(object),
  };
}

/** Runs `task(i)` for i in [0, count) with at most `concurrency` at once; resolves to each one's milliseconds and the wall time. */
async function pool(count: number, concurrency: number, task: (i: number) => Promise<void>): Promise<{ each: number[]; wallMs: number }> {
  const each: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    for (let i = next++; i < count; i = next++) {
      const t = performance.now();
      await task(i);
      each.push(performance.now() - t);
    }
  }));
  return { each, wallMs: performance.now() - t0 };
}

/** First pull from a loopback HTTP server: hyperlet's download (hash, write, fsync, rename) against curl of the same file. */
export async function pullBench(dir: string, logger: pino.Logger): Promise<Record<string, number>> {
  const payload = join(dir, 'pull');
  await mkdir(payload);
  const big = await open(join(payload, 'blob'), 'w');
  for (let i = 0; i < PULL_BYTES / (1 << 20); i++) await big.write(randomBytes(1 << 20));
  await big.close();
  await run('tar', ['-C', payload, '-cf', join(dir, 'pull.tar'), 'blob']);
  const size = (await stat(join(dir, 'pull.tar'))).size;
  // The server runs in a process of its own, so it takes nothing from the downloader's event loop (nor from curl's).
  const server = spawn(process.execPath, ['-e', SERVER_SCRIPT, join(dir, 'pull.tar')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    server.stdout.once('data', (c: Buffer) => resolve(Number(c.toString().trim())));
    server.once('exit', (code) => reject(new Error(`cannot serve the pull tarball: the server exited ${code}`)));
  });
  try {
    const sha256 = (await run('sha256sum', [join(dir, 'pull.tar')], { maxBuffer: 1 << 20 })).stdout.slice(0, 64);
    const curlMs: number[] = [];
    const curlShaMs: number[] = [];
    const hyperletMs: number[] = [];
    const hyperletShaMs: number[] = [];
    const hyperletPull = async (round: string, digest: string | undefined): Promise<number> => {
      const cache = new ImageCache({ dir: join(dir, `pull-cache-${round}`), logger });
      const t = performance.now();
      // The download ends when the job moves on to unpacking (or is done): poll the cache's own status.
      for (;;) {
        const got = await cache.rootfs({ url: `http://127.0.0.1:${port}/pull-${round}.tar`, ...(digest === undefined ? {} : { sha256: digest }) }, 'privileged');
        if (got.state === 'ready' || got.phase === 'unpacking') break;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      const ms = performance.now() - t;
      await cache.settle();
      cache.close();
      await rm(join(dir, `pull-cache-${round}`), { recursive: true, force: true });
      return ms;
    };
    for (let round = 0; round < 3; round++) {
      const out = join(dir, `curl-${round}.tar`);
      let t = performance.now();
      await run('curl', ['-sf', '-o', out, `http://127.0.0.1:${port}/pull-${round}.tar`]);
      curlMs.push(performance.now() - t);
      await rm(out);
      t = performance.now();
      await run('curl', ['-sf', '-o', out, `http://127.0.0.1:${port}/pull-${round}.tar`]);
      await run('sha256sum', [out]);
      curlShaMs.push(performance.now() - t);
      await rm(out);
      hyperletMs.push(await hyperletPull(`${round}`, undefined));
      hyperletShaMs.push(await hyperletPull(`${round}-sha`, sha256));
    }
    const mbps = (ms: number): number => Math.round(size / 1e6 / (ms / 1000));
    const [curl, curlSha, hyperlet, hyperletSha] = [curlMs, curlShaMs, hyperletMs, hyperletShaMs].map((xs) => quantile(xs, 0.5)) as [number, number, number, number];
    return {
      pullBytes: size,
      curlPullMBps: mbps(curl),
      hyperletPullMBps: mbps(hyperlet),
      pullThroughputRatioToCurl: Number((curl / hyperlet).toFixed(2)),
      curlThenSha256sumMBps: mbps(curlSha),
      hyperletPullWithSha256MBps: mbps(hyperletSha),
      pullWithSha256RatioToCurlThenSha256sum: Number((curlSha / hyperletSha).toFixed(2)),
    };
  } finally {
    server.kill();
  }
}

/** A loopback HTTP server of one file (argv[1]); prints its port. */
const SERVER_SCRIPT = `
const http = require('node:http'); const fs = require('node:fs');
const file = process.argv[1]; const size = fs.statSync(file).size;
const server = http.createServer((req, res) => {
  res.writeHead(200, { 'content-length': String(size) });
  fs.createReadStream(file, { highWaterMark: 1 << 20 }).pipe(res);
});
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
`;

/** Size of the first-pull tarball. */
const PULL_BYTES = 256 * 1024 * 1024;

/**
 * Creates and starts `count` containers each way, `concurrency` at a time: hyperlet from a cached
 * image, the raw overlay clone loop and the raw busybox template loop; then the first-pull figures.
 */
export async function imageBench(count = 50, concurrency = 4): Promise<Record<string, number | string>> {
  const logger = pino({ level: 'silent' });
  const dir = await mkdtemp(join(tmpdir(), 'hyperlet-image-bench-'));
  await chmod(dir, 0o711);
  const lxcpath = join(dir, 'lxc');
  const raw = join(dir, 'raw');
  const signal = AbortSignal.timeout(1_800_000);
  const provider = new LxcProvider({
    lxcpath, logger, tools: new LxcTools({ logger }), subordinateIdFiles: null, images: new ImageCache({ dir: join(dir, 'cache'), logger }),
  });
  try {
    await provider.probe(signal);
    await writeFile(join(dir, 'base.conf'), 'lxc.net.0.type = empty\n');
    await run('lxc-create', ['-P', raw, '-n', 'src', '-t', 'busybox', '-f', join(dir, 'base.conf')]);
    await run('tar', ['--numeric-owner', '-C', join(raw, 'src', 'rootfs'), '-czf', join(dir, 'img.tar.gz'), '.']);
    const spec = { image: { url: `file://${join(dir, 'img.tar.gz')}` }, gracefulStopSeconds: 0, network: [{ type: 'none' }] };
    const createAndStart = async (d: Desired<'Container'>): Promise<void> => {
      for (;;) {
        try {
          await provider.create(d, signal);
          break;
        } catch (err) {
          if ((err as { isStepPendingError?: boolean }).isStepPendingError !== true) throw err;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
      const observed = await provider.observe(d, signal);
      if (observed === undefined) throw new Error(`cannot observe ${d.hostName}`);
      await provider.setState(d, 'Running', observed, signal);
    };
    const t = performance.now();
    await createAndStart(desiredOf('first', spec));
    const firstPullMs = performance.now() - t;
    const image = await pool(count, concurrency, (i) => createAndStart(desiredOf(`img-${i}`, spec)));
    const overlay = await pool(count, concurrency, async (i) => {
      await run('lxc-copy', ['-P', raw, '-n', 'src', '-N', `ov-${i}`, '-s', '-B', 'overlay']);
      await run('lxc-start', ['-P', raw, '-n', `ov-${i}`]);
    });
    const template = await pool(count, concurrency, async (i) => {
      await run('lxc-create', ['-P', raw, '-n', `tpl-${i}`, '-t', 'busybox', '-f', join(dir, 'base.conf')]);
      await run('lxc-start', ['-P', raw, '-n', `tpl-${i}`]);
    });
    const p50 = quantile(image.each, 0.5);
    return {
      containers: count,
      concurrency,
      firstImageCreateStartMs: Math.round(firstPullMs),
      imageCreateStartP50Ms: Math.round(p50),
      imageCreateStartP95Ms: Math.round(quantile(image.each, 0.95)),
      imageWallMs: Math.round(image.wallMs),
      rawOverlayCloneStartP50Ms: Math.round(quantile(overlay.each, 0.5)),
      rawOverlayWallMs: Math.round(overlay.wallMs),
      templateCreateStartP50Ms: Math.round(quantile(template.each, 0.5)),
      templateWallMs: Math.round(template.wallMs),
      wallRatioToTemplate: Number((image.wallMs / template.wallMs).toFixed(3)),
      wallRatioToOverlayClone: Number((image.wallMs / overlay.wallMs).toFixed(2)),
      p50RatioToTemplate: Number((p50 / quantile(template.each, 0.5)).toFixed(3)),
      p50RatioToOverlayClone: Number((p50 / quantile(overlay.each, 0.5)).toFixed(2)),
      ...(await pullBench(dir, logger)),
      target: 'p50 < 150 ms, ratio to template <= 0.1, to overlay clone ~1.1, pull >= 0.9 of curl',
    };
  } finally {
    provider.close();
    for (const path of [lxcpath, raw]) {
      const { stdout } = await run('lxc-ls', ['-P', path, '-1']).catch(() => ({ stdout: '' }));
      await pool(stdout.split('\n').filter((s) => s !== '').length, 4, async (i) => {
        const name = stdout.split('\n').filter((s) => s !== '')[i] ?? '';
        await run('lxc-stop', ['-P', path, '-n', name, '-k']).catch(() => undefined);
        await run('lxc-destroy', ['-P', path, '-n', name]).catch(() => undefined);
      });
    }
    await rm(dir, { recursive: true, force: true });
  }
}
