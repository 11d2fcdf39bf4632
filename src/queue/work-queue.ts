/**
 * A work queue of object keys with client-go's semantics, and workers shared fairly between
 * scopes (sources and namespaces).
 *
 * Guarantees:
 * - A key added while it already waits is not added twice (the dirty set).
 * - A key is never processed by two workers at once: an add during processing is remembered
 *   and the key runs again once the current run ends (the processing set).
 * - `addAfter` keeps only the earliest pending time per key; `addRateLimited` waits
 *   `RateLimiter.when(key)`; `forget` resets the key's backoff.
 * - With `fairness`, waiting keys are taken from their scopes in turn (round robin), so a burst
 *   of one scope does not queue ahead of another scope's keys; and one scope runs at most
 *   `maxPerScope` keys at once (default: every worker but one), so a scope whose steps are slow
 *   (long stops, slow templates) never holds every worker. Within a scope, keys added to the
 *   front go first, then the others in the order they became ready.
 * - `shutDown` takes no new keys, drops the ones still waiting and resolves when the runs in
 *   flight have ended.
 * Assumptions: `process` resolves or rejects; a rejection is logged by the caller's handler, the
 * queue itself only counts it (the controller turns outcomes into queue calls).
 * Caveats: fairness shares workers, not time: a run that takes long still holds its worker (which
 * is why a graceful stop waits in this queue, not in a run: reconcile/stop-deadlines.ts).
 */
import type { Clock } from '../shared/clock.js';
import { systemClock } from '../shared/clock.js';
import { RateLimiter } from './rate-limiter.js';

/** Hooks for workqueue metrics (controller-runtime names); all optional. */
export interface WorkQueueMetrics {
  depth(n: number): void;
  added(): void;
  retried(): void;
  /** Seconds the key waited between becoming ready and starting. */
  queued(seconds: number): void;
  /** Seconds one run took. */
  worked(seconds: number): void;
}

/** What runs the keys and how many at once. */
export interface WorkQueueOptions<K extends string> {
  /** Runs one key. Its outcome is the caller's business: the controller calls forget/addRateLimited. */
  readonly process: (key: K) => Promise<void>;
  /** Keys processed at once (different keys only). */
  readonly concurrency?: number;
  readonly rateLimiter?: RateLimiter;
  readonly clock?: Clock;
  readonly metrics?: WorkQueueMetrics;
  /** Hold keys until `run()` (client-go: workers start with Run); default false, workers start at once. */
  readonly paused?: boolean;
  /** Share workers between scopes (see the file comment); without it every key is in one scope. */
  readonly fairness?: {
    /** The scope of a key ("dir/default"): its source and namespace. */
    readonly scopeOf: (key: K) => string;
    /** Keys of one scope run at once; default concurrency - 1 (at least 1), so one worker is always left for others. */
    readonly maxPerScope?: number;
  };
}

/** Told when a pass of a key starts and when it finishes (tests count passes; see `onPass`). */
export type PassListener<K> = (key: K, event: 'started' | 'finished') => void;

/** The keys of one scope waiting for a worker. */
interface ScopeLine<K> {
  readonly front: K[];
  readonly normal: K[];
}

/** Queue of keys with client-go semantics (see the module comment): dedup, one worker per key, delays and backoff. */
export class WorkQueue<K extends string = string> {
  private readonly passListeners: PassListener<K>[] = [];
  private readonly dirty = new Set<K>();
  private readonly fronted = new Set<K>();
  private readonly processing = new Set<K>();
  private readonly readySinceMs = new Map<K, number>();
  private readonly delayed = new Map<K, { dueMs: number; timer: unknown }>();
  /** Waiting keys per scope; `turns` lists the scopes with waiting keys, next to serve first. */
  private readonly lines = new Map<string, ScopeLine<K>>();
  private turns: string[] = [];
  private readonly runningByScope = new Map<string, number>();
  private running = 0;
  private started: boolean;
  private idleWaiters: (() => void)[] = [];
  private readonly concurrency: number;
  private readonly maxPerScope: number;
  private readonly scopeOf: (key: K) => string;
  private readonly process: (key: K) => Promise<void>;
  private readonly rateLimiter: RateLimiter;
  private readonly clock: Clock;
  private readonly metrics: WorkQueueMetrics | undefined;
  private shuttingDown = false;
  private processedCount = 0;

  constructor(options: WorkQueueOptions<K>) {
    const concurrency = options.concurrency ?? 4;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new TypeError('work queue concurrency must be a positive integer');
    this.concurrency = concurrency;
    this.started = options.paused !== true;
    this.scopeOf = options.fairness?.scopeOf ?? (() => '');
    this.maxPerScope = options.fairness === undefined ? concurrency : options.fairness.maxPerScope ?? Math.max(1, concurrency - 1);
    if (!Number.isInteger(this.maxPerScope) || this.maxPerScope < 1) {
      throw new TypeError('work queue maxPerScope must be a positive integer');
    }
    this.process = options.process;
    this.clock = options.clock ?? systemClock;
    this.rateLimiter = options.rateLimiter ?? new RateLimiter({ clock: this.clock });
    this.metrics = options.metrics;
  }

  /** Starts the workers of a queue made `paused`. */
  run(): void {
    this.started = true;
    this.pump();
  }

  /**
   * Queues `key` unless it already waits; a key being processed runs again afterwards.
   * `front` puts it ahead of keys queued normally: an object in the middle of its steps
   * finishes before others start (a create is followed by its start, not by 49 more creates).
   */
  add(key: K, options: { front?: boolean } = {}): void {
    if (this.shuttingDown) return;
    if (options.front === true) {
      this.fronted.add(key);
      this.moveToFront(key);
    }
    if (this.dirty.has(key)) return;
    this.metrics?.added();
    this.dirty.add(key);
    this.readySinceMs.set(key, this.clock.now());
    if (!this.processing.has(key)) this.dispatch(key);
    this.metrics?.depth(this.dirty.size);
  }

  /** Queues `key` after `delayMs`; an earlier pending time for the same key wins. */
  addAfter(key: K, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) return this.add(key);
    const dueMs = this.clock.now() + delayMs;
    const pending = this.delayed.get(key);
    if (pending !== undefined) {
      if (pending.dueMs <= dueMs) return;
      this.clock.clearTimeout(pending.timer);
    }
    const timer = this.clock.setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, delayMs);
    this.delayed.set(key, { dueMs, timer });
  }

  /** Queues `key` after its backoff: per-key exponential combined with the global bucket. */
  addRateLimited(key: K): void {
    if (this.shuttingDown) return;
    this.metrics?.retried();
    this.addAfter(key, this.rateLimiter.when(key));
  }

  /** Resets `key`'s backoff; call after a successful run. */
  forget(key: K): void {
    this.rateLimiter.forget(key);
  }

  /** Failures counted for `key` since it was last forgotten. */
  retries(key: K): number {
    return this.rateLimiter.numRequeues(key);
  }

  /** Keys waiting (not counting delayed ones). */
  get depth(): number {
    return this.dirty.size;
  }

  /** Runs finished since the queue was made. */
  get processed(): number {
    return this.processedCount;
  }

  /**
   * Calls `listener` as each pass starts and finishes, so a caller can wait for whole passes of a
   * key (a test showing that nothing happened after N passes). Returns a function that removes it.
   */
  onPass(listener: PassListener<K>): () => void {
    this.passListeners.push(listener);
    return () => {
      const at = this.passListeners.indexOf(listener);
      if (at >= 0) this.passListeners.splice(at, 1);
    };
  }

  /** Whether `key` waits, runs or is scheduled. */
  has(key: K): boolean {
    return this.dirty.has(key) || this.processing.has(key) || this.delayed.has(key);
  }

  /** Resolves when nothing waits or runs (delayed keys do not count). */
  onIdle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Takes no new keys, drops waiting and delayed ones, and resolves once runs in flight end. */
  async shutDown(): Promise<void> {
    this.shuttingDown = true;
    for (const { timer } of this.delayed.values()) this.clock.clearTimeout(timer);
    this.delayed.clear();
    this.lines.clear();
    this.turns = [];
    this.dirty.clear();
    this.fronted.clear();
    this.metrics?.depth(0);
    await this.onIdle();
  }

  /** Puts a key that became ready in its scope's line, and starts what may start. */
  private dispatch(key: K): void {
    const scope = this.scopeOf(key);
    let line = this.lines.get(scope);
    if (line === undefined) {
      line = { front: [], normal: [] };
      this.lines.set(scope, line);
      this.turns.push(scope);
    }
    (this.fronted.delete(key) ? line.front : line.normal).push(key);
    this.pump();
  }

  /** A key already waiting moves ahead of its scope's keys queued normally. */
  private moveToFront(key: K): void {
    // Only a key that waits is in a line: one running (a step asking for its next one) or new is not
    // searched for, which kept this linear in the queue's length on every step of every object.
    if (!this.dirty.has(key) || this.processing.has(key)) return;
    const line = this.lines.get(this.scopeOf(key));
    const at = line?.normal.indexOf(key) ?? -1;
    if (line === undefined || at < 0) return;
    line.normal.splice(at, 1);
    line.front.push(key);
    this.fronted.delete(key);
  }

  /** Starts waiting keys while workers are free: front keys first, scopes in turn, none past its cap. */
  private pump(): void {
    while (this.started && this.running < this.concurrency) {
      const next = this.takeNext();
      if (next === undefined) break;
      void this.runKey(next.key, next.scope);
    }
    if (this.isIdle()) for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  private takeNext(): { key: K; scope: string } | undefined {
    for (const which of ['front', 'normal'] as const) {
      for (let i = 0; i < this.turns.length; i++) {
        const scope = this.turns[i] as string;
        const line = this.lines.get(scope);
        if (line === undefined || line[which].length === 0 || (this.runningByScope.get(scope) ?? 0) >= this.maxPerScope) continue;
        const key = line[which].shift() as K;
        // This scope had its turn: it goes to the back, or out when nothing of it waits.
        this.turns.splice(i, 1);
        if (line.front.length + line.normal.length > 0) this.turns.push(scope);
        else this.lines.delete(scope);
        return { key, scope };
      }
    }
    return undefined;
  }

  private isIdle(): boolean {
    return this.running === 0 && this.lines.size === 0;
  }

  private async runKey(key: K, scope: string): Promise<void> {
    this.running++;
    this.runningByScope.set(scope, (this.runningByScope.get(scope) ?? 0) + 1);
    try {
      await this.runDirtyKey(key);
    } finally {
      this.running--;
      const left = (this.runningByScope.get(scope) ?? 1) - 1;
      if (left === 0) this.runningByScope.delete(scope);
      else this.runningByScope.set(scope, left);
      // Added again while it ran: run it once more, now that no other worker holds it.
      if (this.dirty.has(key) && !this.shuttingDown) this.dispatch(key);
      else this.pump();
    }
  }

  private async runDirtyKey(key: K): Promise<void> {
    if (!this.dirty.has(key)) return; // dropped by shutDown while it waited
    this.dirty.delete(key);
    this.processing.add(key);
    const startedMs = this.clock.now();
    this.metrics?.queued((startedMs - (this.readySinceMs.get(key) ?? startedMs)) / 1000);
    this.readySinceMs.delete(key); // set again by the next add: the map holds waiting keys only
    this.metrics?.depth(this.dirty.size);
    for (const l of this.passListeners) l(key, 'started');
    try {
      await this.process(key);
    } catch {
      // The controller decides what an error means; a handler that throws is a bug there, not a reason to stop.
    } finally {
      this.processedCount++;
      this.metrics?.worked((this.clock.now() - startedMs) / 1000);
      this.processing.delete(key);
      for (const l of this.passListeners) l(key, 'finished');
    }
  }
}
