/**
 * What a per-node kube agent remembers of objects that left its node (spec.nodeName changed, or
 * the object vanished from its view without passing through its finalizer), so their instances
 * here are removed: the reconciler sees each as a tombstone (ObjectRecords.lastApplied) and
 * deletes its instance, as a dir source does for a removed file.
 *
 * Guarantees: such a key is tombstoned only while it is not back on this node; the object itself
 * belongs to another agent now, so `owns(key)` tells the status writer and the finalizer gate to
 * leave it alone (no status write, no finalizer release from here). In memory only: an object
 * moved while this agent was down is not known here (its instance stays; see README).
 */
import type { ObjectRecords } from '../reconcile/backend.js';
import type { Desired } from '../store/desired.js';
import type { ObjectKey } from '../store/object-key.js';

/** ObjectRecords of the objects that left this node; see the file comment. */
export class KubeMovedAway implements ObjectRecords {
  private readonly gone = new Map<ObjectKey, Desired>();

  /** `d` (as last held here) left this node. */
  add(d: Desired): void {
    this.gone.set(d.key, d);
  }

  /** The object is on this node again: reconciled as declared, not as a tombstone. */
  back(key: ObjectKey): void {
    this.gone.delete(key);
  }

  /** Whether `key` left this node and its instance here is being removed. */
  has(key: ObjectKey): boolean {
    return this.gone.has(key);
  }

  keys(): readonly ObjectKey[] {
    return [...this.gone.keys()];
  }

  lastApplied(key: ObjectKey): Desired | undefined {
    return this.gone.get(key);
  }

  /** Objects on this node need no memory here: their finalizer holds them until their instance is gone. */
  remember(): void {
    // nothing: see the method comment
  }

  forget(key: ObjectKey): void {
    this.gone.delete(key);
  }
}
