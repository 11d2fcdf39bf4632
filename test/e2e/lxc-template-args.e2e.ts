/**
 * spec.templateArgs with LXC's real `download` template, against a local image server: an HTTPS
 * server on 127.0.0.1 (its own certificate, trusted through WGETRC) serving the index and an
 * image built here from the busybox template's tree; `--server 127.0.0.1:PORT` (this LXC's
 * template has no signature check to turn off).
 * The template's cache goes to a temporary LXC_CACHE_PATH, never /var/cache/lxc. A reserved
 * template option is refused as invalid, with nothing made.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Daemon } from '../../src/daemon/daemon.js';
import { DEFAULT_HOST_POLICY, type HostPolicy } from '../../src/policy/host-policy.js';
import { StateDb } from '../../src/state/state-db.js';
import { silentLogger } from '../../src/telemetry/logger.js';
import { until } from '../support/until.js';

const run = promisify(execFile);
const sfx = randomBytes(2).toString('hex');
const n = (what: string): string => `guests-${sfx}-${what}`;
const DIST = `guests${sfx}`;

describe('templateArgs with the download template against a local HTTPS image server', function () {
  this.timeout(900_000);
  let tmp = '';
  let manifests = '';
  let lxcpath = '';
  let statePath = '';
  let daemon: Daemon | undefined;
  let server: https.Server | undefined;
  const hits: string[] = [];
  const savedEnv = { WGETRC: process.env.WGETRC, LXC_CACHE_PATH: process.env.LXC_CACHE_PATH };

  const put = (name: string, text: string): void => writeFileSync(path.join(manifests, `${name}.yaml`), text);
  const lxcState = async (name: string): Promise<string> =>
    (await run('lxc-info', ['-P', lxcpath, '-n', name, '-sH'], { timeout: 30_000 }).then((r) => r.stdout.trim(), () => 'MISSING'));

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('the templateArgs e2e test needs root (lxc-*)');
    tmp = mkdtempSync(path.join(os.tmpdir(), 'hyperlet-guests-download-'));
    chmodSync(tmp, 0o711);
    for (const d of ['manifests', 'lxc', 'state', 'scratch', 'site', 'meta', 'lxc-cache']) mkdirSync(path.join(tmp, d));
    manifests = path.join(tmp, 'manifests');
    lxcpath = path.join(tmp, 'lxc');
    statePath = path.join(tmp, 'state', 'state.db');
    // The image the server offers: the busybox template's tree with a mark, and the meta tarball the template reads.
    writeFileSync(path.join(tmp, 'base.conf'), 'lxc.net.0.type = empty\n');
    await run('lxc-create', ['-P', path.join(tmp, 'scratch'), '-n', n('src'), '-t', 'busybox', '-f', path.join(tmp, 'base.conf')], { timeout: 120_000 });
    const tree = path.join(tmp, 'scratch', n('src'), 'rootfs');
    writeFileSync(path.join(tree, 'etc', 'guests-image'), 'from the download server\n');
    const build = path.join(tmp, 'site', 'images', DIST, '1');
    mkdirSync(build, { recursive: true });
    await run('tar', ['--numeric-owner', '-C', tree, '-cJf', path.join(build, 'rootfs.tar.xz'), '.'], { timeout: 120_000 });
    writeFileSync(path.join(tmp, 'meta', 'config'), 'lxc.include = LXC_TEMPLATE_CONFIG/common.conf\nlxc.arch = x86_64\n');
    await run('tar', ['-C', path.join(tmp, 'meta'), '-cJf', path.join(build, 'meta.tar.xz'), 'config'], { timeout: 60_000 });
    mkdirSync(path.join(tmp, 'site', 'meta', '1.0'), { recursive: true });
    writeFileSync(path.join(tmp, 'site', 'meta', '1.0', 'index-system'), `${DIST};bookworm;amd64;default;20261201;/images/${DIST}/1\n`);
    // Its certificate, for 127.0.0.1 only, trusted by wget through WGETRC (inherited by lxc-create and the template).
    const key = path.join(tmp, 'key.pem');
    const cert = path.join(tmp, 'cert.pem');
    await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-addext', 'basicConstraints=critical,CA:TRUE'], { timeout: 60_000 });
    writeFileSync(path.join(tmp, 'wgetrc'), `ca_certificate = ${cert}\n`);
    process.env.WGETRC = path.join(tmp, 'wgetrc');
    process.env.LXC_CACHE_PATH = path.join(tmp, 'lxc-cache');
    server = https.createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (req, res) => {
      // The template asks for https://SERVER//meta/…: collapse repeated slashes (no URL parsing: //meta is no host).
      const url = (req.url ?? '/').split('?')[0]?.replace(/\/+/g, '/') ?? '/';
      hits.push(url);
      const file = path.join(tmp, 'site', path.normalize(url));
      if (!file.startsWith(path.join(tmp, 'site') + path.sep) || !existsSync(file) || !statSync(file).isFile()) {
        res.writeHead(404).end();
        return;
      }
      const body = readFileSync(file);
      res.writeHead(200, { 'content-length': String(body.length) }).end(body);
    });
    await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;

    const hostPolicy: HostPolicy = {
      ...DEFAULT_HOST_POLICY,
      // Privileged: an unprivileged download container makes the template chown -R the host's /var/cache/lxc.
      defaults: { ...DEFAULT_HOST_POLICY.defaults, privileged: true },
    };
    const args = ['-d', DIST, '-r', 'bookworm', '-a', 'amd64', '--server', `127.0.0.1:${port}`];
    put(n('dl'), [
      'apiVersion: hyperlet.io/v1alpha1', 'kind: Container', `metadata: {name: ${n('dl')}}`, 'spec:', '  template: download',
      `  templateArgs: ${JSON.stringify(args)}`, '  privileged: true', '  network: [{type: none}]', '  gracefulStopSeconds: 1', '',
    ].join('\n'));
    put(n('evil'), [
      'apiVersion: hyperlet.io/v1alpha1', 'kind: Container', `metadata: {name: ${n('evil')}}`, 'spec:', '  template: busybox',
      `  templateArgs: ["--root", "${path.join(tmp, 'scratch')}"]`, '  network: [{type: none}]', '',
    ].join('\n'));
    daemon = new Daemon({
      sources: [{ type: 'dir', location: manifests }], statePath, lxcpath, libvirtUri: 'qemu:///system',
      kinds: ['Container'], node: 'e2e', nodeFilter: false, resyncMs: 2_000,
      concurrency: 2, qps: 100, burst: 100, shutdownTimeoutMs: 30_000, hostPolicy, imageCacheDir: path.join(tmp, 'cache'),
    }, silentLogger());
    await daemon.start();
  });

  after(async () => {
    await daemon?.stop();
    await new Promise<void>((resolve) => (server === undefined ? resolve() : server.close(() => resolve())));
    for (const [name, value] of Object.entries(savedEnv)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
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

  it('creates and starts a container with the download template and its arguments, from the local server', async () => {
    await until(`${n('dl')} running`, async () => {
      if ((await lxcState(n('dl'))) === 'RUNNING') return true;
      const db = new StateDb(statePath, { readonly: true });
      const ready = db.listObjects().find((r) => r.name === n('dl'))?.status?.conditions?.find((c) => c.type === 'Ready');
      db.close();
      if (ready !== undefined && /Failed|Stalled|NotFound/.test(ready.reason)) throw new Error(`${ready.reason}: ${ready.message}`);
      return undefined;
    }, 120_000);
    const { stdout } = await run('lxc-attach', ['-P', lxcpath, '-n', n('dl'), '--', '/bin/cat', '/etc/guests-image'], { timeout: 30_000 });
    expect(stdout).to.equal('from the download server\n');
    expect(hits).to.include('/meta/1.0/index-system');
    expect(hits).to.include(`/images/${DIST}/1/rootfs.tar.xz`);
    expect(readFileSync(path.join(lxcpath, n('dl'), 'config'), 'utf8')).to.include('Template used to create this container: /usr/share/lxc/templates/lxc-download');
    expect(existsSync(path.join(tmp, 'lxc-cache', 'download', DIST)), 'the template cached in the test\'s LXC_CACHE_PATH').to.equal(true);
    expect(existsSync(path.join('/var/cache/lxc/download', DIST)), 'never in the host\'s LXC cache').to.equal(false);
  });

  it('refuses a reserved template option (a prefix of --rootfs) as invalid, naming the item, with nothing made', async () => {
    const problem = await until('the file refused', () => {
      const db = new StateDb(statePath, { readonly: true });
      try {
        return db.problems().map((p) => p.problem).find((p) => p.name === n('evil'));
      } finally {
        db.close();
      }
    });
    expect(problem.path).to.equal('spec.templateArgs[0]');
    expect(problem.rule).to.equal('template-arg');
    expect(existsSync(path.join(lxcpath, n('evil')))).to.equal(false);
  });
});
