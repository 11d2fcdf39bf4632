/**
 * The once-per-cluster node lifecycle check (run by the elected agent, like the node lifecycle
 * controller of kube-controller-manager): a HypervisorNode whose heartbeat Lease has not been
 * renewed for its lease duration gets Ready=Unknown, reason HeartbeatExpired.
 *
 * Guarantees:
 * - Expiry is measured on this agent's clock from when it last saw the Lease's renewTime change
 *   (never by comparing clocks of two hosts); a node first seen by this leader gets a full lease
 *   duration (a missing Lease: the default duration) before it can be marked.
 * - Only Ready is written, with a JSON merge patch of /status, and only when it is not already
 *   Unknown; the node's own agent sets it back when it beats and publishes again.
 */
import { CoordinationV1Api, CustomObjectsApi, type KubeConfig, PatchStrategy } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { GROUP, VERSION } from '../api/v1alpha1/group.js';
import { HYPERVISOR_NODE, type HypervisorNodeObject, type NodeCondition, nodeLeaseName } from '../api/v1alpha1/hypervisor-node.js';
import { kubeError, requestOptions } from '../kube/kube-client.js';
import { type Clock, sleep, systemClock } from '../shared/clock.js';

/** What the check remembers of one node's Lease. */
export interface HeartbeatSeen {
  /** The Lease's renewTime as last read (epoch ms), or undefined when it had none or there was no Lease. */
  readonly renewTimeMs: number | undefined;
  /** When (on this agent's clock) that value was first seen. */
  readonly observedAtMs: number;
}

/** One node as the check sees it in one pass. */
export interface NodeHeartbeat {
  readonly node: string;
  readonly ready: NodeCondition['status'] | undefined;
  /** The Lease's renewTime (epoch ms) and duration, or undefined when the node has no Lease. */
  readonly lease: { readonly renewTimeMs: number | undefined; readonly durationMs: number } | undefined;
}

/**
 * One pass of the check: the next memory of what was seen, and the nodes to mark Unknown.
 * Pure; `defaultDurationMs` applies to nodes without a Lease.
 */
export function expiredHeartbeats(
  nodes: readonly NodeHeartbeat[], seen: ReadonlyMap<string, HeartbeatSeen>, nowMs: number, defaultDurationMs: number,
): { seen: Map<string, HeartbeatSeen>; expired: string[] } {
  const next = new Map<string, HeartbeatSeen>();
  const expired: string[] = [];
  for (const n of nodes) {
    const renewTimeMs = n.lease?.renewTimeMs;
    const before = seen.get(n.node);
    const entry = before !== undefined && before.renewTimeMs === renewTimeMs ? before : { renewTimeMs, observedAtMs: nowMs };
    next.set(n.node, entry);
    const durationMs = n.lease?.durationMs ?? defaultDurationMs;
    if (nowMs - entry.observedAtMs >= durationMs && n.ready !== 'Unknown') expired.push(n.node);
  }
  return { seen: next, expired };
}

/** Options of the check. */
export interface NodeLifecycleOptions {
  readonly kubeConfig: KubeConfig;
  readonly logger: Logger;
  /** Where heartbeat Leases live (default hyperlet-system). */
  readonly leaseNamespace?: string;
  /** Time between passes (default 5 s). */
  readonly periodMs?: number;
  /** Lease duration assumed for a node without a Lease (default 40 s). */
  readonly defaultDurationMs?: number;
  readonly clock?: Clock;
}

const toMs = (t: unknown): number | undefined => {
  if (t instanceof Date) return t.getTime();
  if (typeof t === 'string') return Date.parse(t);
  return undefined;
};

/** The check as a ClusterTask (name + run); see the file comment. */
export class NodeLifecycle {
  readonly name = 'node-lifecycle';
  private readonly objects: CustomObjectsApi;
  private readonly leases: CoordinationV1Api;
  private readonly log: Logger;
  private readonly clock: Clock;

  constructor(private readonly options: NodeLifecycleOptions) {
    this.objects = options.kubeConfig.makeApiClient(CustomObjectsApi);
    this.leases = options.kubeConfig.makeApiClient(CoordinationV1Api);
    this.log = options.logger.child({ component: 'node-lifecycle' });
    this.clock = options.clock ?? systemClock;
  }

  /** Checks every `periodMs` until `signal` aborts; API errors end the run (the caller restarts it). */
  async run(signal: AbortSignal): Promise<void> {
    let seen = new Map<string, HeartbeatSeen>();
    while (!signal.aborted) {
      const nodes = await this.read(signal);
      const pass = expiredHeartbeats(nodes, seen, this.clock.now(), this.options.defaultDurationMs ?? 40_000);
      seen = pass.seen;
      for (const node of pass.expired) await this.markUnknown(node, signal);
      await sleep(this.clock, this.options.periodMs ?? 5_000, signal);
    }
  }

  private async read(signal: AbortSignal): Promise<NodeHeartbeat[]> {
    const namespace = this.options.leaseNamespace ?? 'hyperlet-system';
    let list: { items: HypervisorNodeObject[] };
    let leases;
    try {
      list = await this.objects.listClusterCustomObject({ group: GROUP, version: VERSION, plural: HYPERVISOR_NODE.plural },
        requestOptions(signal)) as { items: HypervisorNodeObject[] };
      leases = await this.leases.listNamespacedLease({ namespace }, requestOptions(signal));
    } catch (err) {
      throw kubeError(err, 'list HypervisorNodes and their heartbeat Leases');
    }
    const byName = new Map(leases.items.map((l) => [l.metadata?.name ?? '', l.spec ?? {}]));
    return list.items.map((o) => {
      const spec = byName.get(nodeLeaseName(o.metadata.name));
      return {
        node: o.metadata.name,
        ready: o.status?.conditions?.find((c) => c.type === 'Ready')?.status,
        lease: spec === undefined ? undefined : { renewTimeMs: toMs(spec.renewTime), durationMs: (spec.leaseDurationSeconds ?? 40) * 1000 },
      };
    });
  }

  private async markUnknown(node: string, signal: AbortSignal): Promise<void> {
    const condition: NodeCondition = {
      type: 'Ready', status: 'Unknown', reason: 'HeartbeatExpired',
      message: `The agent stopped renewing its heartbeat Lease ${this.options.leaseNamespace ?? 'hyperlet-system'}/${nodeLeaseName(node)}`,
      lastTransitionTime: new Date(this.clock.now()).toISOString(),
    };
    try {
      await this.objects.patchClusterCustomObjectStatus({
        group: GROUP, version: VERSION, plural: HYPERVISOR_NODE.plural, name: node, body: { status: { conditions: [condition] } },
      }, requestOptions(signal, PatchStrategy.MergePatch));
      this.log.warn({ node }, 'heartbeat expired: node Ready=Unknown');
    } catch (err) {
      throw kubeError(err, `mark HypervisorNode ${node} Ready=Unknown`);
    }
  }
}
