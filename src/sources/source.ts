/**
 * Sources bring desired objects in: the directory watcher, the Git follower, the Kubernetes
 * informers. They all feed a DesiredStore through StoreWriter and report broken input as
 * SourceProblems; nothing else in the core knows where an object came from.
 */
import type { Desired } from '../store/desired.js';
import type { ObjectKey } from '../store/object-key.js';
import type { FinalizerGate, ObjectRecords, Recorder, StatusWriter } from '../status/status-writer.js';

export interface StoreWriter {
  upsert(d: Desired): void;
  remove(key: ObjectKey): void;
  /** Replaces every object of `source` at once (a relist, a new commit). */
  replaceAll(source: string, objects: readonly Desired[]): void;
}

/** Input that could not be used: a broken file, an invalid document, a failed fetch. */
export interface SourceProblem {
  /** FILE[#DOC] Kind/name: field.path: message — the one line users see. */
  readonly line: string;
  readonly file?: string;
  readonly document?: number;
  readonly kind?: string;
  readonly namespace?: string;
  readonly name?: string;
  readonly path?: string;
  readonly rule?: string;
  /** The message alone, without the location. */
  readonly message: string;
  /** The commit the problem was found in (git sources). */
  readonly revision?: string;
}

/** A source with revisions: whether the newest one is in force, and when things last worked. */
export interface SourceRevisionState {
  /** The newest revision seen is not the one in force (held back by a rule, or unreadable). */
  readonly behind: boolean;
  readonly lastAppliedAtMs?: number;
  readonly lastSuccessfulFetchAtMs?: number;
}

export interface Source {
  /** Source id, also the first part of every key it makes: no '/' ("dir", "git-0", "kube"). */
  readonly id: string;
  /** For people: "dir:/etc/hyperlet", "git:https://…#main", "kube". */
  readonly description: string;
  /** Resolves once the first full listing is in the store (client-go `HasSynced`). */
  start(store: StoreWriter, signal: AbortSignal): Promise<void>;
  /** Problems in the input as of now (what `hyperlet get` and /readyz show). */
  problems(): readonly SourceProblem[];
  /** One line on where the source stands (git: applied and latest revisions), for /readyz. */
  summary?(): string;
  /** Where the source stands against its newest input, for sources with revisions (git). */
  revisionState?(): SourceRevisionState;
  /** Looks for new input now instead of at the next interval (SIGHUP, POST /sources/ID/refresh). */
  refresh?(): void;
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
 * A source with everything that writes back to where it came from. The daemon wires one per
 * `--source`; the controller looks the backend up by the key's source id.
 */
export interface SourceBackend {
  readonly source: Source;
  readonly statusWriter: StatusWriter;
  readonly recorder: Recorder;
  /** Memory of removed objects (dir/git: the state DB); absent where finalizers do that job. */
  readonly records?: ObjectRecords;
  readonly finalizers?: FinalizerGate;
  readonly policy?: SourcePolicy;
}
