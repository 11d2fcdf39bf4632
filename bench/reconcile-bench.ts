/**
 * Reconcile overhead with a zero-latency fake provider and the real core (store, queue,
 * controller, reconciler, state DB): 10,000 objects from nothing to all Ready (wall and CPU time,
 * peak RSS; targets < 2 s, < 120 MB), then a full resync of the same unchanged objects (CPU time,
 * provider calls, actions and status writes; targets < 1 s, one batch call, zero, zero).
 * CPU seconds are the figure to compare on a shared machine: wall time counts other processes too.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Controller } from '../src/reconcile/controller.js';
import { ObservationCache } from '../src/reconcile/observation-cache.js';
import { ProviderHealth } from '../src/reconcile/provider-health.js';
import { Reconciler } from '../src/reconcile/reconciler.js';
import { RateLimiter } from '../src/queue/rate-limiter.js';
import { StateDb } from '../src/state/state-db.js';
import { StateStatusWriter } from '../src/status/state-status-writer.js';
import { DesiredStore } from '../src/store/desired-store.js';
import type { ObjectKey } from '../src/store/object-key.js';
import { silentLogger } from '../src/telemetry/logger.js';
import { container } from '../test/fakes/desired-objects.js';
import { FakeProvider } from '../test/fakes/fake-provider.js';

export async function reconcileBench(count = 10_000): Promise<Record<string, number | string>> {
  const dir = mkdtempSync(join(tmpdir(), 'hyperlet-bench-'));
  const logger = silentLogger();
  const db = new StateDb(join(dir, 'state.db'));
  const writer = new StateStatusWriter(db, 'dir', logger);
  const backends = new Map([['dir', { source: { id: 'dir', description: 'bench', start: () => Promise.resolve(), problems: () => [] }, statusWriter: writer, recorder: writer, records: writer }]]);
  const store = new DesiredStore();
  const provider = new FakeProvider('Container');
  const cache = new ObservationCache();
  const health = new ProviderHealth(provider, logger);
  // Counted as each object turns Ready: no polling of 10,000 statuses while the run is timed.
  const ready = new Set<string>();
  let allReadyNow: () => void = () => {};
  const allReadyAt = new Promise<void>((r) => { allReadyNow = r; });
  const onReady = (d: { key: string }): void => {
    ready.add(d.key);
    if (ready.size === count) allReadyNow();
  };
  const reconciler = new Reconciler({ store, backends, provider, cache, health, node: 'bench', logger, onReady });
  const controller = new Controller({
    kind: 'Container', provider, reconciler, store, backends, cache, health, logger, concurrency: 4, resyncMs: 3_600_000,
    rateLimiter: new RateLimiter({ qps: 1_000_000, burst: 1_000_000 }),
  });
  store.onChange((key) => controller.enqueue(key));

  let peakRss = process.memoryUsage().rss;
  const sampler = setInterval(() => { peakRss = Math.max(peakRss, process.memoryUsage().rss); }, 20);
  const setupStarted = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    const d = container(`c${i}`, { resources: { cpu: 1, memory: '128Mi' } });
    const { id, generation } = db.identify(d.key, { source: 'dir', kind: 'Container', namespace: 'default', name: d.object.metadata.name }, d.specHash);
    store.upsert({ ...d, id, generation });
  }
  const setupSeconds = Number(process.hrtime.bigint() - setupStarted) / 1e9;
  const started = process.hrtime.bigint();
  const convergeCpu0 = process.cpuUsage();
  await controller.start();
  await allReadyAt;
  const convergeSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  const convergeCpu = process.cpuUsage(convergeCpu0);
  const isReady = (key: ObjectKey): boolean => writer.lastWritten(key)?.conditions.find((c) => c.type === 'Ready')?.status === 'True';
  const readyStatuses = store.keys().filter(isReady).length;
  if (readyStatuses !== count) throw new Error(`cannot trust the run: ${readyStatuses} of ${count} statuses say Ready`);
  clearInterval(sampler);
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
  await controller.queue.onIdle();

  const callsBefore = provider.calls.length;
  const writesBefore = db.listObjects().reduce((n, r) => n + (r.status === undefined ? 0 : 1), 0);
  let statusWrites = 0;
  const originalWrite = writer.write.bind(writer);
  writer.write = (d, s) => { statusWrites++; return originalWrite(d, s); };
  const cpu0 = process.cpuUsage();
  const wall0 = process.hrtime.bigint();
  await controller.resync();
  await controller.queue.onIdle();
  const cpu = process.cpuUsage(cpu0);
  const resyncWall = Number(process.hrtime.bigint() - wall0) / 1e9;
  const resyncCalls = provider.calls.slice(callsBefore);
  await controller.stop();
  db.close();
  rmSync(dir, { recursive: true, force: true });
  return {
    objects: count,
    declareSeconds: +setupSeconds.toFixed(2),
    convergeSeconds: +convergeSeconds.toFixed(2),
    convergeCpuSeconds: +((convergeCpu.user + convergeCpu.system) / 1e6).toFixed(2),
    peakRssMB: Math.round(peakRss / 2 ** 20),
    createCalls: provider.count('create'),
    resyncCpuSeconds: +((cpu.user + cpu.system) / 1e6).toFixed(3),
    resyncWallSeconds: +resyncWall.toFixed(3),
    resyncProviderCalls: resyncCalls.length,
    resyncBatchCalls: resyncCalls.filter((c) => c === 'observeAll').length,
    resyncActions: resyncCalls.filter((c) => c !== 'observeAll' && c !== 'probe').length,
    resyncStatusWrites: statusWrites,
    statusRows: writesBefore,
  };
}
