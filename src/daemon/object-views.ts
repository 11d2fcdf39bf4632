/**
 * The daemon's objects as views (server/object-view.ts), built from memory: the desired store,
 * each source's last written status, and the tombstones of objects being deleted. Works the same
 * for every source (kube included), and reads the state DB only for creation times, once.
 */
import type { Status } from '../api/v1alpha1/types.js';
import type { SourceBackend } from '../reconcile/backend.js';
import type { ObjectView, ObjectViews, SpecSummary } from '../server/object-view.js';
import type { StateDb } from '../state/state-db.js';
import type { Desired } from '../store/desired.js';
import type { StoreReader } from '../store/desired-store.js';
import { type ObjectKey, parseKey } from '../store/object-key.js';
import type { Clock } from '../shared/clock.js';

/** The daemon's objects as views, from memory (see the module comment); reads nothing it could change. */
export class DaemonObjectViews implements ObjectViews {
  /** Creation times by key: read from the DB once, then first sight for objects new since. */
  private created: Map<string, string> | undefined;

  constructor(
    private readonly store: StoreReader,
    private readonly backends: () => ReadonlyMap<string, SourceBackend>,
    private readonly db: Pick<StateDb, 'listObjects'> | undefined,
    private readonly clock: Clock,
  ) {}

  list(): ObjectView[] {
    const keys = new Set<ObjectKey>(this.store.keys());
    for (const backend of this.backends().values()) for (const key of backend.records?.keys() ?? []) keys.add(key);
    return [...keys].sort().flatMap((key) => this.get(key) ?? []);
  }

  get(key: string): ObjectView | undefined {
    const objectKey = key as ObjectKey;
    const backend = this.backends().get(parseKey(objectKey).source);
    const desired = this.store.get(objectKey) ?? backend?.records?.lastApplied(objectKey);
    if (desired === undefined) return undefined;
    return toView(desired, backend?.statusWriter.lastWritten(objectKey), this.createdAt(desired));
  }

  private createdAt(d: Desired): string {
    const declared = d.object.metadata.creationTimestamp;
    if (declared !== undefined) return declared;
    this.created ??= new Map((this.db?.listObjects() ?? []).map((r) => [r.key, r.createdAt]));
    let at = this.created.get(d.key);
    if (at === undefined) {
      at = new Date(this.clock.now()).toISOString();
      this.created.set(d.key, at);
    }
    return at;
  }
}

/** The view of `d` with `status`: metadata, a spec summary, the status as written. */
export function toView(d: Desired, status: Status | undefined, creationTimestamp: string): ObjectView {
  const { metadata } = d.object;
  const spec = d.object.spec as { state?: string; resources?: SpecSummary['resources']; nodeName?: string };
  const source = d.origin === undefined ? d.source : `${d.source}:${d.origin.file}`;
  return {
    apiVersion: d.object.apiVersion,
    kind: d.object.kind,
    metadata: {
      name: metadata.name, namespace: metadata.namespace ?? 'default', uid: d.id, generation: d.generation, creationTimestamp,
      ...(metadata.labels === undefined ? {} : { labels: metadata.labels }),
      annotations: { 'hyperlet.io/source': source },
    },
    spec: {
      ...(spec.state === undefined ? {} : { state: spec.state }),
      ...(spec.resources === undefined ? {} : { resources: spec.resources }),
      ...(spec.nodeName === undefined ? {} : { nodeName: spec.nodeName }),
    },
    ...(status === undefined ? {} : { status }),
  };
}
