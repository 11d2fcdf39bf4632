/**
 * Sources bring desired objects in: the directory watcher, the Git follower, the Kubernetes
 * informers. They all feed a DesiredStore through StoreWriter and report broken input as
 * SourceProblems; nothing else in the core knows where an object came from.
 */
import type { StoreWriter } from '../store/desired-store.js';
import type { SourceProblem } from '../store/source-problem.js';

/** A source with revisions: whether the newest one is in force, and when things last worked. */
export interface SourceRevisionState {
  /** The newest revision seen is not the one in force (held back by a rule, or unreadable). */
  readonly behind: boolean;
  readonly lastAppliedAtMs?: number;
  readonly lastSuccessfulFetchAtMs?: number;
}

/** A place desired objects come from. Sources write the store; they never touch instances. */
export interface Source {
  /** Source id, also the first part of every key it makes: no '/' ("dir", "git-0", "kube"). */
  readonly id: string;
  /** For people: "dir:/etc/hyperlet", "git:https://…#main", "kube". */
  readonly description: string;
  /** Resolves once the first full listing is in the store (client-go `HasSynced`). */
  start(store: StoreWriter, signal: AbortSignal): Promise<void>;
  /** Problems in the input as of now (what `hyperlet get` and /readyz show). */
  problems(): readonly SourceProblem[];
  /**
   * Whether the source can read its input now; false while a listing fails (the objects of the
   * last good listing stay in force and `problems()` says why). Absent: always ready once started.
   */
  ready?(): boolean;
  /** One line on where the source stands (git: applied and latest revisions), for /readyz. */
  summary?(): string;
  /** Where the source stands against its newest input, for sources with revisions (git). */
  revisionState?(): SourceRevisionState;
  /** Looks for new input now instead of at the next interval (SIGHUP, POST /sources/ID/refresh). */
  refresh?(): void;
}

