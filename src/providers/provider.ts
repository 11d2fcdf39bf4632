/**
 * The boundary between the reconcile core and the hypervisors (crossplane's ExternalClient).
 * Nothing above this file imports LXC or libvirt code; tests put a FakeProvider here.
 */
import type { Kind } from '../api/v1alpha1/group.js';
import type { ApplyMode, SpecFields } from '../api/v1alpha1/fields.js';
import type { PowerState } from '../api/v1alpha1/types.js';
import type { Desired } from '../store/desired.js';
import type { Readable, Writable } from 'node:stream';
import type { BackupCompression, BackupSummary } from './backup/backup-archive.js';

/** What an instance is doing, as the provider sees it. Transitional states settle on their own. */
export type InstanceState = 'Running' | 'Stopped' | 'Frozen' | 'Paused' | 'Starting' | 'Stopping' | 'Crashed' | 'Unknown';

/** One instance on the host, as observed. */
export interface ObservedInstance {
  readonly hostName: string;
  readonly state: InstanceState;
  /** What the instance embodies, flattened like specFields(): read from its config or from hyperlet's marker. */
  readonly fields: SpecFields;
  /** The object id in hyperlet's ownership marker; undefined when the instance carries no marker. */
  readonly ownerId?: string;
  /** The spec hash in the marker, as last applied. */
  readonly specHash?: string;
  /** Creation never finished (a killed lxc-create, a define without its volumes): clean up and start over. */
  readonly partial?: boolean;
  readonly pid?: number;
  readonly addresses?: readonly string[];
  readonly startedAt?: string;
  /** Provider facts for status.details (libvirt state and reason, the last stop's outcome…). */
  readonly details?: Readonly<Record<string, string>>;
}

/** Who asked for a snapshot: the schedule in spec.snapshots, a Snapshot object, or a one-off request. */
export type SnapshotOrigin = 'schedule' | 'object' | 'request';

/** One snapshot of an instance, as the provider keeps it. */
export interface InstanceSnapshot {
  readonly name: string;
  /** RFC 3339, from the clock the provider was given. */
  readonly createdAt: string;
  /** Bytes the snapshot holds on the host, when the provider can tell cheaply. */
  readonly sizeBytes?: number;
  readonly origin: SnapshotOrigin;
  /** Whether it holds the running memory too (libvirt only). */
  readonly memory: boolean;
  /** The spec hash the instance had when the snapshot was taken, when known. */
  readonly specHash?: string;
}

/** How a snapshot is taken. */
export interface SnapshotOptions {
  /** Also save the running memory (libvirt, running domains); LXC refuses it. */
  readonly memory?: boolean;
  /** Default 'request'. */
  readonly origin?: SnapshotOrigin;
}

/** What restoreSnapshot() did, for status, the audit log and the Event. */
export interface RestoreOutcome {
  readonly snapshot: InstanceSnapshot;
  /** True when the snapshot was taken with another spec hash than the one now declared (the declared spec is kept). */
  readonly specDiffers: boolean;
  readonly note: string;
}

/** A snapshot name: a DNS-1123 label (lowercase alphanumerics and '-', at most 63); it reaches paths and XML. */
const SNAPSHOT_NAME_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** Whether `name` can name a snapshot (see SNAPSHOT_NAME_RE). */
export function isSnapshotName(name: string): boolean {
  return SNAPSHOT_NAME_RE.test(name);
}

/** Throws unless `name` can name a snapshot (see SNAPSHOT_NAME_RE). */
export function assertSnapshotName(name: string): void {
  if (!isSnapshotName(name)) {
    throw new Error(`cannot use ${JSON.stringify(name)} as a snapshot name: must be a DNS-1123 label (lowercase a-z, 0-9, '-', at most 63)`);
  }
}

/** How backup() writes its archive. */
export interface BackupOptions {
  readonly out: Writable;
  /** Default zstd. */
  readonly compression?: BackupCompression;
  /** Uncompressed bytes written so far. */
  readonly onProgress?: (bytes: number) => void;
  /** Where a provider may stage copies before archiving them (VM disks); default the system's temp dir. */
  readonly scratchDir?: string;
}

/** How restoreBackup() reads an archive and what it names the instance. */
export interface RestoreBackupOptions {
  readonly input: Readable;
  /** The object name the instance is restored for (`--as`); default the archive's. */
  readonly name?: string;
  /** Default the archive's. */
  readonly namespace?: string;
  /** Where the archive came from, for messages. */
  readonly label?: string;
  /** Uncompressed bytes read so far. */
  readonly onProgress?: (bytes: number) => void;
  /** Where a provider may extract before placing (VM disks); default the system's temp dir. */
  readonly scratchDir?: string;
  /** VMs: the storage pool every disk is restored into; default each disk's pool in the archive. */
  readonly pool?: string;
}

/** What restoreBackup() made. */
export interface RestoredBackup {
  readonly hostName: string;
  /** The object to declare for it: the archive's, renamed, with the adopt annotation. */
  readonly object: Record<string, unknown>;
  readonly summary: BackupSummary;
}

/** One field whose desired value differs from the observed one. */
export interface FieldChange {
  readonly path: string;
  readonly from: SpecFields[string] | undefined;
  readonly to: SpecFields[string] | undefined;
  readonly apply: ApplyMode;
}

/**
 * Manages one kind of instance on this host. Every method is idempotent: `create` on an existing
 * instance and `delete` on a missing one succeed. Observing changes nothing, and a missing
 * instance is `undefined`, never an error. Methods that fail throw errors whose message carries
 * the tool's or daemon's own words; throw `TerminalError` (shared/errors.ts) when retrying
 * cannot help until the object changes.
 *
 * Assumptions: the reconciler has checked ownership before calling any method that changes an
 * instance, and never calls two methods for the same host name at once.
 */
export interface Provider<K extends Kind = Kind> {
  readonly name: 'lxc' | 'libvirt';
  readonly kind: K;
  /** Resolves when the provider can work on this host; throws ProviderUnavailableError saying why not. */
  probe(signal: AbortSignal): Promise<void>;
  /** Every instance on the host, keyed by host name, in one batch call (lxc-ls, list-all-domains). */
  observeAll(signal: AbortSignal): Promise<ReadonlyMap<string, ObservedInstance>>;
  /** One instance, or undefined when it does not exist. */
  observe(d: Desired<K>, signal: AbortSignal): Promise<ObservedInstance | undefined>;
  /** Creates the instance stopped, with hyperlet's ownership marker. */
  create(d: Desired<K>, signal: AbortSignal): Promise<void>;
  /**
   * Applies changes: `live` ones to the running instance and its config, `restart` ones to the
   * config only (the reconciler calls this for them while the instance is stopped). Refreshes the marker.
   */
  update(d: Desired<K>, changes: readonly FieldChange[], observed: ObservedInstance, signal: AbortSignal): Promise<void>;
  /** Moves the instance to `to`. Returns a short note for status when useful ("destroyed after 60 s"). */
  setState(d: Desired<K>, to: PowerState, observed: ObservedInstance, signal: AbortSignal): Promise<string | void>;
  /**
   * Optional, with forceStop: asks the running instance to shut down (LXC: the halt signal, as
   * `lxc-stop --nowait`; libvirt: ACPI shutdown) and returns at once, without waiting for it. A
   * frozen or paused instance is thawed or resumed first, so it can see the request. Idempotent:
   * asking again, or asking a stopped or stopping instance, is success. The reconciler waits with
   * the queue, not in this call, and calls forceStop once spec.gracefulStopSeconds are over.
   */
  requestStop?(d: Desired<K>, observed: ObservedInstance, signal: AbortSignal): Promise<void>;
  /**
   * Optional, with requestStop: stops the instance at once (LXC: kill; libvirt: destroy).
   * Idempotent: a stopped instance is success. Returns a short note for status.
   */
  forceStop?(d: Desired<K>, observed: ObservedInstance, signal: AbortSignal): Promise<string | void>;
  /** Writes hyperlet's marker on an instance it did not create (adoption); changes nothing else. */
  adopt(d: Desired<K>, observed: ObservedInstance, signal: AbortSignal): Promise<void>;
  /** Stops and removes the instance and what hyperlet created for it; nothing else. */
  delete(d: Desired<K>, signal: AbortSignal): Promise<void>;
  /**
   * Host names of instances that changed (lxc-monitor, libvirt lifecycle events). A hint on top
   * of level-triggered resyncs: it may repeat, and it may miss events while it reconnects.
   */
  changes(signal: AbortSignal): AsyncIterable<string>;
  /**
   * Optional: whether `d` asks for a reboot `observed` has not had yet. The reconciler then calls
   * setState(d, 'Running', observed) on the running instance, which reboots it once.
   */
  rebootPending?(d: Desired<K>, observed: ObservedInstance): boolean;
  /** Optional: how a change is applied when it depends on the values (a disk that grows is live). */
  applyModeOf?(change: FieldChange, observed: ObservedInstance): ApplyMode;
  /** Optional: the file the instance's console is written to (`hyperlet logs`); changes nothing. */
  consoleLogPath?(hostName: string): string;
  /** Optional, with consoleLogPath: the older part the console log is rotated to (read before it). */
  rotatedConsoleLogPath?(hostName: string): string;
  /**
   * Optional: attaches to the console of the running instance `hostName` (a VM's serial console, a
   * container's /dev/console). Only instances with hyperlet's ownership marker: anything else is
   * refused with a TerminalError (reason NotOwned); one that does not exist with an InstanceNotFoundError.
   */
  openConsole?(hostName: string, options: ConsoleOptions): Promise<ConsoleSession>;
  /** Optional: runs `command` inside the instance with this process's stdio; resolves to its exit code. */
  exec?(hostName: string, command: readonly string[]): Promise<number>;
  /**
   * Optional: takes snapshot `name` of the instance (consistent: a running container is frozen for
   * the copy). Idempotent: an existing snapshot of that name is returned as it is. A snapshot cut
   * short is never listed and is removed by the next call.
   */
  snapshot?(d: Desired<K>, name: string, options: SnapshotOptions, signal: AbortSignal): Promise<InstanceSnapshot>;
  /**
   * Optional: removes what snapshots or deletions of snapshots cut short (kill -9) left behind for
   * the instance; complete snapshots stay. Providers whose snapshots are atomic have none.
   */
  sweepSnapshots?(d: Desired<K>, signal: AbortSignal): Promise<void>;
  /** Optional: the instance's complete snapshots, oldest first; empty when the instance does not exist. */
  listSnapshots?(d: Desired<K>, signal: AbortSignal): Promise<readonly InstanceSnapshot[]>;
  /**
   * Optional: reverts the stopped instance's disks (and memory, when the snapshot has it; the
   * instance is then left stopped) to snapshot `name`, keeping the declared configuration. Throws
   * TerminalError when the snapshot does not exist, an Error when the instance is running.
   */
  restoreSnapshot?(d: Desired<K>, name: string, signal: AbortSignal): Promise<RestoreOutcome>;
  /** Optional: deletes snapshot `name`; a missing one is success. */
  deleteSnapshot?(d: Desired<K>, name: string, signal: AbortSignal): Promise<void>;
  /**
   * Optional: writes a portable archive of the instance (providers/backup/backup-archive.ts) to
   * `options.out`: container rootfs and config, VM disks as qcow2 and its definition, with the
   * declared object. A running instance is copied from a snapshot taken for the backup and
   * removed after it, so the copy is consistent and the instance keeps running. Backups are the
   * caller's files: delete() never removes them.
   */
  backup?(d: Desired<K>, options: BackupOptions, signal: AbortSignal): Promise<BackupSummary>;
  /**
   * Optional: creates an instance from an archive, stopped and without hyperlet's marker (declare
   * the returned object, which carries the adopt annotation, to manage it). Refuses, with nothing
   * created, an archive of another kind, a name already in use, and a truncated, altered or newer
   * archive (TerminalError).
   */
  restoreBackup?(options: RestoreBackupOptions, signal: AbortSignal): Promise<RestoredBackup>;
  /**
   * Optional, with importData: the stopped instance's data as one archive stream, for a move to
   * another node (LXC: a tar of the rootfs). The format is the provider's own; only importData
   * reads it. Changes nothing; throws when the instance runs or does not exist.
   */
  exportData?(d: Desired<K>, signal: AbortSignal): Promise<NodeJS.ReadableStream>;
  /**
   * Optional, with exportData: replaces the data of the stopped instance (just created here) with
   * the archive at `archivePath` that exportData made on another node. Idempotent and atomic: a
   * crash leaves the old data or the new, and calling it again finishes the job.
   */
  importData?(d: Desired<K>, archivePath: string, signal: AbortSignal): Promise<void>;
  /** Ends change streams and releases connections and child processes; idempotent. */
  close(): void | Promise<void>;
}

/** How to attach to a console. */
export interface ConsoleOptions {
  /** Take the console from another session holding it (libvirt's VIR_DOMAIN_CONSOLE_FORCE). */
  readonly force?: boolean;
}

/**
 * An attached console: raw bytes both ways. Guarantees: output that arrives before `onData` is
 * kept and delivered to it, in order; `ended` settles once, after the last output, with undefined
 * when either side closed it cleanly and an Error when it broke. Closing leaves the instance running.
 */
export interface ConsoleSession {
  /** Sends bytes (keystrokes) to the console; dropped once it has ended. */
  write(data: Buffer): void;
  /** Where the console's output goes (one listener). */
  onData(listener: (chunk: Buffer) => void): void;
  /** Settles when the console has ended. */
  readonly ended: Promise<Error | undefined>;
  /** Detaches; idempotent. */
  close(): void;
}

/** Thrown by openConsole() when no instance of that host name exists (the CLI then looks at the other kind). */
export class InstanceNotFoundError extends Error {
  readonly isInstanceNotFoundError = true;
  constructor(message: string) {
    super(message);
    this.name = 'InstanceNotFoundError';
  }
}

/** Whether `err` is an InstanceNotFoundError (by brand, across module copies). */
export function isInstanceNotFoundError(err: unknown): err is InstanceNotFoundError {
  return typeof err === 'object' && err !== null && (err as { isInstanceNotFoundError?: unknown }).isInstanceNotFoundError === true;
}

/** Thrown by probe() when the host cannot run this provider (tool missing, daemon down). */
export class ProviderUnavailableError extends Error {
  readonly isProviderUnavailableError = true;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ProviderUnavailableError';
  }
}

/** Whether `err` is a ProviderUnavailableError (by brand, across module copies). */
export function isProviderUnavailableError(err: unknown): err is ProviderUnavailableError {
  return typeof err === 'object' && err !== null && (err as { isProviderUnavailableError?: unknown }).isProviderUnavailableError === true;
}
