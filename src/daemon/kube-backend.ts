/**
 * Everything `hyperlet run --source kube` needs, wired together: the informer source, the
 * status writer, the event recorder and the finalizer gate, sharing one client configuration
 * and one KubeObjectTracker (so writers always send the freshest resourceVersion).
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { SourceBackend } from '../reconcile/backend.js';
import type { Source } from '../sources/source.js';
import { KubeSource } from '../sources/kube-source.js';
import { KubeFinalizerGate } from '../status/kube-finalizer-gate.js';
import { KubeEnvironmentResolver } from '../sources/kube-environment-resolver.js';
import { KubeSecretReader } from '../kube/kube-secret-reader.js';
import { KubeEventSink, KubeRecorder } from '../status/kube-recorder.js';
import { KubeStatusWriter } from '../status/kube-status-writer.js';
import { loadKubeConfig, shareConnections } from '../kube/kube-client.js';
import { KubeObjectTracker } from '../kube/kube-object-tracker.js';
import { KubeLeaseClient, LeaderElector } from '../kube/leader-election.js';
import { ClusterLeadership, type ClusterTask } from '../kube/cluster-leadership.js';
import { HypervisorNodePublisher } from '../status/hypervisor-node-publisher.js';
import type { HostFacts } from '../status/hypervisor-node-status.js';
import { NodeLifecycle } from '../status/node-lifecycle.js';
import { KubeScheduler } from '../scheduler/kube-scheduler.js';
import type { Desired } from '../store/desired.js';
import type { ObjectKey } from '../store/object-key.js';
import { KubeMovedAway } from '../sources/kube-moved-away.js';
import { KubeHandover } from '../sources/kube-handover.js';

/** How the kube source and its status writer, recorder and finalizers are wired. */
export interface KubeBackendOptions {
  /** Source id, the first part of every key (default "kube"). */
  readonly id?: string;
  /** Path of a kubeconfig; client-node's defaults (KUBECONFIG, ~/.kube/config, in-cluster) when absent. */
  readonly kubeconfig?: string;
  /** Only this namespace; all when absent. */
  readonly namespace?: string;
  /** Only objects with spec.nodeName equal to this. */
  readonly node?: string;
  /** The Events' source.host (default `node`). */
  readonly host?: string;
  readonly logger: Logger;
  /** A ready client configuration instead of `kubeconfig` (tests, benchmarks). */
  readonly kubeConfig?: KubeConfig;
  /** Full relist period of the informers (default 10 min). */
  readonly resyncMs?: number;
  /**
   * Leader election for a cluster-wide agent run with replicas (no `node`): only the leader
   * lists, watches and reconciles; `onStoppedLeading` is called when leadership is lost.
   */
  readonly leaderElection?: {
    /** Unique per replica (default: the host name and the process id). */
    readonly identity?: string;
    /** The Lease (default hyperlet-system/hyperlet-agent). */
    readonly leaseNamespace?: string;
    readonly leaseName?: string;
    readonly onStoppedLeading: () => void;
  };
  /**
   * Per-node agents (`node` set) with --leader-elect: all campaign for one Lease (default
   * hyperlet-system/hyperlet-cluster) and the leader runs `tasks`, the once-per-cluster work.
   */
  readonly clusterLeadership?: {
    readonly identity?: string;
    readonly leaseNamespace?: string;
    readonly leaseName?: string;
    readonly tasks?: readonly ClusterTask[];
    /** Lease timing (client-go's defaults 15 s / 10 s / 2 s). */
    readonly leaseDurationMs?: number;
    readonly renewDeadlineMs?: number;
    readonly retryPeriodMs?: number;
  };
  /** Per-node agents: publish this node's HypervisorNode and renew its heartbeat Lease. */
  readonly inventory?: InventoryOptions;
  /**
   * Per-node agents: move instances with their data between nodes (sources/kube-handover.ts): a
   * directory of this agent's own and the token all agents' handover servers accept.
   */
  readonly handover?: { readonly dir: string; readonly token: string };
  /** With clusterLeadership: the leader also places objects without spec.nodeName (src/scheduler/). */
  readonly scheduler?: { readonly containerMemoryBytes?: number; readonly batchMs?: number };
}

/** What a per-node agent publishes about its host. */
export interface InventoryOptions {
  readonly facts: () => Promise<HostFacts>;
  /** The objects placed on this node. */
  readonly objects: () => readonly Desired[];
  readonly labels: Readonly<Record<string, string>>;
  /** Heartbeat Lease renewal (default 10 s; the Lease lasts 4 times that). */
  readonly heartbeatMs?: number;
}

/** The kube backend plus what the daemon may want besides the SourceBackend interface. */
export interface KubeBackend extends SourceBackend<Source> {
  readonly source: KubeSource;
  readonly statusWriter: KubeStatusWriter;
  readonly recorder: KubeRecorder;
  readonly finalizers: KubeFinalizerGate;
  readonly kubeConfig: KubeConfig;
  /** The once-per-cluster election of per-node agents, when asked for (started by the source). */
  readonly leadership?: ClusterLeadership;
  /** This node's HypervisorNode and heartbeat (started by the source); poke it when objects change. */
  readonly inventory?: HypervisorNodePublisher;
  /** Moves with data (when asked for): wrap providers with it and serve it to other agents. */
  readonly handover?: KubeHandover;
}

/** Builds the kube backend; throws when no kubeconfig can be loaded. Starts nothing. */
export function createKubeBackend(options: KubeBackendOptions): KubeBackend {
  const kubeConfig = shareConnections(options.kubeConfig ?? loadKubeConfig(options.kubeconfig));
  const logger = options.logger.child({ source: 'kube' });
  const tracker = new KubeObjectTracker();
  const host = options.host ?? options.node;
  const le = options.leaderElection;
  const leaderElection = le === undefined ? undefined : {
    elector: new LeaderElector({
      lease: new KubeLeaseClient(kubeConfig, le.leaseNamespace ?? 'hyperlet-system', le.leaseName ?? 'hyperlet-agent'),
      identity: le.identity ?? `${hostname()}_${process.pid}`,
      logger,
    }),
    onStoppedLeading: le.onStoppedLeading,
  };
  const cl = options.clusterLeadership;
  if (cl !== undefined && options.node === undefined) throw new TypeError('cannot elect a cluster leader among agents without a node');
  const leadership = cl === undefined ? undefined : new ClusterLeadership({
    elector: new LeaderElector({
      lease: new KubeLeaseClient(kubeConfig, cl.leaseNamespace ?? 'hyperlet-system', cl.leaseName ?? 'hyperlet-cluster'),
      identity: cl.identity ?? `${options.node ?? hostname()}_${randomUUID().slice(0, 8)}`,
      logger,
      ...(cl.leaseDurationMs !== undefined ? { leaseDurationMs: cl.leaseDurationMs } : {}),
      ...(cl.renewDeadlineMs !== undefined ? { renewDeadlineMs: cl.renewDeadlineMs } : {}),
      ...(cl.retryPeriodMs !== undefined ? { retryPeriodMs: cl.retryPeriodMs } : {}),
    }),
    logger,
    ...(cl.tasks !== undefined ? { tasks: cl.tasks } : {}),
  });
  const inv = options.inventory;
  if (inv !== undefined && options.node === undefined) throw new TypeError('cannot publish a HypervisorNode without a node');
  const inventory = inv === undefined || options.node === undefined ? undefined : new HypervisorNodePublisher({
    kubeConfig, node: options.node, facts: inv.facts, objects: inv.objects, labels: inv.labels, logger,
    ...(inv.heartbeatMs !== undefined ? { heartbeatMs: inv.heartbeatMs } : {}),
  });
  // The elected agent checks every node's heartbeat as often as its own beats.
  leadership?.add(new NodeLifecycle({ kubeConfig, logger, ...(inv?.heartbeatMs !== undefined ? { periodMs: inv.heartbeatMs } : {}) }));
  const sc = options.scheduler;
  if (sc !== undefined && leadership === undefined) throw new TypeError('cannot run the scheduler without cluster leadership');
  if (sc !== undefined) {
    leadership?.add(new KubeScheduler({
      kubeConfig, logger, ...sc, ...(options.namespace !== undefined ? { namespace: options.namespace } : {}),
    }));
  }
  // Per-node agents remove the instances of objects that left their node (tombstones, like a dir
  // source's removed files) and leave those objects' status and finalizer to their new node.
  const movedAway = options.node === undefined ? undefined : new KubeMovedAway();
  const handover = options.handover === undefined || options.node === undefined ? undefined : new KubeHandover({
    kubeConfig, node: options.node, sourceId: options.id ?? 'kube', dir: options.handover.dir, token: options.handover.token, logger,
  });
  if (handover !== undefined) handover.onReleased = (d): void => movedAway?.add(d);
  const leaveAlone = movedAway === undefined ? undefined : {
    leaveAlone: (key: ObjectKey): boolean => movedAway.has(key) || handover?.isHeld(key) === true,
  };
  const background = [...(leadership !== undefined ? [leadership] : []), ...(inventory !== undefined ? [inventory] : [])];
  return {
    source: new KubeSource({
      kubeConfig, logger, tracker,
      ...(options.id !== undefined ? { id: options.id } : {}),
      ...(options.namespace !== undefined ? { namespace: options.namespace } : {}),
      ...(options.node !== undefined ? { node: options.node } : {}),
      ...(options.resyncMs !== undefined ? { resyncMs: options.resyncMs } : {}),
      ...(leaderElection !== undefined ? { leaderElection } : {}),
      ...(background.length > 0 ? { background } : {}),
      ...(movedAway !== undefined ? { movedAway } : {}),
      ...(handover !== undefined ? { handover } : {}),
    }),
    statusWriter: new KubeStatusWriter({
      kubeConfig, tracker, logger, ...leaveAlone, ...(handover !== undefined ? { movingFrom: (key: ObjectKey) => handover.movingFrom(key) } : {}),
    }),
    recorder: new KubeRecorder({ sink: new KubeEventSink(kubeConfig), logger, ...(host !== undefined ? { host } : {}) }),
    // environmentFrom secretKeyRef: a Secret of the object's own namespace, read at each reconcile.
    environment: new KubeEnvironmentResolver(new KubeSecretReader(kubeConfig)),
    finalizers: new KubeFinalizerGate({ kubeConfig, tracker, logger, ...leaveAlone }),
    ...(movedAway !== undefined ? { records: movedAway } : {}),
    kubeConfig,
    ...(leadership !== undefined ? { leadership } : {}),
    ...(inventory !== undefined ? { inventory } : {}),
    ...(handover !== undefined ? { handover } : {}),
  };
}
