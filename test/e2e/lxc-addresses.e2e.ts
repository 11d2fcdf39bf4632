/**
 * Container addresses with real LXC on a bridge this test creates (hyperlet-gSFX: a private IPv4
 * subnet and a ULA IPv6 prefix, no uplink, no NAT) with its own dnsmasq (DHCPv4 and router
 * advertisements only, no DNS). Two busybox containers join it without a declared MAC: each gets
 * the MAC derived from its object id, a DHCP lease and a SLAAC address; status.addresses and
 * `hyperlet get -o wide` show both families, and the containers reach each other.
 */
import { expect } from 'chai';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { deriveMac } from '../../src/api/v1alpha1/mac-address.js';
import { Daemon } from '../../src/daemon/daemon.js';
import { StateDb } from '../../src/state/state-db.js';
import { silentLogger } from '../../src/telemetry/logger.js';
import { until } from '../support/until.js';

const run = promisify(execFile);
const repoRoot = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../..');
const cli = path.join(repoRoot, 'bin', 'hyperlet.js');
const sfx = randomBytes(2).toString('hex');
const n = (what: string): string => `guests-${sfx}-${what}`;
const BRIDGE = `hyperlet-g${sfx}`;
/** A /24 in 10.200–10.249 picked from the suffix, unlikely to meet another test's. */
const NET = `10.${200 + (parseInt(sfx.slice(0, 2), 16) % 50)}.${parseInt(sfx.slice(2), 16)}`;
const PREFIX = `fd42:${sfx}:1:1`;

interface Row { name: string; status?: { id?: string; addresses?: string[]; conditions?: { type: string; status: string }[] } }

describe('container addresses on a bridge with DHCP and router advertisements', function () {
  this.timeout(900_000);
  let tmp = '';
  let manifests = '';
  let lxcpath = '';
  let statePath = '';
  let daemon: Daemon | undefined;
  let dnsmasq: ChildProcess | undefined;

  const rows = (): Row[] => {
    const db = new StateDb(statePath, { readonly: true });
    try { return db.listObjects(); } finally { db.close(); }
  };
  const row = (name: string): Row | undefined => rows().find((r) => r.name === name);
  const attach = async (name: string, ...argv: string[]): Promise<string> =>
    (await run('lxc-attach', ['-P', lxcpath, '-n', name, '--', ...argv], { timeout: 30_000 })).stdout;

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('the addresses e2e test needs root (lxc-*, ip, dnsmasq)');
    tmp = mkdtempSync(path.join(os.tmpdir(), 'hyperlet-guests-addr-'));
    chmodSync(tmp, 0o711);
    for (const d of ['manifests', 'lxc', 'state']) mkdirSync(path.join(tmp, d));
    manifests = path.join(tmp, 'manifests');
    lxcpath = path.join(tmp, 'lxc');
    statePath = path.join(tmp, 'state', 'state.db');
    await run('ip', ['link', 'add', BRIDGE, 'type', 'bridge']);
    await run('ip', ['addr', 'add', `${NET}.1/24`, 'dev', BRIDGE]);
    await run('ip', ['-6', 'addr', 'add', `${PREFIX}::1/64`, 'dev', BRIDGE, 'nodad']);
    await run('ip', ['link', 'set', BRIDGE, 'up']);
    dnsmasq = spawn('dnsmasq', [
      '--keep-in-foreground', '--conf-file=/dev/null', '--port=0', `--interface=${BRIDGE}`, '--bind-interfaces',
      `--dhcp-range=${NET}.10,${NET}.100,1h`, `--dhcp-range=${PREFIX}::,ra-only,64`, '--enable-ra',
      `--dhcp-leasefile=${path.join(tmp, 'leases')}`, `--pid-file=${path.join(tmp, 'dnsmasq.pid')}`,
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    let dnsmasqErr = '';
    dnsmasq.stderr?.on('data', (b: Buffer) => { dnsmasqErr += b.toString(); });
    await until('dnsmasq serving', () => (existsSync(path.join(tmp, 'dnsmasq.pid')) ? true : dnsmasq?.exitCode === null ? undefined : (() => {
      throw new Error(`dnsmasq exited: ${dnsmasqErr}`);
    })()), 30_000);
    for (const name of [n('a'), n('b')]) {
      writeFileSync(path.join(manifests, `${name}.yaml`), [
        'apiVersion: hyperlet.io/v1alpha1', 'kind: Container', `metadata: {name: ${name}}`, 'spec:', '  template: busybox',
        `  network: [{type: veth, bridge: ${BRIDGE}}]`, '  gracefulStopSeconds: 1', '',
      ].join('\n'));
    }
    daemon = new Daemon({
      sources: [{ type: 'dir', location: manifests }], statePath, lxcpath, libvirtUri: 'qemu:///system',
      kinds: ['Container'], node: 'e2e', nodeFilter: false, resyncMs: 1_000,
      concurrency: 2, qps: 100, burst: 100, shutdownTimeoutMs: 30_000, imageCacheDir: path.join(tmp, 'cache'),
    }, silentLogger());
    await daemon.start();
  });

  after(async () => {
    await daemon?.stop();
    for (const name of existsSync(lxcpath) ? readdirSync(lxcpath).filter((e) => e.startsWith('guests-')) : []) {
      await run('lxc-stop', ['-P', lxcpath, '-n', name, '-k'], { timeout: 30_000 }).catch(() => undefined);
      await run('lxc-destroy', ['-P', lxcpath, '-n', name], { timeout: 60_000 }).catch(() => undefined);
    }
    dnsmasq?.kill('SIGTERM');
    await run('ip', ['link', 'del', BRIDGE]).catch(() => undefined);
    const consoles = '/var/log/hyperlet/console';
    for (const f of existsSync(consoles) ? readdirSync(consoles).filter((f) => f.startsWith(`guests-${sfx}`)) : []) {
      rmSync(path.join(consoles, f), { force: true });
    }
    if (tmp !== '') rmSync(tmp, { recursive: true, force: true });
  });

  it('gives each container the MAC derived from its object id', async () => {
    for (const name of [n('a'), n('b')]) {
      const id = await until(`${name} has an id`, () => row(name)?.status?.id);
      await until(`${name} config`, () => existsSync(path.join(lxcpath, name, 'config')) || undefined);
      const config = readFileSync(path.join(lxcpath, name, 'config'), 'utf8');
      expect(config, name).to.include(`lxc.net.0.hwaddr = ${deriveMac(id, 0)}`);
      expect(config, name).to.include(`lxc.net.0.link = ${BRIDGE}`);
    }
  });

  it('reports the DHCP and SLAAC addresses in status.addresses and get -o wide', async () => {
    const v4 = new RegExp(`^${NET.replace(/\./g, '\\.')}\\.[0-9]+$`);
    for (const name of [n('a'), n('b')]) {
      const addresses = await until(`${name} has both addresses in status`, () => {
        const a = row(name)?.status?.addresses ?? [];
        return a.some((x) => v4.test(x)) && a.some((x) => x.startsWith(`${PREFIX}:`)) ? a : undefined;
      }, 120_000);
      const id = row(name)?.status?.id ?? '';
      // SLAAC: the interface id comes from the derived MAC (EUI-64), so the address follows the object too.
      const mac = deriveMac(id, 0).split(':').map((h) => parseInt(h, 16));
      const eui = [(mac[0] ?? 0) ^ 2, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]].map((b) => (b ?? 0).toString(16).padStart(2, '0'));
      const slaac = `${PREFIX}:${[0, 2, 4, 6].map((i) => parseInt(`${eui[i]}${eui[i + 1]}`, 16).toString(16)).join(':')}`;
      expect(addresses, name).to.include(slaac);
      const leases = readFileSync(path.join(tmp, 'leases'), 'utf8');
      expect(leases, `${name}: the lease is the derived MAC's`).to.include(deriveMac(id, 0));
    }
    const { stdout } = await run(process.execPath, [cli, 'get', 'containers', '--state', statePath, '-o', 'wide'], { timeout: 30_000 });
    const line = stdout.split('\n').find((l) => l.includes(n('a'))) ?? '';
    for (const address of row(n('a'))?.status?.addresses ?? []) expect(line, 'ADDRESSES column').to.include(address);
  });

  it('lets the containers reach each other over the bridge, both families', async () => {
    const b = row(n('b'))?.status?.addresses ?? [];
    const v4 = b.find((x) => !x.includes(':')) ?? '';
    const v6 = b.find((x) => x.includes(':')) ?? '';
    expect(await attach(n('a'), 'ping', '-c', '1', '-W', '5', v4)).to.include('1 packets received');
    // busybox names it ping6; the address may still be tentative (DAD) for a moment after it shows.
    const pinged = await until('an IPv6 ping through', async () => {
      const out = await attach(n('a'), '/bin/sh', '-c', `ping6 -c 1 -W 2 ${v6} 2>&1 || true`);
      return out.includes('1 packets received') ? out : undefined;
    }, 30_000, 500);
    expect(pinged).to.include(v6);
  });
});
