/**
 * The scheduler (`hyperlet run --source kube --node N --leader-elect --scheduler`): a
 * once-per-cluster task of the elected agent that places Containers and VirtualMachines without
 * spec.nodeName on HypervisorNodes (the rules: placement.ts) and records the node in
 * status.placement.nodeName through the status subresource. It never writes spec, so GitOps
 * tools see no drift; the node's agent selects the object by that status field.
 *
 * Guarantees:
 * - One pass at a time, on fresh informer caches, after a short batching delay: a burst of new
 *   objects is placed in one pass, each placement counting for the next.
 * - Capacity: a node's used cpu and memory is the larger of what its HypervisorNode reports and
 *   what the scheduler counts from the objects assigned to it, including its own placements that
 *   the caches do not show yet (assumed, like kube-scheduler's assume cache).
 * - Every write is a JSON merge patch of /status carrying the resourceVersion the decision was
 *   made on: a stale decision is refused (409) and made again on fresh data, never applied.
 * - An object that fits nowhere gets Scheduled=False, reason Unschedulable, with a Pod-like
 *   message; it is written only when the message changes. It is tried again when nodes or
 *   objects change, and otherwise after a backoff (1 s doubling to 60 s, reset by a change of the
 *   HypervisorNodes): never a hot loop.
 * - Evictions: an object the scheduler placed (status.placement, no spec.nodeName) on a cordoned
 *   node (spec.unschedulable, `hyperlet drain`) is placed again elsewhere; its agents then move
 *   it with its data. One at a time per node: the next leaves once the new node reports the last
 *   one (its status.node), so a drain never stops every instance of a node at once. On a lost node (Ready=Unknown: its heartbeat Lease expired) every object
 *   gets condition NodeLost, and those with spec.evictionPolicy Recreate (and no spec.nodeName) are
 *   placed again elsewhere; the others wait for their node. Hand-set spec.nodeName is never moved.
 * Caveats: disk is not counted.
 */
import { setMaxListeners } from 'node:events';
import { CustomObjectsApi, type KubeConfig, PatchStrategy } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { KINDS, type Kind } from '../api/v1alpha1/group.js';
import type { HypervisorNodeObject } from '../api/v1alpha1/hypervisor-node.js';
import { parseQuantity } from '../api/v1alpha1/quantity.js';
import type { KubeObject } from '../kube/desired-from-kube.js';
import { isNotFound, kubeError, requestOptions, resourceOf } from '../kube/kube-client.js';
import { KubeInformer } from '../kube/kube-informer.js';
import { placementOf } from '../kube/kube-object-tracker.js';
import { type Clock, sleep, systemClock } from '../shared/clock.js';
import { ConflictError } from '../shared/errors.js';
import { type PlacementNode, type PlacementRequest, placeAll } from './placement.js';

/** How the scheduler connects and how it counts and waits. */
export interface KubeSchedulerOptions {
  readonly kubeConfig: KubeConfig;
  readonly logger: Logger;
  /** Only objects of this namespace; all when absent. */
  readonly namespace?: string;
  /** Memory a container without spec.resources.memory counts (the host policy's containerMemory; default 512Mi). */
  readonly containerMemoryBytes?: number;
  /** Delay that batches the events of a burst into one pass (default 100 ms). */
  readonly batchMs?: number;
  /** Retry bounds for objects that fit nowhere (default 1 s–60 s). */
  readonly minRetryMs?: number;
  readonly maxRetryMs?: number;
  /** Placement writes in flight at once (default 16). */
  readonly writeConcurrency?: number;
  readonly clock?: Clock;
}

/** What one pass did (for logs, tests and benchmarks). */
export interface SchedulerPass {
  readonly placed: number;
  readonly unschedulable: number;
  /** Writes refused (409 on a stale copy) or failed; tried again later. */
  readonly failed: number;
}

/** The condition type the scheduler writes, and its reason when nothing fits. */
export const SCHEDULED_CONDITION = 'Scheduled';
/** Reason of Scheduled=False: no node takes the object. */
export const UNSCHEDULABLE_REASON = 'Unschedulable';
/** The condition the scheduler writes on objects of a node whose heartbeat expired. */
export const NODE_LOST_CONDITION = 'NodeLost';

const MiB = 2 ** 20;

interface Assumed { readonly node: string; readonly cpu: number; readonly memoryBytes: number }

interface PlacedSpec {
  nodeName?: string; nodeSelector?: Record<string, string>; resources?: { cpu?: number; memory?: string | number }; evictionPolicy?: string;
}

interface ObjectCondition { type?: string; status?: string; reason?: string; message?: string; lastTransitionTime?: string }

const conditionsOf = (o: KubeObject): ObjectCondition[] => (o.status as { conditions?: ObjectCondition[] } | undefined)?.conditions ?? [];

/** `conditions` with `next` in place of the condition of its type (kept as it is when only its time would change). */
function withCondition(conditions: readonly ObjectCondition[], next: ObjectCondition): ObjectCondition[] {
  const before = conditions.find((c) => c.type === next.type);
  const kept = before !== undefined && before.status === next.status && before.lastTransitionTime !== undefined
    ? { ...next, lastTransitionTime: before.lastTransitionTime } : next;
  return [...conditions.filter((c) => c.type !== next.type), kept];
}

const specOf = (o: KubeObject): PlacedSpec => (o.spec ?? {});

/** The Scheduled condition of an object's status, if any. */
const scheduledCondition = (o: KubeObject): ObjectCondition | undefined => conditionsOf(o).find((c) => c.type === SCHEDULED_CONDITION);

/** The scheduler as a ClusterTask (name + run); see the file comment. */
export class KubeScheduler {
  readonly name = 'scheduler';
  private readonly api: CustomObjectsApi;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly objects = new Map<string, { kind: Kind; obj: KubeObject }>();
  private readonly nodes = new Map<string, HypervisorNodeObject>();
  private readonly assumed = new Map<string, Assumed>();
  /** Objects moved off a cordoned node, by key, with that node, until their new node runs them. */
  private readonly evicting = new Map<string, string>();
  private wake: (() => void) | undefined;
  private dirty = false;
  private nodesChanged = false;
  private passes = 0;

  constructor(private readonly options: KubeSchedulerOptions) {
    this.api = options.kubeConfig.makeApiClient(CustomObjectsApi);
    this.log = options.logger.child({ component: 'scheduler' });
    this.clock = options.clock ?? systemClock;
  }

  /** Passes run so far. */
  get passCount(): number {
    return this.passes;
  }

  /** Watches and places until `signal` aborts; a failed write ends nothing (it is retried), a failed watch restarts itself. */
  async run(signal: AbortSignal): Promise<void> {
    // Every write in flight listens on the signal (client-node aborts its request with it).
    setMaxListeners(Math.max(32, 2 * (this.options.writeConcurrency ?? 16) + 16), signal);
    const informers = [
      ...(Object.keys(KINDS) as Kind[]).map((kind) => this.informer(kind, {
        upsert: (o) => this.setObject(kind, o),
        remove: (o) => this.dropObject(kind, o),
        listed: (objs) => this.listedObjects(kind, objs),
      })),
      this.informer('HypervisorNode', {
        upsert: (o) => this.setNode(o as unknown as HypervisorNodeObject),
        remove: (o) => this.dropNode(o.metadata?.name ?? ''),
        listed: (objs) => {
          const names = new Set(objs.map((o) => o.metadata?.name ?? ''));
          for (const name of [...this.nodes.keys()]) if (!names.has(name)) this.dropNode(name);
          for (const o of objs) this.setNode(o as unknown as HypervisorNodeObject);
        },
      }),
    ];
    const stop = (): void => {
      for (const inf of informers) void inf.stop();
      this.wake?.();
    };
    signal.addEventListener('abort', stop, { once: true });
    try {
      for (const inf of informers) inf.start();
      await Promise.race([Promise.all(informers.map((i) => i.synced)), new Promise((r) => signal.addEventListener('abort', r, { once: true }))]);
      this.log.info({ nodes: this.nodes.size, objects: this.objects.size }, 'scheduler synced');
      let retryMs = this.options.minRetryMs ?? 1_000;
      let waitMs: number | undefined;
      this.dirty = true;
      while (!signal.aborted) {
        await this.waitForWork(waitMs, signal);
        if (signal.aborted) break;
        await sleep(this.clock, this.options.batchMs ?? 100, signal);
        if (signal.aborted) break;
        const nodesChanged = this.nodesChanged;
        this.dirty = false;
        this.nodesChanged = false;
        const pass = await this.pass(signal);
        if (pass.unschedulable === 0 && pass.failed === 0) {
          waitMs = undefined;
          retryMs = this.options.minRetryMs ?? 1_000;
        } else {
          // Nothing fits (or a write lost a race): come back on the next change, or after a backoff.
          if (nodesChanged || pass.placed > 0) retryMs = this.options.minRetryMs ?? 1_000;
          waitMs = retryMs;
          retryMs = Math.min(retryMs * 2, this.options.maxRetryMs ?? 60_000);
        }
      }
    } finally {
      signal.removeEventListener('abort', stop);
      stop();
    }
  }

  private informer(kind: Kind | 'HypervisorNode', h: {
    upsert: (o: KubeObject) => void; remove: (o: KubeObject) => void; listed: (objs: readonly KubeObject[]) => void;
  }): KubeInformer {
    return new KubeInformer({
      kubeConfig: this.options.kubeConfig, kind, logger: this.log, clock: this.clock,
      ...(this.options.namespace !== undefined && kind !== 'HypervisorNode' ? { namespace: this.options.namespace } : {}),
      handlers: { ...h, health: () => undefined },
    });
  }

  private keyOf(kind: Kind, o: KubeObject): string {
    return `${o.metadata?.namespace ?? ''}/${kind}/${o.metadata?.name ?? ''}`;
  }

  private setObject(kind: Kind, o: KubeObject): void {
    const key = this.keyOf(kind, o);
    this.objects.set(key, { kind, obj: o });
    // The cache now shows where it went (or the object was placed by hand): no more assuming. A
    // placement made again (an eviction) is assumed until the cache shows the new node.
    const assumed = this.assumed.get(key);
    if (specOf(o).nodeName !== undefined || (assumed !== undefined && placementOf(o.status)?.nodeName === assumed.node)) this.assumed.delete(key);
    this.poke(false);
  }

  private dropObject(kind: Kind, o: KubeObject): void {
    const key = this.keyOf(kind, o);
    this.objects.delete(key);
    this.assumed.delete(key);
    this.poke(false);
  }

  private listedObjects(kind: Kind, objs: readonly KubeObject[]): void {
    const present = new Set(objs.map((o) => this.keyOf(kind, o)));
    for (const [key, held] of [...this.objects]) {
      if (held.kind === kind && !present.has(key)) {
        this.objects.delete(key);
        this.assumed.delete(key);
      }
    }
    for (const o of objs) this.setObject(kind, o);
  }

  private setNode(n: HypervisorNodeObject): void {
    if (n.metadata?.name === undefined) return;
    this.nodes.set(n.metadata.name, n);
    this.poke(true);
  }

  private dropNode(name: string): void {
    this.nodes.delete(name);
    this.poke(true);
  }

  private poke(nodes: boolean): void {
    this.dirty = true;
    if (nodes) this.nodesChanged = true;
    this.wake?.();
  }

  private waitForWork(timeoutMs: number | undefined, signal: AbortSignal): Promise<void> {
    if (this.dirty || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = timeoutMs === undefined ? undefined : this.clock.setTimeout(() => done(), timeoutMs);
      const done = (): void => {
        this.clock.clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      this.wake = done;
    });
  }


  private declared(kind: Kind, o: KubeObject): { cpu: number; memoryBytes: number } {
    const r = specOf(o).resources;
    const fallback = kind === 'Container' ? this.options.containerMemoryBytes ?? 512 * MiB : 0;
    return { cpu: r?.cpu ?? 0, memoryBytes: r?.memory === undefined ? fallback : parseQuantity(r.memory) ?? fallback };
  }

  /** One pass: place every object without a node, on the caches as they are now. */
  private async pass(signal: AbortSignal): Promise<SchedulerPass> {
    this.passes++;
    const counted = new Map<string, { cpu: number; memoryBytes: number }>();
    const add = (node: string, r: { cpu: number; memoryBytes: number }): void => {
      const c = counted.get(node) ?? { cpu: 0, memoryBytes: 0 };
      counted.set(node, { cpu: c.cpu + r.cpu, memoryBytes: c.memoryBytes + r.memoryBytes });
    };
    const pending: { key: string; kind: Kind; obj: KubeObject; from?: { node: string; why: string } }[] = [];
    const lost: { kind: Kind; obj: KubeObject; node: string }[] = [];
    // A drain moves one object at a time per node: the next leaves once the last one runs on its new node.
    for (const key of [...this.evicting.keys()]) if (this.moveDone(key)) this.evicting.delete(key);
    const movingFrom = new Set<string>(this.evicting.values());
    for (const [key, { kind, obj }] of this.objects) {
      const node = specOf(obj).nodeName ?? this.assumed.get(key)?.node ?? placementOf(obj.status)?.nodeName;
      const deleting = obj.metadata?.deletionTimestamp !== undefined;
      if (node === undefined) {
        if (!deleting) pending.push({ key, kind, obj });
        continue;
      }
      let eviction = deleting ? undefined : this.evictionOf(key, obj, node);
      if (eviction === 'cordoned') {
        if (movingFrom.has(node)) eviction = undefined;
        else movingFrom.add(node);
      }
      if (eviction === 'lost' || (eviction === undefined && this.isLost(node) && !deleting)) lost.push({ kind, obj, node });
      if (eviction !== undefined) pending.push({ key, kind, obj, from: { node, why: eviction } });
      else add(node, this.declared(kind, obj));
    }
    const lostWrites = lost.filter(({ obj, node }) => !pending.some((p) => p.obj === obj) && !hasNodeLost(obj, node))
      .map(({ kind, obj, node }) => async (): Promise<void> => {
        const conditions = withCondition(conditionsOf(obj), this.nodeLostCondition(node, obj));
        await this.writeStatus(kind, obj, { conditions }, signal).catch((err: unknown) => {
          if (!signal.aborted && !(err instanceof ConflictError)) this.log.warn({ err, node }, 'cannot write NodeLost; trying again later');
        });
      });
    if (lostWrites.length > 0) await runLimited(lostWrites, this.options.writeConcurrency ?? 16);
    // First come, first placed; then by key, so a pass is deterministic.
    pending.sort((a, b) => (a.obj.metadata?.creationTimestamp ?? '').toString().localeCompare((b.obj.metadata?.creationTimestamp ?? '').toString())
      || a.key.localeCompare(b.key));
    if (pending.length === 0) return { placed: 0, unschedulable: 0, failed: 0 };
    const nodes: PlacementNode[] = [...this.nodes.values()].map((n) => {
      const s = n.status;
      const c = counted.get(n.metadata.name) ?? { cpu: 0, memoryBytes: 0 };
      return {
        name: n.metadata.name,
        ready: s?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True') === true,
        unschedulable: n.spec?.unschedulable === true,
        labels: n.metadata.labels ?? {},
        kinds: s?.kinds ?? [],
        allocatable: { cpu: s?.allocatable?.cpu ?? 0, memoryBytes: parseQuantity(s?.allocatable?.memory ?? '0') ?? 0 },
        used: {
          cpu: Math.max(s?.allocated?.cpu ?? 0, c.cpu),
          memoryBytes: Math.max(parseQuantity(s?.allocated?.memory ?? '0') ?? 0, c.memoryBytes),
        },
      };
    });
    const requests: PlacementRequest[] = pending.map(({ key, kind, obj }) => ({
      key, kind, ...this.declared(kind, obj),
      ...(specOf(obj).nodeSelector !== undefined ? { nodeSelector: specOf(obj).nodeSelector } : {}),
    }));
    const results = placeAll(nodes, requests);
    const byKey = new Map(pending.map((p) => [p.key, p]));
    const requestByKey = new Map(requests.map((q) => [q.key, q]));
    let placed = 0;
    let unschedulable = 0;
    let failed = 0;
    const writes = results.map((r) => async (): Promise<void> => {
      const p = byKey.get(r.key);
      if (p === undefined || signal.aborted) return;
      try {
        if (r.nodeName !== undefined) {
          const req = requestByKey.get(r.key);
          this.assumed.set(r.key, { node: r.nodeName, cpu: req?.cpu ?? 0, memoryBytes: req?.memoryBytes ?? 0 });
          const message = p.from === undefined ? `Placed on node ${r.nodeName}` : `Moved from node ${p.from.node} (${p.from.why}) to node ${r.nodeName}`;
          let conditions = withCondition(p.from === undefined ? [] : conditionsOf(p.obj), this.condition('True', 'Scheduled', message));
          if (p.from?.why === 'lost') conditions = withCondition(conditions, this.nodeLostCondition(p.from.node, p.obj));
          await this.writeStatus(p.kind, p.obj, {
            placement: { nodeName: r.nodeName, time: new Date(this.clock.now()).toISOString() }, conditions,
          }, signal);
          if (p.from !== undefined) {
            if (p.from.why === 'cordoned') this.evicting.set(r.key, p.from.node);
            this.log.info({ key: r.key, from: p.from.node, to: r.nodeName, why: p.from.why }, 'evicted: placed again');
          }
          placed++;
          return;
        }
        unschedulable++;
        const now = scheduledCondition(p.obj);
        if (now?.status === 'False' && now.reason === UNSCHEDULABLE_REASON && now.message === r.message) return;
        // An eviction that fits nowhere stays where it is (cordoned or lost), saying why it cannot leave.
        await this.writeStatus(p.kind, p.obj, {
          conditions: withCondition(p.from === undefined ? [] : conditionsOf(p.obj), this.condition('False', UNSCHEDULABLE_REASON, r.message)),
        }, signal);
      } catch (err) {
        // 409: decided on a stale copy; anything else: the API server failed. Either way, again later.
        this.assumed.delete(r.key);
        failed++;
        if (!signal.aborted && !(err instanceof ConflictError)) this.log.warn({ err, key: r.key }, 'cannot write a placement; trying again later');
      }
    });
    await runLimited(writes, this.options.writeConcurrency ?? 16);
    this.log.info({ placed, unschedulable, failed, nodes: nodes.length }, 'scheduler pass');
    return { placed, unschedulable, failed };
  }

  /** Whether the evicted object `key` is gone, or reported by the node it is assigned to and no longer Moving. */
  private moveDone(key: string): boolean {
    const held = this.objects.get(key);
    if (held === undefined) return true;
    const node = specOf(held.obj).nodeName ?? this.assumed.get(key)?.node ?? placementOf(held.obj.status)?.nodeName;
    const status = held.obj.status as { node?: string; phase?: string } | undefined;
    if (status === undefined) return false;
    return status.node === node && status.phase !== undefined && status.phase !== 'Moving' && status.phase !== 'Pending';
  }

  /** Whether `node`'s heartbeat expired (Ready=Unknown, written by the node lifecycle check). */
  private isLost(node: string): boolean {
    return this.nodes.get(node)?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'Unknown') === true;
  }

  /**
   * Why the object on `node` must be placed again, or undefined when it stays: only objects the
   * scheduler placed (no spec.nodeName), on a cordoned node, or on a lost one when they allow it.
   */
  private evictionOf(key: string, obj: KubeObject, node: string): 'cordoned' | 'lost' | undefined {
    if (specOf(obj).nodeName !== undefined) return undefined;
    const assumed = this.assumed.get(key);
    if (assumed !== undefined && assumed.node !== placementOf(obj.status)?.nodeName) return undefined; // placed again already
    if (this.nodes.get(node)?.spec?.unschedulable === true) return 'cordoned';
    if (this.isLost(node) && specOf(obj).evictionPolicy === 'Recreate') return 'lost';
    return undefined;
  }

  private nodeLostCondition(node: string, obj: KubeObject): Record<string, string> {
    const recreate = specOf(obj).evictionPolicy === 'Recreate' && specOf(obj).nodeName === undefined;
    return {
      type: NODE_LOST_CONDITION, status: 'True', reason: 'HeartbeatExpired',
      message: recreate
        ? `Node ${node} stopped renewing its heartbeat; spec.evictionPolicy Recreate: recreated on another node`
        : `Node ${node} stopped renewing its heartbeat; the object waits for it (spec.evictionPolicy Recreate would recreate it elsewhere)`,
      lastTransitionTime: new Date(this.clock.now()).toISOString(),
    };
  }

  private condition(status: 'True' | 'False', reason: string, message: string): Record<string, string> {
    return { type: SCHEDULED_CONDITION, status, reason, message, lastTransitionTime: new Date(this.clock.now()).toISOString() };
  }

  private async writeStatus(kind: Kind, o: KubeObject, status: Record<string, unknown>, signal: AbortSignal): Promise<void> {
    const r = resourceOf(kind);
    const name = o.metadata?.name ?? '';
    const namespace = o.metadata?.namespace ?? '';
    try {
      await this.api.patchNamespacedCustomObjectStatus({
        group: r.group, version: r.version, plural: r.plural, namespace, name,
        body: { metadata: { resourceVersion: o.metadata?.resourceVersion }, status },
      }, requestOptions(signal, PatchStrategy.MergePatch));
    } catch (err) {
      if (isNotFound(err)) return;
      throw kubeError(err, `write the placement of ${kind} ${namespace}/${name}`);
    }
  }
}

/** Whether `obj` already says its node `node` is lost. */
function hasNodeLost(obj: KubeObject, node: string): boolean {
  return conditionsOf(obj).some((c) => c.type === NODE_LOST_CONDITION && c.status === 'True' && c.message?.includes(`Node ${node} `) === true);
}

/** Runs `tasks` with at most `limit` at once. */
async function runLimited(tasks: readonly (() => Promise<void>)[], limit: number): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < tasks.length) {
      const task = tasks[next++];
      if (task !== undefined) await task();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
}
