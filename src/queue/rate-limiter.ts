/**
 * How long a key waits before its next try: client-go's MaxOf(per-item exponential, token bucket).
 *
 * Guarantees: a key's delay doubles with each failure from `baseDelayMs` up to `maxDelayMs`;
 * `forget` resets it. The bucket spaces retries of all keys to at most `qps` a second after a
 * burst of `burst`.
 * Caveats: jitter (a fraction of the delay, added) is random unless `random` is injected.
 */
import type { Clock } from '../shared/clock.js';
import { systemClock } from '../shared/clock.js';

/** The backoff curve and the bucket; defaults cite their sources. */
export interface RateLimiterOptions {
  /** 1 s: crossplane uses 1 s–60 s; client-go's 5 ms suits API calls, not lxc-start. */
  readonly baseDelayMs?: number;
  /** 5 min, the same ceiling as crossplane's and client-go's controllers. */
  readonly maxDelayMs?: number;
  /** Up to this fraction of the delay is added at random so failed keys do not retry in lockstep. */
  readonly jitter?: number;
  /** Retries a second across all keys (client-go: 10). */
  readonly qps?: number;
  /** Retries allowed at once before qps applies (client-go: 100). */
  readonly burst?: number;
  readonly clock?: Clock;
  readonly random?: () => number;
}

/** Per-key exponential backoff combined with a global token bucket (client-go's MaxOf). Not thread-safe; the queue owns it. */
export class RateLimiter {
  private readonly failures = new Map<string, number>();
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly jitter: number;
  private readonly qps: number;
  private readonly burst: number;
  private readonly clock: Clock;
  private readonly random: () => number;
  private tokens: number;
  private lastRefillMs: number;

  constructor(options: RateLimiterOptions = {}) {
    this.baseDelayMs = options.baseDelayMs ?? 1_000;
    this.maxDelayMs = options.maxDelayMs ?? 300_000;
    this.jitter = options.jitter ?? 0.1;
    this.qps = options.qps ?? 10;
    this.burst = options.burst ?? 100;
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    if (this.baseDelayMs < 0 || this.maxDelayMs < this.baseDelayMs) throw new TypeError('rate limiter needs 0 <= baseDelayMs <= maxDelayMs');
    if (this.qps <= 0 || this.burst < 1) throw new TypeError('rate limiter needs qps > 0 and burst >= 1');
    this.tokens = this.burst;
    this.lastRefillMs = this.clock.now();
  }

  /** The delay before `key`'s next try; counts one more failure for it and takes a bucket token. */
  when(key: string): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    const exponential = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** Math.min(n, 52));
    const itemDelay = Math.min(this.maxDelayMs, exponential * (1 + this.jitter * this.random()));
    return Math.max(itemDelay, this.reserveToken());
  }

  /** Resets `key`'s failure count (call on success). */
  forget(key: string): void {
    this.failures.delete(key);
  }

  /** How many times `key` has failed since it was last forgotten. */
  numRequeues(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** Takes one token, going into debt if needed; returns how long until that token exists. */
  private reserveToken(): number {
    const now = this.clock.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.lastRefillMs) / 1000) * this.qps);
    this.lastRefillMs = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens / this.qps) * 1000);
  }
}
