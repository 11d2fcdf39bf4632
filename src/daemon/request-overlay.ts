/**
 * Requests made through the API (the dashboard's actions, `hyperlet reboot`) as annotations laid
 * over the objects the sources declare, on their way into the desired store. A request is the
 * same annotation an author could write (`hyperlet.io/reboot-request: VALUE`), so the reconcile
 * loop acts on it as on any other: nothing goes around it.
 *
 * Guarantees: a request is on disk (state DB) before it takes effect, and is laid over the object
 * again after a restart; the source keeps the last word: when it changes the annotation itself
 * (to another value than it declared when the request was made), its value wins and the request
 * is dropped; a request for an object that leaves its source is dropped with it.
 */
import type { Desired } from '../store/desired.js';
import type { DesiredStore, StoreWriter } from '../store/desired-store.js';
import type { ObjectKey } from '../store/object-key.js';
import type { RequestRow, StateDb } from '../state/state-db.js';

/** Lays API requests (as annotations) over declared objects on their way into the store; persisted first. */
export class RequestOverlay implements StoreWriter {
  /** Requests by key, then annotation. */
  private readonly requests = new Map<string, Map<string, RequestRow>>();
  /** The objects as the sources declared them (without requests), to lay a new request over. */
  private readonly declared = new Map<ObjectKey, Desired>();

  constructor(private readonly store: DesiredStore, private readonly db: Pick<StateDb, 'requests' | 'setRequest' | 'deleteRequest'>) {
    for (const row of db.requests()) this.requestsOf(row.key).set(row.annotation, row);
  }

  upsert(d: Desired): void {
    this.declared.set(d.key, d);
    this.store.upsert(this.overlay(d));
  }

  remove(key: ObjectKey): void {
    this.declared.delete(key);
    for (const annotation of this.requests.get(key)?.keys() ?? []) this.db.deleteRequest(key, annotation);
    this.requests.delete(key);
    this.store.remove(key);
  }

  replaceAll(source: string, objects: readonly Desired[]): void {
    const incoming = new Set(objects.map((d) => d.key));
    for (const [key, d] of this.declared) if (d.source === source && !incoming.has(key)) this.remove(key);
    for (const d of objects) this.declared.set(d.key, d);
    this.store.replaceAll(source, objects.map((d) => this.overlay(d)));
  }

  /**
   * Sets `annotation` to `value` on the object `key` now (on disk first). Returns false when the
   * source declares no such object.
   */
  request(key: ObjectKey, annotation: string, value: string, atMs: number): boolean {
    const d = this.declared.get(key);
    if (d === undefined) return false;
    const declared = d.object.metadata.annotations?.[annotation] ?? null;
    const row: RequestRow = { key, annotation, value, declared, at: new Date(atMs).toISOString() };
    this.db.setRequest(row);
    this.requestsOf(key).set(annotation, row);
    this.store.upsert(this.overlay(d));
    return true;
  }

  /** `d` with the requests in force laid over its annotations; requests the source overtook are dropped. */
  private overlay(d: Desired): Desired {
    const rows = this.requests.get(d.key);
    if (rows === undefined || rows.size === 0) return d;
    const annotations = { ...(d.object.metadata.annotations ?? {}) };
    for (const [annotation, row] of [...rows]) {
      const declaredNow = annotations[annotation] ?? null;
      if (declaredNow !== row.declared) {
        // The source changed the annotation since the request: its word is the newer one.
        rows.delete(annotation);
        this.db.deleteRequest(d.key, annotation);
        continue;
      }
      annotations[annotation] = row.value;
    }
    return { ...d, object: { ...d.object, metadata: { ...d.object.metadata, annotations } } };
  }

  private requestsOf(key: string): Map<string, RequestRow> {
    let rows = this.requests.get(key);
    if (rows === undefined) {
      rows = new Map();
      this.requests.set(key, rows);
    }
    return rows;
  }
}
