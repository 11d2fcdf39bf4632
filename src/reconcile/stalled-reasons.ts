/**
 * Which failures stall an object: the reasons after which hyperlet cannot make progress until the
 * object or the host changes, so status says `Stalled=True` and kstatus (the health check of Flux,
 * Argo CD and kpt, sigs.k8s.io/cli-utils) reports `Failed` at once instead of `InProgress` until a
 * timeout. Every other failure is retried with backoff and reported as `Reconciling=True` until it
 * has repeated RETRIES_BEFORE_STALLED times in a row.
 *
 * One line per reason: a new TerminalError reason, or a policy refusal, is added here and in the
 * README's table (a unit test keeps the two equal).
 */

/** Why a reason stalls the object: what has to change before hyperlet can go on. */
export type StallCause = 'object' | 'host' | 'object or host';

/** The reasons that mean "no progress without a change", with what has to change. */
export const STALLED_REASONS: Readonly<Record<string, StallCause>> = {
  TemplateNotFound: 'object or host', // the LXC template named by spec.template is not installed
  RootfsNotFound: 'object or host', // spec.rootfs is not a directory on the host
  ImageNotFound: 'object or host', // a disk's backing image or a container's image URL cannot be read (missing, HTTP 404, a redirect)
  ImageChecksumMismatch: 'object or host', // the downloaded image does not have the declared sha256
  InvalidImage: 'object or host', // spec.image is no tarball tar can unpack, or an empty one; a disk image is no qcow2/raw or has a backing chain
  ImageTooLarge: 'object', // a VM disk image's virtual size is larger than the disk's declared size
  FirmwareNotInstalled: 'host', // boot.firmware uefi on a host without OVMF
  PoolNotFound: 'object or host', // a disk names a storage pool that does not exist
  SnapshotNotFound: 'object', // hyperlet.io/restore-request names a snapshot the instance does not have
  SnapshotUnsupported: 'object',
  InvalidSnapshotName: 'object', // hyperlet.io/snapshot-request or restore-request names no valid snapshot name (a DNS-1123 label) // a memory snapshot of an instance that cannot have one (a container, a stopped domain)
  BackupNotAnArchive: 'object or host', // the file given to restore --from is no hyperlet backup (not zstd or gzip, no head member)
  BackupTruncated: 'object or host', // the backup archive ends before its checksum trailer
  BackupChecksumMismatch: 'object or host', // the backup archive's bytes do not match its SHA-256 trailer
  BackupNewerFormat: 'host', // the backup archive has a newer format version than this hyperlet reads
  BackupInvalid: 'object or host', // the backup archive's manifest lacks a field or is not JSON
  BackupWrongKind: 'object', // the backup archive holds another kind than the provider restoring it
  NameInUse: 'object or host', // a restore from a backup names an instance that exists already
  NotOwned: 'host', // the provider found the name taken by an instance hyperlet did not create
  Conflict: 'host', // the plan found the name taken by an instance that is not this object's
  UuidInUse: 'host', // another domain already has the object's id as its UUID
  DependencyNotFound: 'object', // spec.dependsOn names an object the source does not declare
  DependencyCycle: 'object', // spec.dependsOn forms a cycle
  InvalidSpec: 'object', // the spec cannot be turned into a config (rules the schema cannot say)
  InvalidId: 'object', // the object's id cannot be a domain UUID
  InvalidState: 'object', // a power state the kind does not have
  DiskShrinkRefused: 'object', // a disk was asked to shrink; volumes only grow
  PolicyDenied: 'object or host', // the host policy refuses a field (path, bridge, pool, template…)
  QuotaExceeded: 'object or host', // the host policy's quota has no room for the object
  RetriesExhausted: 'object or host', // the same step failed the same way RETRIES_BEFORE_STALLED times in a row
};

/**
 * How many failures in a row of the same step, for the same reason and generation, make the
 * object Stalled (reason RetriesExhausted). 5: with the work queue's backoff (1 s doubling) that
 * is ~15 s of retries, long enough for a transient fault (a daemon restarting, a lock held) to
 * pass and far shorter than a GitOps tool's wait (Flux: 5 min by default). Retries go on after it
 * with backoff; Stalled clears as soon as a pass succeeds.
 */
export const RETRIES_BEFORE_STALLED = 5;

/** Whether `reason` stalls the object (see STALLED_REASONS). */
export function isStalledReason(reason: string): boolean {
  return Object.hasOwn(STALLED_REASONS, reason);
}
