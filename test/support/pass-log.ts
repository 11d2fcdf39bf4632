/**
 * Pass counting for a daemon running in another process: at log level debug it writes one line
 * `{"key": …, "msg": "pass done"}` per finished reconcile pass (daemon.ts). A test that must show
 * that nothing happened waits for N more passes of the keys concerned, then asserts, instead of
 * sleeping through a fixed window. (In-process daemons use PassCounter directly.)
 */
import { readFile } from 'node:fs/promises';
import { until } from './until.js';

/** Passes of `key` the daemon's log file reports as done so far. */
export async function passesInLog(logFile: string, key: string): Promise<number> {
  const text = await readFile(logFile, 'utf8').catch(() => '');
  let n = 0;
  for (const line of text.split('\n')) {
    if (!line.includes('"pass done"')) continue;
    try {
      const entry = JSON.parse(line) as { msg?: string; key?: string };
      if (entry.msg === 'pass done' && entry.key === key) n++;
    } catch {
      // a line being written: counted next time
    }
  }
  return n;
}

/**
 * Waits until each of `keys` has made `n` whole passes that started after this call: one pass more
 * than that is waited for, since a pass in flight now started before it.
 */
export async function morePassesInLog(logFile: string, keys: readonly string[], n: number, timeoutMs = 60_000): Promise<void> {
  const start = new Map<string, number>();
  for (const key of keys) start.set(key, await passesInLog(logFile, key));
  await until(`${n} more passes of ${keys.join(', ')}`, async () => {
    for (const key of keys) if ((await passesInLog(logFile, key)) < (start.get(key) ?? 0) + n + 1) return undefined;
    return true;
  }, timeoutMs, 100);
}
