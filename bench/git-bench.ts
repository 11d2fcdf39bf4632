/**
 * The git source at scale: a real repository of 1,000 declared Containers followed by the whole
 * daemon with a zero-latency FakeProvider. Prints the time from a new commit to every change
 * applied (a commit changing all 1,000 objects, and one changing 10), and the cost of an idle
 * poll: git processes, CPU (ours and git's), store changes and reconciles (target: one `git
 * fetch`, no reconcile work).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Daemon } from '../src/daemon/daemon.js';
import type { GitSource } from '../src/sources/git-source.js';
import { silentLogger } from '../src/telemetry/logger.js';
import { FakeProvider } from '../test/fakes/fake-provider.js';
import { TestRepo, containerYaml } from '../test/support/git-repo.js';

/** CPU seconds of this process and of its waited-for children (git), from /proc/self/stat. */
function cpuSeconds(): { self: number; children: number } {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]?.split(' ') ?? [];
  const tick = 100; // USER_HZ on Linux
  const at = (i: number): number => Number(fields[i - 3] ?? 0) / tick; // fields after "(comm)" start at field 3
  return { self: at(14) + at(15), children: at(16) + at(17) };
}

async function waitFor(cond: () => boolean, timeoutMs = 300_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error('benchmark condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

export async function gitBench(count = 1_000, idlePolls = 50): Promise<Record<string, number | string>> {
  const dir = mkdtempSync(join(tmpdir(), 'hyperlet-git-bench-'));
  const provider = new FakeProvider('Container');
  const makeDaemon = (): Daemon => new Daemon({
    sources: [{ type: 'git', location: join(dir, 'repo') }], statePath: join(dir, 'state', 'state.db'), lxcpath: '', libvirtUri: '',
    kinds: ['Container'], node: 'bench', nodeFilter: false, resyncMs: 3_600_000, concurrency: 4, qps: 1_000_000, burst: 1_000_000,
    shutdownTimeoutMs: 5_000, providers: new Map([['Container', provider]]), git: { intervalMs: 3_600_000 },
  }, silentLogger());
  let daemon = makeDaemon();
  try {
    const repo = await TestRepo.create(join(dir, 'repo'));
    const memory = (mi: number) => ({ resources: { cpu: 1, memory: `${mi}Mi` } });
    for (let i = 0; i < count; i++) await repo.write(`hosts/c${i}.yaml`, containerYaml(`c${i}`, memory(128)));
    await repo.commit(`${count} containers`);
    const memoryIs = (mi: number, names: Iterable<string>): boolean => {
      for (const name of names) if (provider.instances.get(name)?.fields['resources.memory'] !== mi * 1024 * 1024) return false;
      return true;
    };
    const all = Array.from({ length: count }, (_, i) => `c${i}`);

    const initialStarted = process.hrtime.bigint();
    await daemon.start();
    const source = daemon.sources[0] as GitSource;
    await waitFor(() => all.every((n) => provider.instances.get(n)?.state === 'Running'));
    const initialSeconds = Number(process.hrtime.bigint() - initialStarted) / 1e9;
    const controller = daemon.controllers.get('Container');
    await controller?.queue.onIdle();

    // A commit changing every object.
    for (let i = 0; i < count; i++) await repo.write(`hosts/c${i}.yaml`, containerYaml(`c${i}`, memory(256)));
    await repo.commit('all to 256Mi');
    const allStarted = process.hrtime.bigint();
    await source.poll();
    await waitFor(() => memoryIs(256, all));
    const allMs = Number(process.hrtime.bigint() - allStarted) / 1e6;
    await controller?.queue.onIdle();

    // A commit changing ten.
    const ten = all.slice(0, 10);
    for (const n of ten) await repo.write(`hosts/${n}.yaml`, containerYaml(n, memory(512)));
    await repo.commit('ten to 512Mi');
    const tenStarted = process.hrtime.bigint();
    await source.poll();
    await waitFor(() => memoryIs(512, ten));
    const tenMs = Number(process.hrtime.bigint() - tenStarted) / 1e6;
    await controller?.queue.onIdle();

    // Idle polls: nothing new upstream.
    const gitBefore = source.gitCalls;
    const attemptsBefore = source.stats.attempts;
    const callsBefore = provider.calls.length;
    const cpuBefore = cpuSeconds();
    const idleStarted = process.hrtime.bigint();
    for (let i = 0; i < idlePolls; i++) await source.poll();
    const idleMs = Number(process.hrtime.bigint() - idleStarted) / 1e6 / idlePolls;
    const cpuAfter = cpuSeconds();
    await controller?.queue.onIdle();
    const idleCalls = provider.calls.slice(callsBefore);
    const idleGit = (source.gitCalls - gitBefore) / idlePolls;
    const idleAttempts = source.stats.attempts - attemptsBefore;

    // A restart: the last applied commit is served from the clone, then one fetch; nothing to do.
    await daemon.stop();
    const actionsBefore = provider.calls.filter((c) => !c.startsWith('observe') && c !== 'probe').length;
    daemon = makeDaemon();
    const restartStarted = process.hrtime.bigint();
    await daemon.start();
    const restartMs = Number(process.hrtime.bigint() - restartStarted) / 1e6;
    await daemon.controllers.get('Container')?.queue.onIdle();
    const restartActions = provider.calls.filter((c) => !c.startsWith('observe') && c !== 'probe').length - actionsBefore;
    return {
      objects: count,
      initialApplyToAllRunningS: Number(initialSeconds.toFixed(2)),
      commitAllChangedToAppliedMs: Math.round(allMs),
      commitTenChangedToAppliedMs: Math.round(tenMs),
      idlePollWallMs: Number(idleMs.toFixed(2)),
      idlePollCpuMsHyperlet: Number((((cpuAfter.self - cpuBefore.self) * 1000) / idlePolls).toFixed(2)),
      idlePollCpuMsGit: Number((((cpuAfter.children - cpuBefore.children) * 1000) / idlePolls).toFixed(2)),
      idlePollGitProcesses: idleGit,
      idlePollTipsEvaluated: idleAttempts,
      idlePollProviderCalls: idleCalls.length,
      restartToServingMs: Math.round(restartMs),
      restartProviderActions: restartActions,
    };
  } finally {
    await daemon.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
