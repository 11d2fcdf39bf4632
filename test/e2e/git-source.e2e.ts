/**
 * `hyperlet run --source git:…` as a child process, following real repositories with real commits
 * onto real LXC containers in an isolated lxcpath: one repository on disk, one served by
 * `git daemon` on 127.0.0.1. Covers following commits, a broken commit, its fix, pruning, the
 * prune limit and its confirmation, refresh by HTTP and SIGHUP, dependsOn order, pause and
 * driftPolicy Report against external stops, and a force-pushed rewrite.
 * Needs root, git and the LXC packages (`make host`); without them it fails saying so.
 */
import { expect } from 'chai';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { access, chmod, mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { StateDb } from '../../src/state/state-db.js';
import { readApiToken } from '../../src/state/state-dir.js';
import { parseInfo } from '../../src/providers/lxc/lxc-tools.js';
import { GitDaemon, TestRepo, freePort, git } from '../support/git-repo.js';
import { morePassesInLog } from '../support/pass-log.js';
import { until } from '../support/until.js';

const run = promisify(execFile);
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const cli = join(repoRoot, 'bin', 'hyperlet.js');
const suffix = randomBytes(2).toString('hex');
const n = (letter: string): string => `g${suffix}-${letter}`;

function manifest(name: string, extra: { spec?: string[]; annotations?: string[] } = {}): string {
  return [
    'apiVersion: hyperlet.io/v1alpha1',
    'kind: Container',
    'metadata:',
    `  name: ${name}`,
    ...(extra.annotations === undefined ? [] : ['  annotations:', ...extra.annotations.map((a) => `    ${a}`)]),
    'spec:',
    '  template: busybox',
    '  gracefulStopSeconds: 2',
    '  resources:',
    '    cpu: 1',
    '    memory: 128Mi',
    '  network:',
    '    - type: none',
    ...(extra.spec ?? []).map((l) => `  ${l}`),
    '',
  ].join('\n');
}

/** A daemon this file started: its process, HTTP port and log file. */
interface RunningDaemon { child: ChildProcess; port: number; log: string }
interface SourceView { id: string; lastApplied?: { revision: string }; lastAttempted?: { revision: string }; blocked?: { reason: string; message: string }; problems: string[] }
interface StatusView { phase?: string; conditions?: { type: string; status: string; reason: string; message: string }[] }

describe('hyperlet run --source git (daemon as a child process, real LXC)', function () {
  this.timeout(900_000);
  let tmp = '';
  let lxcpath = '';
  let served: GitDaemon | undefined;
  const daemons: { child: ChildProcess; log: string }[] = [];
  let logs = 0;

  const lxcState = async (name: string): Promise<string | undefined> => {
    try {
      const { stdout } = await run('lxc-info', ['-P', lxcpath, '-n', name, '-s'], { timeout: 30_000 });
      return parseInfo(stdout).state;
    } catch {
      return undefined;
    }
  };
  const waitState = (name: string, want: string | undefined, timeoutMs = 120_000): Promise<true> =>
    until(`${name} to be ${want ?? 'gone'}`, async () => ((await lxcState(name)) === want ? true : undefined), timeoutMs);
  const lxcStop = (name: string): Promise<unknown> => run('lxc-stop', ['-P', lxcpath, '-n', name, '-k'], { timeout: 60_000 });
  const cliJson = async <T>(args: string[]): Promise<T> => {
    const { stdout } = await run(process.execPath, [cli, ...args, '-o', 'json'], { timeout: 30_000 });
    return JSON.parse(stdout) as T;
  };
  const sourceOf = async (statePath: string): Promise<SourceView> =>
    (await cliJson<{ items: SourceView[] }>(['get', 'sources', '--state', statePath])).items.find((s) => s.id === 'git') ?? { id: 'git', problems: [] };
  const statusOf = async (statePath: string, name: string): Promise<StatusView | undefined> =>
    (await cliJson<{ items: { metadata: { name: string }; status?: StatusView }[] }>(['get', 'containers', '--state', statePath])).items.find((i) => i.metadata.name === name)?.status;
  const condition = async (statePath: string, name: string, type: string) => (await statusOf(statePath, name))?.conditions?.find((c) => c.type === type);
  const auditAt = (statePath: string, name: string, action: string): string | undefined => {
    const db = new StateDb(statePath, { readonly: true });
    try {
      return db.auditFor(`git/default/Container/${name}`, 100).find((a) => a.action === action)?.at;
    } finally {
      db.close();
    }
  };

  async function startDaemon(source: string, statePath: string, extra: string[]): Promise<RunningDaemon> {
    const port = await freePort();
    const log = join(tmp, `daemon-${++logs}.log`);
    const child = spawn(process.execPath, [
      cli, 'run', '--source', `git:${source}`, '--lxcpath', lxcpath, '--state', statePath, '--http', `127.0.0.1:${port}`,
      '--kinds', 'Container', '--resync', '2s', '--log-level', 'debug', ...extra,
    ], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = createWriteStream(log);
    child.stdout?.pipe(out);
    child.stderr?.pipe(out);
    daemons.push({ child, log });
    await until('the daemon to answer /healthz', async () => {
      if (child.exitCode !== null) throw new Error(`the daemon exited ${child.exitCode}: ${await readFile(log, 'utf8')}`);
      return fetch(`http://127.0.0.1:${port}/healthz`).then((r) => (r.ok ? true : undefined), () => undefined);
    }, 30_000);
    return { child, port, log };
  }

  /** Two more whole passes (a --resync 2s each) of the named objects of source `source`. */
  const twoMorePasses = (log: string, names: readonly string[], source = 'git'): Promise<void> =>
    morePassesInLog(log, names.map((name) => `${source}/default/Container/${name}`), 2);

  async function stopDaemon(child: ChildProcess): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('the git e2e test needs root (privileged LXC containers); run make test as root');
    await access(join(repoRoot, 'dist', 'src', 'cli', 'main.js')).catch(() => { throw new Error('dist/ is missing: run make build first'); });
    await access('/usr/share/lxc/templates/lxc-busybox').catch(() => { throw new Error('the git e2e test needs the busybox template: run make host'); });
    await run('git', ['--version'], { timeout: 10_000 }).catch(() => { throw new Error('the git e2e test needs git: run make host'); });
    tmp = await mkdtemp(join(tmpdir(), 'hyperlet-git-e2e-'));
    // Unprivileged containers' mapped root must pass through the directories above their lxcpath (as /var/lib is).
    await chmod(tmp, 0o711);
    lxcpath = join(tmp, 'lxc');
    await mkdir(lxcpath);
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') {
      for (const d of daemons.slice(-1)) {
        const text = await readFile(d.log, 'utf8').catch(() => '');
        console.error(`--- last lines of ${d.log} ---\n${text.split('\n').slice(-40).join('\n')}`);
      }
    }
  });

  after(async () => {
    for (const d of daemons) await stopDaemon(d.child).catch(() => undefined);
    await served?.stop();
    if (tmp === '') return;
    for (const name of await readdir(lxcpath).catch(() => [] as string[])) {
      await run('lxc-stop', ['-P', lxcpath, '-n', name, '-k'], { timeout: 30_000 }).catch(() => undefined);
      await run('lxc-destroy', ['-P', lxcpath, '-n', name], { timeout: 60_000 }).catch(() => undefined);
    }
    await rm(tmp, { recursive: true, force: true });
  });

  describe('a repository on disk, polled every second', () => {
    let repo: TestRepo;
    let statePath = '';
    let daemon: ChildProcess | undefined;
    let daemonLog = '';

    before(async () => {
      repo = await TestRepo.create(join(tmp, 'disk-repo'));
      statePath = join(tmp, 'disk-state', 'state.db');
    });
    after(async () => { if (daemon !== undefined) await stopDaemon(daemon); });

    it('follows new commits onto real containers', async () => {
      for (const l of ['a', 'b', 'c']) await repo.write(`${l}.yaml`, manifest(n(l)));
      await repo.commit('three containers');
      ({ child: daemon, log: daemonLog } = await startDaemon(repo.dir, statePath, ['--interval', '1s']));
      for (const l of ['a', 'b', 'c']) await waitState(n(l), 'RUNNING');
      await repo.write('d.yaml', manifest(n('d')));
      const tip = await repo.commit('a fourth');
      await waitState(n('d'), 'RUNNING');
      expect((await sourceOf(statePath)).lastApplied?.revision).to.equal(tip);
    });

    it('applies nothing of a commit with one broken file, names commit, file, document and field; the fix applies', async () => {
      const good = await repo.head();
      await repo.write('a.yaml', manifest(n('a'), { spec: ['autostart: true'] }));
      await repo.write('b.yaml', `${manifest(n('b'))}---\n${manifest(n('e')).replace('cpu: 1', 'cpu: 0')}`);
      const broken = await repo.commit('one good change, one broken document');
      const src = await until('the broken commit to be attempted', async () => {
        const s = await sourceOf(statePath);
        return s.lastAttempted?.revision === broken ? s : undefined;
      });
      expect(src.lastApplied?.revision).to.equal(good);
      expect(src.blocked?.reason).to.equal('InvalidManifests');
      expect(src.problems.join('\n')).to.contain(`commit ${broken.slice(0, 12)}: b.yaml#2 Container/${n('e')}: spec.resources.cpu:`);
      // Every object of the source makes two more passes: had the broken commit reached the store, e would have too.
      await twoMorePasses(daemonLog, [n('a'), n('b'), n('d')]);
      expect(await lxcState(n('e')), 'nothing of the broken commit is created').to.equal(undefined);
      const a = (await cliJson<{ spec: { autostart: boolean } }>(['get', 'containers', n('a'), '--state', statePath])).spec;
      expect(a.autostart, 'not even its good change').to.equal(false);
      await repo.write('b.yaml', `${manifest(n('b'))}---\n${manifest(n('e'))}`);
      const fixed = await repo.commit('fix');
      await waitState(n('e'), 'RUNNING');
      const after = await sourceOf(statePath);
      expect(after.lastApplied?.revision).to.equal(fixed);
      expect(after.blocked).to.equal(undefined);
    });

    it('destroys the container of a removed file', async () => {
      await repo.remove('c.yaml');
      await repo.commit('remove c');
      await waitState(n('c'), undefined);
      for (const l of ['a', 'b', 'd', 'e']) expect(await lxcState(n(l))).to.equal('RUNNING');
    });

    it('holds back a commit removing most files, and applies it once confirmed', async () => {
      await repo.remove('a.yaml');
      await repo.remove('b.yaml');
      const tip = await repo.commit('removes three of four');
      const src = await until('the commit to be held', async () => {
        const s = await sourceOf(statePath);
        return s.lastAttempted?.revision === tip ? s : undefined;
      });
      expect(src.blocked?.reason).to.equal('PruneLimit');
      expect(src.blocked?.message).to.contain('would delete 3 of 4 objects').and.to.contain(`--confirm ${tip.slice(0, 12)}`);
      await twoMorePasses(daemonLog, ['a', 'b', 'e', 'd'].map(n));
      for (const l of ['a', 'b', 'e', 'd']) expect(await lxcState(n(l)), `${n(l)} is kept`).to.equal('RUNNING');
      await stopDaemon(daemon!);
      ({ child: daemon, log: daemonLog } = await startDaemon(repo.dir, statePath, ['--interval', '1s', '--confirm', tip.slice(0, 10)]));
      for (const l of ['a', 'b', 'e']) await waitState(n(l), undefined);
      expect(await lxcState(n('d'))).to.equal('RUNNING');
      expect((await sourceOf(statePath)).lastApplied?.revision).to.equal(tip);
    });
  });

  describe('two repositories side by side', () => {
    let daemon: ChildProcess | undefined;
    after(async () => { if (daemon !== undefined) await stopDaemon(daemon); });

    it('each source owns only its objects: the same name in the other one is a conflict, and its removal deletes nothing', async () => {
      const one = await TestRepo.create(join(tmp, 'one'));
      const two = await TestRepo.create(join(tmp, 'two'));
      for (const l of ['s1', 'shared']) await one.write(`${l}.yaml`, manifest(n(l)));
      for (const l of ['s2', 's3', 'shared']) await two.write(`${l}.yaml`, manifest(n(l)));
      await one.commit('one');
      await two.commit('two');
      const statePath = join(tmp, 'two-state', 'state.db');
      const port = await freePort();
      const log = join(tmp, `daemon-${++logs}.log`);
      daemon = spawn(process.execPath, [
        cli, 'run', '--source', `git:${one.dir}`, '--source', `git:${two.dir}`, '--lxcpath', lxcpath, '--state', statePath,
        '--http', `127.0.0.1:${port}`, '--kinds', 'Container', '--interval', '1s', '--resync', '2s', '--log-level', 'debug',
      ], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
      const out = createWriteStream(log);
      daemon.stdout?.pipe(out);
      daemon.stderr?.pipe(out);
      daemons.push({ child: daemon, log });
      for (const l of ['s1', 's2', 's3', 'shared']) await waitState(n(l), 'RUNNING');
      const rows = async () => (await cliJson<{ items: { metadata: { name: string; annotations?: Record<string, string> }; status?: StatusView }[] }>(['get', 'containers', '--state', statePath])).items
        .filter((i) => i.metadata.name === n('shared'));
      const conflicted = await until('one of the two to report Conflict', async () => {
        const r = await rows();
        return r.length === 2 && r.some((i) => i.status?.conditions?.find((c) => c.type === 'Ready')?.reason === 'Conflict') ? r : undefined;
      });
      const loser = conflicted.find((i) => i.status?.conditions?.find((c) => c.type === 'Ready')?.reason === 'Conflict');
      const loserRepo = loser?.metadata.annotations?.['hyperlet.io/source']?.startsWith('git-2:') === true ? two : one;
      await loserRepo.remove('shared.yaml');
      await loserRepo.commit('drop shared here');
      await until('the losing declaration to be gone', async () => ((await rows()).length === 1 ? true : undefined));
      await twoMorePasses(log, [n('shared')], loserRepo === two ? 'git' : 'git-2');
      expect(await lxcState(n('shared')), 'the other source\'s container stays').to.equal('RUNNING');
      await two.remove('s3.yaml');
      await two.commit('drop s3');
      await waitState(n('s3'), undefined);
      for (const l of ['s1', 's2', 'shared']) expect(await lxcState(n(l))).to.equal('RUNNING');
    });
  });

  describe('a repository served by git daemon on 127.0.0.1, fetched on demand', () => {
    let repo: TestRepo;
    let statePath = '';
    let url = '';
    let daemon: RunningDaemon | undefined;
    const refresh = async (): Promise<void> => {
      // Mutating routes need the token the daemon wrote beside its state DB (issue 10).
      const headers = { authorization: `Bearer ${readApiToken(statePath)}` };
      const r = await fetch(`http://127.0.0.1:${daemon!.port}/sources/git/refresh`, { method: 'POST', headers });
      expect(r.status).to.equal(202);
    };

    before(async () => {
      const base = join(tmp, 'served');
      repo = await TestRepo.create(join(base, 'hosts'));
      served = await GitDaemon.start(base);
      url = served.url('hosts');
      statePath = join(tmp, 'served-state', 'state.db');
    });
    after(async () => { if (daemon !== undefined) await stopDaemon(daemon.child); });

    it('creates and starts what an object depends on first', async () => {
      await repo.write('db.yaml', manifest(n('db')));
      await repo.write('app.yaml', manifest(n('app'), { spec: ['dependsOn:', `  - kind: Container`, `    name: ${n('db')}`] }));
      await repo.write('rep.yaml', manifest(n('rep'), { spec: ['driftPolicy: Report'] }));
      await repo.write('pz.yaml', manifest(n('pz')));
      await repo.write('x.yaml', manifest(n('x')));
      await repo.commit('five containers, app on db');
      daemon = await startDaemon(url, statePath, ['--interval', '1h']);
      for (const l of ['db', 'app', 'rep', 'pz', 'x']) await waitState(n(l), 'RUNNING');
      const dbStarted = auditAt(statePath, n('db'), 'Started');
      const appCreated = auditAt(statePath, n('app'), 'Created');
      expect(dbStarted, 'db started').to.be.a('string');
      expect(appCreated! >= dbStarted!, `app created (${appCreated}) after db started (${dbStarted})`).to.equal(true);
    });

    it('fetches a new commit at once on POST /sources/git/refresh and on SIGHUP', async () => {
      await repo.write('y.yaml', manifest(n('y')));
      await repo.commit('y');
      await refresh();
      await waitState(n('y'), 'RUNNING', 60_000);
      await repo.write('z.yaml', manifest(n('z')));
      await repo.commit('z');
      daemon!.child.kill('SIGHUP');
      await waitState(n('z'), 'RUNNING', 60_000);
    });

    it('driftPolicy Report shows an external stop in status and leaves it', async () => {
      await until(`${n('rep')} converged`, async () => ((await statusOf(statePath, n('rep')))?.conditions?.find((c) => c.type === 'Drifted')?.reason === 'InSync' ? true : undefined));
      await lxcStop(n('rep'));
      const drifted = await until('Drifted=True', async () => {
        const c = await condition(statePath, n('rep'), 'Drifted');
        return c?.status === 'True' ? c : undefined;
      });
      expect(drifted.message).to.contain('state is Stopped, declared Running');
      await twoMorePasses(daemon!.log, [n('rep')]);
      expect(await lxcState(n('rep')), 'not restarted').to.equal('STOPPED');
    });

    it('a paused object is left alone while its drift is reported', async () => {
      await repo.write('pz.yaml', manifest(n('pz'), { annotations: ['hyperlet.io/paused: "true"'] }));
      await repo.commit('pause pz');
      await refresh();
      await until('Paused=True', async () => ((await condition(statePath, n('pz'), 'Paused'))?.status === 'True' ? true : undefined));
      await lxcStop(n('pz'));
      await until('Drifted=True', async () => ((await condition(statePath, n('pz'), 'Drifted'))?.status === 'True' ? true : undefined));
      await twoMorePasses(daemon!.log, [n('pz')]);
      expect(await lxcState(n('pz')), 'not restarted').to.equal('STOPPED');
      expect((await condition(statePath, n('pz'), 'Ready'))?.reason).to.equal('Paused');
    });

    it('deletes a dependent before what it depends on', async () => {
      await repo.remove('db.yaml');
      await repo.remove('app.yaml');
      await repo.commit('remove app and db');
      await refresh();
      await waitState(n('db'), undefined);
      await waitState(n('app'), undefined);
      // The audit row follows the destroy: a container already gone may not have its row yet.
      const appDeleted = await until('app\'s Deleted audit entry', () => auditAt(statePath, n('app'), 'Deleted'), 10_000);
      const dbDeleted = await until('db\'s Deleted audit entry', () => auditAt(statePath, n('db'), 'Deleted'), 10_000);
      expect(appDeleted <= dbDeleted, `app deleted (${appDeleted}) before db (${dbDeleted})`).to.equal(true);
    });

    it('holds a force-pushed rewrite, deleting nothing, until the new history is confirmed', async () => {
      await git(repo.dir, 'reset', '-q', '--hard', 'HEAD~1');
      await repo.remove('x.yaml');
      await repo.write('w.yaml', manifest(n('w')));
      const rewritten = await repo.commit('rewritten: app and db back, x gone, w new');
      await refresh();
      const src = await until('the rewrite to be held', async () => {
        const s = await sourceOf(statePath);
        return s.lastAttempted?.revision === rewritten ? s : undefined;
      });
      expect(src.blocked?.reason).to.equal('HistoryRewritten');
      await twoMorePasses(daemon!.log, [n('x'), n('y'), n('z')]);
      expect(await lxcState(n('x')), 'x is kept').to.equal('RUNNING');
      expect(await lxcState(n('w')), 'w is not created').to.equal(undefined);
      await stopDaemon(daemon!.child);
      daemon = await startDaemon(url, statePath, ['--interval', '1h', '--confirm', rewritten]);
      await waitState(n('w'), 'RUNNING');
      await waitState(n('x'), undefined);
      await waitState(n('db'), 'RUNNING');
      await waitState(n('app'), 'RUNNING');
      for (const l of ['y', 'z']) expect(await lxcState(n(l)), `${n(l)} is kept`).to.equal('RUNNING');
    });
  });
});
