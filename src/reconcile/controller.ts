/**
 * One controller per kind: a work queue of keys, the reconciler, the provider's change events
 * and the periodic resync. This is the only place reconcile outcomes become queue calls
 * (controller-runtime's reconcileHandler).
 *
 * Guarantees: a key is reconciled by one worker at a time; errors back off per key; a terminal
 * error waits for the object to change; a resync costs one batch observation of the provider
 * and queues every key it covers (objects and remembered tombstones).
 */
import type { Logger } from 'pino';
import type { Kind } from '../api/v1alpha1/group.js';
import { hostNameFor } from '../api/v1alpha1/host-name.js';
import type { Provider } from '../providers/provider.js';
import { isProviderUnavailableError } from '../providers/provider.js';
import type { RateLimiter } from '../queue/rate-limiter.js';
import { WorkQueue } from '../queue/work-queue.js';
import type { SourceBackend } from './backend.js';
import type { StoreReader } from '../store/desired-store.js';
import { type ObjectKey, parseKey } from '../store/object-key.js';
import type { Metrics, ReconcileOutcome } from '../telemetry/metrics.js';
import { isAbortError, isConflictError, isTerminalError } from '../shared/errors.js';
import type { Clock } from '../shared/clock.js';
import { systemClock } from '../shared/clock.js';
import type { ObservationCache } from './observation-cache.js';
import type { ProviderHealth } from './provider-health.js';
import type { Reconciler } from './reconciler.js';
import type { Result } from './result.js';

/** The host name is a function of the key (namespace and name), for objects and tombstones alike. */
function hostOfKey(key: ObjectKey): string {
  const { namespace, name } = parseKey(key);
  return hostNameFor(namespace, name);
}

/** The share of workers a key counts against: its source and namespace. */
function scopeOfKey(key: ObjectKey): string {
  const { source, namespace } = parseKey(key);
  return `${source}/${namespace}`;
}

/** What a controller wires together; the tuning knobs are optional. */
export interface ControllerOptions {
  readonly kind: Kind;
  readonly provider: Provider;
  readonly reconciler: Pick<Reconciler, 'reconcile'>;
  readonly store: StoreReader;
  readonly backends: ReadonlyMap<string, SourceBackend>;
  readonly cache: ObservationCache;
  readonly health: ProviderHealth;
  readonly logger: Logger;
  readonly metrics?: Metrics;
  /** Keys reconciled at once (different keys). */
  readonly concurrency?: number;
  /** Keys of one source and namespace reconciled at once (default: concurrency - 1, at least 1). */
  readonly maxPerScope?: number;
  readonly rateLimiter?: RateLimiter;
  /** Full resync period: the safety net under provider events (default 60 s). */
  readonly resyncMs?: number;
  /** How long to wait before following a failed change stream again (default 1 s). */
  readonly changeRetryMs?: number;
  /** Time for timers and timestamps, the queue's too (default: the system clock). */
  readonly clock?: Clock;
}

/** Queue outcome label for metrics, per result kind (controller-runtime's label values). */
const OUTCOME_OF_RESULT: Readonly<Record<Result['kind'], ReconcileOutcome>> = {
  awaitChange: 'success', requeue: 'requeue', requeueAfter: 'requeue_after', nextStep: 'requeue_after',
};

/**
 * Runs one kind's reconciles: keys come from the store, provider events and resyncs; outcomes go
 * back to the queue here and nowhere else. `start` once, `stop` once.
 */
export class Controller {
  readonly queue: WorkQueue<ObjectKey>;
  private readonly abort = new AbortController();
  private readonly clock: Clock;
  private resyncTimer: unknown;
  private resyncing: Promise<void> | undefined;
  private lastResyncAtMs = 0;
  private batchCalls = 0;

  constructor(private readonly options: ControllerOptions) {
    this.clock = options.clock ?? systemClock;
    this.queue = new WorkQueue<ObjectKey>({
      process: (key) => this.reconcileAndRequeue(key),
      concurrency: options.concurrency ?? 4,
      paused: true,
      // Workers are shared between sources and namespaces: one with slow steps never holds them all.
      fairness: { scopeOf: scopeOfKey, ...(options.maxPerScope === undefined ? {} : { maxPerScope: options.maxPerScope }) },
      ...(options.rateLimiter === undefined ? {} : { rateLimiter: options.rateLimiter }),
      ...(options.metrics === undefined ? {} : { metrics: options.metrics.forQueue(options.kind) }),
      clock: this.clock,
      rateLimiter: options.rateLimiter,
      metrics: options.metrics?.forQueue(options.kind),
    });
  }

  /** Aborted when the controller stops: reconciles in flight give up at their next check. */
  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /** Batch observations made so far (benchmarks check one per resync). */
  get resyncCalls(): number {
    return this.batchCalls;
  }

  /** When the last resync finished (for /readyz), 0 before the first. */
  get lastResyncAt(): number {
    return this.lastResyncAtMs;
  }

  /** Queues `key` if it is of this controller's kind. */
  enqueue(key: ObjectKey): void {
    if (parseKey(key).kind === this.options.kind) this.queue.add(key);
  }

  /** Runs the first resync, then follows provider events and resyncs periodically. */
  async start(): Promise<void> {
    await this.resync();
    this.queue.run(); // after the first batch observation, so the first passes read it
    void this.followChanges();
    const every = this.options.resyncMs ?? 60_000;
    const tick = (): void => {
      this.resyncTimer = this.clock.setTimeout(() => void this.resync().finally(tick), every);
    };
    tick();
  }

  /** Observes every instance in one batch call, then queues every key of this kind. */
  resync(): Promise<void> {
    this.resyncing ??= this.doResync().finally(() => { this.resyncing = undefined; });
    return this.resyncing;
  }

  private async doResync(): Promise<void> {
    const keys = this.keys();
    const startedAtMs = this.clock.now();
    const health = await this.options.health.check(this.signal);
    if (health.ok) {
      try {
        this.batchCalls++;
        this.options.metrics?.providerCalls.inc({ provider: this.options.provider.name, method: 'observeAll' });
        const batch = await this.options.provider.observeAll(this.signal);
        const hosts = keys.map(hostOfKey);
        this.options.cache.fill(batch, hosts, startedAtMs);
      } catch (err) {
        if (this.signal.aborted) return;
        if (isProviderUnavailableError(err)) this.options.health.markUnavailable(err);
        else this.options.logger.warn({ err, provider: this.options.provider.name }, 'batch observation failed; passes observe one by one');
      }
    }
    for (const key of keys) this.queue.add(key);
    this.lastResyncAtMs = this.clock.now();
  }

  /** Keys of this kind: desired objects plus remembered ones that may still have an instance. */
  private keys(): ObjectKey[] {
    const keys = new Set<ObjectKey>();
    for (const key of this.options.store.keys()) if (parseKey(key).kind === this.options.kind) keys.add(key);
    for (const backend of this.options.backends.values()) {
      for (const key of backend.records?.keys() ?? []) if (parseKey(key).kind === this.options.kind) keys.add(key);
    }
    return [...keys];
  }

  /** Queues the keys of instances the provider reports changed, until the controller stops. */
  private async followChanges(): Promise<void> {
    while (!this.signal.aborted) {
      try {
        for await (const host of this.options.provider.changes(this.signal)) {
          this.options.cache.invalidate(host);
          for (const key of this.keysForHost(host)) {
            // A key in backoff waits for its retry, which observes afresh: a failed step's own events
            // (lxc-start failing: STARTING, then STOPPED) must not retry it at once, again and again.
            if (this.queue.retries(key) === 0) this.queue.add(key);
          }
        }
      } catch (err) {
        if (this.signal.aborted) return;
        this.options.logger.warn({ err, provider: this.options.provider.name }, 'change stream failed; resyncing and following again');
      }
      if (this.signal.aborted) return;
      await new Promise<void>((resolve) => { this.clock.setTimeout(resolve, this.options.changeRetryMs ?? 1_000); });
      await this.resync(); // events may have been missed while the stream was down
    }
  }

  /** Keys whose instance is `host` (an object and a tombstone may share one). */
  private keysForHost(host: string): ObjectKey[] {
    return this.keys().filter((key) => hostOfKey(key) === host);
  }

  /** Runs one reconcile of `key` and turns its outcome into queue calls (the only place that does). */
  private async reconcileAndRequeue(key: ObjectKey): Promise<void> {
    const started = process.hrtime.bigint();
    let outcome: ReconcileOutcome = 'success';
    try {
      const result = await this.options.reconciler.reconcile(key, this.signal);
      outcome = OUTCOME_OF_RESULT[result.kind];
      this.requeueByResult(key, result);
      this.options.logger.debug({ key, result: result.kind }, 'reconciled');
    } catch (err) {
      if (this.signal.aborted || isAbortError(err)) return; // shutting down: the next start re-lists everything
      outcome = this.requeueByError(key, err);
    } finally {
      this.options.metrics?.reconciled(this.options.kind, outcome, Number(process.hrtime.bigint() - started) / 1e9);
    }
  }

  /** controller-runtime's mapping: only `requeue` keeps the key's backoff growing; the others reset it. */
  private requeueByResult(key: ObjectKey, result: Result): void {
    switch (result.kind) {
      case 'requeue': this.queue.addRateLimited(key); return;
      case 'awaitChange': this.queue.forget(key); return;
      case 'requeueAfter': this.queue.forget(key); this.queue.addAfter(key, result.afterMs); return;
      case 'nextStep': this.queue.forget(key); this.queue.add(key, { front: true }); return;
    }
  }

  /** Terminal errors wait for the object to change; every other error retries with backoff. */
  private requeueByError(key: ObjectKey, err: unknown): ReconcileOutcome {
    const log = this.options.logger.child({ key });
    if (isTerminalError(err)) {
      log.error({ err }, 'reconcile failed; waiting for the object to change');
      this.queue.forget(key);
      return 'terminal_error';
    }
    if (isConflictError(err)) log.debug({ err }, 'stale read; retrying');
    else log.warn({ err, retries: this.queue.retries(key) }, 'reconcile failed; retrying with backoff');
    this.queue.addRateLimited(key);
    return isConflictError(err) ? 'conflict' : 'error';
  }

  /**
   * Stops intake and waits for the reconciles in flight, at most `timeoutMs`; then aborts them
   * (each step is idempotent, so an abandoned one is finished by the next start).
   */
  async stop(timeoutMs = 30_000): Promise<void> {
    this.clock.clearTimeout(this.resyncTimer);
    const drained = this.queue.shutDown();
    const timer = this.clock.setTimeout(() => this.abort.abort(), timeoutMs);
    await drained;
    this.clock.clearTimeout(timer);
    this.abort.abort();
  }
}
