/**
 * Containers from images (issue 11, part 1) against real LXC, with the daemon in process on a dir
 * source: a busybox rootfs tarball built here (the busybox template's tree, tarred), served by a
 * loopback HTTP server (127.0.0.1 only) and by file://. Two containers from one URL share one
 * download and one unpacked base, each an overlayfs clone; a wrong sha256, a 404 and a host the
 * policy does not list are refused with nothing made; a truncated download is retried and never
 * kept; a slow download shows its progress in status.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Daemon } from '../../src/daemon/daemon.js';
import { DEFAULT_HOST_POLICY, type HostPolicy } from '../../src/policy/host-policy.js';
import { downloadKey } from '../../src/providers/images/image-cache.js';
import { StateDb } from '../../src/state/state-db.js';
import { silentLogger } from '../../src/telemetry/logger.js';
import { until } from '../support/until.js';

const run = promisify(execFile);
const sfx = randomBytes(2).toString('hex');
const n = (what: string): string => `guests-${sfx}-${what}`;

interface Condition { type: string; status: string; reason: string; message: string }
interface Row { name: string; status?: { phase?: string; conditions?: Condition[] } }

const ct = (name: string, image: string): string => [
  'apiVersion: hyperlet.io/v1alpha1', 'kind: Container', 'metadata:', `  name: ${name}`,
  'spec:', '  network: [{type: none}]', '  gracefulStopSeconds: 1', `  image: ${image}`, '',
].join('\n');

describe('containers from images (spec.image) with real LXC', function () {
  this.timeout(900_000);
  let tmp = '';
  let manifests = '';
  let lxcpath = '';
  let statePath = '';
  let images = '';
  let cache = '';
  let daemon: Daemon | undefined;
  let server: http.Server | undefined;
  let base = '';
  const requests = new Map<string, number>();
  let gz = Buffer.alloc(0);
  let gzSha = '';
  /** Chunks the slow path has sent; the test releases them. */
  let slowRelease: () => void = () => undefined;

  const put = (name: string, text: string): void => writeFileSync(path.join(manifests, `${name}.yaml`), text);
  const rows = (): Row[] => {
    const db = new StateDb(statePath, { readonly: true });
    try { return db.listObjects(); } finally { db.close(); }
  };
  const cond = (name: string, type: string): Condition | undefined =>
    rows().find((r) => r.name === name)?.status?.conditions?.find((c) => c.type === type);
  const lxcState = async (name: string): Promise<string> =>
    (await run('lxc-info', ['-P', lxcpath, '-n', name, '-sH'], { timeout: 30_000 }).then((r) => r.stdout.trim(), () => 'MISSING'));
  const running = (name: string): Promise<true> =>
    until(`${name} running`, async () => ((await lxcState(name)) === 'RUNNING' ? true : undefined), 120_000);
  const attach = async (name: string, script: string): Promise<string> =>
    (await run('lxc-attach', ['-P', lxcpath, '-n', name, '--', '/bin/sh', '-c', script], { timeout: 30_000 })).stdout;
  const lxcEntries = (): string[] => readdirSync(lxcpath).sort();
  const cacheEntries = (sub: string): string[] => (existsSync(path.join(cache, sub)) ? readdirSync(path.join(cache, sub)).sort() : []);

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('the image e2e test needs root (lxc-*)');
    tmp = mkdtempSync(path.join(os.tmpdir(), 'hyperlet-guests-images-'));
    chmodSync(tmp, 0o711); // unprivileged containers' mapped root passes through it
    for (const d of ['manifests', 'lxc', 'state', 'images', 'scratch', 'cache']) mkdirSync(path.join(tmp, d));
    manifests = path.join(tmp, 'manifests');
    lxcpath = path.join(tmp, 'lxc');
    statePath = path.join(tmp, 'state', 'state.db');
    images = path.join(tmp, 'images');
    cache = path.join(tmp, 'cache');
    // The image: the busybox template's tree (owned by real root), tarred with numeric owners, three ways.
    writeFileSync(path.join(tmp, 'base.conf'), 'lxc.net.0.type = empty\n');
    await run('lxc-create', ['-P', path.join(tmp, 'scratch'), '-n', n('src'), '-t', 'busybox', '-f', path.join(tmp, 'base.conf')], { timeout: 120_000 });
    const tree = path.join(tmp, 'scratch', n('src'), 'rootfs');
    writeFileSync(path.join(tree, 'etc', 'guests-image'), 'from the image\n');
    await run('tar', ['--numeric-owner', '-C', tree, '-czf', path.join(images, 'busybox.tar.gz'), '.'], { timeout: 60_000 });
    await run('tar', ['--numeric-owner', '-C', tree, '-cJf', path.join(images, 'busybox.tar.xz'), '.'], { timeout: 120_000 });
    await run('tar', ['--numeric-owner', '-C', tree, '--zstd', '-cf', path.join(images, 'busybox.tar.zst'), '.'], { timeout: 60_000 });
    writeFileSync(path.join(images, 'not-a-tarball.tar'), 'hello, I am no tarball\n'.repeat(100));
    gz = readFileSync(path.join(images, 'busybox.tar.gz'));
    gzSha = createHash('sha256').update(gz).digest('hex');

    let releaseSlow: (() => void) | undefined;
    const slowGate = new Promise<void>((resolve) => { releaseSlow = resolve; });
    slowRelease = () => releaseSlow?.();
    server = http.createServer((req, res) => {
      const url = req.url ?? '/';
      requests.set(url, (requests.get(url) ?? 0) + 1);
      if (url === '/slow.tar.gz') {
        // Half now, the rest when the test has seen the progress in status.
        res.writeHead(200, { 'content-length': String(gz.length) });
        res.write(gz.subarray(0, gz.length >> 1));
        void slowGate.then(() => res.end(gz.subarray(gz.length >> 1)));
        return;
      }
      if (url === '/truncated.tar.gz') {
        res.writeHead(200, { 'content-length': String(gz.length) });
        res.end(gz.subarray(0, gz.length >> 1), () => res.socket?.destroy());
        return;
      }
      const pathname = new URL(url, 'http://127.0.0.1').pathname;
      const file = path.join(images, path.basename(pathname));
      if (!pathname.startsWith('/img/') || !existsSync(file)) {
        res.writeHead(404).end();
        return;
      }
      const body = readFileSync(file);
      res.writeHead(200, { 'content-length': String(body.length) }).end(body);
    });
    await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    const hostPolicy: HostPolicy = {
      ...DEFAULT_HOST_POLICY,
      defaults: { ...DEFAULT_HOST_POLICY.defaults, imageDirs: [images], imageHosts: ['127.0.0.1:*'] },
    };
    put(n('a'), ct(n('a'), `{url: "${base}/img/busybox.tar.gz", sha256: "${gzSha}"}`));
    put(n('b'), ct(n('b'), `{url: "${base}/img/busybox.tar.gz", sha256: "${gzSha}"}`));
    put(n('xz'), ct(n('xz'), `{url: "file://${images}/busybox.tar.xz"}`));
    put(n('zst'), ct(n('zst'), `{url: "${base}/img/busybox.tar.zst"}`));
    put(n('badsum'), ct(n('badsum'), `{url: "${base}/img/busybox.tar.gz?bad", sha256: "${'0'.repeat(64)}"}`));
    put(n('missing'), ct(n('missing'), `{url: "${base}/img/nosuch.tar.gz"}`));
    put(n('notar'), ct(n('notar'), `{url: "file://${images}/not-a-tarball.tar"}`));
    put(n('host'), ct(n('host'), `{url: "http://localhost:${(server.address() as AddressInfo).port}/img/busybox.tar.gz"}`));
    put(n('outside'), ct(n('outside'), '{url: "file:///etc/shadow"}'));
    put(n('cut'), ct(n('cut'), `{url: "${base}/truncated.tar.gz"}`));
    put(n('slow'), ct(n('slow'), `{url: "${base}/slow.tar.gz"}`));
    daemon = new Daemon({
      sources: [{ type: 'dir', location: manifests }], statePath, lxcpath, libvirtUri: 'qemu:///system',
      kinds: ['Container'], node: 'e2e', nodeFilter: false, resyncMs: 2_000,
      concurrency: 4, qps: 100, burst: 100, shutdownTimeoutMs: 30_000, hostPolicy, imageCacheDir: cache,
    }, silentLogger());
    await daemon.start();
  });

  after(async () => {
    slowRelease();
    await daemon?.stop();
    await new Promise<void>((resolve) => (server === undefined ? resolve() : server.close(() => resolve())));
    for (const dir of [lxcpath, path.join(tmp, 'scratch')]) {
      for (const name of existsSync(dir) ? readdirSync(dir).filter((e) => e.startsWith('guests-')) : []) {
        await run('lxc-stop', ['-P', dir, '-n', name, '-k'], { timeout: 30_000 }).catch(() => undefined);
        await run('lxc-destroy', ['-P', dir, '-n', name], { timeout: 60_000 }).catch(() => undefined);
      }
    }
    const consoles = '/var/log/hyperlet/console';
    for (const f of existsSync(consoles) ? readdirSync(consoles).filter((f) => f.startsWith(`guests-${sfx}`)) : []) {
      rmSync(path.join(consoles, f), { force: true });
    }
    if (tmp !== '') rmSync(tmp, { recursive: true, force: true });
  });

  it('shows a download in progress: Reconciling and Ready DownloadingImage with the bytes received, phase Creating', async () => {
    const seen = await until('the slow download in status', () => {
      const ready = cond(n('slow'), 'Ready');
      return ready?.reason === 'DownloadingImage' && / of [0-9]+ bytes/.test(ready.message) ? ready : undefined;
    }, 120_000);
    expect(seen.message).to.match(new RegExp(`^Downloading image ${base}/slow\\.tar\\.gz: [0-9]+ of ${gz.length} bytes$`));
    expect(cond(n('slow'), 'Reconciling')).to.include({ status: 'True', reason: 'DownloadingImage' });
    expect(rows().find((r) => r.name === n('slow'))?.status?.phase).to.equal('Creating');
    expect(existsSync(path.join(lxcpath, n('slow'))), 'no container while its image downloads').to.equal(false);
    const partials = cacheEntries('downloads').filter((e) => e.startsWith('.partial-'));
    expect(partials.length, 'the download goes to a hidden partial file').to.be.greaterThan(0);
    slowRelease();
    await running(n('slow'));
  });

  it('makes two containers from one URL with one download and one unpacked base, each an overlay clone', async () => {
    await running(n('a'));
    await running(n('b'));
    expect(requests.get('/img/busybox.tar.gz'), 'one download for a and b').to.equal(1);
    const key = downloadKey({ url: `${base}/img/busybox.tar.gz`, sha256: gzSha });
    expect(cacheEntries('downloads')).to.include(key);
    const lower = (name: string): string => {
      const line = readFileSync(path.join(lxcpath, name, 'config'), 'utf8').split('\n').find((l) => l.startsWith('lxc.rootfs.path'));
      const m = /^lxc\.rootfs\.path = overlay:([^:]+):(.+)$/.exec(line ?? '');
      expect(m, `${name}: ${line}`).to.not.equal(null);
      expect(m?.[2]).to.equal(path.join(lxcpath, name, 'rootfs'));
      return m?.[1] ?? '';
    };
    expect(lower(n('a')), 'one unpacked base under the cache').to.equal(lower(n('b')));
    expect(path.dirname(lower(n('a')))).to.equal(path.join(cache, 'rootfs'));
    expect(await attach(n('a'), 'cat /etc/guests-image')).to.equal('from the image\n');
    await attach(n('a'), 'echo mine > /etc/guests-image; echo a > /only-a');
    expect(await attach(n('b'), 'cat /etc/guests-image; ls /only-a 2>/dev/null || echo none')).to.equal('from the image\nnone\n');
    expect(readFileSync(path.join(lower(n('a')), 'etc', 'guests-image'), 'utf8'), 'the base is never written').to.equal('from the image\n');
    expect(existsSync(path.join(lxcpath, n('a'), 'rootfs', 'only-a')), 'writes land in the container\'s upper directory').to.equal(true);
    const st = (await run('stat', ['-c', '%u', path.join(lower(n('a')), 'bin')])).stdout.trim();
    expect(Number(st), 'the base is shifted into the container id range (unprivileged)').to.be.greaterThanOrEqual(100_000);
    expect((await attach(n('a'), 'id -u')).trim()).to.equal('0');
  });

  it('unpacks xz by file:// and zstd by http', async () => {
    await running(n('xz'));
    await running(n('zst'));
    expect(await attach(n('xz'), 'cat /etc/guests-image')).to.equal('from the image\n');
    expect(await attach(n('zst'), 'cat /etc/guests-image')).to.equal('from the image\n');
  });

  it('refuses a wrong sha256, a 404, no tarball: Stalled with the reason, nothing made, nothing kept', async () => {
    const db = new StateDb(statePath, { readonly: true });
    const problems = db.problems();
    db.close();
    expect(problems, 'every file is valid: each refusal below comes from the host, not the schema').to.deep.equal([]);
    const want = { [n('badsum')]: 'ImageChecksumMismatch', [n('missing')]: 'ImageNotFound', [n('notar')]: 'InvalidImage' };
    for (const [name, reason] of Object.entries(want)) {
      const stalled = await until(`${name} stalled`, () => {
        const c = cond(name, 'Stalled');
        return c?.status === 'True' ? c : undefined;
      }, 120_000);
      expect(stalled.reason, name).to.equal(reason);
      expect(cond(name, 'Ready'), name).to.include({ status: 'False', reason });
      expect(existsSync(path.join(lxcpath, name)), `${name}: no container`).to.equal(false);
    }
    expect(cond(n('badsum'), 'Stalled')?.message).to.include(`not the declared ${'0'.repeat(64)}`);
    expect(cond(n('missing'), 'Stalled')?.message).to.include('HTTP 404');
    const badKey = downloadKey({ url: `${base}/img/busybox.tar.gz?bad`, sha256: '0'.repeat(64) });
    expect(cacheEntries('downloads').filter((e) => e.includes(badKey)), 'the bad download is not kept, not even partly').to.deep.equal([]);
    expect(lxcEntries().filter((e) => e.startsWith('.')), 'no staging or trash left in the lxcpath').to.deep.equal([]);
  });

  it('refuses a host and a file the policy does not allow, before any request', async () => {
    const host = await until('host refused', () => (cond(n('host'), 'Ready')?.reason === 'PolicyDenied' ? cond(n('host'), 'Ready') : undefined));
    expect(host?.message).to.include('spec.image.url: localhost:').and.to.include('is not an allowed image host (127.0.0.1:*) (policy: imageHosts)');
    const file = await until('file refused', () => (cond(n('outside'), 'Ready')?.reason === 'PolicyDenied' ? cond(n('outside'), 'Ready') : undefined));
    expect(file?.message).to.include('spec.image.url: /etc/shadow is not a regular file under an allowed image directory');
    expect(existsSync(path.join(lxcpath, n('host')))).to.equal(false);
    expect(existsSync(path.join(lxcpath, n('outside')))).to.equal(false);
  });

  it('retries a truncated download with backoff and never keeps it', async () => {
    await until('a second attempt at the truncated download', () => ((requests.get('/truncated.tar.gz') ?? 0) >= 2 ? true : undefined), 120_000);
    const ready = cond(n('cut'), 'Ready');
    expect(ready?.status).to.equal('False');
    expect(ready?.message).to.match(/truncated|aborted|socket hang up|ECONNRESET/);
    expect(cacheEntries('downloads')).to.not.include(downloadKey({ url: `${base}/truncated.tar.gz` }));
    expect(existsSync(path.join(lxcpath, n('cut')))).to.equal(false);
  });

  it('deletes image containers and keeps the cached base for the next one', async () => {
    rmSync(path.join(manifests, `${n('b')}.yaml`));
    await until('b gone', async () => ((await lxcState(n('b'))) === 'MISSING' && !existsSync(path.join(lxcpath, n('b'))) ? true : undefined), 120_000);
    expect(await lxcState(n('a'))).to.equal('RUNNING');
    expect(cacheEntries('rootfs').filter((e) => !e.startsWith('.')).length, 'a, xz, zst and slow bases stay').to.be.greaterThanOrEqual(3);
    put(n('c'), ct(n('c'), `{url: "${base}/img/busybox.tar.gz", sha256: "${gzSha}"}`));
    await running(n('c'));
    expect(requests.get('/img/busybox.tar.gz'), 'c came from the cache, no new request').to.equal(1);
  });
});
