/**
 * LXC through hyperlet against the raw tools, on this host, in isolated lxcpaths under /tmp:
 * 1. 50 busybox containers from nothing to Running: `hyperlet run` (a child process, files in a
 *    directory, default concurrency 4, timed from its spawn) against a loop running the same
 *    lxc-create + lxc-start with the same concurrency; rounds alternate the two, and the ratio
 *    is of the sums. Target ratio hyperlet/raw at most 1.10.
 * 2. Drift: a managed container stopped with `lxc-stop -k` from outside, time from its STOPPED
 *    event to its RUNNING event (our own lxc-monitor), 20 tries. Target p99 under 500 ms.
 * 3. Steady state, 50 running: the daemon's CPU per minute (itself, and with the tools it ran),
 *    and tool processes spawned per resync (its debug log names every spawn). Target: one.
 * Needs root and the LXC packages (`make host`). `node dist/bench/lxc-bench.js` runs it alone.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { DEFAULT_ID_RANGE } from '../src/api/v1alpha1/host-defaults.js';
import { parseCgroupLayout } from '../src/providers/lxc/cgroup-host.js';
import { parseMonitorLine } from '../src/providers/lxc/lxc-monitor.js';

const run = promisify(execFile);
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const cli = join(repoRoot, 'bin', 'hyperlet.js');
const CLOCK_TICKS_PER_SECOND = 100;

interface Daemon {
  readonly child: ChildProcess;
  /** Resolves when `count` lines matching `test` have been printed since the call. */
  waitLines(test: (line: Record<string, unknown>) => boolean, count: number, timeoutMs: number): Promise<void>;
  /** Lines matching `test` printed so far. */
  count(test: (line: Record<string, unknown>) => boolean): number;
  /** The daemon's own timestamps (ms) of the first line and of the last line matching `test`. */
  span(test: (line: Record<string, unknown>) => boolean): { firstMs: number; lastMs: number };
  stop(): Promise<void>;
}

function startDaemon(args: { manifests: string; lxcpath: string; statePath: string; resync: string; logLevel: string }): Daemon {
  const child = spawn(process.execPath, [
    cli, 'run', '--source', `dir:${args.manifests}`, '--lxcpath', args.lxcpath, '--state', args.statePath, '--http', 'off',
    '--kinds', 'Container', '--resync', args.resync, '--log-level', args.logLevel,
  ], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  const onLine = (text: string): void => {
    try {
      lines.push(JSON.parse(text) as Record<string, unknown>);
    } catch {
      return;
    }
    for (const w of [...waiters]) w();
  };
  // The logger writes to stderr; read both streams.
  createInterface({ input: child.stdout }).on('line', onLine);
  createInterface({ input: child.stderr }).on('line', onLine);
  return {
    child,
    count: (test) => lines.filter(test).length,
    span: (test) => {
      const timeOf = (l: Record<string, unknown> | undefined): number => (typeof l?.time === 'string' ? Date.parse(l.time) : NaN);
      return { firstMs: timeOf(lines[0]), lastMs: timeOf(lines.filter(test).at(-1)) };
    },
    waitLines(test, count, timeoutMs) {
      const from = lines.length;
      return new Promise<void>((resolvePromise, reject) => {
        const timer = setTimeout(() => {
          const tail = lines.slice(-15).map((l) => JSON.stringify(l)).join('\n');
          reject(new Error(`timed out waiting for ${count} daemon log lines (daemon ${child.exitCode === null ? 'running' : `exited ${child.exitCode}`}); last lines:\n${tail}`));
        }, timeoutMs);
        const check = (): void => {
          if (lines.slice(from).filter(test).length < count) return;
          clearTimeout(timer);
          waiters.splice(waiters.indexOf(check), 1);
          resolvePromise();
        };
        waiters.push(check);
        check();
      });
    },
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

function manifest(name: string): string {
  return `apiVersion: hyperlet.io/v1alpha1
kind: Container
metadata:
  name: ${name}
spec:
  template: busybox
  state: Running
  resources:
    memory: 64Mi
  network:
    - type: none
`;
}

async function pool<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await work(item);
    }
  }));
}

async function destroyAll(lxcpath: string): Promise<void> {
  const names = await readdir(lxcpath).catch(() => [] as string[]);
  await pool(names, 4, async (name) => {
    await run('lxc-stop', ['-P', lxcpath, '-n', name, '-k'], { timeout: 30_000 }).catch(() => undefined);
    await run('lxc-destroy', ['-P', lxcpath, '-n', name], { timeout: 60_000 }).catch(() => undefined);
  });
}

async function cpuTicks(pid: number): Promise<{ self: number; children: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
  // utime, stime, cutime, cstime are fields 14-17: indexes 11-14 after "pid (comm)".
  return { self: (f[11] ?? 0) + (f[12] ?? 0), children: (f[13] ?? 0) + (f[14] ?? 0) };
}

function percentile(sorted: readonly number[], p: number): number {
  const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, i)] ?? NaN;
}

const isStepDone = (step: string) => (l: Record<string, unknown>): boolean => l.msg === 'step done' && l.step === step;
const isToolCall = (tool?: string) => (l: Record<string, unknown>): boolean => l.msg === 'tool call' && (tool === undefined || l.tool === tool);

/** Runs the three LXC benchmarks and returns their figures. */
export async function lxcBench(count = 50, concurrency = 4, drifts = 20, rounds = 2, steadyWindowMs = 60_000): Promise<Record<string, number | string>> {
  if (process.getuid?.() !== 0) throw new Error('the LXC benchmark needs root');
  const tmp = await mkdtemp(join(tmpdir(), 'hyperlet-lxc-bench-'));
  const sfx = randomBytes(2).toString('hex');
  const rawPath = join(tmp, 'raw');
  const lxcpath = join(tmp, 'lxc');
  const manifests = join(tmp, 'manifests');
  const statePath = join(tmp, 'state', 'state.db');
  for (const d of [rawPath, lxcpath, manifests, dirname(statePath)]) await mkdir(d, { recursive: true });
  // Unprivileged containers' mapped root must pass through the directories above their lxcpath.
  await chmod(tmp, 0o711);
  const base = join(tmp, 'base.conf');
  const v1 = parseCgroupLayout(await readFile('/proc/self/mounts', 'utf8'))?.version === 1;
  // The same limit and user namespace hyperlet sets for `memory: 64Mi`, so both sides do the same work.
  const { hostId, size } = DEFAULT_ID_RANGE;
  await writeFile(base, `lxc.net.0.type = empty\n${v1 ? 'lxc.cgroup.memory.limit_in_bytes' : 'lxc.cgroup2.memory.max'} = 67108864\n`
    + `lxc.idmap = u 0 ${hostId} ${size}\nlxc.idmap = g 0 ${hostId} ${size}\n`);
  const figures: Record<string, number | string> = { containers: count, concurrency };
  let daemon: Daemon | undefined;
  let monitor: ChildProcess | undefined;
  try {
    // Warm the page cache for both sides alike: one container made and thrown away.
    await run('lxc-create', ['-P', rawPath, '-n', `warm-${sfx}`, '-t', 'busybox', '-f', base], { timeout: 120_000 });
    await destroyAll(rawPath);

    // 1. Rounds alternate which side goes first, and every phase starts after the previous one's
    // writes are flushed (sync), so neither side pays for the other's disk work or for load
    // from other work on the host more than the other.
    const rawSeconds: number[] = [];
    const hyperletSeconds: number[] = [];
    const hyperletAfterStartupSeconds: number[] = [];
    let names: string[] = [];
    let daemonCpuTicks = 0;
    const settle = async (): Promise<void> => {
      await run('sync', [], { timeout: 120_000 });
      await new Promise((r) => setTimeout(r, 1_000));
    };
    const rawPhase = async (round: number): Promise<void> => {
      const rawNames = Array.from({ length: count }, (_, i) => `r${sfx}${round}-${i}`);
      await settle();
      const rawStarted = performance.now();
      await pool(rawNames, concurrency, async (name) => {
        await run('lxc-create', ['-P', rawPath, '-n', name, '-t', 'busybox', '-f', base], { timeout: 120_000 });
        await run('lxc-start', ['-P', rawPath, '-n', name], { timeout: 60_000 });
      });
      rawSeconds.push((performance.now() - rawStarted) / 1000);
      await destroyAll(rawPath);
    };
    const hyperletPhase = async (round: number): Promise<void> => {
      // The same containers declared in files, the daemon started on them from nothing.
      if (daemon !== undefined) {
        await daemon.stop();
        daemon = undefined;
        await destroyAll(lxcpath);
        await rm(manifests, { recursive: true, force: true });
        await rm(dirname(statePath), { recursive: true, force: true });
        await mkdir(manifests);
        await mkdir(dirname(statePath));
      }
      names = Array.from({ length: count }, (_, i) => `b${sfx}${round}-${i}`);
      for (const name of names) await writeFile(join(manifests, `${name}.yaml`), manifest(name));
      await settle();
      const started = performance.now();
      const d = startDaemon({ manifests, lxcpath, statePath, resync: '60s', logLevel: 'info' });
      daemon = d;
      await d.waitLines(isStepDone('setState:Running'), count, 600_000);
      hyperletSeconds.push((performance.now() - started) / 1000);
      const span = d.span(isStepDone('setState:Running'));
      hyperletAfterStartupSeconds.push((span.lastMs - span.firstMs) / 1000);
      daemonCpuTicks += (await cpuTicks(d.child.pid!)).self;
    };
    for (let round = 0; round < rounds; round++) {
      if (round % 2 === 0) {
        await rawPhase(round);
        await hyperletPhase(round);
      } else {
        await hyperletPhase(round); // its 50 idle containers stay up while raw runs: they cost nothing
        await rawPhase(round);
      }
    }
    const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);
    figures.rounds = rounds;
    figures.rawCreateStartSeconds = rawSeconds.map((x) => round(x)).join(' ');
    figures.hyperletCreateStartSeconds = hyperletSeconds.map((x) => round(x)).join(' ');
    figures.createStartRatio = round(sum(hyperletSeconds) / sum(rawSeconds), 3);
    // The same, timed from the daemon's first log line: without node's start and module loading.
    figures.hyperletAfterStartupSeconds = hyperletAfterStartupSeconds.map((x) => round(x)).join(' ');
    figures.createStartRatioAfterStartup = round(sum(hyperletAfterStartupSeconds) / sum(rawSeconds), 3);
    figures.daemonCpuSecondsPerCreateRound = round(daemonCpuTicks / CLOCK_TICKS_PER_SECOND / rounds, 2);
    if (daemon === undefined) throw new Error('no round ran');

    // 2. Drift: lxc-stop -k from outside; STOPPED → RUNNING as our own lxc-monitor sees it.
    monitor = spawn('lxc-monitor', ['-P', lxcpath, '-n', '.*'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const events: { name: string; state: string; atMs: number }[] = [];
    createInterface({ input: monitor.stdout! }).on('line', (line) => {
      const e = parseMonitorLine(line);
      if (e !== undefined) events.push({ ...e, atMs: performance.now() });
    });
    await new Promise((r) => setTimeout(r, 1_000)); // lxc-monitor connects to lxc-monitord
    const reactionsMs: number[] = [];
    for (let i = 0; i < drifts; i++) {
      const name = names[i % names.length]!;
      const from = events.length;
      await run('lxc-stop', ['-P', lxcpath, '-n', name, '-k'], { timeout: 30_000 });
      const deadline = performance.now() + 30_000;
      let reaction: number | undefined;
      while (reaction === undefined && performance.now() < deadline) {
        const mine = events.slice(from).filter((e) => e.name === name);
        const stopped = mine.find((e) => e.state === 'STOPPED');
        const running = stopped === undefined ? undefined : mine.find((e) => e.state === 'RUNNING' && e.atMs >= stopped.atMs);
        if (stopped !== undefined && running !== undefined) reaction = running.atMs - stopped.atMs;
        else await new Promise((r) => setTimeout(r, 5));
      }
      if (reaction === undefined) throw new Error(`${name} was not running again 30 s after lxc-stop`);
      reactionsMs.push(reaction);
      await new Promise((r) => setTimeout(r, 300));
    }
    reactionsMs.sort((a, b) => a - b);
    figures.driftReactionP50Ms = round(percentile(reactionsMs, 50));
    figures.driftReactionP99Ms = round(percentile(reactionsMs, 99));
    monitor.kill('SIGTERM');
    monitor = undefined;

    // 3a. Steady state CPU over a minute, info logging, resync every 10 s.
    await daemon.stop();
    daemon = startDaemon({ manifests, lxcpath, statePath, resync: '10s', logLevel: 'info' });
    await daemon.waitLines((l) => l.msg === 'hyperlet running', 1, 120_000);
    await new Promise((r) => setTimeout(r, 5_000)); // the first resync's reconciles settle
    const pid = daemon.child.pid!;
    const cpu0 = await cpuTicks(pid);
    const windowMs = steadyWindowMs;
    await new Promise((r) => setTimeout(r, windowMs));
    const cpu1 = await cpuTicks(pid);
    figures.steadyCpuSecondsPerMinute = round((cpu1.self - cpu0.self) / CLOCK_TICKS_PER_SECOND * (60_000 / windowMs), 3);
    figures.steadyCpuWithToolsSecondsPerMinute = round((cpu1.self + cpu1.children - cpu0.self - cpu0.children) / CLOCK_TICKS_PER_SECOND * (60_000 / windowMs), 3);

    // 3b. Spawns per resync: every tool call is a debug line; resync every 5 s for 30 s.
    await daemon.stop();
    daemon = startDaemon({ manifests, lxcpath, statePath, resync: '5s', logLevel: 'debug' });
    await daemon.waitLines((l) => l.msg === 'hyperlet running', 1, 120_000);
    await new Promise((r) => setTimeout(r, 3_000));
    const calls0 = daemon.count(isToolCall());
    const resyncs0 = daemon.count(isToolCall('lxc-ls'));
    await new Promise((r) => setTimeout(r, 30_000));
    const calls = daemon.count(isToolCall()) - calls0;
    const resyncs = daemon.count(isToolCall('lxc-ls')) - resyncs0;
    figures.resyncs = resyncs;
    figures.spawnsPerResync = resyncs === 0 ? 'no resync seen' : round(calls / resyncs, 2);
    return figures;
  } finally {
    monitor?.kill('SIGTERM');
    await daemon?.stop();
    await destroyAll(rawPath);
    await destroyAll(lxcpath);
    await rm(tmp, { recursive: true, force: true });
  }
}

function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  // LXC_BENCH=count,concurrency,drifts,rounds,steadyWindowMs shrinks it for a quick look.
  const [count, concurrency, drifts, rounds, windowMs] = (process.env.LXC_BENCH ?? '').split(',').filter((x) => x !== '').map(Number);
  const figures = await lxcBench(count, concurrency, drifts, rounds, windowMs);
  process.stdout.write(`lxc: ${JSON.stringify(figures)}\n`);
}
