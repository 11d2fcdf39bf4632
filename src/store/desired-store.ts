/**
 * The desired cache: one map of keys to desired objects, written by the sources and read by the
 * reconciler. Each change that matters calls the listener with the key, which the daemon turns
 * into a queue add; writes that change nothing are silent, so a relist of unchanged objects
 * causes no work.
 */
import { canonicalJson, type Desired } from './desired.js';
import type { ObjectKey } from './object-key.js';

/** How sources write desired objects in: one writer per source, each owning its own keys. */
export interface StoreWriter {
  upsert(d: Desired): void;
  remove(key: ObjectKey): void;
  /** Replaces every object of `source` at once (a relist, a new commit). */
  replaceAll(source: string, objects: readonly Desired[]): void;
}

/** Read side of the desired store: what the reconcilers see. */
export interface StoreReader {
  get(key: ObjectKey): Readonly<Desired> | undefined;
  list(): readonly Readonly<Desired>[];
  keys(): readonly ObjectKey[];
  /**
   * A new number (one no other store of this process has had) with every change listeners hear of
   * (an object added, removed, or changed in what a reconcile reads); an object replaced by an
   * equal one (a new resourceVersion) leaves it.
   */
  readonly revision?: number;
}

/** Called with the key of each object that was added, changed or removed. */
export type ChangeListener = (key: ObjectKey) => void;

let lastRevision = 0;

/** The desired objects of every source, by key; notifies listeners only when an object really changed. */
export class DesiredStore implements StoreWriter, StoreReader {
  private readonly objects = new Map<ObjectKey, { d: Desired; fingerprint: string }>();
  private readonly listeners: ChangeListener[] = [];
  /** The list `list()` hands out until an object is set or removed (callers may keep derived figures by it). */
  private listed: readonly Desired[] | undefined;
  /** Unique across stores in this process: a revision names one state of one store. */
  private changes = ++lastRevision;

  /** Calls `listener` with each key whose object was added, changed or removed. */
  onChange(listener: ChangeListener): void {
    this.listeners.push(listener);
  }

  upsert(d: Desired): void {
    // What a reconcile reads: the object (spec, labels, annotations), its generation and deletion.
    const fingerprint = canonicalJson([d.object.metadata.annotations ?? null, d.object.metadata.labels ?? null, d.specHash, d.generation, d.deleting ?? false, d.id, d.object.metadata.finalizers ?? null]);
    const current = this.objects.get(d.key);
    this.objects.set(d.key, { d, fingerprint });
    this.listed = undefined;
    if (current?.fingerprint !== fingerprint) this.emit(d.key);
  }

  remove(key: ObjectKey): void {
    if (!this.objects.delete(key)) return;
    this.listed = undefined;
    this.emit(key);
  }

  replaceAll(source: string, objects: readonly Desired[]): void {
    const incoming = new Set(objects.map((d) => d.key));
    for (const [key, { d }] of this.objects) if (d.source === source && !incoming.has(key)) this.remove(key);
    for (const d of objects) this.upsert(d);
  }

  get(key: ObjectKey): Readonly<Desired> | undefined {
    return this.objects.get(key)?.d;
  }

  /** Every object; the same array until one is set or removed (frozen: nobody may change it). */
  list(): readonly Readonly<Desired>[] {
    this.listed ??= Object.freeze([...this.objects.values()].map((e) => e.d));
    return this.listed;
  }

  keys(): readonly ObjectKey[] {
    return [...this.objects.keys()];
  }

  get revision(): number {
    return this.changes;
  }

  get size(): number {
    return this.objects.size;
  }

  private emit(key: ObjectKey): void {
    this.changes = ++lastRevision;
    for (const l of this.listeners) l(key);
  }
}
