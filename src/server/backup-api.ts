/**
 * The backup routes of the HTTP API, behind the token like every POST:
 *   POST /api/v1/objects/KIND/NAMESPACE/NAME/backup?to=FILE[&compression=gzip]
 *   POST /api/v1/restore?from=FILE[&as=NAME][&namespace=NS]
 * Checks (the object, the host policy on the path, the provider) answer 4xx before anything is
 * written. Once accepted, the answer is 200 and a stream of JSON lines: `{"progress":BYTES}` now
 * and then (every 8 MiB of archive data), then one `{"done":{...}}` or `{"error":"...","reason":"..."}`.
 * A client that goes away cancels the run (its tools are killed, the partial file removed).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** A backup or restore accepted by the daemon, ready to run. */
export interface BackupRun {
  /** Runs it; `onProgress` gets archive bytes so far. Resolves to what the `done` line says. */
  run(onProgress: (bytes: number) => void, signal: AbortSignal): Promise<Record<string, unknown>>;
}

/** What the daemon offers the backup routes. */
export interface BackupApi {
  /** Checks and prepares a backup of KIND NAMESPACE/NAME to `to`; throws BackupRequestError. */
  backup(kind: string, namespace: string, name: string, params: URLSearchParams): Promise<BackupRun>;
  /** Checks and prepares a restore from `from`; throws BackupRequestError. */
  restore(params: URLSearchParams): Promise<BackupRun>;
}

/** A request the daemon refuses before running it; `status` is the HTTP answer. */
export class BackupRequestError extends Error {
  readonly isBackupRequestError = true;
  constructor(readonly status: 400 | 403 | 404 | 409, message: string) {
    super(message);
    this.name = 'BackupRequestError';
  }
}

/** Whether `err` is a BackupRequestError (by brand). */
export function isBackupRequestError(err: unknown): err is BackupRequestError {
  return typeof err === 'object' && err !== null && (err as { isBackupRequestError?: unknown }).isBackupRequestError === true;
}

/** Progress lines are sent at most once per this many archive bytes. */
const PROGRESS_STEP_BYTES = 8 * 1024 * 1024;

/**
 * Answers one backup route: prepares the run (4xx with `{error}` when refused), then streams its
 * progress and outcome as JSON lines. `redact` passes every line (the daemon's Redactor).
 */
export async function serveBackupRun(
  req: IncomingMessage, res: ServerResponse, prepare: () => Promise<BackupRun>, redact: (text: string) => string,
): Promise<void> {
  let prepared: BackupRun;
  try {
    prepared = await prepare();
  } catch (err) {
    const status = isBackupRequestError(err) ? err.status : 500;
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(redact(`${JSON.stringify({ error: (err as Error).message })}\n`));
    return;
  }
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  const abort = new AbortController();
  // The client went away before the end: stop the tools; the run removes what it made.
  res.on('close', () => {
    if (!res.writableFinished) abort.abort(new Error('the client closed the connection'));
  });
  req.resume();
  const line = (value: unknown): void => {
    if (!res.writableEnded) res.write(redact(`${JSON.stringify(value)}\n`));
  };
  let nextProgress = 0;
  try {
    const done = await prepared.run((bytes) => {
      if (bytes < nextProgress) return;
      nextProgress = bytes + PROGRESS_STEP_BYTES;
      line({ progress: bytes });
    }, abort.signal);
    line({ done });
  } catch (err) {
    line({ error: (err as Error).message, reason: (err as { reason?: string }).reason ?? 'Failed' });
  }
  res.end();
}
