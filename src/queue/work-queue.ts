/**
 * A work queue of object keys with client-go's semantics, and its own workers.
 *
 * Guarantees:
 * - A key added while it already waits is not added twice (the dirty set).
 * - A key is never processed by two workers at once: an add during processing is remembered
 *   and the key runs again once the current run ends (the processing set).
 * - `addAfter` keeps only the earliest pending time per key; `addRateLimited` waits
 *   `RateLimiter.when(key)`; `forget` resets the key's backoff.
 * - `shutDown` takes no new keys, drops the ones still waiting and resolves when the runs in
 *   flight have ended.
 * Assumptions: `process` resolves or rejects; a rejection is logged by the caller's handler, the
 * queue itself only counts it (the controller turns outcomes into queue calls).
 *
 * Why not p-queue: its priority queue inserts in O(n) (10,000 waiting keys and a step that goes
 * to the front cost 10,000 moves each) and each task costs promises and events; two FIFOs and a
 * worker count do the same work in O(1) (the reconcile bench spent a tenth of its time in it).
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
}

/** Told when a pass of a key starts and when it finishes (tests count passes; see `onPass`). */
export type PassListener<K> = (key: K, event: 'started' | 'finished') => void;

export class WorkQueue<K extends string = string> {
  private readonly passListeners: PassListener<K>[] = [];
  private readonly dirty = new Set<K>();
  private readonly fronted = new Set<K>();
  private readonly processing = new Set<K>();
  private readonly readySinceMs = new Map<K, number>();
  private readonly delayed = new Map<K, { dueMs: number; timer: unknown }>();
  /** Keys ready to run: `front` ones first, each list in arrival order. */
  private readonly ready = { front: new Fifo<K>(), normal: new Fifo<K>() };
  private readonly concurrency: number;
  private running = 0;
  private started: boolean;
  private idleWaiters: (() => void)[] = [];
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
    if (options.front === true) this.fronted.add(key);
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
    this.ready.front.clear();
    this.ready.normal.clear();
    this.dirty.clear();
    this.fronted.clear();
    this.metrics?.depth(0);
    this.settleIdle();
    await this.onIdle();
  }

  private dispatch(key: K): void {
    (this.fronted.delete(key) ? this.ready.front : this.ready.normal).push(key);
    this.pump();
  }

  /** Starts ready keys while workers are free. */
  private pump(): void {
    while (this.started && this.running < this.concurrency) {
      const key = this.ready.front.shift() ?? this.ready.normal.shift();
      if (key === undefined) break;
      this.running++;
      void this.runKey(key).finally(() => {
        this.running--;
        this.pump();
        this.settleIdle();
      });
    }
  }

  private isIdle(): boolean {
    return this.running === 0 && this.ready.front.length === 0 && this.ready.normal.length === 0;
  }

  private settleIdle(): void {
    if (!this.isIdle() || this.idleWaiters.length === 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  private async runKey(key: K): Promise<void> {
    if (!this.dirty.has(key)) return; // not waiting any more (nothing removes a ready key today; cheap to be sure)
    this.dirty.delete(key);
    this.processing.add(key);
    const startedMs = this.clock.now();
    this.metrics?.queued((startedMs - (this.readySinceMs.get(key) ?? startedMs)) / 1000);
    this.readySinceMs.delete(key);
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
      // Added again while it ran: run it once more, now that no other worker holds it.
      if (this.dirty.has(key) && !this.shuttingDown) this.dispatch(key);
    }
  }
}

/** A first-in first-out list with O(1) shift (an array's shift moves every element). */
class Fifo<T> {
  private items: T[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.head++;
    // Drop the consumed half now and then, so memory follows the length.
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
  }
}
