/** The one place a root logger is made; everything else receives a logger and derives children. */
import { pino, destination, stdTimeFunctions, type Logger, type Level } from 'pino';

/**
 * The daemon's root logger. With `redact` (the daemon's Redactor.text), every line passes it just
 * before it is written, whatever was logged (objects, errors with their causes, git's stderr).
 */
export function createLogger(options: { level?: Level | 'silent'; destination?: number; redact?: (line: string) => string } = {}): Logger {
  const redact = options.redact;
  return pino(
    {
      level: options.level ?? 'info', base: { name: 'hyperlet' }, timestamp: stdTimeFunctions.isoTime,
      ...(redact === undefined ? {} : { hooks: { streamWrite: (line: string) => redact(line) } }),
    },
    destination({ dest: options.destination ?? 2, sync: false }),
  );
}

/** A logger that drops everything, for tests and benchmarks. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
