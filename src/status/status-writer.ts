/**
 * Where status, history and the memory of past objects go. One implementation per kind of
 * source: the state DB for dir and git, the API server for kube.
 */
import type { Status } from '../api/v1alpha1/types.js';
import type { Desired } from '../store/desired.js';
import type { ObjectKey } from '../store/object-key.js';

export interface StatusWriter {
  /**
   * Writes status for `key`. Callers only call it when the status changed. Throws
   * `ConflictError` on a stale resourceVersion; never overwrites a newer spec.
   */
  write(d: Desired, status: Status, signal: AbortSignal): Promise<void>;
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
  /** Remembers `d` as applied: called before the first action on its instance. */
  remember(d: Desired): void;
  /** Forgets `key`: its instance is gone (or orphaned on purpose). */
  forget(key: ObjectKey): void;
  /**
   * Optional, for speed: every remembered object whose spec.dependsOn is not empty, as last
   * applied. Without it the reconciler reads lastApplied of each remembered key.
   */
  withDependencies?(): readonly Desired[];
}

export type EventType = 'Normal' | 'Warning';

/** Records what hyperlet did and why: Kubernetes Events in kube mode, the audit log otherwise. */
export interface Recorder {
  record(d: Desired, type: EventType, reason: string, message: string): void;
}

/**
 * Holds an object in its API until its instance is gone (kube: the `hyperlet.io/cleanup`
 * finalizer). Sources without such an API have none.
 */
export interface FinalizerGate {
  /** Called before anything is created for `d`; idempotent. */
  ensure(d: Desired, signal: AbortSignal): Promise<void>;
  /** Called once the instance is removed (or orphaned on purpose); idempotent. */
  release(d: Desired, signal: AbortSignal): Promise<void>;
}
