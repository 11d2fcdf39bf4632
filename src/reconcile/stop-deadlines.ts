/**
 * Graceful stops that do not hold a worker: the reconciler asks the instance to shut down
 * (Provider.requestStop), returns the key to the queue, looks again with a bounded backoff, asks
 * again now and then (a first press can be lost while a guest boots), and forces the stop
 * (Provider.forceStop) once spec.gracefulStopSeconds have passed since the first request.
 *
 * Guarantees: the deadline is kept in a StopDeadlines table written before the first request, so
 * a daemon restart neither forces early nor starts the grace again; `nextStopMove` is pure and
 * never asks for a pass sooner than `minPollMs` unless the deadline itself comes sooner.
 * Caveats: a shortened gracefulStopSeconds applies to a stop under way (the earlier deadline wins);
 * a longer one does not extend it.
 */

/** One graceful stop under way: when it was first asked for and when it is forced. */
export interface StopDeadline {
  readonly requestedAtMs: number;
  readonly deadlineMs: number;
}

/**
 * Where graceful stops under way are kept, by object key (the state DB in the daemon). `set` is
 * durable when it returns: the reconciler calls it before asking the instance to shut down.
 */
export interface StopDeadlines {
  get(key: string): StopDeadline | undefined;
  set(key: string, deadline: StopDeadline): void;
  /** Forgets `key`'s stop; a key with none is no error. */
  delete(key: string): void;
}

/** StopDeadlines in memory: for a reconciler without a state DB (a restart forgets them). */
export class MemoryStopDeadlines implements StopDeadlines {
  private readonly rows = new Map<string, StopDeadline>();

  get(key: string): StopDeadline | undefined {
    return this.rows.get(key);
  }

  set(key: string, deadline: StopDeadline): void {
    this.rows.set(key, deadline);
  }

  delete(key: string): void {
    this.rows.delete(key);
  }
}

/** How a graceful stop polls and asks again; the defaults suit lxc-stop and ACPI shutdown. */
export interface StopWaitOptions {
  /** Shortest wait between two looks (default 1 s: an instance that obeys is seen stopped soon). */
  readonly minPollMs?: number;
  /** Longest wait between two looks (default 5 s); a look is never later than the deadline. */
  readonly maxPollMs?: number;
  /** Time between two shutdown requests of one stop (default 5 s, as libvirt's graceful stop re-pressed ACPI). */
  readonly resendMs?: number;
}

/** What a pass does about a graceful stop that is due. */
export type StopMove =
  /** Ask the instance to shut down now (first time: record `deadline` first), then come back after `afterMs`. */
  | { readonly move: 'request'; readonly deadline: StopDeadline; readonly first: boolean; readonly afterMs: number }
  /** Nothing to do: the instance has been asked; come back after `afterMs`. */
  | { readonly move: 'wait'; readonly deadline: StopDeadline; readonly afterMs: number }
  /** The grace is over: stop it by force now. */
  | { readonly move: 'force'; readonly deadline: StopDeadline };

/** The facts `nextStopMove` decides from. */
export interface StopFacts {
  readonly nowMs: number;
  readonly gracefulStopSeconds: number;
  /** The stop under way, from the StopDeadlines table; undefined: none yet. */
  readonly pending: StopDeadline | undefined;
  /** When this process last asked this instance to shut down; undefined: not since it started. */
  readonly lastRequestMs: number | undefined;
  /** False while the instance is already on its way down (Stopping): wait or force, never ask again. */
  readonly mayRequest: boolean;
}

/**
 * Decides the next move of a graceful stop. Pure. The wait between looks grows with the time
 * since the first request (half of it, between minPollMs and maxPollMs: quick for instances that
 * obey, few passes for those that do not) and never runs past the deadline, so the force is on time.
 */
export function nextStopMove(facts: StopFacts, options: StopWaitOptions = {}): StopMove {
  const minPollMs = options.minPollMs ?? 1_000;
  const maxPollMs = options.maxPollMs ?? 5_000;
  const resendMs = options.resendMs ?? 5_000;
  const { nowMs, pending } = facts;
  const graceMs = Math.max(0, facts.gracefulStopSeconds) * 1000;
  if (pending === undefined) {
    const deadline = { requestedAtMs: nowMs, deadlineMs: nowMs + graceMs };
    if (graceMs === 0 || !facts.mayRequest) return { move: 'force', deadline };
    return { move: 'request', deadline, first: true, afterMs: Math.min(minPollMs, graceMs) };
  }
  // A shortened grace applies at once; a longer one does not move a deadline already promised.
  const deadline = { ...pending, deadlineMs: Math.min(pending.deadlineMs, pending.requestedAtMs + graceMs) };
  const remainingMs = deadline.deadlineMs - nowMs;
  if (remainingMs <= 0) return { move: 'force', deadline };
  const pollMs = Math.min(maxPollMs, Math.max(minPollMs, (nowMs - deadline.requestedAtMs) / 2));
  const afterMs = Math.ceil(Math.min(pollMs, remainingMs));
  const due = facts.lastRequestMs === undefined || nowMs - facts.lastRequestMs >= resendMs;
  if (facts.mayRequest && due) return { move: 'request', deadline, first: false, afterMs };
  return { move: 'wait', deadline, afterMs };
}
