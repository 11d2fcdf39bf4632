/** Wires the real reconcile core around a FakeProvider and a MemoryBackend. */
import type { Kind } from '../../src/api/v1alpha1/group.js';
import { Controller } from '../../src/reconcile/controller.js';
import { ObservationCache } from '../../src/reconcile/observation-cache.js';
import { ProviderHealth } from '../../src/reconcile/provider-health.js';
import { Reconciler } from '../../src/reconcile/reconciler.js';
import { RateLimiter } from '../../src/queue/rate-limiter.js';
import type { Clock } from '../../src/shared/clock.js';
import { systemClock } from '../../src/shared/clock.js';
import { DesiredStore } from '../../src/store/desired-store.js';
import { silentLogger } from '../../src/telemetry/logger.js';
import type { Metrics } from '../../src/telemetry/metrics.js';
import type { Admitter } from '../../src/policy/admission.js';
import type { Redactor } from '../../src/shared/redact.js';
import type { StopDeadlines } from '../../src/reconcile/stop-deadlines.js';
import { FakeProvider } from './fake-provider.js';
import { MemoryBackend } from './memory-backend.js';

export interface HarnessOptions {
  readonly concurrency?: number;
  readonly metrics?: Metrics;
  readonly resyncMs?: number;
  /** Default: 5–40 ms backoff and no bucket, so unit tests retry quickly. */
  readonly rateLimiter?: RateLimiter;
  /** Default: the system clock (sinon fake timers installed by a test still apply). */
  readonly clock?: Clock;
  readonly redactor?: Redactor;
  readonly policy?: Admitter;
  readonly stopDeadlines?: StopDeadlines;
}

export function harness<K extends Kind>(kind: K, options: HarnessOptions = {}) {
  const logger = silentLogger();
  const clock = options.clock ?? systemClock;
  const store = new DesiredStore();
  const backend = new MemoryBackend('dir');
  const backends = new Map([[backend.source.id, backend]]);
  const provider = new FakeProvider(kind);
  const cache = new ObservationCache(clock);
  const health = new ProviderHealth(provider, logger, { retryMs: 0, clock });
  const reconciler = new Reconciler({
    store, backends, provider, cache, health, node: 'node-a', logger, unavailableRetryMs: 30_000, clock,
    metrics: options.metrics, redactor: options.redactor, policy: options.policy, stopDeadlines: options.stopDeadlines,
  });
  const controller = new Controller({
    kind, provider, reconciler, store, backends, cache, health, logger, clock,
    concurrency: options.concurrency ?? 4, resyncMs: options.resyncMs ?? 3_600_000,
    rateLimiter: options.rateLimiter ?? new RateLimiter({ baseDelayMs: 5, maxDelayMs: 40, jitter: 0, qps: 10_000, burst: 10_000, clock }),
    metrics: options.metrics,
  });
  store.onChange((key) => controller.enqueue(key));
  return { store, backend, provider, cache, health, reconciler, controller };
}
