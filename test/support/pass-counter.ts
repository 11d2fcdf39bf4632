/**
 * Counts the passes each key makes through a work queue. A test that must show that nothing
 * happened (no delete, no retry, no update) waits for N more whole passes of the keys concerned
 * and then asserts, instead of sleeping through a window that is either too short to prove
 * anything or needlessly long.
 */
import type { WorkQueue } from '../../src/queue/work-queue.js';
import { until } from './until.js';

/** Passes started and finished per key, from `WorkQueue.onPass`. */
export class PassCounter<K extends string> {
  private readonly started = new Map<K, number>();
  private readonly finished = new Map<K, number>();
  private readonly stop: () => void;

  constructor(queue: Pick<WorkQueue<K>, 'onPass'>) {
    this.stop = queue.onPass((key, event) => {
      const counts = event === 'started' ? this.started : this.finished;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    });
  }

  /** Passes of `key` finished so far (since this counter was made). */
  of(key: K): number {
    return this.finished.get(key) ?? 0;
  }

  /**
   * Resolves once each of `keys` has made `n` more whole passes, each started after `kick` (a
   * resync or a change event that queues them) was called for its round.
   */
  async more(keys: readonly K[], n: number, kick: () => unknown, timeoutMs = 20_000): Promise<void> {
    for (let round = 1; round <= n; round++) {
      // A pass already running when we kick does not count: wait for the one after it.
      const target = new Map(keys.map((k) => [k, (this.started.get(k) ?? 0) + 1]));
      await kick();
      await until(`pass ${round} of ${n} of ${keys.join(', ')}`, () => keys.every((k) => this.of(k) >= (target.get(k) ?? 0)), timeoutMs, 5);
    }
  }

  /** Stops counting. */
  close(): void {
    this.stop();
  }
}
