/**
 * The one fake clock of the unit tier: a Clock (src/shared/clock.ts) whose time moves only when a
 * test says so. Timers run in due order, each at its own time, as sinon's fake timers do, but
 * without replacing globals, so real I/O in the same test keeps working.
 */
import type { Clock } from '../../src/shared/clock.js';

interface Timer {
  readonly atMs: number;
  readonly seq: number;
  readonly fn: () => void;
}

/** A Clock driven by `advance`; see the file comment. */
export class FakeClock implements Clock {
  private timers: Timer[] = [];
  private seq = 0;

  /** Starts at `ms` (default 2026-01-01T00:00:00Z). */
  constructor(public ms = Date.UTC(2026, 0, 1)) {}

  now(): number {
    return this.ms;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const timer = { atMs: this.ms + Math.max(0, ms), seq: this.seq++, fn };
    this.timers.push(timer);
    return timer;
  }

  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((t) => t !== handle);
  }

  /** Timers not yet run. */
  get pending(): number {
    return this.timers.length;
  }

  /** When the next timer is due, or undefined when none is set. */
  get nextDueMs(): number | undefined {
    return this.timers.reduce<number | undefined>((min, t) => (min === undefined || t.atMs < min ? t.atMs : min), undefined);
  }

  /**
   * Moves time forward by `ms`, running every timer that comes due at its own time (a timer set by
   * a timer runs too if it falls inside the window), and lets promise callbacks settle after each.
   */
  async advance(ms: number): Promise<void> {
    const end = this.ms + ms;
    for (;;) {
      const next = this.timers.filter((t) => t.atMs <= end).sort((a, b) => a.atMs - b.atMs || a.seq - b.seq)[0];
      if (next === undefined) break;
      this.timers = this.timers.filter((t) => t !== next);
      this.ms = next.atMs;
      next.fn();
      await settle();
    }
    this.ms = end;
    await settle();
  }
}

/** Lets pending promise callbacks run (a few turns of the microtask queue and one macrotask). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
  await new Promise<void>((r) => setImmediate(r));
}
