/**
 * Where status, history and the memory of past objects go. One implementation per kind of
 * source: the state DB for dir and git, the API server for kube.
 */
import type { EnvironmentReference } from '../api/v1alpha1/environment.js';
import type { Status } from '../api/v1alpha1/types.js';
import type { Desired } from '../store/desired.js';
import type { ObjectKey } from '../store/object-key.js';

/** The source an object came from, as the reconciler sees it: an id and a description. */
export interface SourceIdentity {
  /** Source id, also the first part of every key it makes ("dir", "git-0", "kube"). */
  readonly id: string;
  /** For people: "dir:/etc/hyperlet", "git:https://…#main", "kube". */
  readonly description: string;
}

/** Writes objects' status where their source keeps it (state DB or the API server's status subresource). */
export interface StatusWriter {
  /**
   * Writes status for `key`. Callers only call it when the status changed. Throws
   * `ConflictError` on a stale resourceVersion; never overwrites a newer spec.
   */
  write(desired: Desired, status: Status, signal: AbortSignal): Promise<void>;
  /** The last status written for `key`, to skip writes that would change nothing. */
  lastWritten(key: ObjectKey): Status | undefined;
}

/**
 * What is remembered of objects after they leave the store: a removed file's objects must still
 * be deleted from the host, after a restart too. Kube mode needs none (finalizers keep the
 * object in the API until we release it).
 */
export interface ObjectRecords {
  /** Keys of every object that may still have an instance on this host. */
  keys(): readonly ObjectKey[];
  /** The last desired object reconciled for `key` (its tombstone once the source dropped it). */
  lastApplied(key: ObjectKey): Desired | undefined;
  /** Remembers `desired` as applied: called before the first action on its instance. */
  remember(desired: Desired): void;
  /** Forgets `key`: its instance is gone (or orphaned on purpose). */
  forget(key: ObjectKey): void;
  /**
   * Optional, for speed: every remembered object whose spec.dependsOn is not empty, as last
   * applied. Without it the reconciler reads lastApplied of each remembered key.
   */
  withDependencies?(): readonly Desired[];
}

/** Kubernetes event types. */
export type EventType = 'Normal' | 'Warning';

/** Records what hyperlet did and why: Kubernetes Events in kube mode, the audit log otherwise. */
export interface Recorder {
  record(desired: Desired, type: EventType, reason: string, message: string): void;
}

/**
 * Holds an object in its API until its instance is gone (kube: the `hyperlet.io/cleanup`
 * finalizer). Sources without such an API have none.
 */
export interface FinalizerGate {
  /** Called before anything is created for `desired`; idempotent. */
  ensure(desired: Desired, signal: AbortSignal): Promise<void>;
  /** Called once the instance is removed (or orphaned on purpose); idempotent. */
  release(desired: Desired, signal: AbortSignal): Promise<void>;
}

/**
 * GitOps rules for a whole source, read on every reconcile. Absent means the defaults: prune,
 * not paused.
 */
export interface SourcePolicy {
  /** Delete the instances of objects that leave the source (--prune, default true). */
  readonly prune: boolean;
  /** Stop every change for this source's objects; observe and report only (--paused). */
  readonly paused: boolean;
}

/**
 * Reads the values of environment references (spec.environmentFrom) of one source's objects: files under
 * the secrets directory for dir and git, Secrets of the object's namespace for kube.
 */
export interface EnvironmentResolver {
  /**
   * The value of each of `refs` (references of `d`), by variable name. Throws EnvironmentError
   * (api/v1alpha1/environment.ts) naming the field and the rule when one cannot be read; never
   * returns part of them. Values never appear in its errors.
   */
  resolve(d: Desired, refs: readonly EnvironmentReference[], signal: AbortSignal): Promise<Record<string, string>>;
}

/**
 * A source with everything that writes back to where it came from. The daemon wires one per
 * `--source`; the controller looks the backend up by the key's source id.
 */
export interface SourceBackend<S extends SourceIdentity = SourceIdentity> {
  readonly source: S;
  readonly statusWriter: StatusWriter;
  readonly recorder: Recorder;
  /** Memory of removed objects (dir/git: the state DB); absent where finalizers do that job. */
  readonly records?: ObjectRecords;
  readonly finalizers?: FinalizerGate;
  readonly policy?: SourcePolicy;
  /** Resolves spec.environmentFrom; an object with references and no resolver is refused. */
  readonly environment?: EnvironmentResolver;
}
