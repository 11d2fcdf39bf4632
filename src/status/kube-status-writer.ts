/**
 * Writes status to the API server through the status subresource, and only when it changed.
 *
 * Guarantees:
 * - A write whose status equals the freshest one known (from the informer or our own last
 *   write, see KubeObjectTracker) sends nothing: a resync of unchanged objects writes nothing.
 * - Each write is a PUT of /status carrying the freshest resourceVersion known: the API server
 *   takes nothing but status from it, and refuses it with 409 when the object moved on
 *   meanwhile; that becomes a ConflictError, which the controller retries with backoff on fresh
 *   data. Nothing is ever overwritten blindly.
 * - A write for an object that no longer exists (404) is dropped: there is nothing to report to.
 * - status.placement and the Scheduled condition (the scheduler's, see src/scheduler/) are carried over as last seen; a
 *   placement written meanwhile changes the resourceVersion, so the PUT gets 409 and retries.
 */
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Status } from '../api/v1alpha1/types.js';
import type { Desired } from '../store/desired.js';
import { canonicalEqual } from '../store/desired.js';
import type { ObjectKey } from '../store/object-key.js';
import { isNotFound, kubeError, requestOptions, resourceOf } from '../kube/kube-client.js';
import type { KubeObjectTracker } from '../kube/kube-object-tracker.js';
import type { KubeObject } from '../kube/desired-from-kube.js';
import type { StatusWriter } from '../reconcile/backend.js';
import { type Clock, systemClock } from '../shared/clock.js';

/** The client and the tracker the status writer works with. */
export interface KubeStatusWriterOptions {
  readonly kubeConfig: KubeConfig;
  /** Shared with the kube source, which feeds it the informers' objects. */
  readonly tracker: KubeObjectTracker;
  readonly logger: Logger;
  /** Keys whose object belongs to another node's agent now (moved away): no status is written from here. */
  readonly leaveAlone?: (key: ObjectKey) => boolean;
  /** The node the object's data is coming from while it moves here: status says phase Moving and condition Moving. */
  readonly movingFrom?: (key: ObjectKey) => string | undefined;
  /** Time for the Moving condition (default: the system clock). */
  readonly clock?: Clock;
}

/** StatusWriter of the kube source; see the file comment. */
export class KubeStatusWriter implements StatusWriter {
  private readonly api: CustomObjectsApi;
  private readonly log: Logger;
  private writes = 0;

  constructor(private readonly options: KubeStatusWriterOptions) {
    this.api = options.kubeConfig.makeApiClient(CustomObjectsApi);
    this.log = options.logger.child({ component: 'kube-status-writer' });
  }

  /** Status write requests sent so far (for metrics and benchmarks). */
  get writeCount(): number {
    return this.writes;
  }

  /** `status` while the data comes from node `from`: phase Moving, condition Moving=True (its time kept from `previous`). */
  private moving(status: Status, from: string, previous: Status | undefined): Status {
    const before = previous?.conditions.find((c) => c.type === 'Moving' && c.status === 'True');
    const condition = {
      type: 'Moving' as const, status: 'True' as const, reason: 'DataHandover',
      message: `Moving from node ${from}: the instance there is stopped and its data is copied here before it starts`,
      lastTransitionTime: before?.lastTransitionTime ?? new Date((this.options.clock ?? systemClock).now()).toISOString(),
    };
    return { ...status, phase: 'Moving', conditions: [...status.conditions.filter((c) => c.type !== 'Moving'), condition] };
  }

  lastWritten(key: ObjectKey): Status | undefined {
    return this.options.tracker.get(key)?.status;
  }

  async write(d: Desired, status: Status, signal: AbortSignal): Promise<void> {
    if (this.options.leaveAlone?.(d.key) === true) return;
    const tracked = this.options.tracker.get(d.key);
    const from = this.options.movingFrom?.(d.key);
    if (from !== undefined) status = this.moving(status, from, tracked?.status);
    // A PUT replaces all of status: carry the scheduler's placement over, or the agent would
    // drop the very field that assigns the object to it.
    if (tracked?.placement !== undefined && status.placement === undefined) status = { ...status, placement: tracked.placement };
    // The scheduler's Scheduled condition (why the object is where it is: placed, moved off a
    // cordoned or lost node) is its own: carried over as last seen, like the placement.
    const scheduled = tracked?.status?.conditions.find((c) => (c.type as string) === 'Scheduled');
    if (scheduled !== undefined && !status.conditions.some((c) => (c.type as string) === 'Scheduled')) {
      status = { ...status, conditions: [...status.conditions, scheduled] };
    }
    if (tracked?.status !== undefined && canonicalEqual(tracked.status, status)) return;
    signal.throwIfAborted();
    const { kind, metadata } = d.object;
    const r = resourceOf(kind);
    // The freshest version we know of: our own previous write is newer than the informer's copy.
    const resourceVersion = tracked !== undefined && tracked.uid === d.id ? tracked.resourceVersion : metadata.resourceVersion;
    const body = {
      apiVersion: r.apiVersion,
      kind,
      metadata: { name: metadata.name, namespace: metadata.namespace, ...(resourceVersion !== undefined ? { resourceVersion } : {}) },
      status,
    };
    this.writes++;
    try {
      const updated = await this.api.replaceNamespacedCustomObjectStatus(
        { group: r.group, version: r.version, namespace: metadata.namespace, plural: r.plural, name: metadata.name, body },
        requestOptions(signal),
      ) as KubeObject;
      this.options.tracker.observe(d.key, updated);
    } catch (err) {
      if (signal.aborted) throw err;
      if (isNotFound(err)) {
        this.log.debug({ key: d.key }, 'object gone; status not written');
        return;
      }
      throw kubeError(err, `write status of ${kind} ${metadata.namespace}/${metadata.name}`);
    }
  }
}
