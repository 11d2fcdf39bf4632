/**
 * The freshest copy of each object's metadata and status that this process knows of: from the
 * informers and from the responses to its own writes, whichever is newer. Writers use it to send
 * the current resourceVersion (so a write right after our own status update does not conflict
 * with ourselves) and to tell whether a status would change anything.
 *
 * Guarantees: an older copy never replaces a newer one (see isNewerResourceVersion), so a watch
 * event that lags behind our own write cannot make us write the same status again.
 */
import type { KubernetesObject } from '@kubernetes/client-node';
import type { Status, StatusPlacement } from '../api/v1alpha1/types.js';
import type { ObjectKey } from '../store/object-key.js';
import { isNewerResourceVersion } from './kube-client.js';

/** What the tracker keeps of one object. */
export interface TrackedObject {
  readonly uid?: string;
  readonly resourceVersion?: string;
  readonly finalizers: readonly string[];
  readonly deleting: boolean;
  readonly status?: Status;
  /** status.placement as the scheduler wrote it (kept even when no agent wrote status yet). */
  readonly placement?: StatusPlacement;
}

/** See the file comment; one per agent, shared by the source and the writers. */
export class KubeObjectTracker {
  private readonly objects = new Map<ObjectKey, TrackedObject>();

  /** Records `obj` as seen for `key` unless what we hold is newer. */
  observe(key: ObjectKey, obj: KubernetesObject & { status?: unknown }): void {
    const current = this.objects.get(key);
    const rv = obj.metadata?.resourceVersion;
    // A different uid is a new object of the same name: whatever we held is moot.
    const sameObject = current?.uid === undefined || current.uid === obj.metadata?.uid;
    if (current !== undefined && sameObject && !isNewerResourceVersion(rv, current.resourceVersion)) return;
    this.objects.set(key, {
      ...(obj.metadata?.uid !== undefined ? { uid: obj.metadata.uid } : {}),
      ...(rv !== undefined ? { resourceVersion: rv } : {}),
      finalizers: obj.metadata?.finalizers ?? [],
      deleting: obj.metadata?.deletionTimestamp !== undefined,
      ...(isWrittenStatus(obj.status) ? { status: obj.status } : {}),
      ...(placementOf(obj.status) !== undefined ? { placement: placementOf(obj.status) } : {}),
    });
  }

  /** Forgets `key` (the object was deleted). */
  forget(key: ObjectKey): void {
    this.objects.delete(key);
  }

  /** The freshest copy known for `key`, if any. */
  get(key: ObjectKey): TrackedObject | undefined {
    return this.objects.get(key);
  }
}

/**
 * Whether `status` is one an agent wrote (it has conditions), not the CRD's placeholder
 * (`observedGeneration: 0` until the first write) nor a hand-made one: only those count as written.
 */
function isWrittenStatus(status: unknown): status is Status {
  return typeof status === 'object' && status !== null && Array.isArray((status as { conditions?: unknown }).conditions);
}

/** status.placement when it names a node. */
export function placementOf(status: unknown): StatusPlacement | undefined {
  const p = (status as { placement?: { nodeName?: unknown; time?: unknown } } | null | undefined)?.placement;
  if (typeof p?.nodeName !== 'string' || p.nodeName === '') return undefined;
  return { nodeName: p.nodeName, ...(typeof p.time === 'string' ? { time: p.time } : {}) };
}
