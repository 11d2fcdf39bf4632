/**
 * The error kinds the controller tells apart, each a class with a brand and a guard (cockatiel
 * style): no instanceof across modules and no string matching.
 */

/** Retrying cannot help until the object changes (a pool that does not exist, a disk asked to shrink). */
export class TerminalError extends Error {
  readonly isTerminalError = true;
  /** CamelCase reason for the Synced condition. */
  readonly reason: string;
  constructor(reason: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'TerminalError';
    this.reason = reason;
  }
}

/** A write lost a race with a newer version (HTTP 409): retry on fresh data, quietly. */
export class ConflictError extends Error {
  readonly isConflictError = true;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ConflictError';
  }
}

/**
 * A step that has begun but cannot finish yet (an image still downloading in the background):
 * not a failure. The reconciler says so in status (Reconciling=True with this reason and message)
 * and comes back after `retryAfterMs`, without backoff counting or a Warning event.
 */
export class StepPendingError extends Error {
  readonly isStepPendingError = true;
  /** CamelCase reason for the Reconciling condition ("DownloadingImage"). */
  readonly reason: string;
  readonly retryAfterMs: number;
  constructor(reason: string, message: string, retryAfterMs: number) {
    super(message);
    this.name = 'StepPendingError';
    this.reason = reason;
    this.retryAfterMs = retryAfterMs;
  }
}

const branded = (err: unknown, brand: string): boolean =>
  typeof err === 'object' && err !== null && (err as Record<string, unknown>)[brand] === true;

/** Whether `err` is a TerminalError (by brand, across module copies). */
export const isTerminalError = (err: unknown): err is TerminalError => branded(err, 'isTerminalError');
/** Whether `err` is a ConflictError (by brand, across module copies). */
export const isConflictError = (err: unknown): err is ConflictError => branded(err, 'isConflictError');
/** Whether `err` is a StepPendingError (by brand, across module copies). */
export const isStepPendingError = (err: unknown): err is StepPendingError => branded(err, 'isStepPendingError');
/** Whether `err` is an abort (an AbortSignal fired): not a failure, nothing to report. */
export const isAbortError = (err: unknown): boolean =>
  typeof err === 'object' && err !== null && (err as { name?: unknown }).name === 'AbortError';

/** The message of any thrown value, with its causes, for status and logs. */
export function errorMessage(err: unknown): string {
  const parts: string[] = [];
  let current: unknown = err;
  for (let depth = 0; current !== undefined && current !== null && depth < 5; depth++) {
    parts.push(current instanceof Error ? current.message : typeof current === 'string' ? current : JSON.stringify(current));
    current = current instanceof Error ? current.cause : undefined;
  }
  return parts.join(': ');
}
