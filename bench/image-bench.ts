/**
 * Containers from a cached image (issue 11): LxcProvider create + start of `count` containers
 * from one spec.image (after the first pull), against the raw tools in the same run: an overlay
 * clone loop (`lxc-copy -s -B overlay` + `lxc-start`) and the busybox template loop
 * (`lxc-create -t busybox` + `lxc-start`). One at a time, in an isolated lxcpath. Prints p50s and
 * ratios; the targets: p50 below 150 ms, ratio to the template loop 0.1 or below, ratio
 * to the overlay clone loop about 1.1.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
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

/** Creates and starts `count` containers each way; returns the figures. */
export async function imageBench(count = 20, templateCount = 5): Promise<Record<string, number | string>> {
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
    let t = performance.now();
    await createAndStart(desiredOf('first', spec));
    const firstPullMs = performance.now() - t;
    const imageMs: number[] = [];
    const overlayMs: number[] = [];
    const templateMs: number[] = [];
    for (let i = 0; i < count; i++) {
      t = performance.now();
      await createAndStart(desiredOf(`img-${i}`, spec));
      imageMs.push(performance.now() - t);
      t = performance.now();
      await run('lxc-copy', ['-P', raw, '-n', 'src', '-N', `ov-${i}`, '-s', '-B', 'overlay']);
      await run('lxc-start', ['-P', raw, '-n', `ov-${i}`]);
      overlayMs.push(performance.now() - t);
    }
    for (let i = 0; i < templateCount; i++) {
      t = performance.now();
      await run('lxc-create', ['-P', raw, '-n', `tpl-${i}`, '-t', 'busybox', '-f', join(dir, 'base.conf')]);
      await run('lxc-start', ['-P', raw, '-n', `tpl-${i}`]);
      templateMs.push(performance.now() - t);
    }
    const p50 = quantile(imageMs, 0.5);
    return {
      containers: count,
      firstPullAndStartMs: Math.round(firstPullMs),
      imageCreateStartP50Ms: Math.round(p50),
      imageCreateStartP95Ms: Math.round(quantile(imageMs, 0.95)),
      rawOverlayCloneStartP50Ms: Math.round(quantile(overlayMs, 0.5)),
      templateCreateStartP50Ms: Math.round(quantile(templateMs, 0.5)),
      ratioToOverlayClone: Number((p50 / quantile(overlayMs, 0.5)).toFixed(2)),
      ratioToTemplate: Number((p50 / quantile(templateMs, 0.5)).toFixed(3)),
      target: 'p50 < 150 ms, ratio to template <= 0.1, to overlay clone ~1.1',
    };
  } finally {
    provider.close();
    for (const path of [lxcpath, raw]) {
      const { stdout } = await run('lxc-ls', ['-P', path, '-1']).catch(() => ({ stdout: '' }));
      for (const name of stdout.split('\n').filter((s) => s !== '')) {
        await run('lxc-stop', ['-P', path, '-n', name, '-k']).catch(() => undefined);
        await run('lxc-destroy', ['-P', path, '-n', name]).catch(() => undefined);
      }
    }
    await rm(dir, { recursive: true, force: true });
  }
}
