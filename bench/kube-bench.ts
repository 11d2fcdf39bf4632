/**
 * Kubernetes mode at scale, with a FakeProvider behind the real API server (etcd + the built
 * kube-apiserver): N Containers (default 1,000; KUBE_BENCH_OBJECTS) created at once, time until
 * all are Ready, write requests per object to converge (target: at most 2 status writes), then
 * a full resync of the unchanged objects (target: zero writes), then deletion of all of them
 * through the finalizer.
 */
import { CustomObjectsApi } from '@kubernetes/client-node';
import { startKubeAgent } from '../test/e2e/support/kube-agent.js';
import { KubeTestEnv } from '../test/e2e/support/kube-testenv.js';

const GROUP = { group: 'hyperlet.io', version: 'v1alpha1', plural: 'containers' };

async function inParallel<T>(items: readonly T[], width: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) await fn(items[next++] as T);
  }));
}

export async function kubeBench(): Promise<Record<string, number | string>> {
  const n = Number(process.env.KUBE_BENCH_OBJECTS ?? 1000);
  const ns = `bench-${process.pid}`;
  const env = await KubeTestEnv.start();
  try {
    await env.installHyperlet();
    await env.kubectlOk(['create', 'namespace', ns]);
    const admin = env.admin().makeApiClient(CustomObjectsApi);
    const agent = await startKubeAgent({ kubeConfig: env.agent(), node: 'bench-node', namespace: ns, concurrency: 4 });
    const writes = async (): Promise<Record<string, number>> => ({
      statusPuts: await env.requestCount({ verb: 'PUT', resource: 'containers', subresource: 'status' }),
      patches: await env.requestCount({ verb: 'PATCH', resource: 'containers', subresource: '' }),
      events: await env.requestCount({ verb: 'POST', resource: 'events' }) + await env.requestCount({ verb: 'PATCH', resource: 'events' }),
      conflicts: await env.requestCount({ resource: 'containers', code: '409' }),
    });
    const countReady = async (): Promise<number> => {
      const list = await admin.listNamespacedCustomObject({ ...GROUP, namespace: ns }) as { items: { status?: { conditions?: { type: string; status: string }[] } }[] };
      return list.items.filter((o) => o.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')).length;
    };
    const before = await writes();
    const names = Array.from({ length: n }, (_, i) => `c${String(i).padStart(4, '0')}`);
    const t0 = Date.now();
    await inParallel(names, 16, (name) => admin.createNamespacedCustomObject({
      ...GROUP, namespace: ns,
      body: { apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name, namespace: ns }, spec: { template: 'busybox', nodeName: 'bench-node' } },
    }));
    const createdMs = Date.now() - t0;
    let ready = 0;
    const deadline = Date.now() + 30 * 60_000;
    while ((ready = await countReady()) < n) {
      if (Date.now() > deadline) throw new Error(`cannot converge: ${ready}/${n} Ready after 30 min`);
      await new Promise((r) => setTimeout(r, 500));
    }
    const readyMs = Date.now() - t0;
    await agent.controller.queue.onIdle();
    await agent.backend.recorder.flush();
    const converged = await writes();
    const per = (k: string): number => Number(((converged[k]! - before[k]!) / n).toFixed(2));

    // A full resync of unchanged objects: relist from the API server and reconcile every key.
    const r0 = Date.now();
    for (const inf of (agent.backend.source as unknown as { informers: { relist(): void }[] }).informers) inf.relist();
    await agent.controller.resync();
    await agent.controller.queue.onIdle();
    await agent.backend.recorder.flush();
    const resyncMs = Date.now() - r0;
    const afterResync = await writes();
    const resyncWrites = Object.keys(afterResync).reduce((s, k) => s + (k === 'conflicts' ? 0 : afterResync[k]! - converged[k]!), 0);

    const d0 = Date.now();
    await env.kubectlOk(['delete', 'containers', '--all', '-n', ns, '--wait=false'], { timeoutMs: 600_000 });
    while ((await admin.listNamespacedCustomObject({ ...GROUP, namespace: ns, limit: 1 }) as { items: unknown[] }).items.length > 0) {
      if (Date.now() - d0 > 30 * 60_000) throw new Error('cannot delete every object within 30 min');
      await new Promise((r) => setTimeout(r, 500));
    }
    const deletedMs = Date.now() - d0;
    await agent.stop();
    return {
      objects: n,
      createAllMs: createdMs,
      allReadyMs: readyMs,
      readyPerSecond: Number((n / (readyMs / 1000)).toFixed(1)),
      statusWritesPerObject: per('statusPuts'),
      finalizerPatchesPerObject: per('patches'),
      eventWritesPerObject: per('events'),
      conflicts409: converged.conflicts! - before.conflicts!,
      resyncMs,
      resyncWrites,
      deleteAllMs: deletedMs,
      providerCreates: agent.provider.count('create'),
      providerDeletes: agent.provider.count('delete'),
      targets: 'statusWritesPerObject <= 2, resyncWrites = 0',
    };
  } finally {
    await env.stop();
  }
}

if (process.argv[1]?.endsWith('kube-bench.js') === true) {
  process.stdout.write(`kube: ${JSON.stringify(await kubeBench())}\n`);
}
