/**
 * What the dashboard reads besides the event stream: the host (capacity, what is allocated,
 * providers, sources), the recent events (a timeline that survives page loads), and one object
 * in detail (its spec with environment values redacted, audit entries, the tail of its console).
 * The daemon implements it; the HTTP server serves it under /api/v1/.
 */
import type { ObjectEvent, ObjectEvents } from '../reconcile/object-events.js';
import type { ObjectView } from './object-view.js';
import type { WatchEvent } from './watch-stream.js';

/** The host as the dashboard's header shows it. */
export interface HostInfo {
  readonly node: string;
  readonly startedAt: string;
  readonly capacity: { readonly cpus: number; readonly memoryBytes: number };
  /** What the declared objects ask for (cpu count, memory), all and running ones. */
  readonly allocated: { readonly objects: number; readonly running: number; readonly cpus: number; readonly memoryBytes: number };
  readonly providers: readonly { readonly name: string; readonly ok: boolean; readonly reason?: string }[];
  readonly sources: readonly {
    readonly id: string;
    readonly description: string;
    readonly synced: boolean;
    /** Where it stands (git: the revision in force and why the newest is not). */
    readonly summary?: string;
    readonly behind?: boolean;
    readonly problems: readonly string[];
  }[];
}

/** One object with what its page shows. */
export interface ObjectDetail {
  /** Kubernetes-shaped, spec included with environment values redacted. */
  readonly object: Record<string, unknown>;
  readonly view: ObjectView;
  /** Audit entries (dir, git) or the events seen since the daemon started (kube), oldest first. */
  readonly events: readonly WatchEvent[];
  /** The last lines of the console log, control sequences stripped; absent when there is none. */
  readonly consoleTail?: string;
  /** Actions the page may offer for it (with the token): POST /api/v1/objects/KIND/NS/NAME/ACTION. */
  readonly actions: readonly string[];
}

/** What the dashboard routes read: host, objects, one object's page and recent events. */
export interface DashboardApi {
  host(): HostInfo;
  /** The last `limit` recorded events of every object, oldest first. */
  recentEvents(limit: number): readonly WatchEvent[];
  /** KIND NAMESPACE/NAME in detail, or undefined when there is no such object. */
  object(kind: string, namespace: string, name: string): Promise<ObjectDetail | undefined>;
  /**
   * Asks for `action` on KIND NAMESPACE/NAME through a request annotation the reconcile loop acts
   * on: `{ ok: true, value }`, or why not (bad parameters: 400; no such object: 404; not offered for it: 409).
   */
  act(kind: string, namespace: string, name: string, action: string, params?: URLSearchParams): ActionResult;
}

/** The answer to an action. */
export type ActionResult =
  | { readonly ok: true; readonly annotation: string; readonly value: string }
  | { readonly ok: false; readonly status: 400 | 404 | 409; readonly error: string };

/**
 * The recent events in memory: seeded from the audit log at start, then every recorded event
 * published. Bounded (oldest dropped), so a long-running daemon keeps a timeline, not a history.
 */
export class EventLog {
  private readonly entries: WatchEvent[] = [];

  constructor(private readonly capacity = 500) {}

  /** Adds `seed` (oldest first), then follows `events`; returns the unsubscribe function. */
  follow(events: ObjectEvents, seed: readonly WatchEvent[]): () => void {
    for (const e of seed) this.push(e);
    return events.subscribe((e) => this.record(e));
  }

  /** The last `limit` events, oldest first; with `key` (KIND/NAMESPACE/NAME), only that object's. */
  recent(limit: number, subject?: string): WatchEvent[] {
    const matching = subject === undefined ? this.entries
      : this.entries.filter((e) => `${e.involvedObject.kind}/${e.involvedObject.namespace}/${e.involvedObject.name}` === subject);
    return matching.slice(-limit);
  }

  private record(event: ObjectEvent): void {
    if (event.type !== 'record') return;
    this.push({
      time: new Date(event.atMs).toISOString(), type: event.eventType, reason: event.reason, message: event.message,
      involvedObject: { kind: event.kind, namespace: event.namespace, name: event.name, uid: event.uid },
    });
  }

  private push(e: WatchEvent): void {
    this.entries.push(e);
    if (this.entries.length > this.capacity) this.entries.splice(0, this.entries.length - this.capacity);
  }
}
