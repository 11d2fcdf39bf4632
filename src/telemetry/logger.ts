/** The one place a root logger is made; everything else receives a logger and derives children. */
import { pino, destination, stdTimeFunctions, type Logger, type Level } from 'pino';

/** The root pino logger (JSON lines to stderr by default); everything else derives children from it. */
export function createLogger(options: { level?: Level | 'silent'; destination?: number } = {}): Logger {
  return pino(
    { level: options.level ?? 'info', base: { name: 'hyperlet' }, timestamp: stdTimeFunctions.isoTime },
    destination({ dest: options.destination ?? 2, sync: false }),
  );
}

/** A logger that drops everything, for tests and benchmarks. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
