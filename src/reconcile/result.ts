/** What a reconcile pass asks of the queue when it succeeds. */
export type Result = { readonly requeueAfterMs?: number };

/** Nothing to wait for: the next event for this key brings us back (kube-rs `await_change`). */
export const awaitChange = (): Result => ({});

/** Come back even if nothing changes: a step in flight, or drift polling (crossplane). */
export const requeueAfter = (ms: number): Result => ({ requeueAfterMs: ms });
