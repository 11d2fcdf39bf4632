/**
 * What a successful reconcile pass asks of the queue (controller-runtime's `Result`, kube-rs's
 * `Action`). The reconciler only returns one of these or throws; the controller alone turns it
 * into queue calls, and the queue's rate limiter alone owns backoff.
 */
export type Result =
  /** Nothing to wait for: the next event or resync for this key brings it back. */
  | { readonly kind: 'awaitChange' }
  /** Come back after the queue's backoff for this key (a step whose effect is not visible yet). */
  | { readonly kind: 'requeue' }
  /** Come back after exactly `afterMs`, backoff reset: a poll (dependencies, a settling instance). */
  | { readonly kind: 'requeueAfter'; readonly afterMs: number }
  /** The object is under way: run its next pass now, ahead of objects not started yet. */
  | { readonly kind: 'nextStep' };

/** Nothing to wait for: the next event for this key brings us back (kube-rs `await_change`). */
export const awaitChange = (): Result => ({ kind: 'awaitChange' });

/**
 * Come back after the rate limiter's delay for this key, which grows with each such pass until
 * a pass returns anything else (controller-runtime `Result{Requeue: true}`).
 */
export const requeue = (): Result => ({ kind: 'requeue' });

/** Come back after `ms` even if nothing changes, with the key's backoff reset (crossplane's poll). */
export const requeueAfter = (ms: number): Result => ({ kind: 'requeueAfter', afterMs: ms });

/**
 * Come back at once to see a step's effect and run the next one, ahead of keys queued normally:
 * an object in the middle of its steps finishes before others start (a create is followed by its
 * start, not by 49 more creates).
 */
export const nextStep = (): Result => ({ kind: 'nextStep' });

/** Whether `result` asks to come back without an event (any kind but awaitChange). */
export const comesBack = (result: Result): boolean => result.kind !== 'awaitChange';
