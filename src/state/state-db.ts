/**
 * The embedded state DB (SQLite, WAL) behind the dir and git sources: stable ids, generations,
 * status, the last applied object of each key (so removed objects can still be deleted), the
 * problems each source reports, and an append-only audit log of every action.
 *
 * Guarantees: an id, once assigned to a key, never changes while the key is remembered;
 * migrations run in order, once, inside a transaction; `remember` is on disk when its promise
 * resolves and `forget` when it returns (a crash must never lose the memory of an instance we may
 * have created). Remembers made while others run share one commit.
 * Status, identities and audit entries are written behind, in one transaction every few
 * milliseconds (one commit instead of thousands at startup); reads and close() flush first.
 * The WAL is checkpointed into the DB file at most every 5 s, off the commit path (SQLite's
 * automatic checkpoint every 1,000 pages ran inside a commit, with its fsyncs: most of the wall
 * time of 10,000 creates). A commit is durable once in the WAL, so this changes no guarantee.
 * Caveats: one daemon per DB file; CLI commands open it read-only beside the daemon (WAL allows it).
 */
import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import type { Status } from '../api/v1alpha1/types.js';
import { failpoint } from '../shared/failpoint.js';
import type { Desired } from '../store/desired.js';
import type { ObjectKey } from '../store/object-key.js';
import type { SourceProblem } from '../store/source-problem.js';
import type { Clock } from '../shared/clock.js';
import { isoTime, systemClock } from '../shared/clock.js';
import { type StateDirResult, secureStateDir, secureStateFile, tightenIfPresent } from './state-dir.js';

const MIGRATIONS: readonly string[] = [
  // 1: objects, audit, problems
  `CREATE TABLE objects (
     key TEXT PRIMARY KEY,
     source TEXT NOT NULL,
     kind TEXT NOT NULL,
     namespace TEXT NOT NULL,
     name TEXT NOT NULL,
     id TEXT NOT NULL UNIQUE,
     generation INTEGER NOT NULL,
     spec_hash TEXT NOT NULL,
     object TEXT,
     applied TEXT,
     status TEXT,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL
   );
   CREATE INDEX objects_by_kind ON objects(kind, namespace, name);
   CREATE TABLE audit (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     at TEXT NOT NULL,
     key TEXT NOT NULL,
     type TEXT NOT NULL,
     action TEXT NOT NULL,
     result TEXT NOT NULL,
     message TEXT NOT NULL
   );
   CREATE INDEX audit_by_key ON audit(key, seq);
   CREATE TABLE problems (
     source TEXT NOT NULL,
     seq INTEGER NOT NULL,
     line TEXT NOT NULL,
     detail TEXT NOT NULL,
     PRIMARY KEY (source, seq)
   );`,
  // 2: per-source revisions (git) and free-form state
  `CREATE TABLE sources (
     id TEXT PRIMARY KEY,
     description TEXT NOT NULL,
     state TEXT NOT NULL,
     updated_at TEXT NOT NULL
   );`,
  // 3: the notification outbox (events in order, kept a while after delivery) and each sink's cursor
  `CREATE TABLE outbox (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     id TEXT NOT NULL UNIQUE,
     key TEXT NOT NULL,
     type TEXT NOT NULL,
     at TEXT NOT NULL,
     body TEXT NOT NULL
   );
   CREATE TABLE outbox_cursors (
     sink TEXT PRIMARY KEY,
     delivered_seq INTEGER NOT NULL,
     updated_at TEXT NOT NULL
   );`,
  // 4: requests made through the API (an annotation value per key), in force until the source changes it
  `CREATE TABLE requests (
     key TEXT NOT NULL,
     annotation TEXT NOT NULL,
     value TEXT NOT NULL,
     declared TEXT,
     at TEXT NOT NULL,
     PRIMARY KEY (key, annotation)
   );`,
  // 5: graceful stops under way: when each was first asked for and when it is forced
  `CREATE TABLE stop_deadlines (
     key TEXT PRIMARY KEY,
     requested_at_ms INTEGER NOT NULL,
     deadline_ms INTEGER NOT NULL
   );`,
];

/** A graceful stop under way (see reconcile/stop-deadlines.ts, whose StopDeadlines these methods back). */
export interface StopDeadlineRow {
  readonly requestedAtMs: number;
  readonly deadlineMs: number;
}

/** A request made through the API: `annotation` set to `value` on `key`, while the source still declares `declared`. */
export interface RequestRow {
  readonly key: string;
  readonly annotation: string;
  readonly value: string;
  /** The source's own value of the annotation when the request was made (null: none). */
  readonly declared: string | null;
  readonly at: string;
}

/** One event waiting in (or delivered from) the outbox; `body` is what is sent, as is. */
export interface OutboxEntry {
  readonly seq: number;
  /** Unique per event (the CloudEvents id): receivers de-duplicate by it. */
  readonly id: string;
  readonly key: string;
  readonly type: string;
  readonly at: string;
  readonly body: string;
}

/** One object as the state DB keeps it: identity, status, last desired and last applied forms. */
export interface ObjectRow {
  readonly key: ObjectKey;
  readonly source: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  readonly id: string;
  readonly generation: number;
  readonly specHash: string;
  readonly status: Status | undefined;
  /** The desired object as of the last status write. */
  readonly desired: Desired | undefined;
  readonly applied: Desired | undefined;
  readonly createdAt: string;
  readonly updatedAt: string;
}

/** One audit log entry: what hyperlet did to an object, when, and how it went. */
export interface AuditEntry {
  readonly seq: number;
  readonly at: string;
  readonly key: string;
  readonly type: string;
  readonly action: string;
  readonly result: string;
  readonly message: string;
}

interface RawObjectRow {
  key: string; source: string; kind: string; namespace: string; name: string; id: string;
  generation: number; spec_hash: string; object: string | null; applied: string | null; status: string | null; created_at: string; updated_at: string;
}

/** The embedded SQLite state DB of dir and git mode (see the module comment for what it keeps and when it writes). */
export class StateDb {
  private readonly db: Database.Database;
  private readonly statements: ReturnType<StateDb['prepare']>;
  private pending: (() => void)[] = [];
  private flushTimer: unknown;
  private checkpointTimer: unknown;
  private readonly clock: Clock;
  private identities: Map<string, { id: string; generation: number; specHash: string }> | undefined;
  private readonly rememberedAs = new Map<string, string>();
  /** Remembers waiting for their shared commit, and the promise of that commit. */
  private rememberBatch: { key: string; applied: string; now: string; fingerprint: string }[] = [];
  private rememberCommit: Promise<void> | undefined;
  /** The object stored with each key's last status write: an unchanged object is not written again. */
  private readonly storedObjects = new Map<string, Desired>();
  /** Graceful stops under way, by key: the table, loaded on first use and written through. */
  private stopDeadlines: Map<string, StopDeadlineRow> | undefined;
  /** Runs a function in one transaction; made once (better-sqlite3 compiles each wrapper it makes). */
  private readonly inTransaction: (fn: () => unknown) => unknown;

  /** What was done to make the state directory private (daemon start), for its log. */
  readonly stateDir: StateDirResult | undefined;

  /**
   * Opens (creating when needed) the DB at `path` and runs pending migrations. `readonly` opens
   * without writing. Writable: the directory is made 0700 and the DB files 0600 first
   * (state-dir.ts); throws when that cannot be done. `clock` stamps rows and times the write-behind.
   */
  constructor(path: string, options: { readonly?: boolean; clock?: Clock } = {}) {
    this.clock = options.clock ?? systemClock;
    const writable = options.readonly !== true && path !== ':memory:';
    if (writable) {
      this.stateDir = secureStateDir(path);
      secureStateFile(path); // SQLite gives its -wal and -shm files the mode of the DB file
    }
    this.db = new Database(path, { readonly: options.readonly === true, fileMustExist: options.readonly === true });
    if (options.readonly !== true) {
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma('wal_autocheckpoint = 0'); // scheduleCheckpoint() does it, off the commit path
      this.migrate();
    }
    if (writable) for (const suffix of ['-wal', '-shm', '-journal']) tightenIfPresent(`${path}${suffix}`);
    this.db.pragma('busy_timeout = 5000');
    this.statements = this.prepare();
    this.inTransaction = this.db.transaction((fn: () => unknown) => fn());
  }

  /** The schema version after migrations. */
  get schemaVersion(): number {
    return Number(this.db.pragma('user_version', { simple: true }));
  }

  private migrate(): void {
    const current = Number(this.db.pragma('user_version', { simple: true }));
    for (let v = current; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v] ?? '');
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  private prepare() {
    return {
      get: this.db.prepare<[string], RawObjectRow>('SELECT * FROM objects WHERE key = ?'),
      insert: this.db.prepare('INSERT INTO objects (key, source, kind, namespace, name, id, generation, spec_hash, created_at, updated_at) VALUES (@key, @source, @kind, @namespace, @name, @id, 1, @specHash, @now, @now)'),
      bump: this.db.prepare('UPDATE objects SET generation = generation + 1, spec_hash = @specHash, updated_at = @now WHERE key = @key'),
      setStatusOnly: this.db.prepare('UPDATE objects SET status = @status, updated_at = @now WHERE key = @key'),
      setStatus: this.db.prepare('UPDATE objects SET status = @status, object = @object, updated_at = @now WHERE key = @key'),
      setApplied: this.db.prepare('UPDATE objects SET applied = @applied, updated_at = @now WHERE key = @key'),
      remembered: this.db.prepare<[], { key: string }>('SELECT key FROM objects WHERE applied IS NOT NULL'),
      delete: this.db.prepare('DELETE FROM objects WHERE key = ?'),
      all: this.db.prepare<[], RawObjectRow>('SELECT * FROM objects ORDER BY kind, namespace, name'),
      audit: this.db.prepare('INSERT INTO audit (at, key, type, action, result, message) VALUES (?, ?, ?, ?, ?, ?)'),
      auditRecent: this.db.prepare<[number], AuditEntry>('SELECT * FROM (SELECT * FROM audit ORDER BY seq DESC LIMIT ?) ORDER BY seq'),
      auditFor: this.db.prepare<[string, number], AuditEntry>('SELECT * FROM (SELECT * FROM audit WHERE key = ? ORDER BY seq DESC LIMIT ?) ORDER BY seq'),
      clearProblems: this.db.prepare('DELETE FROM problems WHERE source = ?'),
      addProblem: this.db.prepare('INSERT INTO problems (source, seq, line, detail) VALUES (?, ?, ?, ?)'),
      problems: this.db.prepare<[], { source: string; line: string; detail: string }>('SELECT source, line, detail FROM problems ORDER BY source, seq'),
      setSource: this.db.prepare('INSERT INTO sources (id, description, state, updated_at) VALUES (@id, @description, @state, @now) ON CONFLICT(id) DO UPDATE SET description = @description, state = @state, updated_at = @now'),
      getSource: this.db.prepare<[string], { state: string }>('SELECT state FROM sources WHERE id = ?'),
      outboxAppend: this.db.prepare('INSERT INTO outbox (id, key, type, at, body) VALUES (@id, @key, @type, @at, @body)'),
      outboxAfter: this.db.prepare<[number, number], OutboxEntry>('SELECT * FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?'),
      outboxLast: this.db.prepare<[], { seq: number | null }>('SELECT MAX(seq) AS seq FROM outbox'),
      outboxCount: this.db.prepare<[number], { n: number }>('SELECT COUNT(*) AS n FROM outbox WHERE seq > ?'),
      outboxPrune: this.db.prepare('DELETE FROM outbox WHERE seq <= ?'),
      outboxDropOldest: this.db.prepare('DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)'),
      outboxSize: this.db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM outbox'),
      outboxUndeliveredAmongOldest: this.db.prepare<[number, number], { n: number }>(
        'SELECT COUNT(*) AS n FROM (SELECT seq FROM outbox ORDER BY seq LIMIT ?) WHERE seq > ?'),
      cursorGet: this.db.prepare<[string], { delivered_seq: number }>('SELECT delivered_seq FROM outbox_cursors WHERE sink = ?'),
      cursorSet: this.db.prepare(`INSERT INTO outbox_cursors (sink, delivered_seq, updated_at) VALUES (@sink, @seq, @now)
        ON CONFLICT(sink) DO UPDATE SET delivered_seq = @seq, updated_at = @now`),
      cursorAll: this.db.prepare<[], { sink: string; delivered_seq: number }>('SELECT sink, delivered_seq FROM outbox_cursors'),
      cursorDelete: this.db.prepare('DELETE FROM outbox_cursors WHERE sink = ?'),
      requestSet: this.db.prepare(`INSERT INTO requests (key, annotation, value, declared, at) VALUES (@key, @annotation, @value, @declared, @at)
        ON CONFLICT(key, annotation) DO UPDATE SET value = @value, declared = @declared, at = @at`),
      requestAll: this.db.prepare<[], RequestRow>('SELECT * FROM requests ORDER BY key, annotation'),
      requestDelete: this.db.prepare('DELETE FROM requests WHERE key = ? AND annotation = ?'),
      stopAll: this.db.prepare<[], { key: string; requested_at_ms: number; deadline_ms: number }>('SELECT * FROM stop_deadlines'),
      stopSet: this.db.prepare(`INSERT INTO stop_deadlines (key, requested_at_ms, deadline_ms) VALUES (@key, @requestedAtMs, @deadlineMs)
        ON CONFLICT(key) DO UPDATE SET requested_at_ms = @requestedAtMs, deadline_ms = @deadlineMs`),
      stopDelete: this.db.prepare('DELETE FROM stop_deadlines WHERE key = ?'),
      allSources: this.db.prepare<[], { id: string; description: string; state: string; updated_at: string }>('SELECT * FROM sources ORDER BY id'),
    };
  }

  /**
   * The stable id and generation of `key`: assigned on first sight; the generation grows by one
   * each time `specHash` differs from the last one seen.
   */
  identify(key: ObjectKey, parts: { source: string; kind: string; namespace: string; name: string }, specHash: string): { id: string; generation: number } {
    this.identities ??= new Map(this.db.prepare<[], { key: string; id: string; generation: number; spec_hash: string }>('SELECT key, id, generation, spec_hash FROM objects').all()
      .map((r) => [r.key, { id: r.id, generation: r.generation, specHash: r.spec_hash }]));
    const now = this.isoNow();
    const known = this.identities.get(key);
    if (known === undefined) {
      const id = randomUUID();
      this.identities.set(key, { id, generation: 1, specHash });
      this.defer(() => this.statements.insert.run({ key, ...parts, id, specHash, now }));
      return { id, generation: 1 };
    }
    if (known.specHash === specHash) return { id: known.id, generation: known.generation };
    const next = { id: known.id, generation: known.generation + 1, specHash };
    this.identities.set(key, next);
    this.defer(() => this.statements.bump.run({ key, specHash, now }));
    return { id: next.id, generation: next.generation };
  }

  getObject(key: ObjectKey): ObjectRow | undefined {
    this.flush();
    const row = this.statements.get.get(key);
    return row === undefined ? undefined : toObjectRow(row);
  }

  listObjects(): ObjectRow[] {
    this.flush();
    return this.statements.all.all().map(toObjectRow);
  }

  /** Stores `d`'s status together with the object it describes (what `hyperlet get` shows). */
  writeStatus(d: Desired, status: Status): void {
    const now = this.isoNow();
    // The same object as the last write (status moved on, the object did not): only the status.
    if (this.storedObjects.get(d.key) === d) {
      this.defer(() => this.statements.setStatusOnly.run({ key: d.key, status: JSON.stringify(status), now }));
      return;
    }
    this.storedObjects.set(d.key, d);
    this.defer(() => this.statements.setStatus.run({ key: d.key, status: JSON.stringify(status), object: JSON.stringify(d), now }));
  }

  /**
   * Remembers `d` as the object last acted on for its key (kept until forget); resolves once it is
   * on disk. Remembers made while others run are committed together, once the current turn of the
   * event loop ends (one commit for what the workers are about to create, not one each).
   */
  remember(d: Desired): Promise<void> {
    const fingerprint = `${d.id}:${d.generation}:${d.specHash}`;
    if (this.rememberedAs.get(d.key) === fingerprint) return Promise.resolve();
    this.rememberBatch.push({ key: d.key, applied: JSON.stringify(d), now: this.isoNow(), fingerprint });
    this.rememberCommit ??= new Promise<void>((resolve, reject) => {
      setImmediate(() => {
        this.rememberCommit = undefined;
        try {
          this.commitRemembers();
          resolve();
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      });
    });
    return this.rememberCommit;
  }

  /** Writes the waiting remembers in one transaction, after what was written behind before them. */
  private commitRemembers(): void {
    const batch = this.rememberBatch;
    if (batch.length === 0) return; // committed already (close)
    this.rememberBatch = [];
    this.flush();
    failpoint('state.remembering');
    this.inTransaction(() => { for (const r of batch) this.statements.setApplied.run({ key: r.key, applied: r.applied, now: r.now }); });
    failpoint('state.remembered');
    for (const r of batch) this.rememberedAs.set(r.key, r.fingerprint);
    this.scheduleCheckpoint();
  }

  rememberedKeys(): ObjectKey[] {
    this.flush();
    return this.statements.remembered.all().map((r) => r.key as ObjectKey);
  }

  /** Forgets `key` entirely (identity included); on disk when it returns. */
  forget(key: ObjectKey): void {
    this.flush();
    failpoint('state.forgetting');
    this.statements.delete.run(key);
    this.identities?.delete(key);
    this.rememberedAs.delete(key);
    this.storedObjects.delete(key);
    this.scheduleCheckpoint();
  }

  /** The graceful stop under way for `key`, if any (read from a copy of the table loaded once). */
  stopDeadline(key: string): StopDeadlineRow | undefined {
    return this.loadStopDeadlines().get(key);
  }

  /** Records `key`'s graceful stop; on disk when it returns (it is written before the instance is asked). */
  setStopDeadline(key: string, row: StopDeadlineRow): void {
    const rows = this.loadStopDeadlines();
    this.statements.stopSet.run({ key, requestedAtMs: row.requestedAtMs, deadlineMs: row.deadlineMs });
    rows.set(key, { requestedAtMs: row.requestedAtMs, deadlineMs: row.deadlineMs });
    failpoint('state.stop-deadline');
  }

  /** Forgets `key`'s graceful stop; a key with none costs no write. */
  deleteStopDeadline(key: string): void {
    const rows = this.loadStopDeadlines();
    if (!rows.has(key)) return;
    this.statements.stopDelete.run(key);
    rows.delete(key);
  }

  private loadStopDeadlines(): Map<string, StopDeadlineRow> {
    this.stopDeadlines ??= new Map(this.statements.stopAll.all()
      .map((r) => [r.key, { requestedAtMs: r.requested_at_ms, deadlineMs: r.deadline_ms }] as const));
    return this.stopDeadlines;
  }

  /** Appends one audit entry; entries are never changed or removed. */
  audit(key: string, type: string, action: string, result: string, message: string): void {
    const at = this.isoNow();
    this.defer(() => this.statements.audit.run(at, key, type, action, result, message));
  }

  /** The last `limit` audit entries of every key, oldest first (the dashboard's timeline). */
  recentAudit(limit = 100): AuditEntry[] {
    this.flush();
    return this.statements.auditRecent.all(limit);
  }

  /** The last `limit` audit entries of `key`, oldest first. */
  auditFor(key: string, limit = 20): AuditEntry[] {
    this.flush();
    return this.statements.auditFor.all(key, limit);
  }

  /** Writes everything written behind so far, in one transaction. */
  flush(): void {
    this.clock.clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.inTransaction(() => { for (const write of batch) write(); });
    this.scheduleCheckpoint();
  }

  /**
   * Copies the WAL into the DB file within 5 s of a commit (PASSIVE: never waits for readers). A
   * page written many times in a burst is copied once per checkpoint, so fewer checkpoints copy less.
   */
  private scheduleCheckpoint(): void {
    this.checkpointTimer ??= this.clock.setTimeout(() => {
      this.checkpointTimer = undefined;
      if (this.db.open) this.db.pragma('wal_checkpoint(PASSIVE)');
    }, 5_000);
  }

  private isoNow(): string {
    return isoTime(this.clock.now());
  }

  private defer(write: () => void): void {
    this.pending.push(write);
    this.flushTimer ??= this.clock.setTimeout(() => this.flush(), 10);
  }

  /** Replaces the problems `source` reports. */
  setProblems(source: string, problems: readonly SourceProblem[]): void {
    this.flush();
    this.inTransaction(() => {
      this.statements.clearProblems.run(source);
      problems.forEach((p, i) => this.statements.addProblem.run(source, i, p.line, JSON.stringify(p)));
    });
    this.scheduleCheckpoint();
  }

  problems(): { source: string; problem: SourceProblem }[] {
    this.flush();
    return this.statements.problems.all().map((r) => ({ source: r.source, problem: JSON.parse(r.detail) as SourceProblem }));
  }

  /** Free-form per-source state (git: last applied and attempted revisions). */
  setSourceState(id: string, description: string, state: unknown): void {
    this.flush();
    this.statements.setSource.run({ id, description, state: JSON.stringify(state), now: this.isoNow() });
    this.scheduleCheckpoint();
  }

  sourceState<T>(id: string): T | undefined {
    const row = this.statements.getSource.get(id);
    return row === undefined ? undefined : (JSON.parse(row.state) as T);
  }

  listSources(): { id: string; description: string; state: unknown; updatedAt: string }[] {
    return this.statements.allSources.all().map((r) => ({ id: r.id, description: r.description, state: JSON.parse(r.state) as unknown, updatedAt: r.updated_at }));
  }

  /**
   * Queues `entries` into the outbox behind, like status: a status write and the events it
   * caused, queued in one synchronous step, commit in one transaction (never one without the other).
   */
  appendOutbox(entries: readonly Omit<OutboxEntry, 'seq'>[]): void {
    if (entries.length === 0) return;
    this.defer(() => { for (const e of entries) this.statements.outboxAppend.run(e); });
  }

  /** Up to `limit` outbox entries after `seq`, oldest first. */
  outboxAfter(seq: number, limit: number): OutboxEntry[] {
    this.flush();
    return this.statements.outboxAfter.all(seq, limit);
  }

  /** The newest outbox sequence number (0 when it was always empty). */
  outboxLastSeq(): number {
    this.flush();
    return this.statements.outboxLast.get()?.seq ?? 0;
  }

  /** How many outbox entries come after `seq`. */
  outboxCountAfter(seq: number): number {
    this.flush();
    return this.statements.outboxCount.get(seq)?.n ?? 0;
  }

  /** The last sequence number delivered to `sink`, or undefined for a sink never seen. */
  outboxCursor(sink: string): number | undefined {
    return this.statements.cursorGet.get(sink)?.delivered_seq;
  }

  /** Records that `sink` has everything up to `seq`; on disk when it returns (a restart resumes after it). */
  setOutboxCursor(sink: string, seq: number): void {
    this.statements.cursorSet.run({ sink, seq, now: this.isoNow() });
  }

  /** Every sink's cursor. */
  outboxCursors(): Map<string, number> {
    return new Map(this.statements.cursorAll.all().map((r) => [r.sink, r.delivered_seq]));
  }

  /** Forgets a sink no longer configured. */
  deleteOutboxCursor(sink: string): void {
    this.statements.cursorDelete.run(sink);
  }

  /**
   * Removes delivered entries: those at or below `deliveredSeq`, keeping the newest `keep` of
   * them; then, if more than `max` entries remain, the oldest beyond `max` (returns how many of
   * those undelivered ones were dropped).
   */
  pruneOutbox(deliveredSeq: number, keep: number, max: number): number {
    this.flush();
    return this.db.transaction(() => {
      this.statements.outboxPrune.run(deliveredSeq - keep);
      const size = this.statements.outboxSize.get()?.n ?? 0;
      if (size <= max) return 0;
      const excess = size - max;
      const undelivered = this.statements.outboxUndeliveredAmongOldest.get(excess, deliveredSeq)?.n ?? 0;
      this.statements.outboxDropOldest.run(excess);
      return undelivered;
    })();
  }

  /** Records a request; on disk when it returns. */
  setRequest(row: RequestRow): void {
    this.flush();
    this.statements.requestSet.run(row);
  }

  /** Every request in force. */
  requests(): RequestRow[] {
    return this.statements.requestAll.all();
  }

  /** Drops a request (the source changed the annotation itself, or the object is gone). */
  deleteRequest(key: string, annotation: string): void {
    this.statements.requestDelete.run(key, annotation);
  }

  /** Runs `fn` in one transaction: many writes, one fsync. */
  transaction<T>(fn: () => T): T {
    this.flush();
    const result = this.inTransaction(fn) as T;
    this.scheduleCheckpoint();
    return result;
  }

  /** Flushes what was written behind and closes; the last connection to close checkpoints the whole WAL. */
  close(): void {
    this.commitRemembers();
    this.flush();
    this.clock.clearTimeout(this.checkpointTimer);
    this.checkpointTimer = undefined;
    this.db.close();
  }
}

function toObjectRow(r: RawObjectRow): ObjectRow {
  return {
    key: r.key as ObjectKey, source: r.source, kind: r.kind, namespace: r.namespace, name: r.name, id: r.id,
    generation: r.generation, specHash: r.spec_hash,
    status: r.status === null ? undefined : (JSON.parse(r.status) as Status),
    desired: r.object === null ? undefined : (JSON.parse(r.object) as Desired),
    applied: r.applied === null ? undefined : (JSON.parse(r.applied) as Desired),
    createdAt: r.created_at, updatedAt: r.updated_at,
  };
}
