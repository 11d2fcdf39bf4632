/** A mistake in how a command was called: printed with a hint, exit code 2. */
export class UsageError extends Error {
  readonly isUsageError = true;
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Whether `err` is a UsageError (by brand, across module copies). */
export const isUsageError = (err: unknown): err is UsageError =>
  typeof err === 'object' && err !== null && (err as { isUsageError?: unknown }).isUsageError === true;

/** Parses "500ms", "30s", "5m", "1h" or plain milliseconds. */
export function parseDurationMs(flag: string, value: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?$/.exec(value.trim());
  if (m === null) throw new UsageError(`${flag}: cannot read duration ${JSON.stringify(value)}; use e.g. 500ms, 30s, 5m`);
  const n = Number(m[1]);
  const factor = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }[m[2] ?? 'ms'] ?? 1;
  return Math.round(n * factor);
}

/** The integer value of `flag`; throws UsageError naming the flag when it is not a positive integer. */
export function parsePositiveInt(flag: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${flag}: must be a positive integer (is ${JSON.stringify(value)})`);
  return n;
}
