/**
 * Work queue throughput: 100,000 adds over 10,000 distinct keys with 4 workers whose work is a
 * microtask, once with every key in one scope and once shared fairly between 10 scopes (as the
 * controller runs it: source and namespace). Prints adds/s, processed count (dedup proof: far
 * fewer than the adds), whether any key ran on two workers at once, and the fair/plain ratio.
 */
import { WorkQueue } from '../src/queue/work-queue.js';

export async function queueBench(): Promise<Record<string, number | string>> {
  const plain = await run(false);
  const fair = await run(true);
  return {
    ...plain, fairAddsPerSecond: fair.addsPerSecond, fairProcessed: fair.processed, fairOverlaps: fair.overlaps,
    fairToPlainRatio: +(fair.addsPerSecond / plain.addsPerSecond).toFixed(2),
  };
}

interface QueueFigures {
  adds: number; distinctKeys: number; workers: number; processed: number; dedupRatio: number;
  seconds: number; addsPerSecond: number; processedPerSecond: number; overlaps: number;
}

async function run(fairness: boolean): Promise<QueueFigures> {
  const ADDS = 100_000;
  const KEYS = 10_000;
  const running = new Set<string>();
  let overlaps = 0;
  let processed = 0;
  const q = new WorkQueue<string>({
    concurrency: 4,
    ...(fairness ? { fairness: { scopeOf: (key: string) => `scope-${Number(key.slice(4)) % 10}` } } : {}),
    process: async (key) => {
      if (running.has(key)) overlaps++;
      running.add(key);
      await Promise.resolve();
      processed++;
      running.delete(key);
    },
  });
  const started = process.hrtime.bigint();
  // All adds land while the workers are busy, as in a relist burst: each waiting key is queued once.
  for (let i = 0; i < ADDS; i++) q.add(`key-${i % KEYS}`);
  await q.onIdle();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return {
    adds: ADDS, distinctKeys: KEYS, workers: 4, processed, dedupRatio: +(ADDS / processed).toFixed(2),
    seconds: +seconds.toFixed(3), addsPerSecond: Math.round(ADDS / seconds), processedPerSecond: Math.round(processed / seconds), overlaps,
  };
}
