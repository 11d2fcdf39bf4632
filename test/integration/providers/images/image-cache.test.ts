/**
 * The image cache against real files, GNU tar and a loopback HTTP server (127.0.0.1), and killed
 * with SIGKILL at its failpoints: what it leaves is hidden, recognisably its own, and removed by
 * the next process, which then completes the image.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ImageCache, downloadKey, unpackKey } from '../../../../src/providers/images/image-cache.js';
import { FAILPOINTS_ENV } from '../../../../src/shared/failpoint.js';
import { silentLogger } from '../../../../src/telemetry/logger.js';
import { until } from '../../../support/until.js';

const run = promisify(execFile);
const moduleUrl = new URL('../../../../src/providers/images/image-cache.js', import.meta.url).href;
const loggerUrl = new URL('../../../../src/telemetry/logger.js', import.meta.url).href;

describe('ImageCache (real files, tar and a loopback server)', function () {
  this.timeout(60_000);
  let tmp = '';
  let tarball = '';
  let sha = '';
  let server: http.Server | undefined;
  let base = '';
  let hits = 0;

  before(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'hyperlet-guests-cache-'));
    mkdirSync(path.join(tmp, 'tree', 'etc'), { recursive: true });
    writeFileSync(path.join(tmp, 'tree', 'etc', 'hello'), 'hello\n');
    tarball = path.join(tmp, 'tree.tar.gz');
    await run('tar', ['-C', path.join(tmp, 'tree'), '-czf', tarball, '.']);
    sha = createHash('sha256').update(readFileSync(tarball)).digest('hex');
    server = http.createServer((req, res) => {
      hits++;
      const body = readFileSync(tarball);
      if (req.url === '/redirect') res.writeHead(302, { location: 'http://127.0.0.1:1/elsewhere' }).end();
      else if (req.url === '/t.tar.gz' || req.url === '/t.tar.gz?refused') res.writeHead(200, { 'content-length': String(body.length) }).end(body);
      else res.writeHead(500).end();
    });
    await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    await new Promise<void>((resolve) => (server === undefined ? resolve() : server.close(() => resolve())));
    rmSync(tmp, { recursive: true, force: true });
  });

  const ready = async (cache: ImageCache, image: { url: string; sha256?: string }, variant = 'privileged'): Promise<string> =>
    until('the image ready', async () => {
      const got = await cache.rootfs(image, variant);
      return got.state === 'ready' ? got.path : undefined;
    }, 30_000, 20);

  it('shares one download between concurrent callers and variants, and reuses it afterwards', async () => {
    const cache = new ImageCache({ dir: path.join(tmp, 'share'), logger: silentLogger() });
    const image = { url: `${base}/t.tar.gz`, sha256: sha };
    hits = 0;
    const [a, b] = await Promise.all([ready(cache, image, 'privileged'), ready(cache, image, 'idmap:1000000:65536')]);
    expect(a).to.not.equal(b);
    expect(readFileSync(path.join(a, 'etc', 'hello'), 'utf8')).to.equal('hello\n');
    expect(hits, 'one request for both variants').to.equal(1);
    expect(await ready(new ImageCache({ dir: path.join(tmp, 'share'), logger: silentLogger() }), image)).to.equal(a);
    expect(hits, 'a new process finds it in the cache').to.equal(1);
  });

  const refusals = {
    Redirect: { reason: 'a redirect is never followed (the policy judged the URL as written)', url: '/redirect', want: 'ImageNotFound' },
    ServerError: { reason: 'HTTP 500 is transient: a plain error, retried', url: '/boom', want: undefined },
  };
  for (const [name, tc] of Object.entries(refusals)) {
    it(name, async () => {
      const cache = new ImageCache({ dir: path.join(tmp, `refuse-${name}`), logger: silentLogger() });
      const image = { url: `${base}${tc.url}` };
      const err = await until('the failure', async () => {
        try {
          await cache.rootfs(image, 'privileged');
          return undefined;
        } catch (e) {
          return e as { reason?: string; isTerminalError?: boolean };
        }
      }, 30_000, 20);
      expect(err.reason, tc.reason).to.equal(tc.want);
      expect(readdirSync(path.join(tmp, `refuse-${name}`, 'downloads')), 'nothing kept').to.deep.equal([]);
    });
  }

  it('file(): downloads once, runs the check once, and hands out the verified file; a refused file is removed and refused again', async () => {
    const cache = new ImageCache({ dir: path.join(tmp, 'file-cache'), logger: silentLogger() });
    let checks = 0;
    const image = { url: `${base}/t.tar.gz`, sha256: sha };
    const phases = new Set<string>();
    const file = await until('the file ready', async () => {
      const got = await cache.file(image, async () => { checks++; });
      if (got.state === 'pending') phases.add(got.phase);
      return got.state === 'ready' ? got.path : undefined;
    }, 30_000, 5);
    expect(phases.has('downloading'), 'pending while it downloads').to.equal(true);
    expect(file).to.equal(path.join(tmp, 'file-cache', 'downloads', downloadKey(image)));
    expect(readFileSync(file).equals(readFileSync(tarball))).to.equal(true);
    expect((await cache.file(image, async () => { checks++; })).state, 'ready at once the second time').to.equal('ready');
    expect(checks, 'the check runs once per process for a file').to.equal(1);
    const refused = { url: `${base}/t.tar.gz?refused` };
    const { TerminalError } = await import('../../../../src/shared/errors.js');
    const err = await until('the refusal', async () => {
      try {
        await cache.file(refused, () => Promise.reject(new TerminalError('InvalidImage', 'cannot use image: not a disk')));
        return undefined;
      } catch (e) {
        return e as Error;
      }
    }, 30_000, 5);
    expect(err.message).to.equal('cannot use image: not a disk');
    expect(existsSync(path.join(tmp, 'file-cache', 'downloads', downloadKey(refused))), 'a refused file is not kept').to.equal(false);
    const again = await cache.file(refused, async () => undefined).then(() => undefined, (e: unknown) => e as Error);
    expect(again?.message, 'refused again without a new download').to.equal('cannot use image: not a disk');
    cache.close();
  });

  it('keeps the leftovers of a live process and removes one named with its own pid (reused from a dead process)', async () => {
    const dir = path.join(tmp, 'sweep');
    mkdirSync(path.join(dir, 'downloads'), { recursive: true });
    const live = `.partial-${'c'.repeat(64)}-1-1`; // pid 1 is alive: another hyperlet's download in flight
    const reused = `.partial-${'d'.repeat(64)}-${process.pid}-1`;
    const foreign = 'notes.txt';
    for (const name of [live, reused, foreign]) writeFileSync(path.join(dir, 'downloads', name), 'x');
    await ready(new ImageCache({ dir, logger: silentLogger() }), { url: `file://${tarball}` });
    const left = readdirSync(path.join(dir, 'downloads'));
    expect(left).to.include(live);
    expect(left).to.include(foreign);
    expect(left).to.not.include(reused);
  });

  /** A child process that prepares `url` in `dir` and dies at `point`. */
  async function killedAt(point: string, dir: string, url: string): Promise<NodeJS.Signals | null> {
    const script = `const { ImageCache } = await import(${JSON.stringify(moduleUrl)});
const { silentLogger } = await import(${JSON.stringify(loggerUrl)});
const cache = new ImageCache({ dir: ${JSON.stringify(dir)}, logger: silentLogger() });
await cache.rootfs({ url: ${JSON.stringify(url)} }, 'privileged');
await cache.settle();`;
    return new Promise((resolve) => {
      const child = execFile(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, [FAILPOINTS_ENV]: point } },
        () => resolve(child.signalCode));
    });
  }

  const crashes = {
    DownloadVerified: { reason: 'killed with the verified download not yet renamed', point: 'images.download.verified', hidden: 'downloads' },
    UnpackExtracted: { reason: 'killed with the unpacked tree not yet renamed', point: 'images.unpack.extracted', hidden: 'rootfs' },
  };
  for (const [name, tc] of Object.entries(crashes)) {
    it(`kill -9 at ${tc.point}`, async () => {
      const dir = path.join(tmp, `crash-${name}`);
      const url = `file://${tarball}`;
      expect(await killedAt(tc.point, dir, url), tc.reason).to.equal('SIGKILL');
      const left = readdirSync(path.join(dir, tc.hidden));
      const prefix = tc.hidden === 'downloads' ? `.partial-${downloadKey({ url })}-` : `.staging-${unpackKey({ url }, 'privileged')}-`;
      expect(left.filter((e) => !e.startsWith(prefix)), `${tc.reason}: only a hidden leftover named by its key`).to.deep.equal(
        tc.hidden === 'downloads' ? [] : [downloadKey({ url })].filter((k) => left.includes(k)),
      );
      expect(left.some((e) => e.startsWith(prefix)), tc.reason).to.equal(true);
      const cache = new ImageCache({ dir, logger: silentLogger() });
      const tree = await ready(cache, { url });
      expect(readFileSync(path.join(tree, 'etc', 'hello'), 'utf8')).to.equal('hello\n');
      for (const sub of ['downloads', 'rootfs']) {
        expect(readdirSync(path.join(dir, sub)).filter((e) => e.startsWith('.')), `${sub}: the dead process's leftover is gone`).to.deep.equal([]);
      }
      expect(existsSync(path.join(dir, 'rootfs', unpackKey({ url }, 'privileged')))).to.equal(true);
    });
  }
});
