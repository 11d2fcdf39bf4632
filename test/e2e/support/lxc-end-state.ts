/**
 * The exact end state of an lxcpath after hyperlet converged, for crash tests: every declared
 * container present once, complete (marker complete, naming its object), in its declared state,
 * with its declared memory in both config and cgroup; nothing else in the lxcpath (no staging,
 * trash or temporary file, no container of an object gone); the state DB holding exactly the
 * declared objects; the containers hyperlet does not own untouched.
 */
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseCgroupLayout, parseProcCgroup } from '../../../src/providers/lxc/cgroup-host.js';
import { parseInfo } from '../../../src/providers/lxc/lxc-tools.js';
import { readMarker } from '../../../src/providers/lxc/ownership-marker.js';
import { REPO_ROOT } from './crash-daemon.js';
import { until } from '../../support/until.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

/** One declared container, as the test wrote it. */
export interface DeclaredContainer {
  readonly memoryMiB: number;
  readonly state: 'Running' | 'Stopped';
  readonly adopt?: boolean;
  /** More annotations (hyperlet.io/snapshot-request, restore-request). */
  readonly annotations?: Readonly<Record<string, string>>;
  /** spec.snapshots, as YAML flow text ("{schedule: '@every 1m', retain: {last: 1}}"). */
  readonly snapshotsSpec?: string;
  /**
   * The snapshots the container must hold, exactly, each complete (record and rootfs); "auto-"
   * stands for one scheduled snapshot of any time. Undefined: not checked.
   */
  readonly snapshots?: readonly string[];
}

/** A Container manifest (busybox, no network, 1 cpu) for `spec`. */
export function containerManifest(name: string, spec: DeclaredContainer): string {
  return [
    'apiVersion: hyperlet.io/v1alpha1',
    'kind: Container',
    'metadata:',
    `  name: ${name}`,
    ...(spec.adopt === true || spec.annotations !== undefined ? ['  annotations:'] : []),
    ...(spec.adopt === true ? ['    hyperlet.io/adopt: "true"'] : []),
    ...Object.entries(spec.annotations ?? {}).map(([k, v]) => `    ${k}: "${v}"`),
    'spec:',
    '  template: busybox',
    `  state: ${spec.state}`,
    '  gracefulStopSeconds: 0',
    `  resources: {cpu: 1, memory: ${spec.memoryMiB}Mi}`,
    '  network: [{type: none}]',
    ...(spec.snapshotsSpec === undefined ? [] : [`  snapshots: ${spec.snapshotsSpec}`]),
    '',
  ].join('\n');
}

/** The memory limit a config sets (cgroup v1 or v2 key), or undefined. */
function configMemory(config: string): number | undefined {
  const m = /^lxc\.cgroup2?\.memory\.(?:limit_in_bytes|max)\s*=\s*([0-9]+)\s*$/m.exec(config);
  return m === null ? undefined : Number(m[1]);
}

export class LxcEndState {
  /** Declared containers by host name (default namespace). */
  readonly declared = new Map<string, DeclaredContainer>();
  /** Containers hyperlet does not own, with their config as made: never to change. */
  readonly foreign = new Map<string, string>();

  constructor(private readonly lxcpath: string, private readonly statePath: string) {}

  private lxc(tool: string, args: string[]): Promise<{ stdout: string }> {
    return run(tool, ['-P', this.lxcpath, ...args], { timeout: 60_000 });
  }

  async info(name: string): Promise<{ state?: string; pid?: number }> {
    return this.lxc('lxc-info', ['-n', name, '-s', '-p']).then(({ stdout }) => parseInfo(stdout), () => ({}));
  }

  /** Records `name` (already created by the test) as a container hyperlet must leave alone. */
  async addForeign(name: string): Promise<void> {
    this.foreign.set(name, await readFile(join(this.lxcpath, name, 'config'), 'utf8'));
  }

  /** What differs from the exact end state: empty once converged. */
  async problems(): Promise<string[]> {
    const out: string[] = [];
    const want = [...this.declared.keys(), ...this.foreign.keys()].sort();
    const entries = (await readdir(this.lxcpath)).sort();
    if (JSON.stringify(entries) !== JSON.stringify(want)) out.push(`lxcpath holds ${entries.join(' ')}; want ${want.join(' ')}`);
    const { stdout } = await this.lxc('lxc-ls', ['-1']);
    const listed = stdout.split(/\s+/).filter((s) => s !== '').sort();
    if (JSON.stringify(listed) !== JSON.stringify(want)) out.push(`lxc-ls lists ${listed.join(' ')}; want ${want.join(' ')}`);
    for (const [name, spec] of this.declared) {
      const dir = join(this.lxcpath, name);
      const marker = await readMarker(join(dir, 'hyperlet.json')).catch(() => undefined);
      if (marker?.complete !== true || !marker.key.endsWith(`/default/Container/${name}`)) out.push(`${name}: marker ${JSON.stringify(marker)}`);
      if (spec.adopt === true && marker?.origin !== 'adopted') out.push(`${name}: not adopted`);
      const restoreRequest = spec.annotations?.['hyperlet.io/restore-request'];
      if (restoreRequest !== undefined && marker?.restoreRequest !== restoreRequest) out.push(`${name}: restore request ${restoreRequest} not recorded`);
      const stray = (await readdir(dir).catch(() => [] as string[])).filter((e) => /tmp|hyperlet-base|staging|trash|^\.rootfs/.test(e));
      if (stray.length > 0) out.push(`${name}: stray files ${stray.join(' ')}`);
      if (spec.snapshots !== undefined) out.push(...await snapshotProblems(name, join(dir, 'hyperlet-snapshots'), spec.snapshots));
      const config = await readFile(join(dir, 'config'), 'utf8').catch(() => '');
      if (configMemory(config) !== spec.memoryMiB * MiB) out.push(`${name}: config memory ${String(configMemory(config))}`);
      const facts = await this.info(name);
      const wantState = spec.state === 'Running' ? 'RUNNING' : 'STOPPED';
      if (facts.state !== wantState) out.push(`${name}: ${facts.state ?? 'unknown'}, want ${wantState}`);
      else if (facts.pid !== undefined && (await liveMemory(facts.pid)) !== spec.memoryMiB * MiB) out.push(`${name}: live memory differs`);
    }
    for (const [name, config] of this.foreign) {
      if ((await readFile(join(this.lxcpath, name, 'config'), 'utf8').catch(() => '')) !== config) out.push(`${name} (not ours): config changed`);
      if ((await readdir(join(this.lxcpath, name)).catch(() => [] as string[])).includes('hyperlet.json')) out.push(`${name} (not ours): marked`);
      if ((await this.info(name)).state !== 'STOPPED') out.push(`${name} (not ours): started`);
    }
    const rows = await rememberedNames(this.statePath, 'containers');
    const wantRows = [...this.declared.keys()].sort();
    if (JSON.stringify(rows) !== JSON.stringify(wantRows)) out.push(`state DB holds ${rows.join(' ')}; want ${wantRows.join(' ')}`);
    return out;
  }
}

/** How the snapshots in `dir` differ from `want` (exactly those, each with its record and rootfs). */
async function snapshotProblems(name: string, dir: string, want: readonly string[]): Promise<string[]> {
  const entries = (await readdir(dir).catch(() => [] as string[])).sort();
  const matches = (entry: string, w: string): boolean => (w === 'auto-' ? /^auto-\d{8}t\d{6}z$/.test(entry) : entry === w);
  const unmatched = [...entries];
  for (const w of want) {
    const at = unmatched.findIndex((e) => matches(e, w));
    if (at < 0) return [`${name}: snapshots ${entries.join(' ') || '(none)'}; want ${want.join(' ')}`];
    unmatched.splice(at, 1);
  }
  if (unmatched.length > 0) return [`${name}: snapshots ${entries.join(' ')}; want ${want.join(' ')}`];
  const out: string[] = [];
  for (const entry of entries) {
    const record = await readFile(join(dir, entry, 'snapshot.json'), 'utf8').catch(() => undefined);
    const rootfs = await readdir(join(dir, entry, 'rootfs')).catch(() => undefined);
    if (record === undefined || rootfs === undefined || rootfs.length === 0) out.push(`${name}: snapshot ${entry} incomplete`);
  }
  return out;
}

async function liveMemory(pid: number): Promise<number> {
  const layout = parseCgroupLayout(await readFile('/proc/self/mounts', 'utf8'));
  if (layout === undefined) throw new Error('cannot find the memory cgroup');
  const path = parseProcCgroup(await readFile(`/proc/${pid}/cgroup`, 'utf8'), layout.version).memory ?? '';
  return Number((await readFile(join(layout.memoryRoot, path, layout.version === 1 ? 'memory.limit_in_bytes' : 'memory.max'), 'utf8')).trim());
}

/** Names of the objects the state DB at `statePath` holds (`hyperlet get RESOURCE -A`). */
export async function rememberedNames(statePath: string, resource: 'containers' | 'vms'): Promise<string[]> {
  const { stdout } = await run(process.execPath, [join(REPO_ROOT, 'bin/hyperlet.js'), 'get', resource, '-A', '-o', 'json', '--state', statePath], { timeout: 30_000 });
  return (JSON.parse(stdout) as { items: { metadata: { name: string } }[] }).items.map((i) => i.metadata.name).sort();
}

/**
 * Polls `problems` until it returns none and resolves with the time that took; on timeout fails
 * listing what still differs, followed by `context()` (a daemon log's tail).
 */
export async function waitForEndState(problems: () => Promise<string[]>, timeoutMs: number, context: () => Promise<string>): Promise<number> {
  const started = Date.now();
  let last: string[] = [];
  try {
    await until('the exact end state', async () => {
      // A state DB not written yet, an instance between two states: look again.
      last = await problems().catch((err: unknown) => [String(err)]);
      return last.length === 0 ? true : undefined;
    }, timeoutMs, 250);
  } catch (err) {
    throw new Error(`${(err as Error).message}:\n  ${last.join('\n  ')}\n${await context()}`);
  }
  return Date.now() - started;
}
