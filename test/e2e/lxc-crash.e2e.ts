/**
 * Crash points of the LXC provider and the state DB, one by one: `hyperlet run` (dir source, real
 * LXC in an isolated lxcpath) is started with one failpoint enabled, dies there by SIGKILL, is
 * started again without it, and the exact end state is asserted: every declared container present,
 * complete, in its declared state and with its declared memory in both config and cgroup, no
 * duplicate, nothing else in the lxcpath (no staging, trash or temporary file), the state DB
 * holding exactly the declared objects, and the containers hyperlet does not own untouched.
 * Needs root and the LXC packages (`make host`).
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, mkdir, mkdtemp, readdir, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseCgroupLayout, parseProcCgroup } from '../../src/providers/lxc/cgroup-host.js';
import { parseInfo } from '../../src/providers/lxc/lxc-tools.js';
import { readMarker } from '../../src/providers/lxc/ownership-marker.js';
import { DaemonProcess, REPO_ROOT, leftoverProcesses } from './support/daemon-process.js';
import { until } from './support/until.js';

const run = promisify(execFile);
const suffix = randomBytes(2).toString('hex');
const n = (letter: string): string => `crash${suffix}-${letter}`;
const MiB = 1024 * 1024;

interface Declared {
  readonly memoryMiB: number;
  readonly state: 'Running' | 'Stopped';
  readonly adopt?: boolean;
}

function manifest(name: string, spec: Declared): string {
  return [
    'apiVersion: hyperlet.io/v1alpha1',
    'kind: Container',
    'metadata:',
    `  name: ${name}`,
    ...(spec.adopt === true ? ['  annotations:', '    hyperlet.io/adopt: "true"'] : []),
    'spec:',
    '  template: busybox',
    `  state: ${spec.state}`,
    '  gracefulStopSeconds: 0',
    `  resources: {cpu: 1, memory: ${spec.memoryMiB}Mi}`,
    '  network: [{type: none}]',
    '',
  ].join('\n');
}

/** The memory limit a config sets (cgroup v1 or v2 key), or undefined. */
function configMemory(config: string): number | undefined {
  const m = /^lxc\.cgroup2?\.memory\.(?:limit_in_bytes|max)\s*=\s*([0-9]+)\s*$/m.exec(config);
  return m === null ? undefined : Number(m[1]);
}

describe('crash points: LXC provider and state DB (kill -9 exactly there, then restart)', function () {
  this.timeout(900_000);
  let tmp = '';
  let manifests = '';
  let lxcpath = '';
  let statePath = '';
  let daemon: DaemonProcess | undefined;
  let starts = 0;
  const declared = new Map<string, Declared>();
  /** Containers hyperlet does not own, with their config as made: never to change. */
  const foreign = new Map<string, string>();

  const lxc = (tool: string, args: string[]): Promise<{ stdout: string }> => run(tool, ['-P', lxcpath, ...args], { timeout: 60_000 });
  const info = async (name: string): Promise<{ state?: string; pid?: number }> =>
    lxc('lxc-info', ['-n', name, '-s', '-p']).then(({ stdout }) => parseInfo(stdout), () => ({}));
  const liveMemory = async (pid: number): Promise<number> => {
    const layout = parseCgroupLayout(await readFile('/proc/self/mounts', 'utf8'))!;
    const path = parseProcCgroup(await readFile(`/proc/${pid}/cgroup`, 'utf8'), layout.version).memory ?? '';
    return Number((await readFile(join(layout.memoryRoot, path, layout.version === 1 ? 'memory.limit_in_bytes' : 'memory.max'), 'utf8')).trim());
  };
  const remembered = async (): Promise<string[]> => {
    const { stdout } = await run(process.execPath, [join(REPO_ROOT, 'bin/hyperlet.js'), 'get', 'containers', '-A', '-o', 'json', '--state', statePath], { timeout: 30_000 });
    return (JSON.parse(stdout) as { items: { metadata: { name: string } }[] }).items.map((i) => i.metadata.name).sort();
  };

  function start(failpoints: readonly string[] = []): DaemonProcess {
    starts += 1;
    return DaemonProcess.start([
      '--source', `dir:${manifests}`, '--lxcpath', lxcpath, '--state', statePath, '--http', 'off',
      '--kinds', 'Container', '--resync', '10s', '--log-level', 'info',
    ], join(tmp, `daemon-${starts}.log`), failpoints);
  }

  /** What differs from the exact end state: empty once converged. */
  async function problems(): Promise<string[]> {
    const out: string[] = [];
    const want = [...declared.keys(), ...foreign.keys()].sort();
    const entries = (await readdir(lxcpath)).sort();
    if (JSON.stringify(entries) !== JSON.stringify(want)) out.push(`lxcpath holds ${entries.join(' ')}; want ${want.join(' ')}`);
    const { stdout } = await lxc('lxc-ls', ['-1']);
    const listed = stdout.split(/\s+/).filter((s) => s !== '').sort();
    if (JSON.stringify(listed) !== JSON.stringify(want)) out.push(`lxc-ls lists ${listed.join(' ')}; want ${want.join(' ')}`);
    for (const [name, spec] of declared) {
      const dir = join(lxcpath, name);
      const marker = await readMarker(join(dir, 'hyperlet.json')).catch(() => undefined);
      if (marker?.complete !== true || !marker.key.endsWith(`/default/Container/${name}`)) out.push(`${name}: marker ${JSON.stringify(marker)}`);
      if (spec.adopt === true && marker?.origin !== 'adopted') out.push(`${name}: not adopted`);
      const stray = (await readdir(dir).catch(() => [] as string[])).filter((e) => /tmp|hyperlet-base|staging|trash/.test(e));
      if (stray.length > 0) out.push(`${name}: stray files ${stray.join(' ')}`);
      const config = await readFile(join(dir, 'config'), 'utf8').catch(() => '');
      if (configMemory(config) !== spec.memoryMiB * MiB) out.push(`${name}: config memory ${String(configMemory(config))}`);
      const facts = await info(name);
      const wantState = spec.state === 'Running' ? 'RUNNING' : 'STOPPED';
      if (facts.state !== wantState) out.push(`${name}: ${facts.state ?? 'unknown'}, want ${wantState}`);
      else if (facts.pid !== undefined && (await liveMemory(facts.pid)) !== spec.memoryMiB * MiB) out.push(`${name}: live memory differs`);
    }
    for (const [name, config] of foreign) {
      if ((await readFile(join(lxcpath, name, 'config'), 'utf8').catch(() => '')) !== config) out.push(`${name} (not ours): config changed`);
      if ((await readdir(join(lxcpath, name)).catch(() => [] as string[])).includes('hyperlet.json')) out.push(`${name} (not ours): marked`);
      if ((await info(name)).state !== 'STOPPED') out.push(`${name} (not ours): started`);
    }
    const rows = await remembered();
    const wantRows = [...declared.keys()].sort();
    if (JSON.stringify(rows) !== JSON.stringify(wantRows)) out.push(`state DB holds ${rows.join(' ')}; want ${wantRows.join(' ')}`);
    return out;
  }

  /** Waits for the exact end state; on timeout fails listing what still differs. */
  async function converged(timeoutMs = 60_000): Promise<void> {
    let last: string[] = [];
    try {
      await until('the exact end state', async () => {
        // A state DB not written yet, a container between two states: look again.
        last = await problems().catch((err: unknown) => [String(err)]);
        return last.length === 0 ? true : undefined;
      }, timeoutMs, 250);
    } catch (err) {
      throw new Error(`${(err as Error).message}:\n  ${last.join('\n  ')}\n${await daemon?.tail() ?? ''}`);
    }
  }

  /**
   * Runs `change` with the daemon armed at `point`, waits for it to die there, starts it again
   * without failpoints and waits for the exact end state.
   */
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
    if (process.getuid?.() !== 0) throw new Error('the LXC crash e2e test needs root (privileged containers); run make test as root');
    await access(join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js')).catch(() => { throw new Error('dist/ is missing: run make build first'); });
    await access('/usr/share/lxc/templates/lxc-busybox').catch(() => {
      throw new Error('the LXC crash e2e test needs the busybox template: run make host (lxc-templates, busybox-static)');
    });
    tmp = await mkdtemp(join(tmpdir(), 'hyperlet-lxc-crash-'));
    manifests = join(tmp, 'manifests');
    lxcpath = join(tmp, 'lxc');
    statePath = join(tmp, 'state', 'state.db');
    await mkdir(manifests);
    await mkdir(lxcpath);
    const base = join(tmp, 'empty-net.conf');
    await writeFile(base, 'lxc.net.0.type = empty\n');
    for (const letter of ['x', 'y']) {
      await lxc('lxc-create', ['-n', n(letter), '-t', 'busybox', '-f', base]);
      foreign.set(n(letter), await readFile(join(lxcpath, n(letter), 'config'), 'utf8'));
    }
    daemon = start();
    await converged();
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') console.error(await daemon?.tail() ?? '');
  });

  after(async () => {
    await daemon?.kill();
    if (tmp === '') return;
    for (const pid of await leftoverProcesses(lxcpath)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    for (const name of await readdir(lxcpath).catch(() => [] as string[])) {
      await lxc('lxc-stop', ['-n', name, '-k']).catch(() => undefined);
      await lxc('lxc-destroy', ['-n', name]).catch(() => undefined);
    }
    await rm(tmp, { recursive: true, force: true });
  });

  // LXC create: the marker's temporary file, the staging directory, the placed directory, the
  // made container, its config: each instant leaves something the restarted daemon must finish.
  it('create: killed with the marker\'s temporary file written', () =>
    crashAt('write:hyperlet.json', () => declare(n('a'), { memoryMiB: 128, state: 'Running' })));
  it('create: killed with the directory staged, before it is renamed into place', () =>
    crashAt('lxc.create.staged', () => declare(n('b'), { memoryMiB: 128, state: 'Running' })));
  it('create: killed with the directory in place, before lxc-create', () =>
    crashAt('lxc.create.placed', () => declare(n('c'), { memoryMiB: 128, state: 'Running' })));
  it('create: killed after lxc-create, before the managed config', () =>
    crashAt('lxc.create.made', () => declare(n('d'), { memoryMiB: 128, state: 'Running' })));
  it('create: killed with the config written, before the marker is complete', () =>
    crashAt('lxc.create.configured', () => declare(n('e'), { memoryMiB: 128, state: 'Stopped' })));
  it('create: killed while lxc-create\'s config is being replaced', () =>
    crashAt('write:config', () => declare(n('f'), { memoryMiB: 128, state: 'Running' })));

  // LXC update of a running container: config, live cgroup, marker.
  it('update: killed with the config written, before the live change', () =>
    crashAt('lxc.update.configured', () => declare(n('a'), { memoryMiB: 192, state: 'Running' })));
  it('update: killed with config and live change made, before the marker', () =>
    crashAt('lxc.update.applied', () => declare(n('b'), { memoryMiB: 160, state: 'Running' })));

  // LXC delete: stopped, then out of the lxcpath, then removed.
  it('delete: killed with the container stopped, before it leaves the lxcpath', () =>
    crashAt('lxc.delete.stopped', () => undeclare(n('c'))));
  it('delete: killed with the directory moved to the trash, before it is removed', () =>
    crashAt('lxc.delete.trashed', () => undeclare(n('d'))));

  // LXC adopt: the marker written on a container hyperlet did not create.
  it('adopt: killed with the marker\'s temporary file written on a foreign container', async () => {
    const config = foreign.get(n('y'));
    foreign.delete(n('y'));
    await crashAt('write:hyperlet.json', () => declare(n('y'), { memoryMiB: 96, state: 'Stopped', adopt: true }));
    expect(config).to.not.equal(undefined);
  });

  // State DB: the object remembered before its first step, and forgotten after its last.
  it('state DB: killed right after remembering an object, before its create', () =>
    crashAt('state.remembered', () => declare(n('g'), { memoryMiB: 128, state: 'Running' })));
  it('state DB: killed after the instance is deleted, before the object is forgotten', () =>
    crashAt('state.forgetting', () => undeclare(n('e'))));

  it('deleting every file removes every container it made and forgets every object', async () => {
    for (const name of [...declared.keys()]) await undeclare(name);
    await converged();
  });
});
