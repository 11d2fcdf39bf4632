/**
 * Static IPv4 addresses with real LXC: two busybox containers declare `ipv4` and `gateway` on a
 * bridge this test creates (hyperlet-s…: a private /24, no DHCP server, no uplink, no NAT). LXC sets
 * the addresses before init starts; status.addresses and `hyperlet get -o wide` show them, the
 * default route goes through the gateway, and the containers reach each other.
 *
 * A guest configured for DHCP flushes a static address: the busybox template's rcS runs udhcpc,
 * whose deconfig step is `ip addr flush dev eth0`. So the containers are declared Stopped first,
 * their rcS is set up for static addressing (udhcpc line removed), and then they are declared
 * Running, as a user of static addresses configures the guest.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Daemon } from '../../src/daemon/daemon.js';
import { StateDb } from '../../src/state/state-db.js';
import { silentLogger } from '../../src/telemetry/logger.js';
import { until } from '../support/until.js';

const run = promisify(execFile);
const repoRoot = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../..');
const cli = path.join(repoRoot, 'bin', 'hyperlet.js');
const sfx = randomBytes(2).toString('hex');
const n = (what: string): string => `static-${sfx}-${what}`;
const BRIDGE = `hyperlet-s${sfx}`;
/** A /24 in 10.250–10.254 picked from the suffix, apart from the DHCP test's 10.200–10.249. */
const NET = `10.${250 + (parseInt(sfx.slice(0, 2), 16) % 5)}.${parseInt(sfx.slice(2), 16)}`;
const ADDRESS = { a: `${NET}.10`, b: `${NET}.11` } as const;

interface Row { name: string; status?: { addresses?: string[]; conditions?: { type: string; status: string; message?: string }[] } }

describe('containers with static IPv4 addresses on a bridge', function () {
  this.timeout(600_000);
  let tmp = '';
  let lxcpath = '';
  let statePath = '';
  let daemon: Daemon | undefined;

  const row = (name: string): Row | undefined => {
    const db = new StateDb(statePath, { readonly: true });
    try { return (db.listObjects() as Row[]).find((r) => r.name === name); } finally { db.close(); }
  };
  const attach = async (name: string, ...argv: string[]): Promise<string> =>
    (await run('lxc-attach', ['-P', lxcpath, '-n', name, '--', ...argv], { timeout: 30_000 })).stdout;

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('the static address e2e test needs root (lxc-*, ip)');
    tmp = mkdtempSync(path.join(os.tmpdir(), 'hyperlet-static-ipv4-'));
    chmodSync(tmp, 0o711);
    for (const d of ['manifests', 'lxc', 'state']) mkdirSync(path.join(tmp, d));
    lxcpath = path.join(tmp, 'lxc');
    statePath = path.join(tmp, 'state', 'state.db');
    await run('ip', ['link', 'add', BRIDGE, 'type', 'bridge']);
    await run('ip', ['addr', 'add', `${NET}.1/24`, 'dev', BRIDGE]);
    await run('ip', ['link', 'set', BRIDGE, 'up']);
    const declare = (state: string): void => {
      for (const who of ['a', 'b'] as const) {
        writeFileSync(path.join(tmp, 'manifests', `${n(who)}.yaml`), [
          'apiVersion: hyperlet.io/v1alpha1', 'kind: Container', `metadata: {name: ${n(who)}}`, 'spec:', '  template: busybox', `  state: ${state}`,
          `  network: [{type: veth, bridge: ${BRIDGE}, ipv4: ${ADDRESS[who]}/24, gateway: ${NET}.1}]`, '  gracefulStopSeconds: 1', '',
        ].join('\n'));
      }
    };
    declare('Stopped');
    daemon = new Daemon({
      sources: [{ type: 'dir', location: path.join(tmp, 'manifests') }], statePath, lxcpath, libvirtUri: 'qemu:///system',
      kinds: ['Container'], node: 'e2e', nodeFilter: false, resyncMs: 1_000,
      concurrency: 2, qps: 100, burst: 100, shutdownTimeoutMs: 30_000, imageCacheDir: path.join(tmp, 'cache'),
    }, silentLogger());
    await daemon.start();
    for (const who of ['a', 'b'] as const) {
      await until(`${n(who)} created`, () => (row(n(who))?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true ? true : undefined), 120_000);
      const rcS = path.join(lxcpath, n(who), 'rootfs', 'etc', 'init.d', 'rcS');
      const script = readFileSync(rcS, 'utf8');
      expect(script, 'the busybox template runs udhcpc at boot').to.match(/^\/bin\/udhcpc$/m);
      writeFileSync(rcS, script.replace(/^\/bin\/udhcpc$/m, ': static addressing, no DHCP client'));
    }
    declare('Running');
  });

  after(async () => {
    await daemon?.stop();
    for (const name of existsSync(lxcpath) ? readdirSync(lxcpath).filter((e) => e.startsWith('static-')) : []) {
      await run('lxc-stop', ['-P', lxcpath, '-n', name, '-k'], { timeout: 30_000 }).catch(() => undefined);
      await run('lxc-destroy', ['-P', lxcpath, '-n', name], { timeout: 60_000 }).catch(() => undefined);
    }
    await run('ip', ['link', 'del', BRIDGE]).catch(() => undefined);
    const consoles = '/var/log/hyperlet/console';
    for (const f of existsSync(consoles) ? readdirSync(consoles).filter((f) => f.startsWith(`static-${sfx}`)) : []) rmSync(path.join(consoles, f), { force: true });
    if (tmp !== '') rmSync(tmp, { recursive: true, force: true });
  });

  it('writes the address and gateway into the LXC config and shows the addresses in status and get -o wide', async () => {
    for (const who of ['a', 'b'] as const) {
      const addresses = await until(`${n(who)} shows its address in status`, () => {
        const a = row(n(who))?.status?.addresses ?? [];
        return a.includes(ADDRESS[who]) ? a : undefined;
      }, 120_000);
      expect(addresses.filter((x) => !x.includes(':')), 'no other IPv4 address (no DHCP here)').to.deep.equal([ADDRESS[who]]);
      const config = readFileSync(path.join(lxcpath, n(who), 'config'), 'utf8');
      expect(config).to.include(`lxc.net.0.ipv4.address = ${ADDRESS[who]}/24`);
      expect(config).to.include(`lxc.net.0.ipv4.gateway = ${NET}.1`);
    }
    const { stdout } = await run(process.execPath, [cli, 'get', 'containers', '--state', statePath, '-o', 'wide'], { timeout: 30_000 });
    expect(stdout.split('\n').find((l) => l.includes(n('a'))) ?? '', 'ADDRESSES column').to.include(ADDRESS.a);
    expect(stdout.split('\n').find((l) => l.includes(n('b'))) ?? '', 'ADDRESSES column').to.include(ADDRESS.b);
  });

  it('routes through the gateway and lets the containers reach each other', async () => {
    expect(await attach(n('a'), 'ip', 'route')).to.match(new RegExp(`default via ${NET.replace(/\./g, '\\.')}\\.1 dev eth0`));
    expect(await attach(n('a'), 'ping', '-c', '1', '-W', '5', ADDRESS.b)).to.include('1 packets received');
    expect(await attach(n('b'), 'ping', '-c', '1', '-W', '5', ADDRESS.a)).to.include('1 packets received');
    expect(await attach(n('a'), 'ping', '-c', '1', '-W', '5', `${NET}.1`), 'the gateway (the bridge) answers').to.include('1 packets received');
  });

  it('refuses a bad address with the field and rule, and leaves the other containers alone', async () => {
    writeFileSync(path.join(tmp, 'manifests', `${n('bad')}.yaml`), [
      'apiVersion: hyperlet.io/v1alpha1', 'kind: Container', `metadata: {name: ${n('bad')}}`, 'spec:', '  template: busybox',
      `  network: [{type: veth, bridge: ${BRIDGE}, ipv4: ${NET}.12/24, gateway: 10.9.9.1}]`, '',
    ].join('\n'));
    const r = await run(process.execPath, [cli, 'validate', '-f', path.join(tmp, 'manifests', `${n('bad')}.yaml`)], { timeout: 30_000 }).then(
      (x) => ({ code: 0, out: x.stdout + x.stderr }), (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? -1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` }));
    expect(r.code).to.equal(1);
    expect(r.out).to.include('spec.network[0].gateway');
    expect(r.out).to.include('outside the subnet');
    expect(existsSync(path.join(lxcpath, n('bad'))), 'nothing made for the bad object').to.equal(false);
    expect(row(n('a'))?.status?.addresses ?? []).to.include(ADDRESS.a);
  });
});
