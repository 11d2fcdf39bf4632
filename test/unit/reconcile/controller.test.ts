import { expect } from 'chai';
import sinon from 'sinon';
import { Controller } from '../../../src/reconcile/controller.js';
import { ObservationCache } from '../../../src/reconcile/observation-cache.js';
import { ProviderHealth } from '../../../src/reconcile/provider-health.js';
import { type Result, awaitChange, nextStep, requeue, requeueAfter } from '../../../src/reconcile/result.js';
import { RateLimiter } from '../../../src/queue/rate-limiter.js';
import { TerminalError } from '../../../src/shared/errors.js';
import { DesiredStore } from '../../../src/store/desired-store.js';
import { type ObjectKey, objectKey } from '../../../src/store/object-key.js';
import { silentLogger } from '../../../src/telemetry/logger.js';
import { container } from '../../fakes/desired-objects.js';
import { FakeProvider } from '../../fakes/fake-provider.js';
import { MemoryBackend } from '../../fakes/memory-backend.js';

/** What a scripted pass does: return a result or throw. */
type Outcome = Result | Error;

/** A reconciler that plays a script per key and records when each pass ran (fake time). */
class ScriptedReconciler {
  readonly passes: { key: ObjectKey; atMs: number }[] = [];
  constructor(private readonly scripts: ReadonlyMap<ObjectKey, Outcome[]>) {}
  reconcile(key: ObjectKey): Promise<Result> {
    this.passes.push({ key, atMs: Date.now() });
    const next = this.scripts.get(key)?.shift() ?? awaitChange();
    return next instanceof Error ? Promise.reject(next) : Promise.resolve(next);
  }
}

function controllerWith(scripts: Map<ObjectKey, Outcome[]>, concurrency = 1) {
  const logger = silentLogger();
  const store = new DesiredStore();
  const backend = new MemoryBackend('dir');
  const provider = new FakeProvider('Container');
  const cache = new ObservationCache();
  const reconciler = new ScriptedReconciler(scripts);
  const controller = new Controller({
    kind: 'Container', provider, reconciler, store, backends: new Map([['dir', backend]]), cache,
    health: new ProviderHealth(provider, logger), logger, concurrency, resyncMs: 3_600_000,
    // client-go's shape with a 1 s base (the daemon's), no jitter so delays are exact.
    rateLimiter: new RateLimiter({ baseDelayMs: 1_000, jitter: 0, qps: 1_000, burst: 1_000 }),
  });
  return { store, controller, reconciler };
}

describe('Controller: outcomes become queue calls', () => {
  let clock: sinon.SinonFakeTimers;
  beforeEach(() => { clock = sinon.useFakeTimers({ now: 0, toFake: ['Date', 'setTimeout', 'clearTimeout'] }); });
  afterEach(() => clock.restore());

  const cases: Record<string, { reason: string; script: Outcome[]; want: number[] }> = {
    AwaitChange: { reason: 'nothing brings the key back but an event', script: [awaitChange()], want: [0] },
    RequeueAfter: {
      reason: 'exactly after the asked delay, whatever the backoff', script: [requeueAfter(700), requeueAfter(700)], want: [0, 700, 1_400],
    },
    Requeue: {
      reason: 'the limiter owns the delay: 1 s, 2 s, 4 s for passes in a row', script: [requeue(), requeue(), requeue()],
      want: [0, 1_000, 3_000, 7_000],
    },
    RequeueAfterResetsBackoff: {
      reason: 'any other result forgets the backoff, so the next requeue starts at 1 s again',
      script: [requeue(), requeue(), requeueAfter(100), requeue()], want: [0, 1_000, 3_000, 3_100, 4_100],
    },
    NextStep: { reason: 'at once', script: [nextStep(), nextStep()], want: [0, 0, 0] },
    Error: { reason: 'errors back off like requeue', script: [new Error('transient'), new Error('transient')], want: [0, 1_000, 3_000] },
    TerminalError: {
      reason: 'waits for the object to change', script: [new TerminalError('PoolNotFound', 'cannot create: no pool')], want: [0],
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, async () => {
      const key = container('web').key;
      const { store, controller, reconciler } = controllerWith(new Map([[key, [...tc.script]]]));
      store.upsert(container('web'));
      await controller.start();
      await clock.tickAsync(60_000);
      expect(reconciler.passes.filter((p) => p.key === key).map((p) => p.atMs), tc.reason).to.deep.equal(tc.want);
      await controller.stop();
    });
  }

  it('nextStep goes ahead of keys not started yet; requeueAfter(0) does not', async () => {
    const names = ['a', 'b', 'c'];
    const keys = names.map((n) => container(n).key);
    const run = async (first: Result): Promise<string[]> => {
      const { store, controller, reconciler } = controllerWith(new Map([[keys[0]!, [first]]]));
      for (const n of names) store.upsert(container(n));
      await controller.start();
      await clock.tickAsync(10);
      await controller.stop();
      return reconciler.passes.map((p) => names[keys.indexOf(p.key)] ?? '?');
    };
    expect(await run(nextStep()), 'a under way finishes first').to.deep.equal(['a', 'a', 'b', 'c']);
    expect(await run(requeueAfter(0)), 'a waits behind the others').to.deep.equal(['a', 'b', 'c', 'a']);
  });
});

describe('Controller: workers shared fairly between sources and namespaces', () => {
  let clock: sinon.SinonFakeTimers;
  beforeEach(() => { clock = sinon.useFakeTimers({ now: 0, toFake: ['Date', 'setTimeout', 'clearTimeout'] }); });
  afterEach(() => clock.restore());

  /** `name` in `namespace` of source `source` (the key's first two parts are the scope). */
  const inScope = (source: string, namespace: string, name: string) => {
    const base = container(name, {}, { namespace });
    return { ...base, source, key: objectKey(source, namespace, 'Container', name) };
  };
  const cases: Record<string, { reason: string; objects: [string, string, number][] }> = {
    BurstOfOneNamespace: {
      reason: 'six keys of dir/busy queued first do not run ahead of one key each of dir/quiet and git-0/busy',
      objects: [['dir', 'busy', 6], ['dir', 'quiet', 1], ['git-0', 'busy', 1]],
    },
    SameNamespaceTwoSources: {
      reason: 'a namespace name shared by two sources is two scopes: neither source waits behind the other',
      objects: [['dir', 'team', 4], ['git-0', 'team', 4]],
    },
    ManyScopes: {
      reason: 'four scopes of uneven size take turns until each runs out',
      objects: [['dir', 'a', 5], ['dir', 'b', 3], ['git-0', 'a', 2], ['git-1', 'c', 1]],
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, async () => {
      const objects = tc.objects.flatMap(([source, namespace, count]) =>
        Array.from({ length: count }, (_, i) => inScope(source, namespace, `${namespace}-${i}`)));
      const { store, controller, reconciler } = controllerWith(new Map(), 1);
      for (const object of objects) store.upsert(object);
      await controller.start();
      await clock.tickAsync(10);
      await controller.stop();
      const scopes = reconciler.passes.map((p) => p.key.split('/').slice(0, 2).join('/'));
      expect(scopes, tc.reason).to.have.length(objects.length);
      const total = new Map<string, number>();
      for (const scope of scopes) total.set(scope, (total.get(scope) ?? 0) + 1);
      const seen = new Map<string, number>();
      for (const [i, scope] of scopes.entries()) {
        seen.set(scope, (seen.get(scope) ?? 0) + 1);
        // Round robin: a scope never gets its (n+1)th worker while another scope with keys left has had fewer than n.
        for (const [other, count] of total) {
          if ((seen.get(other) ?? 0) >= count) continue;
          expect((seen.get(scope) ?? 0) - (seen.get(other) ?? 0), `${tc.reason}: pass ${i} (${scopes.join(' ')})`).to.be.at.most(1);
        }
      }
    });
  }
});
