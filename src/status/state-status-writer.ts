/**
 * Status, records and the audit log for the dir and git sources, all in the state DB. Keeps the
 * last status of each key in memory so unchanged status costs no write.
 */
import type { Logger } from 'pino';
import type { Status } from '../api/v1alpha1/types.js';
import type { Desired } from '../store/desired.js';
import type { ObjectKey } from '../store/object-key.js';
import type { StateDb } from '../state/state-db.js';
import type { EventType, ObjectRecords, Recorder, StatusWriter } from '../reconcile/backend.js';

/** Status, records and audit entries of dir and git objects, kept in the state DB. */
export class StateStatusWriter implements StatusWriter, ObjectRecords, Recorder {
  private readonly written = new Map<ObjectKey, Status>();
  private readonly remembered = new Set<ObjectKey>();
  /**
   * Keys the DB held at start without a last applied object (never acted on). If the source no
   * longer declares one (its file went while hyperlet was down, or it was killed before the
   * removal reached the DB), nothing else would bring the key back: one pass forgets it.
   */
  private readonly unapplied = new Set<ObjectKey>();
  /** Remembered objects that declare spec.dependsOn: deletion order reads them without the DB. */
  private readonly depending = new Map<ObjectKey, Desired>();
  private readonly source: string;

  constructor(private readonly db: StateDb, source: string, private readonly logger: Logger) {
    this.source = source;
    for (const row of db.listObjects()) {
      if (row.source !== source) continue;
      if (row.status !== undefined) this.written.set(row.key, row.status);
      if (row.applied !== undefined) {
        this.remembered.add(row.key);
        this.noteDependencies(row.applied);
      } else {
        this.unapplied.add(row.key);
      }
    }
  }

  withDependencies(): readonly Desired[] {
    return [...this.depending.values()];
  }

  private noteDependencies(d: Desired): void {
    if ((d.object.spec.dependsOn?.length ?? 0) > 0) this.depending.set(d.key, d);
    else this.depending.delete(d.key);
  }

  write(d: Desired, status: Status): Promise<void> {
    this.db.writeStatus(d, status);
    this.written.set(d.key, status);
    return Promise.resolve();
  }

  lastWritten(key: ObjectKey): Status | undefined {
    return this.written.get(key);
  }

  keys(): readonly ObjectKey[] {
    return [...this.remembered, ...this.unapplied];
  }

  lastApplied(key: ObjectKey): Desired | undefined {
    return this.db.getObject(key)?.applied;
  }

  remember(d: Desired): void {
    this.db.remember(d);
    this.remembered.add(d.key);
    this.unapplied.delete(d.key);
    this.noteDependencies(d);
  }

  forget(key: ObjectKey): void {
    this.written.delete(key);
    this.remembered.delete(key);
    this.unapplied.delete(key);
    this.depending.delete(key);
    this.db.forget(key);
  }

  /** The last good objects a file declared, for a file found broken at start. */
  lastGoodOf(file: string): Desired[] {
    return this.db.listObjects()
      .map((r) => r.desired ?? r.applied)
      .filter((d): d is Desired => d !== undefined && d.source === this.source && d.origin?.file === file);
  }

  record(d: Desired, type: EventType, reason: string, message: string): void {
    this.db.audit(d.key, type, reason, type === 'Warning' ? 'failure' : 'success', message);
    this.logger[type === 'Warning' ? 'warn' : 'info']({ key: d.key, reason }, message);
  }
}
