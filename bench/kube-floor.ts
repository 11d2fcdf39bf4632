/**
 * The API server's own floor for kube-bench: the same requests the agent sends per object, sent
 * straight from a tiny client (one keep-alive agent, `width` chains at once, no informer, no
 * reconciler). Ready: create (as the bench does), finalizer merge patch, status PUT, Event, status
 * PUT, Event. Deletion: one deletecollection, then per object a status PUT, an Event and the
 * finalizer release (a read first when the listed copy is stale). The agent's figure over this one is what hyperlet adds; the floor itself is
 * kube-apiserver + etcd on this machine.
 */
import { CoreV1Api, CustomObjectsApi, type KubeConfig, PatchStrategy } from '@kubernetes/client-node';
import { requestOptions, shareConnections } from '../src/kube/kube-client.js';

const GROUP = { group: 'hyperlet.io', version: 'v1alpha1', plural: 'containers' };
const FINALIZER = 'hyperlet.io/instance';

interface Obj { metadata: { name: string; resourceVersion?: string; uid?: string } }

/** Runs `fn` over `items`, `width` at a time. */
export async function inParallel<T>(items: readonly T[], width: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) await fn(items[next++] as T);
  }));
}

/** Milliseconds the raw request mix of `n` objects takes in namespace `ns` (made by the caller), ready and deletion. */
export async function kubeFloor(kc: KubeConfig, ns: string, n: number, width: number): Promise<{ readyMs: number; deleteMs: number }> {
  const shared = shareConnections(kc);
  const objects = shared.makeApiClient(CustomObjectsApi);
  const core = shared.makeApiClient(CoreV1Api);
  const merge = requestOptions(undefined, PatchStrategy.MergePatch);
  let seq = 0;
  const event = (o: Obj, reason: string): Promise<unknown> => {
    const now = new Date();
    return core.createNamespacedEvent({
      namespace: ns,
      body: {
        metadata: { name: `${o.metadata.name}.${(seq++).toString(16)}`, namespace: ns },
        involvedObject: { apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', name: o.metadata.name, namespace: ns, uid: o.metadata.uid },
        type: 'Normal', reason, message: `${reason} ${o.metadata.name}`, source: { component: 'hyperlet-floor', host: 'floor-node' },
        firstTimestamp: now, lastTimestamp: now, count: 1, reportingComponent: 'hyperlet-floor', reportingInstance: 'floor-node',
      },
    });
  };
  const putStatus = async (o: Obj, ready: boolean): Promise<Obj> => await objects.replaceNamespacedCustomObjectStatus({
    ...GROUP, namespace: ns, name: o.metadata.name,
    body: {
      apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name: o.metadata.name, namespace: ns, resourceVersion: o.metadata.resourceVersion },
      status: {
        phase: ready ? 'Running' : 'Creating', observedGeneration: 1,
        conditions: [{ type: 'Ready', status: ready ? 'True' : 'False', reason: ready ? 'Running' : 'Creating', message: 'floor',
          lastTransitionTime: new Date().toISOString(), observedGeneration: 1 }],
      },
    },
  }) as Obj;
  const finalizers = async (o: Obj, list: string[]): Promise<Obj> => await objects.patchNamespacedCustomObject({
    ...GROUP, namespace: ns, name: o.metadata.name, body: { metadata: { finalizers: list, resourceVersion: o.metadata.resourceVersion } },
  }, merge) as Obj;
  const names = Array.from({ length: n }, (_, i) => `f${String(i).padStart(4, '0')}`);
  const last = new Map<string, Obj>();
  const r0 = Date.now();
  await inParallel(names, width, async (name) => {
    let o = await objects.createNamespacedCustomObject({
      ...GROUP, namespace: ns,
      body: { apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name, namespace: ns }, spec: { template: 'busybox', nodeName: 'floor-node' } },
    }) as Obj;
    o = await finalizers(o, [FINALIZER]);
    o = await putStatus(o, false);
    await event(o, 'Created');
    o = await putStatus(o, true);
    await event(o, 'Started');
    last.set(name, o);
  });
  const readyMs = Date.now() - r0;
  const d0 = Date.now();
  // The answer lists the objects as marked for deletion: what the agent's informer hands it.
  const marked = await objects.deleteCollectionNamespacedCustomObject({ ...GROUP, namespace: ns }) as { items?: Obj[] };
  const byName = new Map((marked.items ?? []).map((o) => [o.metadata.name, o]));
  await inParallel(names, width, async (name) => {
    const get = async (): Promise<Obj> => await objects.getNamespacedCustomObject({ ...GROUP, namespace: ns, name }) as Obj;
    // The listed copy may predate the deletion mark (409): then read it, as an agent whose informer lags would.
    const written = await putStatus(byName.get(name) ?? await get(), false)
      .catch(async (err: unknown) => { if ((err as { code?: number }).code !== 409) throw err; return await putStatus(await get(), false); });
    await event(written, 'Deleted');
    await finalizers(written, []);
  });
  return { readyMs, deleteMs: Date.now() - d0 };
}
