/**
 * Desired objects from Kubernetes: Containers and VirtualMachines listed and watched through
 * client-node informers (src/kube/kube-informer.ts), optionally in one namespace and, with a
 * node name, only those assigned to that node: spec.nodeName is that node, or spec.nodeName is
 * unset and the scheduler's status.placement.nodeName is (two server-side field selectors per
 * kind, checked again here; spec.nodeName wins when both are set).
 *
 * Guarantees:
 * - `start` resolves once both kinds are listed and the store holds exactly what the API holds
 *   (one replaceAll); after that every change is an upsert or a remove.
 * - Every full list (410 relist, periodic resync) drops objects that vanished meanwhile, so
 *   nothing is lost while the watch was down, and nothing is duplicated: keys are
 *   namespace/kind/name and the store ignores writes that change nothing.
 * - An object the validator refuses is reported by `problems()` and keeps its last good version
 *   in the store (a CRD older than the agent must not read as "delete"); it is still marked
 *   deleting when it is deleted, so its finalizer is released.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { KINDS, type Kind } from '../api/v1alpha1/group.js';
import type { Desired } from '../store/desired.js';
import { type ObjectKey, objectKey } from '../store/object-key.js';
import { type KubeObject, desiredFromKube } from '../kube/desired-from-kube.js';
import { placementOf } from '../kube/kube-object-tracker.js';
import { kubeError, statusCodeOf } from '../kube/kube-client.js';
import { KubeInformer } from '../kube/kube-informer.js';
import type { KubeObjectTracker } from '../kube/kube-object-tracker.js';
import type { LeaderElector } from '../kube/leader-election.js';
import type { KubeMovedAway } from './kube-moved-away.js';
import type { KubeHandover } from './kube-handover.js';
import { type Clock, systemClock } from '../shared/clock.js';
import type { Source } from './source.js';
import type { SourceProblem } from '../store/source-problem.js';
import type { StoreWriter } from '../store/desired-store.js';

/** How the kube source connects and what it selects. */
export interface KubeSourceOptions {
  readonly kubeConfig: KubeConfig;
  /** Only this namespace; all namespaces when absent. */
  readonly namespace?: string;
  /** Only objects whose spec.nodeName is this node. */
  readonly node?: string;
  readonly logger: Logger;
  /** Source id and first part of every key (default "kube"). */
  readonly id?: string;
  /** Full relist period (default 10 min; 0 turns it off). */
  readonly resyncMs?: number;
  /** Shared with the status writer and finalizer gate: the freshest metadata and status. */
  readonly tracker?: KubeObjectTracker;
  /** Informer restart backoff bounds (default 1 s–30 s). */
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
  readonly clock?: Clock;
  /**
   * For a cluster-wide agent run with replicas: `start` first waits to win this election (a
   * standby stays unsynced, so not ready), and `onStoppedLeading` is called if leadership is
   * later lost (the daemon should exit, as client-go's controllers do). Per-node agents need none.
   */
  readonly leaderElection?: { readonly elector: LeaderElector; readonly onStoppedLeading: () => void };
  /**
   * Work that runs beside the informers from `start` until the signal aborts, never gating them:
   * per-node agents' once-per-cluster election, the node's inventory and heartbeat.
   */
  readonly background?: readonly { run(signal: AbortSignal): Promise<void> }[];
  /** Per-node agents: where objects that left this node are remembered, so their instances here go. */
  readonly movedAway?: KubeMovedAway;
  /** Per-node agents that move data: records arrivals from other nodes and holds instances that left (kube-handover.ts). */
  readonly handover?: KubeHandover;
}

/** The `kube` source; see the file comment. */
export class KubeSource implements Source {
  readonly id: string;
  readonly description: string;
  private readonly log: Logger;
  private readonly desired = new Map<ObjectKey, Desired>();
  private readonly invalid = new Map<ObjectKey, SourceProblem>();
  private readonly failures = new Map<string, SourceProblem>();
  /** Per-node agents: which informer (spec or placement selector) holds each key. */
  private readonly heldBy = new Map<ObjectKey, Via>();
  private readonly informers: KubeInformer[] = [];
  private store: StoreWriter | undefined;
  private resyncTimer: unknown;
  private waitingForLeadership = false;
  private readonly clock: Clock;

  constructor(private readonly options: KubeSourceOptions) {
    this.id = options.id ?? 'kube';
    this.description = ['kube', options.namespace !== undefined ? `namespace=${options.namespace}` : '',
      options.node !== undefined ? `node=${options.node}` : ''].filter((s) => s !== '').join(' ');
    this.log = options.logger.child({ source: this.id });
    this.clock = options.clock ?? systemClock;
  }

  async start(store: StoreWriter, signal: AbortSignal): Promise<void> {
    if (this.informers.length > 0) throw new Error('cannot start the kube source twice');
    const stop = (): void => {
      this.clock.clearTimeout(this.resyncTimer);
      for (const inf of this.informers) void inf.stop();
    };
    signal.addEventListener('abort', stop, { once: true });
    const node = this.options.node;
    const selectors: readonly [Via, string | undefined][] = node === undefined
      ? [['all', undefined]]
      : [['spec', `spec.nodeName=${node}`], ['placement', `status.placement.nodeName=${node}`]];
    for (const [kind, [via, fieldSelector]] of (Object.keys(KINDS) as Kind[]).flatMap((k) => selectors.map((sel) => [k, sel] as const))) {
      const informer = new KubeInformer({
        kubeConfig: this.options.kubeConfig,
        kind,
        ...(this.options.namespace !== undefined ? { namespace: this.options.namespace } : {}),
        ...(fieldSelector !== undefined ? { fieldSelector } : {}),
        logger: this.log,
        ...(this.options.minBackoffMs !== undefined ? { minBackoffMs: this.options.minBackoffMs } : {}),
        ...(this.options.maxBackoffMs !== undefined ? { maxBackoffMs: this.options.maxBackoffMs } : {}),
        clock: this.clock,
        handlers: {
          upsert: (obj) => this.upsert(kind, obj),
          remove: (obj) => this.remove(kind, obj, via),
          listed: (objs) => this.listed(kind, objs, via),
          health: (err, retryInMs) => this.health(kind, via, err, retryInMs),
        },
      });
      this.informers.push(informer);
    }
    if (signal.aborted) return;
    for (const work of this.options.background ?? []) void work.run(signal);
    if (this.options.leaderElection !== undefined && !(await this.lead(this.options.leaderElection, signal))) return;
    for (const inf of this.informers) inf.start();
    const aborted = new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
    await Promise.race([Promise.all(this.informers.map((i) => i.synced)), aborted]);
    if (signal.aborted) return;
    // From here on every change goes straight to the store.
    this.store = store;
    store.replaceAll(this.id, [...this.desired.values()]);
    this.log.info({ objects: this.desired.size }, 'synced');
    this.scheduleResync();
  }

  /** Resolves true once elected, false when `signal` aborted first. */
  private lead(election: NonNullable<KubeSourceOptions['leaderElection']>, signal: AbortSignal): Promise<boolean> {
    this.waitingForLeadership = true;
    return new Promise((resolve) => {
      void election.elector.run({
        onStartedLeading: () => {
          this.waitingForLeadership = false;
          this.log.info('elected: starting the informers');
          resolve(true);
        },
        onStoppedLeading: () => {
          if (!signal.aborted) election.onStoppedLeading();
        },
      }, signal).then(() => resolve(false));
    });
  }

  problems(): readonly SourceProblem[] {
    const standby: SourceProblem[] = this.waitingForLeadership
      ? [{ line: 'kube: waiting to be elected leader (another replica leads)', message: 'waiting to be elected leader' }]
      : [];
    return [...standby, ...this.failures.values(), ...this.invalid.values()];
  }

  private scheduleResync(): void {
    const resyncMs = this.options.resyncMs ?? 10 * 60_000;
    if (resyncMs <= 0) return;
    this.resyncTimer = this.clock.setTimeout(() => {
      for (const inf of this.informers) inf.relist();
      this.scheduleResync();
    }, resyncMs);
  }

  private keyOf(kind: Kind, obj: KubeObject): ObjectKey | undefined {
    const { name, namespace } = obj.metadata ?? {};
    if (name === undefined || namespace === undefined) return undefined;
    return objectKey(this.id, namespace, kind, name);
  }

  private mine(obj: KubeObject): boolean {
    if (this.options.node === undefined) return true;
    return assignedNode(obj) === this.options.node;
  }

  private upsert(kind: Kind, obj: KubeObject): void {
    const key = this.keyOf(kind, obj);
    if (key === undefined) return;
    this.options.tracker?.observe(key, obj);
    if (!this.mine(obj)) {
      this.dropKey(key);
      return;
    }
    if (this.options.node !== undefined) this.heldBy.set(key, specNode(obj) !== undefined ? 'spec' : 'placement');
    const converted = desiredFromKube(this.id, kind, obj);
    // Before the store sees it (and any status is written over status.node): where its data is.
    if (converted.ok) this.options.handover?.arrived(key, obj);
    if (converted.ok) {
      this.invalid.delete(key);
      this.set(key, converted.desired);
      return;
    }
    const issue = converted.issues[0];
    const m = obj.metadata ?? {};
    const message = converted.issues.map((i) => `${i.path}: ${i.message}`).join('; ');
    this.invalid.set(key, {
      line: `${kind} ${m.namespace ?? ''}/${m.name ?? ''}: ${message}`,
      message,
      kind, ...(m.namespace !== undefined ? { namespace: m.namespace } : {}), ...(m.name !== undefined ? { name: m.name } : {}),
      ...(issue !== undefined ? { path: issue.path, rule: issue.rule } : {}),
    });
    this.log.warn({ key, issues: converted.issues }, 'invalid object; keeping its last valid version');
    const previous = this.desired.get(key);
    if (previous !== undefined && m.deletionTimestamp !== undefined && previous.deleting !== true) {
      this.set(key, { ...previous, deleting: true });
    }
  }

  private set(key: ObjectKey, d: Desired): void {
    this.options.movedAway?.back(key);
    this.desired.set(key, d);
    this.store?.upsert(d);
  }

  /** An informer lost `obj`; it goes only if that informer is the one holding it. */
  private remove(kind: Kind, obj: KubeObject, via: Via): void {
    const key = this.keyOf(kind, obj);
    if (key === undefined || !this.heldVia(key, via)) return;
    this.dropKey(key);
  }

  private heldVia(key: ObjectKey, via: Via): boolean {
    const held = this.heldBy.get(key);
    return via === 'all' || held === undefined || held === via;
  }

  private dropKey(key: ObjectKey): void {
    this.heldBy.delete(key);
    this.options.tracker?.forget(key);
    this.invalid.delete(key);
    const held = this.desired.get(key);
    // Held here and not on its way out through our finalizer: it moved to another node (or was
    // removed behind the finalizer's back); its instance here must go.
    // With a handover, an instance whose data moves is held (stopped, kept) until the new node has it.
    if (held !== undefined && held.deleting !== true && this.options.handover?.hold(held) !== true) this.options.movedAway?.add(held);
    if (this.desired.delete(key)) this.store?.remove(key);
  }

  private listed(kind: Kind, objs: readonly KubeObject[], via: Via): void {
    const present = new Set<ObjectKey>();
    for (const obj of objs) {
      const key = this.keyOf(kind, obj);
      if (key === undefined) continue;
      present.add(key);
      this.upsert(kind, obj);
    }
    const prefix = `${this.id}/`;
    for (const key of [...this.desired.keys(), ...this.invalid.keys()]) {
      if (key.startsWith(prefix) && key.split('/')[2] === kind && !present.has(key) && this.heldVia(key, via)) this.dropKey(key);
    }
  }

  private health(kind: Kind, via: Via, err: unknown, retryInMs: number): void {
    const id = `${kind}/${via}`;
    if (err === undefined) {
      this.failures.delete(id);
      return;
    }
    // 404 on the list: the API server does not serve the kind, so the CRDs are missing.
    const hint = statusCodeOf(err) === 404 ? ' (are the CRDs installed? kubectl apply -f crds/)' : '';
    const message = `${kubeError(err, `list and watch ${KINDS[kind].plural}`).message}${hint} (retrying in ${Math.round(retryInMs / 1000)} s)`;
    this.failures.set(id, { line: `kube ${KINDS[kind].plural}: ${message}`, message, kind });
  }
}

/** Which informer an object comes through: every object, or a per-node agent's two selectors. */
type Via = 'all' | 'spec' | 'placement';

const specNode = (obj: KubeObject): string | undefined => {
  const n = (obj.spec as { nodeName?: unknown } | undefined)?.nodeName;
  return typeof n === 'string' && n !== '' ? n : undefined;
};

/** The node an object is assigned to: spec.nodeName when set, else the scheduler's status.placement.nodeName. */
export function assignedNode(obj: KubeObject): string | undefined {
  return specNode(obj) ?? placementOf(obj.status)?.nodeName;
}
