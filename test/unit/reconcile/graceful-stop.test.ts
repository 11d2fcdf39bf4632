import { expect } from 'chai';
import { Controller } from '../../../src/reconcile/controller.js';
import { ObservationCache } from '../../../src/reconcile/observation-cache.js';
import { ProviderHealth } from '../../../src/reconcile/provider-health.js';
import { Reconciler } from '../../../src/reconcile/reconciler.js';
import { type Result, nextStep, requeueAfter } from '../../../src/reconcile/result.js';
import {
  MemoryStopDeadlines, type StopDeadlines, type StopFacts, type StopMove, nextStopMove,
} from '../../../src/reconcile/stop-deadlines.js';
import { RateLimiter } from '../../../src/queue/rate-limiter.js';
import { StateDb } from '../../../src/state/state-db.js';
import { DesiredStore } from '../../../src/store/desired-store.js';
import type { Desired } from '../../../src/store/desired.js';
import { silentLogger } from '../../../src/telemetry/logger.js';
import { container, observedAs } from '../../fakes/desired-objects.js';
import { FakeProvider } from '../../fakes/fake-provider.js';
import { MemoryBackend } from '../../fakes/memory-backend.js';
import { FakeClock } from '../../support/fake-clock.js';

const signal = new AbortController().signal;

/** The state DB's table as the daemon wires it (daemon.ts stopDeadlinesIn). */
const stopDeadlinesIn = (db: StateDb): StopDeadlines => ({
  get: (key) => db.stopDeadline(key),
  set: (key, deadline) => db.setStopDeadline(key, deadline),
  delete: (key) => db.deleteStopDeadline(key),
});

describe('nextStopMove: the rule of a graceful stop', () => {
  const base: StopFacts = { nowMs: 0, gracefulStopSeconds: 20, pending: undefined, lastRequestMs: undefined, mayRequest: true };
  const pending = { requestedAtMs: 0, deadlineMs: 20_000 };
  const cases: Record<string, { reason: string; facts: Partial<StopFacts>; want: StopMove }> = {
    FirstRequestRecordsTheDeadline: {
      reason: 'no stop under way: ask now, the deadline is now plus the grace, look again after 1 s',
      facts: {},
      want: { move: 'request', deadline: pending, first: true, afterMs: 1_000 },
    },
    ShortGraceLooksAtItsEnd: {
      reason: 'a grace shorter than the first poll: the first look is at the deadline',
      facts: { gracefulStopSeconds: 0.5 },
      want: { move: 'request', deadline: { requestedAtMs: 0, deadlineMs: 500 }, first: true, afterMs: 500 },
    },
    NoGraceForcesAtOnce: {
      reason: 'gracefulStopSeconds 0 (a stop under way made shorter): nothing to wait for',
      facts: { gracefulStopSeconds: 0 },
      want: { move: 'force', deadline: { requestedAtMs: 0, deadlineMs: 0 } },
    },
    WaitsBetweenRequests: {
      reason: 'asked 2 s ago: wait, at least 1 s',
      facts: { nowMs: 2_000, pending, lastRequestMs: 0 },
      want: { move: 'wait', deadline: pending, afterMs: 1_000 },
    },
    PollGrowsWithTheWait: {
      reason: 'asked 7 s ago (again 3 s ago): half the time since the first request, 3.5 s',
      facts: { nowMs: 7_000, pending, lastRequestMs: 4_000 },
      want: { move: 'wait', deadline: pending, afterMs: 3_500 },
    },
    PollIsBounded: {
      reason: 'asked 12 s ago: the poll stops growing at 5 s',
      facts: { nowMs: 12_000, pending, lastRequestMs: 10_000 },
      want: { move: 'wait', deadline: pending, afterMs: 5_000 },
    },
    LastLookIsAtTheDeadline: {
      reason: '2 s before the deadline: look again exactly at it, so the force is on time',
      facts: { nowMs: 18_000, pending, lastRequestMs: 15_000 },
      want: { move: 'wait', deadline: pending, afterMs: 2_000 },
    },
    AsksAgainEveryFiveSeconds: {
      reason: 'the last request is 5 s old: press again (a first press can be lost while a guest boots)',
      facts: { nowMs: 5_000, pending, lastRequestMs: 0 },
      want: { move: 'request', deadline: pending, first: false, afterMs: 2_500 },
    },
    RestartAsksAgainKeepingTheDeadline: {
      reason: 'this process never asked (it restarted): ask again, but the grace does not start again',
      facts: { nowMs: 10_000, pending },
      want: { move: 'request', deadline: pending, first: false, afterMs: 5_000 },
    },
    ForcesAtTheDeadline: {
      reason: 'the grace is over',
      facts: { nowMs: 20_000, pending, lastRequestMs: 15_000 },
      want: { move: 'force', deadline: pending },
    },
    RestartPastTheDeadlineForces: {
      reason: 'down past the deadline: force at the first pass, no new grace',
      facts: { nowMs: 90_000, pending },
      want: { move: 'force', deadline: pending },
    },
    StoppingInstanceIsNotAskedAgain: {
      reason: 'already on its way down: wait for it, never press again',
      facts: { nowMs: 6_000, pending, mayRequest: false },
      want: { move: 'wait', deadline: pending, afterMs: 3_000 },
    },
    ShorterGraceAppliesAtOnce: {
      reason: 'the grace went from 20 s to 5 s while stopping: forced 5 s after the first request',
      facts: { nowMs: 6_000, pending, lastRequestMs: 5_000, gracefulStopSeconds: 5 },
      want: { move: 'force', deadline: { requestedAtMs: 0, deadlineMs: 5_000 } },
    },
    LongerGraceDoesNotMoveTheDeadline: {
      reason: 'the grace went from 20 s to 600 s while stopping: the deadline promised stays',
      facts: { nowMs: 20_000, pending, lastRequestMs: 15_000, gracefulStopSeconds: 600 },
      want: { move: 'force', deadline: pending },
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      expect(nextStopMove({ ...base, ...tc.facts }), tc.reason).to.deep.equal(tc.want);
    });
  }
});

/** A reconciler over a FakeProvider and `deadlines`; a new one over the same parts is a daemon restart. */
function reconcilerOver(parts: {
  clock: FakeClock; provider: FakeProvider<'Container'>; store: DesiredStore; backend: MemoryBackend; deadlines: StopDeadlines;
}): Reconciler {
  const logger = silentLogger();
  return new Reconciler({
    store: parts.store, backends: new Map([['dir', parts.backend]]), provider: parts.provider, cache: new ObservationCache(parts.clock),
    health: new ProviderHealth(parts.provider, logger, { retryMs: 0, clock: parts.clock }), node: 'node-a', logger,
    clock: parts.clock, stopDeadlines: parts.deadlines,
  });
}

/** One pass of a scenario: at `atMs` (after a restart when `restart`), the result and the provider calls it made. */
interface PassStep {
  readonly atMs: number;
  readonly restart?: boolean;
  /** Something behind our back before the pass. */
  readonly before?: (provider: FakeProvider<'Container'>, store: DesiredStore) => void;
  readonly want: Result;
  readonly calls: readonly string[];
}

describe('Reconciler: a graceful stop holds no worker', () => {
  const stopped = (grace: number): Desired => container('web', { state: 'Stopped', gracefulStopSeconds: grace });
  const cases: Record<string, {
    reason: string; grace: number; ignores: boolean; passes: readonly PassStep[]; lastAction?: string; observedState?: 'Crashed' | 'Frozen';
  }> = {
    ObeyingInstanceStopsOnTheFirstRequest: {
      reason: 'asked once, it stops; the next pass sees it Stopped and forgets the stop',
      grace: 20, ignores: false,
      passes: [
        { atMs: 0, want: requeueAfter(1_000), calls: ['requestStop:web'] },
        { atMs: 1_000, want: { kind: 'awaitChange' }, calls: [] },
      ],
      lastAction: 'shut down gracefully in 1.0 s',
    },
    IgnoringInstanceIsForcedAtTheDeadline: {
      reason: 'asked, polled with a growing wait, asked again every 5 s, killed at 20 s and not before',
      grace: 20, ignores: true,
      passes: [
        { atMs: 0, want: requeueAfter(1_000), calls: ['requestStop:web'] },
        { atMs: 1_000, want: requeueAfter(1_000), calls: [] },
        { atMs: 2_000, want: requeueAfter(1_000), calls: [] },
        { atMs: 3_000, want: requeueAfter(1_500), calls: [] },
        { atMs: 4_500, want: requeueAfter(2_250), calls: [] },
        { atMs: 6_750, want: requeueAfter(3_375), calls: ['requestStop:web'] },
        { atMs: 10_125, want: requeueAfter(5_000), calls: [] },
        { atMs: 15_125, want: requeueAfter(4_875), calls: ['requestStop:web'] },
        { atMs: 19_999, want: requeueAfter(1), calls: [] },
        { atMs: 20_000, want: nextStep(), calls: ['forceStop:web'] },
        { atMs: 20_000, want: { kind: 'awaitChange' }, calls: [] },
      ],
      lastAction: 'killed',
    },
    RestartKeepsTheDeadline: {
      reason: 'a restart 8 s in asks again at once but forces at 20 s from the first request, not 28 s',
      grace: 20, ignores: true,
      passes: [
        { atMs: 0, want: requeueAfter(1_000), calls: ['requestStop:web'] },
        { atMs: 8_000, restart: true, want: requeueAfter(4_000), calls: ['requestStop:web'] },
        { atMs: 12_000, want: requeueAfter(5_000), calls: [] },
        { atMs: 17_000, want: requeueAfter(3_000), calls: ['requestStop:web'] },
        { atMs: 20_000, want: nextStep(), calls: ['forceStop:web'] },
      ],
    },
    RestartAfterTheDeadlineForcesAtOnce: {
      reason: 'down for a minute past the deadline: the first pass after the restart forces',
      grace: 20, ignores: true,
      passes: [
        { atMs: 0, want: requeueAfter(1_000), calls: ['requestStop:web'] },
        { atMs: 80_000, restart: true, want: nextStep(), calls: ['forceStop:web'] },
      ],
    },
    StartedAgainForgetsTheStop: {
      reason: 'declared Running again while stopping: the stop is forgotten, a later stop gets its full grace',
      grace: 20, ignores: true,
      passes: [
        { atMs: 0, want: requeueAfter(1_000), calls: ['requestStop:web'] },
        {
          atMs: 5_000, before: (_p, store) => store.upsert(container('web', { state: 'Running', gracefulStopSeconds: 20 }, { generation: 2 })),
          want: { kind: 'awaitChange' }, calls: [],
        },
        {
          atMs: 30_000, before: (_p, store) => store.upsert(container('web', { state: 'Stopped', gracefulStopSeconds: 20 }, { generation: 3 })),
          want: requeueAfter(1_000), calls: ['requestStop:web'],
        },
        { atMs: 49_999, want: requeueAfter(1), calls: ['requestStop:web'] },
        { atMs: 50_000, want: nextStep(), calls: ['forceStop:web'] },
      ],
    },
    LiveChangeDuringTheStopKeepsTheDeadline: {
      reason: 'memory changed while stopping: the live update runs first, and the stop keeps its first deadline',
      grace: 20, ignores: true,
      passes: [
        { atMs: 0, want: requeueAfter(1_000), calls: ['requestStop:web'] },
        {
          atMs: 5_000,
          before: (_p, store) => store.upsert(container('web', {
            state: 'Stopped', gracefulStopSeconds: 20, resources: { memory: '256Mi' },
          }, { generation: 2 })),
          want: nextStep(), calls: ['update:web:resources.memory'],
        },
        { atMs: 5_000, want: requeueAfter(2_500), calls: ['requestStop:web'] },
        { atMs: 20_000, want: nextStep(), calls: ['forceStop:web'] },
      ],
    },
    CrashedInstanceTakesTheUsualStep: {
      reason: 'a crashed instance cannot be asked to shut down: the provider\'s own stop handles it, with no wait',
      grace: 20, ignores: true, observedState: 'Crashed',
      passes: [{ atMs: 0, want: nextStep(), calls: ['setState:web:Stopped'] }],
    },
    FrozenInstanceIsAsked: {
      reason: 'a frozen instance is asked too (the provider thaws it first)',
      grace: 20, ignores: false, observedState: 'Frozen',
      passes: [
        { atMs: 0, want: requeueAfter(1_000), calls: ['requestStop:web'] },
        { atMs: 1_000, want: { kind: 'awaitChange' }, calls: [] },
      ],
    },
    ZeroGraceKillsWithTheUsualStep: {
      reason: 'gracefulStopSeconds 0: no wait at all, the provider\'s own stop kills at once',
      grace: 0, ignores: true,
      passes: [{ atMs: 0, want: nextStep(), calls: ['setState:web:Stopped'] }],
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, async () => {
      const clock = new FakeClock(0);
      const db = new StateDb(':memory:', { clock });
      const parts = {
        clock, provider: new FakeProvider('Container'), store: new DesiredStore(), backend: new MemoryBackend('dir'),
        deadlines: stopDeadlinesIn(db),
      };
      const d = stopped(tc.grace);
      parts.store.upsert(d);
      parts.provider.instances.set('web', observedAs(d, tc.observedState ?? 'Running'));
      if (tc.ignores) parts.provider.ignoresShutdown.add('web');
      let reconciler = reconcilerOver(parts);
      for (const [i, pass] of tc.passes.entries()) {
        clock.ms = pass.atMs;
        if (pass.restart === true) reconciler = reconcilerOver(parts);
        pass.before?.(parts.provider, parts.store);
        const from = parts.provider.calls.length;
        const result = await reconciler.reconcile(d.key, signal);
        const calls = parts.provider.calls.slice(from).filter((c) => !c.startsWith('probe') && !c.startsWith('observe'));
        expect({ result, calls }, `${tc.reason}: pass ${i} at ${pass.atMs} ms`).to.deep.equal({ result: pass.want, calls: pass.calls });
      }
      const final = parts.store.get(d.key)?.object.spec.state === 'Stopped' ? 'Stopped' : 'Running';
      expect(parts.provider.instances.get('web')?.state, tc.reason).to.equal(final);
      if (final === 'Stopped') {
        expect(db.stopDeadline(d.key), 'the stop is forgotten once over').to.equal(undefined);
        if (tc.passes.at(-1)?.want.kind === 'awaitChange') {
          expect(parts.backend.statuses.get(d.key)?.details?.stopDeadline, 'status no longer shows a deadline').to.equal(undefined);
        }
      }
      if (tc.lastAction !== undefined) {
        expect(parts.backend.statuses.get(d.key)?.details?.lastAction, tc.reason).to.equal(tc.lastAction);
        const stops = parts.backend.events.filter((e) => e.reason === 'Stopped').map((e) => e.message);
        expect(stops, 'one Stopped event saying how').to.deep.equal([tc.lastAction]);
      }
      db.close();
    });
  }

  it('status shows when a stop under way is forced', async () => {
    const clock = new FakeClock(Date.UTC(2026, 11, 1, 1, 0, 0));
    const parts = {
      clock, provider: new FakeProvider('Container'), store: new DesiredStore(), backend: new MemoryBackend('dir'),
      deadlines: new MemoryStopDeadlines(),
    };
    const d = stopped(20);
    parts.store.upsert(d);
    parts.provider.instances.set('web', observedAs(d, 'Running'));
    parts.provider.ignoresShutdown.add('web');
    const reconciler = reconcilerOver(parts);
    await reconciler.reconcile(d.key, signal);
    clock.ms += 1_000;
    await reconciler.reconcile(d.key, signal);
    const details = parts.backend.statuses.get(d.key)?.details;
    expect(details?.stopDeadline).to.equal('2026-12-01T01:00:20.000Z');
    expect(details?.lastAction).to.equal('shutdown requested; stopped by force after 20 s if still running');
  });

  it('a request that fails is retried with backoff, the deadline already on record', async () => {
    const clock = new FakeClock(0);
    const deadlines = new MemoryStopDeadlines();
    const parts = { clock, provider: new FakeProvider('Container'), store: new DesiredStore(), backend: new MemoryBackend('dir'), deadlines };
    const d = stopped(20);
    parts.store.upsert(d);
    parts.provider.instances.set('web', observedAs(d, 'Running'));
    parts.provider.failures.set('requestStop', new Error('lxc-stop: cannot send the halt signal'));
    const reconciler = reconcilerOver(parts);
    let failed: unknown;
    await reconciler.reconcile(d.key, signal).catch((err: unknown) => { failed = err; });
    expect(failed, 'the error goes to the queue\'s backoff').to.be.instanceOf(Error);
    expect(deadlines.get(d.key), 'written before asking').to.deep.equal({ requestedAtMs: 0, deadlineMs: 20_000 });
    expect(parts.backend.statuses.get(d.key)?.conditions.find((c) => c.type === 'Synced')?.reason).to.equal('StopFailed');
  });
});

describe('Controller: a long graceful stop leaves the only worker free', () => {
  it('with concurrency 1, objects of another namespace are created and started while a stop waits 600 s', async () => {
    const clock = new FakeClock(0);
    const logger = silentLogger();
    const store = new DesiredStore();
    const backend = new MemoryBackend('dir');
    const provider = new FakeProvider('Container');
    const cache = new ObservationCache(clock);
    const health = new ProviderHealth(provider, logger, { retryMs: 0, clock });
    const reconciler = new Reconciler({
      store, backends: new Map([['dir', backend]]), provider, cache, health, node: 'node-a', logger, clock,
      stopDeadlines: new MemoryStopDeadlines(),
    });
    const controller = new Controller({
      kind: 'Container', provider, reconciler, store, backends: new Map([['dir', backend]]), cache, health, logger, clock,
      concurrency: 1, resyncMs: 3_600_000,
      rateLimiter: new RateLimiter({ baseDelayMs: 1_000, jitter: 0, qps: 1_000, burst: 1_000, clock }),
    });
    const slow = container('slow', { state: 'Stopped', gracefulStopSeconds: 600 }, { namespace: 'team-a' });
    provider.instances.set(slow.hostName, observedAs(slow, 'Running'));
    provider.ignoresShutdown.add(slow.hostName);
    store.onChange((key) => controller.enqueue(key));
    store.upsert(slow);
    await controller.start();
    await clock.advance(0);
    expect(provider.calls.filter((c) => c.startsWith('requestStop')), 'asked to shut down').to.have.length(1);
    const others = ['one', 'two', 'three'].map((name) => container(name, {}, { namespace: 'team-b' }));
    for (const other of others) store.upsert(other);
    await clock.advance(1_000);
    for (const other of others) {
      expect(provider.instances.get(other.hostName)?.state, `${other.hostName} started during the wait`).to.equal('Running');
    }
    expect(provider.instances.get(slow.hostName)?.state, 'the stop still waits').to.equal('Running');
    await clock.advance(598_000);
    expect(provider.count('forceStop'), 'not forced before 600 s').to.equal(0);
    const passesWhileWaiting = provider.calls.filter((c) => c === `observe:${slow.hostName}`).length;
    await clock.advance(1_000);
    expect(provider.count('forceStop'), 'forced at 600 s').to.equal(1);
    expect(provider.instances.get(slow.hostName)?.state).to.equal('Stopped');
    // Bounded polling: about one look every 5 s over 600 s, never a hot loop.
    expect(passesWhileWaiting, `looks during 600 s of waiting: ${passesWhileWaiting}`).to.be.within(100, 140);
    await controller.stop();
  });
});
