/** A SourceBackend that keeps status, records and events in memory, for unit tests and benchmarks. */
import type { Status } from '../../src/api/v1alpha1/types.js';
import type { EnvironmentResolver, SourceBackend, SourcePolicy } from '../../src/reconcile/backend.js';
import type { Source } from '../../src/sources/source.js';
import type { Desired } from '../../src/store/desired.js';
import type { ObjectKey } from '../../src/store/object-key.js';
import type { EventType, FinalizerGate, ObjectRecords, Recorder, StatusWriter } from '../../src/reconcile/backend.js';

export class MemoryBackend implements SourceBackend, StatusWriter, ObjectRecords, Recorder, FinalizerGate {
  readonly statuses = new Map<ObjectKey, Status>();
  readonly remembered = new Map<ObjectKey, Desired>();
  readonly events: { key: string; type: EventType; reason: string; message: string }[] = [];
  readonly finalized = new Set<ObjectKey>();
  writes = 0;
  /** Source-wide GitOps rules; tests set it. */
  policy: SourcePolicy | undefined;
  /** Reads spec.environmentFrom; tests set it (a FakeEnvironmentResolver). */
  environment: EnvironmentResolver | undefined;
  readonly source: Source;
  get statusWriter(): StatusWriter { return this; }
  get recorder(): Recorder { return this; }
  get records(): ObjectRecords { return this; }
  get finalizers(): FinalizerGate { return this; }

  constructor(id = 'dir') {
    this.source = { id, description: id, start: () => Promise.resolve(), problems: () => [] };
  }

  write(d: Desired, status: Status): Promise<void> { this.writes++; this.statuses.set(d.key, status); return Promise.resolve(); }
  lastWritten(key: ObjectKey): Status | undefined { return this.statuses.get(key); }
  keys(): readonly ObjectKey[] { return [...this.remembered.keys()]; }
  lastApplied(key: ObjectKey): Desired | undefined { return this.remembered.get(key); }
  remember(d: Desired): void { this.remembered.set(d.key, d); }
  forget(key: ObjectKey): void { this.remembered.delete(key); this.statuses.delete(key); }
  record(d: Desired, type: EventType, reason: string, message: string): void { this.events.push({ key: d.key, type, reason, message }); }
  ensure(d: Desired): Promise<void> { this.finalized.add(d.key); return Promise.resolve(); }
  release(d: Desired): Promise<void> { this.finalized.delete(d.key); return Promise.resolve(); }
}
