/**
 * The `hyperlet.io/cleanup` finalizer: holds a Container or VirtualMachine in the API until its
 * instance is gone (or orphaned on purpose by deletionPolicy Orphan).
 *
 * Guarantees:
 * - `ensure` adds the finalizer before anything is created and does nothing when it is there
 *   already (as far as the freshest copy we know says) or when the object is being deleted (the
 *   API forbids new finalizers then, and nothing will be created for it).
 * - `release` removes only our finalizer; a 404 means the object is gone already, which is done.
 * - Both are merge patches of metadata.finalizers carrying the freshest resourceVersion we know,
 *   so another controller's finalizer added meanwhile is never dropped: the API answers 409,
 *   which becomes a ConflictError and a retry on fresh data.
 */
import { CustomObjectsApi, type KubeConfig, PatchStrategy } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { FINALIZER } from '../api/v1alpha1/crd.js';
import type { Desired } from '../store/desired.js';
import type { ObjectKey } from '../store/object-key.js';
import { isNotFound, kubeError, requestOptions, resourceOf } from '../kube/kube-client.js';
import type { KubeObjectTracker } from '../kube/kube-object-tracker.js';
import type { KubeObject } from '../kube/desired-from-kube.js';
import type { FinalizerGate } from '../reconcile/backend.js';

/** The client and the tracker the finalizer gate works with. */
export interface KubeFinalizerGateOptions {
  readonly kubeConfig: KubeConfig;
  readonly tracker: KubeObjectTracker;
  readonly logger: Logger;
  /** Keys whose object belongs to another node's agent now (moved away): never patched from here. */
  readonly leaveAlone?: (key: ObjectKey) => boolean;
}

/** FinalizerGate of the kube source; see the file comment. */
export class KubeFinalizerGate implements FinalizerGate {
  private readonly api: CustomObjectsApi;
  private readonly log: Logger;

  constructor(private readonly options: KubeFinalizerGateOptions) {
    this.api = options.kubeConfig.makeApiClient(CustomObjectsApi);
    this.log = options.logger.child({ component: 'kube-finalizer-gate' });
  }

  async ensure(d: Desired, signal: AbortSignal): Promise<void> {
    if (this.options.leaveAlone?.(d.key) === true) return;
    const { finalizers, resourceVersion, deleting } = this.freshest(d);
    if (deleting || finalizers.includes(FINALIZER)) return;
    await this.patch(d, [...finalizers, FINALIZER], resourceVersion, signal, 'add');
  }

  async release(d: Desired, signal: AbortSignal): Promise<void> {
    if (this.options.leaveAlone?.(d.key) === true) return;
    const { finalizers, resourceVersion } = this.freshest(d);
    if (!finalizers.includes(FINALIZER)) return;
    await this.patch(d, finalizers.filter((f) => f !== FINALIZER), resourceVersion, signal, 'release');
  }

  /** The finalizers, resourceVersion and deletion state of the freshest copy we know. */
  private freshest(d: Desired): { finalizers: readonly string[]; resourceVersion: string | undefined; deleting: boolean } {
    const tracked = this.options.tracker.get(d.key);
    if (tracked !== undefined && tracked.uid === d.id) {
      return { finalizers: tracked.finalizers, resourceVersion: tracked.resourceVersion, deleting: tracked.deleting || d.deleting === true };
    }
    const m = d.object.metadata;
    return { finalizers: m.finalizers ?? [], resourceVersion: m.resourceVersion, deleting: d.deleting === true };
  }

  private async patch(d: Desired, finalizers: readonly string[], resourceVersion: string | undefined, signal: AbortSignal, verb: string): Promise<void> {
    signal.throwIfAborted();
    const { kind, metadata } = d.object;
    const r = resourceOf(kind);
    try {
      const updated = await this.api.patchNamespacedCustomObject({
        group: r.group, version: r.version, namespace: metadata.namespace, plural: r.plural, name: metadata.name,
        // A merge patch replaces the whole list; the resourceVersion makes it conditional.
        body: { metadata: { finalizers, ...(resourceVersion !== undefined ? { resourceVersion } : {}) } },
      }, requestOptions(signal, PatchStrategy.MergePatch)) as KubeObject;
      this.options.tracker.observe(d.key, updated);
      this.log.debug({ key: d.key, verb }, 'finalizer patched');
    } catch (err) {
      if (signal.aborted) throw err;
      if (isNotFound(err) && verb === 'release') return;
      throw kubeError(err, `${verb} finalizer ${FINALIZER} on ${kind} ${metadata.namespace}/${metadata.name}`);
    }
  }
}
