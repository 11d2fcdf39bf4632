/**
 * Crash points of the libvirt provider, one by one: `hyperlet run` (dir source, the real libvirtd,
 * hypervisor qemu) is started with one failpoint enabled, dies there by SIGKILL, is started again
 * without it, and the exact end state is asserted: every declared domain defined once, complete
 * (no partial marker), running, with its declared vCPUs live and in its persistent definition; its
 * pool holding exactly one volume per declared disk (no orphan volume, no stray file); the state DB
 * holding exactly the declared objects; a domain and a volume hyperlet does not own untouched.
 * The guests boot from an empty disk and wait in the firmware: small and cheap under TCG.
 * Needs libvirtd (scripts/setup-host.sh).
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DaemonProcess, REPO_ROOT } from './support/daemon-process.js';
import { until } from './support/until.js';

const run = promisify(execFile);
const PREFIX = `hlcrash-${randomBytes(2).toString('hex')}`;
const POOL = `hyperlet-${PREFIX}`;
const POOL_DIR = join('/var/lib/hyperlet/pools', POOL);
const FOREIGN_DOMAIN = `${PREFIX}-foreign`;
const FOREIGN_VOLUME = `${PREFIX}-foreign.qcow2`;
const n = (letter: string): string => `${PREFIX}-${letter}`;

async function virsh(...args: string[]): Promise<string> {
  try {
    return (await run('virsh', ['-c', 'qemu:///system', ...args], { timeout: 60_000 })).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`cannot run virsh ${args.join(' ')}: ${e.stderr ?? e.message}`);
  }
}

interface Declared {
  readonly cpu: number;
  readonly disks: readonly string[];
}

function manifest(name: string, spec: Declared): string {
  return [
    'apiVersion: hyperlet.io/v1alpha1',
    'kind: VirtualMachine',
    `metadata: {name: ${name}}`,
    'spec:',
    '  hypervisor: qemu',
    '  state: Running',
    `  resources: {cpu: ${spec.cpu}, maxCpu: 2, memory: 64Mi}`,
    `  boot: {disk: ${spec.disks[0] ?? 'data'}}`,
    `  disks: [${spec.disks.map((d) => `{name: ${d}, size: 100Mi, pool: ${POOL}}`).join(', ')}]`,
    '  gracefulStopSeconds: 0',
    '',
  ].join('\n');
}

const foreignXml = `<domain type='qemu'><name>${FOREIGN_DOMAIN}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64'>hvm</type></os></domain>`;

describe('crash points: libvirt provider (kill -9 exactly there, then restart)', function () {
  this.timeout(900_000);
  let tmp = '';
  let manifests = '';
  let statePath = '';
  let daemon: DaemonProcess | undefined;
  let starts = 0;
  let foreignDefinition = '';
  const declared = new Map<string, Declared>();

  const remembered = async (): Promise<string[]> => {
    const { stdout } = await run(process.execPath, [join(REPO_ROOT, 'bin/hyperlet.js'), 'get', 'vms', '-A', '-o', 'json', '--state', statePath], { timeout: 30_000 });
    return (JSON.parse(stdout) as { items: { metadata: { name: string } }[] }).items.map((i) => i.metadata.name).sort();
  };
  const vcpus = async (name: string, where: '--live' | '--config'): Promise<number> => Number((await virsh('vcpucount', name, '--current', where)).trim());

  function start(failpoints: readonly string[] = []): DaemonProcess {
    starts += 1;
    return DaemonProcess.start([
      '--source', `dir:${manifests}`, '--state', statePath, '--http', 'off', '--lxcpath', join(tmp, 'lxc'),
      '--kinds', 'VirtualMachine', '--resync', '10s', '--log-level', 'info',
    ], join(tmp, `daemon-${starts}.log`), failpoints);
  }

  /** What differs from the exact end state: empty once converged. */
  async function problems(): Promise<string[]> {
    const out: string[] = [];
    const domains = (await virsh('list', '--all', '--name')).split('\n').map((s) => s.trim()).filter((s) => s.startsWith(PREFIX)).sort();
    const want = [...declared.keys(), FOREIGN_DOMAIN].sort();
    if (JSON.stringify(domains) !== JSON.stringify(want)) out.push(`domains ${domains.join(' ')}; want ${want.join(' ')}`);
    const poolExists = (await virsh('pool-list', '--all', '--name')).split('\n').some((s) => s.trim() === POOL);
    const volumes = poolExists ? (await virsh('vol-list', POOL, '--details')).split('\n').slice(2).map((l) => l.trim().split(/\s+/)[0] ?? '').filter((s) => s !== '').sort() : [];
    const files = existsSync(POOL_DIR) ? (await readdir(POOL_DIR)).sort() : [];
    if (JSON.stringify(files) !== JSON.stringify(volumes)) out.push(`pool directory holds ${files.join(' ')}; libvirt lists ${volumes.join(' ')}`);
    const expected = [...declared].flatMap(([name, spec]) => spec.disks.map((d) => `${name}-${d}-`));
    for (const prefix of expected) {
      const count = volumes.filter((v) => v.startsWith(prefix)).length;
      if (count !== 1) out.push(`${count} volumes ${prefix}*`);
    }
    const unexpected = volumes.filter((v) => v !== FOREIGN_VOLUME && !expected.some((p) => v.startsWith(p)));
    if (unexpected.length > 0) out.push(`orphan volumes ${unexpected.join(' ')}`);
    if (poolExists && !volumes.includes(FOREIGN_VOLUME) && foreignDefinition !== '') out.push('the volume hyperlet does not own is gone');
    for (const [name, spec] of declared) {
      if (!domains.includes(name)) continue;
      const xml = await virsh('dumpxml', name);
      if (!xml.includes('https://hyperlet.io/') || xml.includes('<hyperlet:partial>')) out.push(`${name}: marker missing or partial`);
      const state = (await virsh('domstate', name)).trim();
      if (state !== 'running') out.push(`${name}: ${state}`);
      else if (await vcpus(name, '--live') !== spec.cpu) out.push(`${name}: live vCPUs ${await vcpus(name, '--live')}`);
      if (await vcpus(name, '--config') !== spec.cpu) out.push(`${name}: persistent vCPUs ${await vcpus(name, '--config')}`);
    }
    if (foreignDefinition !== '') {
      if ((await virsh('dumpxml', '--inactive', FOREIGN_DOMAIN).catch(() => '')) !== foreignDefinition) out.push('the domain hyperlet does not own changed');
      if ((await virsh('domstate', FOREIGN_DOMAIN).catch(() => '')).trim() !== 'shut off') out.push('the domain hyperlet does not own was started');
    }
    const rows = await remembered();
    const wantRows = [...declared.keys()].sort();
    if (JSON.stringify(rows) !== JSON.stringify(wantRows)) out.push(`state DB holds ${rows.join(' ')}; want ${wantRows.join(' ')}`);
    return out;
  }

  async function converged(timeoutMs = 90_000): Promise<void> {
    let last: string[] = [];
    try {
      await until('the exact end state', async () => {
        // A state DB not written yet, a domain between two states: look again.
        last = await problems().catch((err: unknown) => [String(err)]);
        return last.length === 0 ? true : undefined;
      }, timeoutMs, 250);
    } catch (err) {
      throw new Error(`${(err as Error).message}:\n  ${last.join('\n  ')}\n${await daemon?.tail() ?? ''}`);
    }
  }

  async function crashAt(point: string, change: () => Promise<void>): Promise<void> {
    await daemon?.kill();
    daemon = start([point]);
    await change();
    await daemon.diedAt(point);
    daemon = start();
    await converged();
  }

  const declare = async (name: string, spec: Declared): Promise<void> => {
    declared.set(name, spec);
    await writeFile(join(manifests, `${name}.yaml`), manifest(name, spec));
  };
  const undeclare = async (name: string): Promise<void> => {
    declared.delete(name);
    await unlink(join(manifests, `${name}.yaml`));
  };

  before(async () => {
    if (!existsSync('/run/libvirt/libvirt-sock')) throw new Error('cannot run: /run/libvirt/libvirt-sock is missing; run scripts/setup-host.sh');
    tmp = await mkdtemp(join(tmpdir(), 'hyperlet-libvirt-crash-'));
    manifests = join(tmp, 'manifests');
    statePath = join(tmp, 'state', 'state.db');
    await mkdir(manifests);
    const xmlPath = join(tmp, 'foreign.xml');
    await writeFile(xmlPath, foreignXml);
    await virsh('define', xmlPath);
    daemon = start();
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') console.error(await daemon?.tail() ?? '');
  });

  after(async () => {
    await daemon?.kill();
    const domains = (await virsh('list', '--all', '--name').catch(() => '')).split('\n').map((s) => s.trim()).filter((s) => s.startsWith(PREFIX));
    for (const name of domains) {
      await virsh('destroy', name).catch(() => undefined);
      await virsh('undefine', name).catch(() => undefined);
      await rm(join('/var/log/hyperlet/console', `${name}.log`), { force: true });
    }
    const volumes = (await virsh('vol-list', POOL).catch(() => '')).split('\n').slice(2).map((l) => l.trim().split(/\s+/)[0] ?? '').filter((s) => s !== '');
    for (const v of volumes) await virsh('vol-delete', v, '--pool', POOL).catch(() => undefined);
    await virsh('pool-destroy', POOL).catch(() => undefined);
    await virsh('pool-undefine', POOL).catch(() => undefined);
    await rm(POOL_DIR, { recursive: true, force: true });
    if (tmp !== '') await rm(tmp, { recursive: true, force: true });
  });

  it('pool: killed with the pool defined, before it is built and started', async () => {
    await crashAt('libvirt.pool.defined', () => declare(n('a'), { cpu: 1, disks: ['data'] }));
    // From now on a volume hyperlet does not own sits in the pool, and a domain beside the ours.
    await virsh('vol-create-as', POOL, FOREIGN_VOLUME, '1M', '--format', 'qcow2');
    foreignDefinition = await virsh('dumpxml', '--inactive', FOREIGN_DOMAIN);
  });
  it('create: killed with the domain defined as partial, before its volumes', () =>
    crashAt('libvirt.create.defined', () => declare(n('b'), { cpu: 1, disks: ['data'] })));
  it('create: killed between two volumes', () =>
    crashAt('libvirt.create.volume', () => declare(n('c'), { cpu: 1, disks: ['data', 'logs'] })));
  it('start: killed right after the domain started', () =>
    crashAt('libvirt.start.started', () => declare(n('d'), { cpu: 1, disks: ['data'] })));
  it('update: killed with the definition written, before the live change', () =>
    crashAt('libvirt.update.defined', () => declare(n('a'), { cpu: 2, disks: ['data'] })));
  it('update: killed with the live change made, before the live marker', () =>
    crashAt('libvirt.update.applied', () => declare(n('b'), { cpu: 2, disks: ['data'] })));
  it('delete: killed with the domain destroyed, before its volumes', () =>
    crashAt('libvirt.delete.destroyed', () => undeclare(n('c'))));
  it('delete: killed with the volumes deleted, before the domain is undefined', () =>
    crashAt('libvirt.delete.volumes-deleted', () => undeclare(n('d'))));

  it('deleting every file removes every domain and volume it made, and nothing else', async () => {
    for (const name of [...declared.keys()]) await undeclare(name);
    await converged();
    expect(await virsh('domstate', FOREIGN_DOMAIN)).to.include('shut off');
  });
});
