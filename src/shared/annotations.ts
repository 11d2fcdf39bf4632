/**
 * The annotations hyperlet reads on objects, in one place so every layer names them the same
 * way. Authors set them; hyperlet acts on each as its doc says.
 */

/** `"true"`: take over an existing instance hyperlet did not create (when the host policy allows it). */
export const ADOPT_ANNOTATION = 'hyperlet.io/adopt';
/** `"true"`: observe and report only; change nothing on the host for this object. */
export const PAUSED_ANNOTATION = 'hyperlet.io/paused';
/** `"disabled"`: when the object leaves its source, keep its instance and let go of it. */
export const PRUNE_ANNOTATION = 'hyperlet.io/prune';
/** Any new value: reboot the instance once (acted on once per value). */
export const REBOOT_REQUEST_ANNOTATION = 'hyperlet.io/reboot-request';
/**
 * `SNAPSHOT` or `SNAPSHOT@TOKEN`: stop the instance, restore the snapshot, bring it back to the
 * declared state; acted on once per value (a new TOKEN restores the same snapshot again).
 */
export const RESTORE_REQUEST_ANNOTATION = 'hyperlet.io/restore-request';

/** The snapshot a restore-request value names: the part before an optional '@TOKEN'. */
export function snapshotOfRestoreRequest(value: string): string {
  const at = value.indexOf('@');
  return at < 0 ? value : value.slice(0, at);
}
/**
 * `SNAPSHOT`: take one snapshot of that name (origin 'request') once the instance is steady,
 * unless it has one already; a new value takes another. Request snapshots are never pruned.
 */
export const SNAPSHOT_REQUEST_ANNOTATION = 'hyperlet.io/snapshot-request';
/** Set on objects the HTTP API returns: where the object came from (`SOURCE:FILE`). */
export const SOURCE_ANNOTATION = 'hyperlet.io/source';
