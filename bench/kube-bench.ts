/**
 * Kubernetes mode at scale, with a FakeProvider behind the real API server (etcd + the built
 * kube-apiserver): N Containers (default 1,000; KUBE_BENCH_OBJECTS) created at once, time until
 * all are Ready, status writes per object to converge (target: at most 2), then a full resync of
 * the unchanged objects (target: zero writes), then deletion of all of them through the finalizer
 * (target: both phases below 8 s for 1,000).
 *
 * The bench follows the objects with one watch (as kubectl wait would), not by listing them: a
 * list of 1,000 objects every half second costs the API server more than the agent's own work.
 * Per-object status writes are counted from that watch (every change of .status is one write that
 * reached etcd); their mean is checked against the API server's request counter. CPU seconds are
 * given for this process (bench client and agent), kube-apiserver and etcd, with the load average,
 * since the machine is shared. Then the floor (kube-floor.ts): the same requests from a tiny client, and the ratios to it.
 */
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { CustomObjectsApi, Watch } from '@kubernetes/client-node';
import { shareConnections } from '../src/kube/kube-client.js';
import { DEFAULT_HOST_POLICY, type HostPolicy } from '../src/policy/host-policy.js';
import { startKubeAgent } from '../test/e2e/support/kube-agent.js';
import { KubeTestEnv } from '../test/e2e/support/kube-testenv.js';
import { inParallel, kubeFloor } from './kube-floor.js';

const GROUP = { group: 'hyperlet.io', version: 'v1alpha1', plural: 'containers' };


/** CPU seconds (user + system) of process `pid` so far, from /proc; 0 when it cannot be read. */
function cpuSecondsOf(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
  } catch {
    return 0;
  }
}

interface Watched {
  status: string;
  statusWrites: number;
  ready: boolean;
}

interface ContainerObject {
  metadata: { name: string; resourceVersion?: string };
  status?: { conditions?: { type: string; status: string; reason?: string; message?: string }[] };
}

export async function kubeBench(): Promise<Record<string, number | string>> {
  const n = Number(process.env.KUBE_BENCH_OBJECTS ?? 1000);
  const concurrency = Number(process.env.KUBE_BENCH_CONCURRENCY ?? 4);
  const ns = `bench-${process.pid}`;
  const env = await KubeTestEnv.start();
  try {
    await env.installHyperlet();
    await env.kubectlOk(['create', 'namespace', ns]);
    // The bench's own client keeps its connections, as kubectl and client-go do.
    const admin = shareConnections(env.admin()).makeApiClient(CustomObjectsApi);
    // The default host policy admits 200 objects per namespace: this one namespace may hold n.
    const policy: HostPolicy = { ...DEFAULT_HOST_POLICY, scopes: [{ source: 'kube', namespace: ns, rules: { quota: { objects: n } } }] };
    const agent = await startKubeAgent({ kubeConfig: env.agent(), node: 'bench-node', namespace: ns, concurrency, policy });
    const writes = async (): Promise<Record<string, number>> => ({
      statusPuts: await env.requestCount({ verb: 'PUT', resource: 'containers', subresource: 'status' }),
      patches: await env.requestCount({ verb: 'PATCH', resource: 'containers', subresource: '' }),
      events: await env.requestCount({ verb: 'POST', resource: 'events' }) + await env.requestCount({ verb: 'PATCH', resource: 'events' }),
      conflicts: await env.requestCount({ resource: 'containers', code: '409' }),
    });
    const cpu = (): Record<string, number> => ({
      node: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
      apiServer: cpuSecondsOf(env.pids.apiServer),
      etcd: cpuSecondsOf(env.pids.etcd),
    });
    const cpuSince = (c0: Record<string, number>): string => {
      const c1 = cpu();
      const d = (k: string): number => Number((c1[k]! - c0[k]!).toFixed(1));
      return `node ${d('node')} s, kube-apiserver ${d('apiServer')} s, etcd ${d('etcd')} s`;
    };

    // One watch over the namespace: Ready and deletion as they happen, and every status change.
    const objects = new Map<string, Watched>();
    let readyCount = 0;
    let deletedCount = 0;
    let refusal: string | undefined;
    let wake: () => void = () => {};
    const changed = (): Promise<void> => new Promise((r) => { wake = r; });
    const listed = await admin.listNamespacedCustomObject({ ...GROUP, namespace: ns }) as { metadata: { resourceVersion: string } };
    let resourceVersion = listed.metadata.resourceVersion;
    let watching = true;
    let watchAbort: AbortController | undefined;
    const onEvent = (phase: string, obj: ContainerObject): void => {
      if (obj.metadata.resourceVersion !== undefined) resourceVersion = obj.metadata.resourceVersion;
      const name = obj.metadata.name;
      if (phase === 'DELETED') {
        deletedCount++;
      } else if (phase === 'ADDED' || phase === 'MODIFIED') {
        const w = objects.get(name) ?? { status: '{}', statusWrites: 0, ready: false };
        objects.set(name, w);
        const status = JSON.stringify(obj.status ?? {});
        // A written status has conditions (the CRD's placeholder has none); each change is one write.
        if (obj.status?.conditions !== undefined && status !== w.status) w.statusWrites++;
        w.status = status;
        const ready = obj.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
        const refused = obj.status?.conditions?.find((c) => c.type === 'Ready' && (c.reason === 'PolicyDenied' || c.reason === 'QuotaExceeded'));
        if (refused !== undefined) refusal ??= `${name}: ${refused.reason ?? ''} ${refused.message ?? ''}`;
        if (ready && !w.ready) readyCount++;
        if (!ready && w.ready) readyCount--;
        w.ready = ready;
      }
      wake();
    };
    const follow = async (): Promise<void> => {
      watchAbort = await new Watch(env.admin()).watch(`/apis/hyperlet.io/v1alpha1/namespaces/${ns}/containers`,
        { resourceVersion, allowWatchBookmarks: true }, onEvent, () => { if (watching) void follow(); });
    };
    await follow();
    const until = async (done: () => boolean, what: string): Promise<void> => {
      const deadline = Date.now() + 30 * 60_000;
      while (!done()) {
        if (refusal !== undefined) throw new Error(`cannot see ${what}: the host policy refused ${refusal}`);
        if (Date.now() > deadline) throw new Error(`cannot see ${what} within 30 min`);
        await Promise.race([changed(), new Promise((r) => setTimeout(r, 1000))]);
      }
    };

    const load0 = loadavg()[0]!;
    const before = await writes();
    const names = Array.from({ length: n }, (_, i) => `c${String(i).padStart(4, '0')}`);
    const cpu0 = cpu();
    const t0 = Date.now();
    await inParallel(names, 16, (name) => admin.createNamespacedCustomObject({
      ...GROUP, namespace: ns,
      body: { apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name, namespace: ns }, spec: { template: 'busybox', nodeName: 'bench-node' } },
    }));
    const createdMs = Date.now() - t0;
    await until(() => readyCount >= n, `${n} Ready`);
    const readyMs = Date.now() - t0;
    const readyCpu = cpuSince(cpu0);
    await agent.controller.queue.onIdle();
    await agent.backend.recorder.flush();
    const converged = await writes();
    const per = (k: string): number => Number(((converged[k]! - before[k]!) / n).toFixed(2));
    const perObject = [...objects.values()].map((w) => w.statusWrites);

    // A full resync of unchanged objects: relist from the API server and reconcile every key.
    const statusWritesBeforeResync = perObject.reduce((s, c) => s + c, 0);
    const r0 = Date.now();
    for (const inf of (agent.backend.source as unknown as { informers: { relist(): void }[] }).informers) inf.relist();
    await agent.controller.resync();
    await agent.controller.queue.onIdle();
    await agent.backend.recorder.flush();
    const resyncMs = Date.now() - r0;
    const afterResync = await writes();
    const resyncWrites = Object.keys(afterResync).reduce((s, k) => s + (k === 'conflicts' ? 0 : afterResync[k]! - converged[k]!), 0);
    const resyncStatusWrites = [...objects.values()].reduce((s, w) => s + w.statusWrites, 0) - statusWritesBeforeResync;

    const cpu1 = cpu();
    const d0 = Date.now();
    // One deletecollection request (as namespace deletion does): `kubectl delete --all` sends 1,000
    // DELETEs one after another, which measured kubectl more than the agent.
    await admin.deleteCollectionNamespacedCustomObject({ ...GROUP, namespace: ns });
    const deleteRequestMs = Date.now() - d0;
    await until(() => deletedCount >= n, `${n} deleted`);
    const deletedMs = Date.now() - d0;
    const deleteCpu = cpuSince(cpu1);
    await agent.backend.recorder.flush();
    const end = await writes();
    watching = false;
    watchAbort?.abort();
    await agent.stop();
    // The floor in the same run: the agent's request mix straight from a tiny client, in a namespace of its own.
    const floorNs = `${ns}-floor`;
    await env.kubectlOk(['create', 'namespace', floorNs]);
    const floorWidth = Number(process.env.KUBE_BENCH_FLOOR_WIDTH ?? 16);
    const floor = await kubeFloor(env.admin(), floorNs, n, floorWidth);
    return {
      objects: n,
      concurrency,
      loadAverage1m: `${load0.toFixed(1)} at start, ${loadavg()[0]!.toFixed(1)} at end (2 cores shared)`,
      createAllMs: createdMs,
      allReadyMs: readyMs,
      readyPerSecond: Number((n / (readyMs / 1000)).toFixed(1)),
      readyCpu,
      statusWritesPerObjectMax: Math.max(...perObject),
      statusWritesPerObjectMean: Number((perObject.reduce((s, c) => s + c, 0) / n).toFixed(2)),
      statusPutsPerObject: per('statusPuts'),
      finalizerPatchesPerObject: per('patches'),
      eventsWritten: converged.events! - before.events!,
      conflicts409: converged.conflicts! - before.conflicts!,
      resyncMs,
      resyncWrites,
      resyncStatusWrites,
      deleteRequestMs,
      deleteAllMs: deletedMs,
      deleteCpu,
      deleteStatusPuts: end.statusPuts! - afterResync.statusPuts!,
      deleteEventsWritten: end.events! - afterResync.events!,
      providerCreates: agent.provider.count('create'),
      providerDeletes: agent.provider.count('delete'),
      floorWidth,
      floorReadyMs: floor.readyMs,
      floorDeleteMs: floor.deleteMs,
      readyOverFloor: Number((readyMs / floor.readyMs).toFixed(2)),
      deleteOverFloor: Number((deletedMs / floor.deleteMs).toFixed(2)),
      targets: `allReadyMs < 8000, deleteAllMs < 8000, statusWritesPerObjectMax <= 2, resyncWrites = 0 (for 1,000 objects)`,
    };
  } finally {
    await env.stop();
  }
}

if (process.argv[1]?.endsWith('kube-bench.js') === true) {
  process.stdout.write(`kube: ${JSON.stringify(await kubeBench())}\n`);
}
