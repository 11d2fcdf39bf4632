/**
 * The exact end state of libvirt after hyperlet converged, for crash tests: every declared domain
 * defined once (names under a test prefix), complete (marker, not partial), running, with its
 * declared vCPUs live and in its persistent definition; the test's pool holding exactly one volume
 * per declared disk and nothing else (no orphan volume, no file libvirt does not list); the state
 * DB holding exactly the declared objects; the domain and volume hyperlet does not own untouched.
 * The guests boot from an empty disk and wait in the firmware: small and cheap under TCG.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { rememberedNames } from './lxc-end-state.js';

const run = promisify(execFile);

/** Runs virsh against qemu:///system; throws with virsh's stderr. */
export async function virsh(...args: string[]): Promise<string> {
  try {
    return (await run('virsh', ['-c', 'qemu:///system', ...args], { timeout: 60_000 })).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`cannot run virsh ${args.join(' ')}: ${e.stderr ?? e.message}`);
  }
}

/** One declared VirtualMachine, as the test wrote it. */
export interface DeclaredVm {
  /** vCPUs; only ever raised (a guest waiting in the firmware cannot give a hot-plugged vCPU back). */
  readonly cpu: number;
  readonly disks: readonly string[];
  /** Default Running. */
  readonly state?: 'Running' | 'Stopped';
  /** Disks dropped from the spec: their volumes stay, listed in the marker, until the VM is deleted. */
  readonly detached?: readonly string[];
  /** More annotations (hyperlet.io/adopt, snapshot-request, restore-request). */
  readonly annotations?: Readonly<Record<string, string>>;
  /** The domain's snapshots, exactly (virsh snapshot-list); "auto-" stands for one scheduled snapshot; undefined: not checked. */
  readonly snapshots?: readonly string[];
  /** spec.snapshots, as YAML flow text. */
  readonly snapshotsSpec?: string;
}

/** The pools' parent directory hyperlet uses by default. */
const POOL_ROOT = '/var/lib/hyperlet/pools';

export class LibvirtEndState {
  readonly declared = new Map<string, DeclaredVm>();
  /** The pool the test's VMs use (hyperlet creates it). */
  readonly pool: string;
  readonly poolDir: string;
  readonly foreignDomain: string;
  readonly foreignVolume: string;
  private foreignDefinition = '';

  /** Everything the test makes is named with `prefix`. */
  constructor(readonly prefix: string, private readonly statePath: string) {
    this.pool = `hyperlet-${prefix}`;
    this.poolDir = join(POOL_ROOT, this.pool);
    this.foreignDomain = `${prefix}-foreign`;
    this.foreignVolume = `${prefix}-foreign.qcow2`;
  }

  /** A VirtualMachine manifest (qemu, 64 MiB, booting from its first disk, restarted for changes that need it) for `spec`. */
  manifest(name: string, spec: DeclaredVm): string {
    return [
      'apiVersion: hyperlet.io/v1alpha1',
      'kind: VirtualMachine',
      spec.annotations === undefined
        ? `metadata: {name: ${name}}`
        : `metadata: {name: ${name}, annotations: {${Object.entries(spec.annotations).map(([k, v]) => `${k}: "${v}"`).join(', ')}}}`,
      'spec:',
      '  hypervisor: qemu',
      `  state: ${spec.state ?? 'Running'}`,
      `  resources: {cpu: ${spec.cpu}, maxCpu: 2, memory: 64Mi}`,
      `  boot: {disk: ${spec.disks[0] ?? 'data'}}`,
      `  disks: [${spec.disks.map((d) => `{name: ${d}, size: 100Mi, pool: ${this.pool}}`).join(', ')}]`,
      '  gracefulStopSeconds: 0',
      '  updatePolicy: Restart',
      ...(spec.snapshotsSpec === undefined ? [] : [`  snapshots: ${spec.snapshotsSpec}`]),
      '',
    ].join('\n');
  }

  /** Defines the domain hyperlet does not own (never started); `xmlPath` is where its XML goes. */
  async defineForeignDomain(xmlPath: string): Promise<void> {
    await writeFile(xmlPath, `<domain type='qemu'><name>${this.foreignDomain}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64'>hvm</type></os></domain>`);
    await virsh('define', xmlPath);
  }

  /** Once the pool exists: puts the volume hyperlet does not own in it and starts checking both foreign things. */
  async addForeignVolume(): Promise<void> {
    await virsh('vol-create-as', this.pool, this.foreignVolume, '1M', '--format', 'qcow2');
    this.foreignDefinition = await virsh('dumpxml', '--inactive', this.foreignDomain);
  }

  private async vcpus(name: string, where: '--live' | '--config'): Promise<number> {
    return Number((await virsh('vcpucount', name, '--current', where)).trim());
  }

  private async volumes(): Promise<string[] | undefined> {
    const poolExists = (await virsh('pool-list', '--all', '--name')).split('\n').some((s) => s.trim() === this.pool);
    if (!poolExists) return undefined;
    return (await virsh('vol-list', this.pool)).split('\n').slice(2).map((l) => l.trim().split(/\s+/)[0] ?? '').filter((s) => s !== '').sort();
  }

  /** What differs from the exact end state: empty once converged. */
  async problems(): Promise<string[]> {
    const out: string[] = [];
    const domains = (await virsh('list', '--all', '--name')).split('\n').map((s) => s.trim()).filter((s) => s.startsWith(this.prefix)).sort();
    const want = [...this.declared.keys(), this.foreignDomain].sort();
    if (JSON.stringify(domains) !== JSON.stringify(want)) out.push(`domains ${domains.join(' ')}; want ${want.join(' ')}`);
    const volumes = (await this.volumes()) ?? [];
    const files = existsSync(this.poolDir) ? (await readdir(this.poolDir)).sort() : [];
    if (JSON.stringify(files) !== JSON.stringify(volumes)) out.push(`pool directory holds ${files.join(' ')}; libvirt lists ${volumes.join(' ')}`);
    const expected = [...this.declared].flatMap(([name, spec]) => [...spec.disks, ...spec.detached ?? []].map((d) => `${name}-${d}-`));
    for (const prefix of expected) {
      const count = volumes.filter((v) => v.startsWith(prefix)).length;
      if (count !== 1) out.push(`${count} volumes ${prefix}*`);
    }
    const unexpected = volumes.filter((v) => v !== this.foreignVolume && !expected.some((p) => v.startsWith(p)));
    if (unexpected.length > 0) out.push(`orphan volumes ${unexpected.join(' ')}`);
    if (this.foreignDefinition !== '' && !volumes.includes(this.foreignVolume)) out.push('the volume hyperlet does not own is gone');
    for (const [name, spec] of this.declared) {
      if (!domains.includes(name)) continue;
      const xml = await virsh('dumpxml', name);
      if (!xml.includes('https://hyperlet.io/') || xml.includes('partial>true')) out.push(`${name}: marker missing or partial`);
      const state = (await virsh('domstate', name)).trim();
      const wantState = spec.state === 'Stopped' ? 'shut off' : 'running';
      if (state !== wantState) out.push(`${name}: ${state}, want ${wantState}`);
      else if (state === 'running' && (await this.vcpus(name, '--live')) !== spec.cpu) out.push(`${name}: live vCPUs differ`);
      if (await this.vcpus(name, '--config') !== spec.cpu) out.push(`${name}: persistent vCPUs ${await this.vcpus(name, '--config')}`);
      const restoreRequest = spec.annotations?.['hyperlet.io/restore-request'];
      if (restoreRequest !== undefined && !(await virsh('dumpxml', '--inactive', name)).includes(`restoreRequest>${restoreRequest}<`)) {
        out.push(`${name}: restore request ${restoreRequest} not recorded`);
      }
      if (spec.snapshots !== undefined) {
        const snapshots = (await virsh('snapshot-list', name, '--name')).split('\n').map((l) => l.trim()).filter((l) => l !== '').sort();
        const shown = snapshots.map((x) => (/^auto-\d{8}t\d{6}z$/.test(x) ? 'auto-' : x)).sort();
        if (JSON.stringify(shown) !== JSON.stringify([...spec.snapshots].sort())) {
          out.push(`${name}: snapshots ${snapshots.join(' ') || '(none)'}; want ${spec.snapshots.join(' ')}`);
        }
      }
    }
    if (this.foreignDefinition !== '') {
      if ((await virsh('dumpxml', '--inactive', this.foreignDomain).catch(() => '')) !== this.foreignDefinition) out.push('the domain hyperlet does not own changed');
      if ((await virsh('domstate', this.foreignDomain).catch(() => '')).trim() !== 'shut off') out.push('the domain hyperlet does not own was started');
    }
    const rows = await rememberedNames(this.statePath, 'vms');
    const wantRows = [...this.declared.keys()].sort();
    if (JSON.stringify(rows) !== JSON.stringify(wantRows)) out.push(`state DB holds ${rows.join(' ')}; want ${wantRows.join(' ')}`);
    return out;
  }

  /** Removes every domain, volume, pool and console log named with the prefix. */
  async cleanUp(): Promise<void> {
    const domains = (await virsh('list', '--all', '--name').catch(() => '')).split('\n').map((s) => s.trim()).filter((s) => s.startsWith(this.prefix));
    for (const name of domains) {
      await virsh('destroy', name).catch(() => undefined);
      await virsh('undefine', name, '--snapshots-metadata').catch(() => undefined);
      await rm(join('/var/log/hyperlet/console', `${name}.log`), { force: true });
    }
    for (const v of (await this.volumes().catch(() => undefined)) ?? []) await virsh('vol-delete', v, '--pool', this.pool).catch(() => undefined);
    await virsh('pool-destroy', this.pool).catch(() => undefined);
    await virsh('pool-undefine', this.pool).catch(() => undefined);
    await rm(this.poolDir, { recursive: true, force: true });
  }
}
