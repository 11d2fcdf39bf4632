/**
 * LXC through hyperlet against the raw tools, on this host, in isolated lxcpaths under /tmp:
 * 1. 50 busybox containers from nothing to Running: `hyperlet run` (a child process, files in a
 *    directory, default concurrency 4, timed from its spawn) against a loop running the same
 *    lxc-create + lxc-start with the same concurrency; rounds alternate the two (each phase
 *    destroys what it made), and the ratio is of the sums (and the median of the rounds').
 *    Target ratio hyperlet/raw at most 1.05. A breakdown says where hyperlet's time went: start-up,
 *    the tools, its own work inside passes, idle worker lanes (RoundBreakdown); and the ratio
 *    with hyperlet's own cost alone on top of the raw loop's time (the tools themselves run
 *    faster or slower from round to round on a host shared with other work). The daemon gives one
 *    namespace concurrency - 1 workers by default (one stays free for others): the idle lane;
 *    LXC_BENCH_MAX_PER_SCOPE=4 runs it with `--max-per-scope 4`, as many lanes as the raw loop.
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
  /** Every line printed so far. */
  lines(): readonly Record<string, unknown>[];
  /** performance.now() when the first line arrived. */
  firstLineAt(): number | undefined;
  stop(): Promise<void>;
}

interface DaemonArgs { manifests: string; lxcpath: string; statePath: string; resync: string; logLevel: string; http?: boolean; maxPerScope?: number }

function startDaemon(args: DaemonArgs): Daemon {
  const child = spawn(process.execPath, [
    cli, 'run', '--source', `dir:${args.manifests}`, '--lxcpath', args.lxcpath, '--state', args.statePath,
    '--http', args.http === true ? '127.0.0.1:0' : 'off',
    '--kinds', 'Container', '--resync', args.resync, '--log-level', args.logLevel,
    ...(args.maxPerScope === undefined ? [] : ['--max-per-scope', String(args.maxPerScope)]),
  ], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  let firstAt: number | undefined;
  const onLine = (text: string): void => {
    try {
      lines.push(JSON.parse(text) as Record<string, unknown>);
    } catch {
      return;
    }
    firstAt ??= performance.now();
    for (const w of [...waiters]) w();
  };
  // The logger writes to stderr; read both streams.
  createInterface({ input: child.stdout }).on('line', onLine);
  createInterface({ input: child.stderr }).on('line', onLine);
  return {
    child,
    lines: () => lines,
    firstLineAt: () => firstAt,
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
export async function lxcBench(
  count = 50, concurrency = 4, drifts = 20, rounds = 4, steadyWindowMs = 60_000,
): Promise<Record<string, number | string>> {
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
  // All the containers are in one namespace, which the daemon gives concurrency - 1 workers unless
  // --max-per-scope says more (LXC_BENCH_MAX_PER_SCOPE): the raw loop runs `concurrency` at once.
  const maxPerScope = process.env.LXC_BENCH_MAX_PER_SCOPE === undefined ? undefined : Number(process.env.LXC_BENCH_MAX_PER_SCOPE);
  const figures: Record<string, number | string> = {
    containers: count, concurrency, hyperletLanesForTheNamespace: maxPerScope ?? Math.max(1, concurrency - 1),
  };
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
    const rawToolSeconds: number[] = [];
    const breakdowns: RoundBreakdown[] = [];
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
      let toolMs = 0;
      const timed = async (tool: string, args: string[], timeout: number): Promise<void> => {
        const t = performance.now();
        await run(tool, args, { timeout });
        toolMs += performance.now() - t;
      };
      await pool(rawNames, concurrency, async (name) => {
        await timed('lxc-create', ['-P', rawPath, '-n', name, '-t', 'busybox', '-f', base], 120_000);
        await timed('lxc-start', ['-P', rawPath, '-n', name], 60_000);
      });
      rawSeconds.push((performance.now() - rawStarted) / 1000);
      rawToolSeconds.push(toolMs / 1000);
      await destroyAll(rawPath);
    };
    /** Stops the daemon and removes its containers, manifests and state: the next phase starts clean. */
    const clearHyperlet = async (): Promise<void> => {
      await daemon?.stop();
      daemon = undefined;
      await destroyAll(lxcpath);
      for (const d of [manifests, dirname(statePath)]) {
        await rm(d, { recursive: true, force: true });
        await mkdir(d);
      }
    };
    const declare = async (prefix: string): Promise<void> => {
      names = Array.from({ length: count }, (_, i) => `${prefix}-${i}`);
      for (const name of names) await writeFile(join(manifests, `${name}.yaml`), manifest(name));
    };
    const hyperletPhase = async (round: number): Promise<void> => {
      // The same containers declared in files, the daemon started on them from nothing.
      await declare(`b${sfx}${round}`);
      await settle();
      const started = performance.now();
      // Debug level: one line per tool call, for the breakdown (a few hundred lines, no measurable cost).
      const d = startDaemon({ manifests, lxcpath, statePath, resync: '60s', logLevel: 'debug', http: true, ...(maxPerScope === undefined ? {} : { maxPerScope }) });
      daemon = d;
      await d.waitLines(isStepDone('setState:Running'), count, 600_000);
      hyperletSeconds.push((performance.now() - started) / 1000);
      const span = d.span(isStepDone('setState:Running'));
      hyperletAfterStartupSeconds.push((span.lastMs - span.firstMs) / 1000);
      const address = d.lines().find((l) => l.msg === 'serving /healthz /readyz /metrics')?.address;
      const metrics = typeof address === 'string' ? await (await fetch(`http://${address}/metrics`)).text() : '';
      breakdowns.push(breakdownOf(d.lines(), metrics, started, d.firstLineAt() ?? NaN, concurrency));
      daemonCpuTicks += (await cpuTicks(d.child.pid!)).self;
      await clearHyperlet();
    };
    // Both sides end by destroying what they made, so each phase follows the same disk work.
    for (let round = 0; round < rounds; round++) {
      if (round % 2 === 0) {
        await rawPhase(round);
        await hyperletPhase(round);
      } else {
        await hyperletPhase(round);
        await rawPhase(round);
      }
    }
    const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);
    figures.rounds = rounds;
    figures.rawCreateStartSeconds = rawSeconds.map((x) => round(x)).join(' ');
    figures.hyperletCreateStartSeconds = hyperletSeconds.map((x) => round(x)).join(' ');
    figures.createStartRatio = round(sum(hyperletSeconds) / sum(rawSeconds), 3);
    // Each round's two phases ran minutes apart at most: their ratio, middle value (load from other
    // work on the host moves single rounds a lot).
    const perRound = hyperletSeconds.map((h, i) => h / (rawSeconds[i] ?? NaN)).sort((a, b) => a - b);
    figures.createStartRatioMedian = round(perRound[Math.floor((perRound.length - 1) / 2)] ?? NaN, 3);
    // The same, timed from the daemon's first log line: without node's start and module loading.
    figures.hyperletAfterStartupSeconds = hyperletAfterStartupSeconds.map((x) => round(x)).join(' ');
    figures.createStartRatioAfterStartup = round(sum(hyperletAfterStartupSeconds) / sum(rawSeconds), 3);
    figures.daemonCpuSecondsPerCreateRound = round(daemonCpuTicks / CLOCK_TICKS_PER_SECOND / rounds, 2);
    // Where the time goes, means over rounds: the raw loop's lanes in the tools and idle, and
    // hyperlet's (see RoundBreakdown for each figure). Tools that take longer under hyperlet than
    // in the raw loop, with the daemon idle, point at the host (CPU shared with other work).
    figures.rawToolSeconds = round(sum(rawToolSeconds) / rounds, 2);
    figures.rawIdleLaneSeconds = round((concurrency * sum(rawSeconds) - sum(rawToolSeconds)) / rounds, 2);
    for (const key of Object.keys(breakdowns[0] ?? {}) as (keyof RoundBreakdown)[]) {
      figures[`breakdown.${key}`] = round(sum(breakdowns.map((b) => b[key])) / breakdowns.length, 2);
    }
    // hyperlet's own cost, apart from how fast the tools ran: start-up, and lane time spent in
    // passes outside the tools or idle beyond what the raw loop idles, shared by the lanes.
    const mean = (f: (b: RoundBreakdown) => number): number => sum(breakdowns.map(f)) / breakdowns.length;
    const rawMean = sum(rawSeconds) / rounds;
    const ownSeconds = mean((b) => b.startupSeconds + b.readySeconds)
      + (mean((b) => b.inPassSeconds + b.idleLaneSeconds) - (concurrency * rawMean - sum(rawToolSeconds) / rounds)) / concurrency;
    figures.hyperletOwnSeconds = round(ownSeconds, 2);
    figures.createStartRatioSameToolTime = round((rawMean + ownSeconds) / rawMean, 3);
    if (rounds < 1) throw new Error('no round ran');
    // The drift and steady-state parts need the containers up: one more (untimed) run brings them.
    await declare(`d${sfx}`);
    daemon = startDaemon({ manifests, lxcpath, statePath, resync: '60s', logLevel: 'info' });
    await daemon.waitLines(isStepDone('setState:Running'), count, 600_000);

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

/** Where a round's time went, from the daemon's debug log (its own timestamps) and its /metrics. */
export interface RoundBreakdown {
  /** Spawn to first log line: node and module loading. */
  readonly startupSeconds: number;
  /** First log line to "hyperlet running": state DB, source listing, first resync. */
  readonly readySeconds: number;
  /** "hyperlet running" to the last start. */
  readonly convergeSeconds: number;
  /** Reconcile passes run, and the worker-lane seconds they took (workqueue_work_duration_seconds). */
  readonly passes: number;
  readonly passSeconds: number;
  /** lxc-create and lxc-start time summed over containers: the work the raw loop does too. */
  readonly createStartToolSeconds: number;
  /** Every other tool run while converging (lxc-info, lxc-ls, ...), and how many. */
  readonly otherToolSeconds: number;
  readonly otherToolCalls: number;
  /** Provider observe calls (a pass that found no batch observation to use). */
  readonly observeCalls: number;
  /** Lane seconds inside passes but outside any tool: hyperlet's own work (files, status, state DB). */
  readonly inPassSeconds: number;
  /** Lane seconds with no pass running (concurrency × converge − pass seconds). */
  readonly idleLaneSeconds: number;
  /** Per container, means: lxc-create's end to "container created" (config, marker, fsync)... */
  readonly afterCreateMs: number;
  /** ...the create step's end to lxc-start's beginning (requeue, queue wait, observe, plan)... */
  readonly betweenStepsMs: number;
  /** ...lxc-start's end to its step's end (the post-start check). */
  readonly afterStartMs: number;
}

/** One value of a Prometheus text exposition (summed over label sets), or 0. */
function metricValue(text: string, name: string, labelMatch = ''): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== '{' && line[name.length] !== ' ')) continue;
    if (labelMatch !== '' && !line.includes(labelMatch)) continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1)) || 0;
  }
  return total;
}

/** Reads a round's breakdown from the daemon's log lines (debug level: one line per tool call) and its /metrics text. */
export function breakdownOf(
  lines: readonly Record<string, unknown>[], metrics: string, spawnedAt: number, firstLineAt: number, concurrency: number,
): RoundBreakdown {
  const at = (l: Record<string, unknown> | undefined): number => (typeof l?.time === 'string' ? Date.parse(l.time) : NaN);
  const nameOf = (l: Record<string, unknown>): string | undefined => {
    if (typeof l.hostName === 'string') return l.hostName;
    if (Array.isArray(l.args)) {
      const args = l.args as string[];
      const i = args.indexOf('-n');
      if (i >= 0) return args[i + 1];
    }
    return typeof l.key === 'string' ? l.key.split('/').at(-1) : undefined;
  };
  const runningAt = at(lines.find((l) => l.msg === 'hyperlet running'));
  const endAt = at(lines.filter(isStepDone('setState:Running')).at(-1));
  const tools = lines.filter((l) => l.msg === 'tool call' && at(l) >= runningAt && at(l) <= endAt);
  const duration = (l: Record<string, unknown>): number => (typeof l.durationMs === 'number' ? l.durationMs : 0);
  const isCreateStart = (l: Record<string, unknown>): boolean => l.tool === 'lxc-create' || l.tool === 'lxc-start';
  interface Marks { createEnd?: number; created?: number; createDone?: number; startBegin?: number; startEnd?: number; startDone?: number }
  const per = new Map<string, Marks>();
  const of = (name: string): Marks => {
    const known = per.get(name);
    if (known !== undefined) return known;
    const fresh: Marks = {};
    per.set(name, fresh);
    return fresh;
  };
  for (const l of lines) {
    const name = nameOf(l);
    if (name === undefined) continue;
    if (l.msg === 'tool call' && l.tool === 'lxc-create') of(name).createEnd = at(l);
    if (l.msg === 'tool call' && l.tool === 'lxc-start') Object.assign(of(name), { startBegin: at(l) - duration(l), startEnd: at(l) });
    if (l.msg === 'container created') of(name).created = at(l);
    if (l.msg === 'step done' && l.step === 'create') of(name).createDone = at(l);
    if (l.msg === 'step done' && l.step === 'setState:Running') of(name).startDone = at(l);
  }
  const meanGap = (f: (e: Marks) => number): number => {
    const xs = [...per.values()].map(f).filter((x) => Number.isFinite(x));
    return xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length;
  };
  const toolMs = tools.reduce((n, l) => n + duration(l), 0);
  const createStartMs = tools.filter(isCreateStart).reduce((n, l) => n + duration(l), 0);
  const others = tools.filter((l) => !isCreateStart(l));
  const convergeMs = endAt - runningAt;
  const passSeconds = metricValue(metrics, 'workqueue_work_duration_seconds_sum');
  return {
    startupSeconds: round((firstLineAt - spawnedAt) / 1000, 2),
    readySeconds: round((runningAt - at(lines[0])) / 1000, 2),
    convergeSeconds: round(convergeMs / 1000, 2),
    passes: metricValue(metrics, 'workqueue_work_duration_seconds_count'),
    passSeconds: round(passSeconds, 2),
    createStartToolSeconds: round(createStartMs / 1000, 2),
    otherToolSeconds: round((toolMs - createStartMs) / 1000, 2),
    otherToolCalls: others.length,
    observeCalls: metricValue(metrics, 'hyperlet_provider_calls_total', 'method="observe"'),
    inPassSeconds: round(passSeconds - toolMs / 1000, 2),
    idleLaneSeconds: round(Math.max(0, concurrency * convergeMs / 1000 - passSeconds), 2),
    afterCreateMs: round(meanGap((e) => (e.created ?? NaN) - (e.createEnd ?? NaN))),
    betweenStepsMs: round(meanGap((e) => (e.startBegin ?? NaN) - (e.createDone ?? NaN))),
    afterStartMs: round(meanGap((e) => (e.startDone ?? NaN) - (e.startEnd ?? NaN))),
  };
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
