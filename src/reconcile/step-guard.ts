/**
 * Keeps the reconciler from hot-looping on one object, whatever the provider reports.
 *
 * Rules:
 * - A step asked for again right after it ran has not shown its effect yet (a guest still
 *   ballooning to a new memory size, a domain still booting). The pass that sees it does not act;
 *   it waits, and the caller requeues with the queue's backoff. Steps are compared by what they
 *   ask for (generation, op, field paths and desired values), never by observed values, which
 *   move while a change takes effect. Bounded: after `waitPasses` waits the step runs again (its
 *   call may have been lost), then is waited for again, ever longer as the queue's backoff grows.
 * - An object acts at most `actsPerSecond` times a second once a burst of `actBurst` is spent (a
 *   token bucket per object): a legitimate sequence (delete, create, start) goes at once, a loop
 *   between different steps never goes faster than that. A step that throws gives its token back:
 *   errors are spaced by the queue's backoff.
 *
 * Guarantees: no timers and no I/O, only bookkeeping over the injected clock; an object that
 * settled (no step due) is forgotten once its bucket is full again (at once, or by a sweep when the
 * table has doubled), so memory follows the objects that acted in the last second or so.
 */
import type { Clock } from '../shared/clock.js';
import { systemClock } from '../shared/clock.js';
import type { Step } from './plan.js';

/** Whether a pass may run its step now, and if not, what it waits for. */
export type Admission =
  /** Run it. `repeat`: the same step ran before and its effect is still not visible. */
  | { readonly act: true; readonly repeat: boolean }
  /** The last run of this same step has not shown its effect yet: come back with backoff. */
  | { readonly act: false; readonly waitingFor: 'effect' }
  /** The object acted too often lately: come back after `afterMs`. */
  | { readonly act: false; readonly waitingFor: 'rate'; readonly afterMs: number };

/** Limits of the guard; the defaults suit lxc-* and libvirt, whose steps take 0.1–2 s. */
export interface StepGuardOptions {
  readonly clock?: Clock;
  /** Passes that wait for a repeated step's effect before it runs again (default 1). */
  readonly waitPasses?: number;
  /** Steps one object may run back to back (default 4: delete, create, start and one spare). */
  readonly actBurst?: number;
  /** Steps a second one object may run once its burst is spent (default 4: a few, never a hot loop). */
  readonly actsPerSecond?: number;
}

interface KeyState {
  /** What the last run step asked for, until the object settles or the step fails. */
  intent: string | undefined;
  /** Passes that saw `intent` asked for again and waited since it last ran. */
  waits: number;
  tokens: number;
  refilledAtMs: number;
}

/** What `step` of an object at `generation` asks for: equal strings ask for the same thing. */
export function stepIntent(step: Step, generation: number): string {
  switch (step.op) {
    case 'update': {
      const wanted = step.changes.map((c) => [c.path, c.to ?? null] as const).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      return `${generation} update ${JSON.stringify(wanted)}`;
    }
    case 'setState': return `${generation} setState ${step.to}`;
    case 'delete': return `${generation} delete ${step.reason}`;
    case 'restore': return `${generation} restore ${step.request}`;
    case 'snapshot': return `${generation} snapshot ${step.snapshot}`;
    default: return `${generation} ${step.op}`;
  }
}

/** Below this many objects the table is never swept: a sweep would cost more than it frees. */
const MIN_SWEEP_SIZE = 1_024;

/** Per-object admission of steps: waits for effects in progress and caps how often an object acts. */
export class StepGuard<K extends string = string> {
  private readonly states = new Map<K, KeyState>();
  /** Table size that triggers the next sweep of settled objects with full buckets. */
  private sweepAtSize = MIN_SWEEP_SIZE;
  private readonly clock: Clock;
  private readonly waitPasses: number;
  private readonly actBurst: number;
  private readonly actsPerSecond: number;

  constructor(options: StepGuardOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.waitPasses = options.waitPasses ?? 1;
    this.actBurst = options.actBurst ?? 4;
    this.actsPerSecond = options.actsPerSecond ?? 4;
    if (this.waitPasses < 0 || this.actBurst < 1 || this.actsPerSecond <= 0) {
      throw new TypeError('step guard needs waitPasses >= 0, actBurst >= 1 and actsPerSecond > 0');
    }
  }

  /**
   * Decides whether `key` may run a step asking for `intent` now. An admitted step is counted as
   * run (call `failed` if it throws); a refused one changes nothing but the wait count.
   */
  admit(key: K, intent: string): Admission {
    const state = this.stateOf(key);
    const repeat = state.intent === intent;
    if (repeat && state.waits < this.waitPasses) {
      state.waits++;
      return { act: false, waitingFor: 'effect' };
    }
    this.refill(state);
    if (state.tokens < 1) return { act: false, waitingFor: 'rate', afterMs: Math.ceil(((1 - state.tokens) / this.actsPerSecond) * 1000) };
    state.tokens -= 1;
    state.intent = intent;
    state.waits = 0;
    return { act: true, repeat };
  }

  /**
   * The step admitted last for `key` threw: it is not waited for and its token is given back, since
   * errors have their own backoff (the queue's rate limiter) and must not also use up the bucket.
   */
  failed(key: K): void {
    const state = this.states.get(key);
    if (state === undefined) return;
    state.intent = undefined;
    state.waits = 0;
    state.tokens = Math.min(this.actBurst, state.tokens + 1);
  }

  /** `key` has no step due (converged, held or settling on its own): nothing is in progress. */
  settled(key: K): void {
    const state = this.states.get(key);
    if (state === undefined) return;
    state.intent = undefined;
    state.waits = 0;
    this.refill(state);
    if (state.tokens >= this.actBurst) this.states.delete(key);
  }

  /** Drops everything known of `key` (the object is gone). */
  forget(key: K): void {
    this.states.delete(key);
  }

  /** Objects the guard holds state for (for tests and benchmarks: it must not grow with idle objects). */
  get size(): number {
    return this.states.size;
  }

  private stateOf(key: K): KeyState {
    let state = this.states.get(key);
    if (state === undefined) {
      if (this.states.size >= this.sweepAtSize) this.sweep();
      state = { intent: undefined, waits: 0, tokens: this.actBurst, refilledAtMs: this.clock.now() };
      this.states.set(key, state);
    }
    return state;
  }

  /** Forgets settled objects whose bucket is full again; the next sweep waits for the table to double. */
  private sweep(): void {
    for (const [key, state] of this.states) {
      if (state.intent !== undefined) continue;
      this.refill(state);
      if (state.tokens >= this.actBurst) this.states.delete(key);
    }
    this.sweepAtSize = Math.max(MIN_SWEEP_SIZE, 2 * this.states.size);
  }

  private refill(state: KeyState): void {
    const now = this.clock.now();
    state.tokens = Math.min(this.actBurst, state.tokens + ((now - state.refilledAtMs) / 1000) * this.actsPerSecond);
    state.refilledAtMs = now;
  }
}
