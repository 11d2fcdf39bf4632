/**
 * Desired objects from one branch of a Git repository, followed by polling (and on demand).
 *
 * Guarantees:
 * - Revision-atomic: the tree of one commit is applied whole or not at all. A commit with any
 *   invalid manifest applies nothing; the last applied commit stays in force and every problem
 *   names the commit, file, document and field.
 * - A failed fetch, a rewritten history (the last applied commit is no longer an ancestor of the
 *   branch) or a commit deleting more than `maxPruneShare` of the source's objects changes
 *   nothing and is reported, until a commit fixes it or the user confirms that revision.
 * - An idle poll costs one `git fetch` (which transfers nothing) and no reconcile work: an
 *   unchanged branch tip is not even read.
 * - After a restart the last applied commit is served from the local clone before any network
 *   access, so an unreachable remote never reads as "delete everything".
 *
 * Caveats: only the branch tip is applied; commits pushed between two polls are not applied one
 * by one. Each source owns only its own objects: keys start with the source id.
 */
import type { Logger } from 'pino';
import type { Desired } from '../store/desired.js';
import { type ObjectKey, objectKey } from '../store/object-key.js';
import type { StateDb } from '../state/state-db.js';
import { PRUNE_ANNOTATION } from '../shared/annotations.js';
import { errorMessage } from '../shared/errors.js';
import { type Identify, mergeFileLoad, toDesired } from './dir-source.js';
import { GitRepository } from './git/git-repository.js';
import { type GitLocation, formatGitLocation, parseGitLocation } from './git/git-location.js';
import { redactUrlCredentials } from '../shared/redact.js';
import { type FileLoad, type LoadedObject, MAX_FILE_BYTES, dropDuplicates, isManifestPath, loadBytes, makeProblem } from './manifest-loader.js';
import type { Source, SourceRevisionState } from './source.js';
import type { SourceProblem } from '../store/source-problem.js';
import type { Clock } from '../shared/clock.js';
import { systemClock } from '../shared/clock.js';
import type { StoreWriter } from '../store/desired-store.js';

/** Why the newest revision is not the one in force. */
export type GitBlockReason = 'FetchFailed' | 'HistoryRewritten' | 'InvalidManifests' | 'PruneLimit' | 'ReadFailed';

/** What the state DB keeps per git source (db.setSourceState), shown by `hyperlet get sources`. */
export interface GitSourceState {
  readonly type: 'git';
  readonly url: string;
  readonly branch?: string;
  readonly subdir: string;
  readonly lastApplied?: { readonly revision: string; readonly at: string; readonly objects: number; readonly subject: string };
  readonly lastAttempted?: { readonly revision: string; readonly at: string };
  readonly lastFetch?: { readonly at: string; readonly ok: boolean; readonly error?: string };
  /** Set while the newest revision is not applied: why, in words. */
  readonly blocked?: { readonly reason: GitBlockReason; readonly message: string; readonly revision?: string };
  /** Keys declared by the last applied commit: kept in force if the clone is ever lost. */
  readonly appliedKeys?: readonly string[];
}

/** The repository, branch, path and polling of one git source. */
export interface GitSourceOptions {
  readonly id: string;
  /** URL[#BRANCH][//SUBDIR] */
  readonly location: string;
  /** Where the bare clone lives (beside the state DB). */
  readonly cloneDir: string;
  readonly db: Pick<StateDb, 'sourceState' | 'setSourceState' | 'setProblems' | 'getObject' | 'transaction'>;
  readonly identify: Identify;
  /** The last good objects a file declared (state DB), for a last applied commit that no longer validates. */
  readonly lastGoodOf: (file: string) => readonly Desired[];
  readonly logger: Logger;
  /** Poll period (default 30 s). */
  readonly intervalMs?: number;
  /** Bound on each git call (default 60 s; a fetch 5 min). */
  readonly timeoutMs?: number;
  /** Whether removed objects are deleted (--prune); when false no commit is held for pruning. */
  readonly prune?: boolean;
  /** A commit deleting more than this share of the source's objects is held back (default 0.5). */
  readonly maxPruneShare?: number;
  /** Revisions (full or at least 7 hex digits) the user confirmed despite a rewrite or the prune limit. */
  readonly confirm?: readonly string[];
  /** Time for the poll timer and fetch timestamps (default: the system clock). */
  readonly clock?: Clock;
}

interface CommitLoad {
  readonly files: readonly FileLoad[];
  readonly objects: readonly LoadedObject[];
  readonly problems: readonly SourceProblem[];
}

const short = (revision: string | undefined): string => (revision === undefined ? '-' : revision.slice(0, 12));

/** Desired objects from one Git branch, polled and applied a whole commit at a time (see the module comment). */
export class GitSource implements Source {
  readonly id: string;
  readonly description: string;
  /** URL[#BRANCH][//SUBDIR] as shown: credentials replaced (shared/redact.ts). */
  private readonly shownLocation: string;
  readonly location: GitLocation;
  /** Counts for benchmarks and tests: polls made, tips evaluated, commits applied. */
  readonly stats = { polls: 0, attempts: 0, applies: 0 };
  private readonly repo: GitRepository;
  private readonly log: Logger;
  private state: GitSourceState;
  private store: StoreWriter | undefined;
  private published = new Map<ObjectKey, Desired>();
  private attemptProblems: readonly SourceProblem[] = [];
  private attemptBlock: GitSourceState['blocked'];
  private fetchError: GitSourceState['blocked'];
  private running: Promise<void> = Promise.resolve();
  private timer: unknown;
  private readonly clock: Clock;
  private firstPoll = true;
  private stopped = false;
  private persisted = '';
  /** The location this source id followed before, when it changed since the last run. */
  private movedFrom: string | undefined;
  /** When a fetch last succeeded (every poll, in memory; the DB keeps it to the minute). */
  private lastFetchOkAtMs: number | undefined;
  /** Loads of the files of the last commit read, by blob and path: unchanged files are not parsed again. */
  private loads = new Map<string, FileLoad>();

  constructor(private readonly options: GitSourceOptions) {
    this.id = options.id;
    this.clock = options.clock ?? systemClock;
    this.location = parseGitLocation(options.location);
    // Credentials in the URL are used for fetching only: everything shown or stored says REDACTED.
    this.shownLocation = redactUrlCredentials(formatGitLocation(this.location));
    this.description = `git:${this.shownLocation}`;
    this.repo = new GitRepository(options.cloneDir, options.timeoutMs);
    this.log = options.logger;
    const saved = options.db.sourceState<GitSourceState>(options.id);
    this.state = {
      ...(saved?.type === 'git' ? saved : {}),
      type: 'git', url: redactUrlCredentials(this.location.url), subdir: this.location.subdir,
      ...(this.location.branch === undefined ? {} : { branch: this.location.branch }),
    };
    this.attemptBlock = this.state.blocked?.reason === 'FetchFailed' ? undefined : this.state.blocked;
    if (this.state.lastFetch?.ok === true) this.lastFetchOkAtMs = Date.parse(this.state.lastFetch.at);
    const savedLocation = saved?.type === 'git' ? redactUrlCredentials(formatGitLocation(saved)) : undefined;
    if (savedLocation !== undefined && savedLocation !== this.shownLocation) this.movedFrom = savedLocation;
  }

  /** Serves the last applied commit, then fetches once; resolves when both are done. */
  async start(store: StoreWriter, signal: AbortSignal): Promise<void> {
    this.store = store;
    signal.addEventListener('abort', () => this.stop(), { once: true });
    await this.repo.ensure();
    await this.publishLastApplied();
    await this.poll();
    this.schedule();
  }

  problems(): readonly SourceProblem[] {
    return this.currentProblems();
  }

  revisionState(): SourceRevisionState {
    const { lastApplied, lastAttempted } = this.state;
    return {
      behind: lastAttempted !== undefined && lastAttempted.revision !== lastApplied?.revision,
      ...(lastApplied === undefined ? {} : { lastAppliedAtMs: Date.parse(lastApplied.at) }),
      ...(this.lastFetchOkAtMs === undefined ? {} : { lastSuccessfulFetchAtMs: this.lastFetchOkAtMs }),
    };
  }

  summary(): string {
    const s = this.state;
    const applied = s.lastApplied === undefined ? 'nothing applied yet' : `applied ${short(s.lastApplied.revision)} (${s.lastApplied.objects} objects)`;
    const blocked = s.blocked === undefined ? '' : `; ${s.blocked.revision === undefined ? '' : `${short(s.blocked.revision)} `}not applied: ${s.blocked.reason}: ${s.blocked.message}`;
    return `${this.description}: ${applied}${blocked}`;
  }

  /** Polls now (SIGHUP, POST /sources/ID/refresh); polls never overlap. */
  refresh(): void {
    void this.poll();
  }

  /** git processes this source started so far. */
  get gitCalls(): number {
    return this.repo.git.calls;
  }

  /** The state as persisted (tests and benchmarks read it). */
  get current(): GitSourceState {
    return this.state;
  }

  /** Fetches and, when the tip moved, evaluates it; resolves when done. Never throws. */
  poll(): Promise<void> {
    this.running = this.running.then(() => this.pollOnce()).catch((err: unknown) => {
      this.log.error({ err }, 'git poll failed');
    });
    return this.running;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = this.clock.setTimeout(() => void this.poll().finally(() => this.schedule()), this.options.intervalMs ?? 30_000);
  }

  private stop(): void {
    this.stopped = true;
    this.clock.clearTimeout(this.timer);
  }

  private async pollOnce(): Promise<void> {
    if (this.stopped) return;
    this.stats.polls++;
    const at = new Date(this.clock.now()).toISOString();
    try {
      // A first fetch is a whole clone: give it longer than a local git call.
      await this.repo.fetch(this.location.url, this.location.branch, this.options.timeoutMs ?? 300_000);
    } catch (err) {
      const message = redactUrlCredentials(`cannot fetch ${this.location.url}${this.location.branch === undefined ? '' : ` branch ${this.location.branch}`}: ${errorMessage(err)}`);
      if (this.fetchError?.message !== message) this.log.warn({ err }, 'fetch failed; the last applied commit stays in force');
      this.fetchError = { reason: 'FetchFailed', message };
      this.state = { ...this.state, lastFetch: { at, ok: false, error: message } };
      this.persist();
      return;
    }
    this.lastFetchOkAtMs = Date.parse(at);
    const tip = await this.repo.fetchedRevision();
    const recovered = this.fetchError !== undefined;
    this.fetchError = undefined;
    if (tip === undefined) {
      this.fetchError = { reason: 'FetchFailed', message: 'the fetch brought no commit' };
      this.persist();
      return;
    }
    const first = this.firstPoll;
    this.firstPoll = false;
    // Idle: the tip was already evaluated. One fetch, no tree read, no store change.
    if (!first && tip === this.state.lastAttempted?.revision) {
      // The time of the last fetch is written at most once a minute: idle polls stay write-free.
      if (recovered || Date.parse(at) - Date.parse(this.state.lastFetch?.at ?? at) > 60_000) {
        this.state = { ...this.state, lastFetch: { at, ok: true } };
        this.persist();
      }
      return;
    }
    this.state = { ...this.state, lastFetch: { at, ok: true } };
    if (tip === this.state.lastApplied?.revision && this.published.size === this.state.lastApplied.objects) {
      this.attemptBlock = undefined;
      this.attemptProblems = [];
      this.state = { ...this.state, lastAttempted: { revision: tip, at } };
    } else {
      try {
        await this.attempt(tip, at);
      } catch (err) {
        // git failed reading the commit (a timeout, a huge tree): nothing applied, said so.
        this.block(tip, 'ReadFailed', `Cannot read commit ${short(tip)}: ${errorMessage(err)}; nothing applied, ${this.state.lastApplied === undefined ? 'nothing was applied before' : `${short(this.state.lastApplied.revision)} stays in force`}`);
      }
    }
    this.persist();
  }

  /** Evaluates commit `tip`; applies it only if every rule allows. */
  private async attempt(tip: string, at: string): Promise<void> {
    this.stats.attempts++;
    this.state = { ...this.state, lastAttempted: { revision: tip, at } };
    const applied = this.state.lastApplied?.revision;
    const confirmed = (this.options.confirm ?? []).some((c) => c.length >= 7 && tip.startsWith(c.toLowerCase()));
    const keep = applied === undefined ? 'nothing was applied before' : `${short(applied)} stays in force`;

    if (applied !== undefined && applied !== tip && !confirmed) {
      const linear = (await this.repo.hasCommit(applied)) && (await this.repo.isAncestor(applied, tip));
      if (!linear) {
        const moved = this.movedFrom === undefined ? '' : `The source now follows ${this.shownLocation} (was ${this.movedFrom}). `;
        return this.block(tip, 'HistoryRewritten', `${moved}The branch was rewritten: the last applied commit ${short(applied)} is not an ancestor of ${short(tip)}; nothing applied, ${keep}. Check the new history, then confirm with --confirm ${short(tip)}`);
      }
    }

    const load = await this.loadCommit(tip);
    if (load.problems.length > 0) {
      this.attemptProblems = load.problems.map((p) => withRevision(p, tip));
      const first = load.problems[0]?.line ?? '';
      return this.block(tip, 'InvalidManifests', `Commit ${short(tip)} has ${load.problems.length} problem(s); nothing applied, ${keep}. First: ${first}`, false);
    }

    const keys = new Set(load.objects.map((o) => objectKey(this.id, o.object.metadata.namespace, o.object.kind, o.object.metadata.name)));
    const removed = [...this.published.values()].filter((d) => !keys.has(d.key) && d.object.metadata.annotations?.[PRUNE_ANNOTATION] !== 'disabled');
    const limit = this.options.maxPruneShare ?? 0.5;
    const total = this.published.size;
    if (this.options.prune !== false && total > 0 && removed.length / total > limit && !confirmed) {
      const pct = (n: number): string => `${Math.round(n * 100)}%`;
      const names = removed.slice(0, 5).map((d) => `${d.object.kind}/${d.object.metadata.name}`).join(', ');
      return this.block(tip, 'PruneLimit', `Commit ${short(tip)} would delete ${removed.length} of ${total} objects (${pct(removed.length / total)}, more than ${pct(limit)}): held back, nothing applied, ${keep}. Deleted would be ${names}${removed.length > 5 ? ', …' : ''}. If this is intended, confirm with --confirm ${short(tip)}`);
    }

    const desired = this.options.db.transaction(() => load.objects.map((o) => toDesired(this.id, o, this.options.identify)));
    this.publish(desired);
    await this.repo.pin(tip);
    const subject = await this.repo.subject(tip).catch(() => '');
    this.stats.applies++;
    this.movedFrom = undefined;
    this.attemptBlock = undefined;
    this.attemptProblems = [];
    this.state = {
      ...this.state,
      lastApplied: { revision: tip, at, objects: desired.length, subject },
      appliedKeys: desired.map((d) => d.key),
    };
    this.log.info({ revision: tip, objects: desired.length, removed: removed.length, subject }, 'commit applied');
  }

  private block(tip: string, reason: GitBlockReason, message: string, clearProblems = true): void {
    if (clearProblems) this.attemptProblems = [];
    this.attemptBlock = { reason, message, revision: tip };
    this.log.warn({ revision: tip, reason }, message);
  }

  /** Reads and validates every manifest of `revision` under the followed subdirectory. */
  private async loadCommit(revision: string): Promise<CommitLoad> {
    const { subdir } = this.location;
    const display = (path: string): string => (subdir === '' ? path : `${subdir}/${path}`);
    const files = await this.repo.listFiles(revision, subdir);
    if (files === undefined) {
      return { files: [], objects: [], problems: [makeProblem({ file: subdir, rule: 'subdir', message: 'the directory does not exist at this commit' })] };
    }
    const problems: SourceProblem[] = [];
    const readable = [];
    for (const f of files.filter((x) => isManifestPath(x.path))) {
      if (!f.regular) problems.push(makeProblem({ file: display(f.path), rule: 'file', message: 'is a symbolic link; only regular files are read' }));
      else if (f.sizeBytes > MAX_FILE_BYTES) problems.push(makeProblem({ file: display(f.path), rule: 'size', message: `file is ${f.sizeBytes} bytes; the limit is ${MAX_FILE_BYTES} (1 MiB)` }));
      else readable.push(f);
    }
    const id = (f: { blob: string; path: string }): string => `${f.blob}:${f.path}`;
    const blobs = await this.repo.readBlobs([...new Set(readable.filter((f) => !this.loads.has(id(f))).map((f) => f.blob))]);
    const loads = new Map<string, FileLoad>();
    const objects: LoadedObject[] = [];
    for (const f of readable) {
      // Same blob at the same path: the same load (validation is a pure function of the text).
      const load = this.loads.get(id(f)) ?? loadBytes(display(f.path), blobs.get(f.blob) ?? Buffer.alloc(0));
      loads.set(id(f), load);
      objects.push(...load.objects);
      problems.push(...load.problems);
    }
    this.loads = loads;
    return { files: [...loads.values()], objects: dropDuplicates(objects, problems), problems };
  }

  /**
   * At start: the last applied commit again, from the local clone. Documents that no longer
   * validate (a stricter hyperlet) keep their last good spec; a lost clone falls back to the
   * objects the state DB remembers for the keys that commit declared.
   */
  private async publishLastApplied(): Promise<void> {
    const last = this.state.lastApplied;
    if (last === undefined) return;
    if (await this.repo.hasCommit(last.revision)) {
      const load = await this.loadCommit(last.revision);
      const objects: Desired[] = [];
      this.options.db.transaction(() => {
        for (const file of load.files) {
          // Only a file with problems needs its last good objects (reading them scans the state DB).
          const previous = file.problems.length === 0 ? [] : this.options.lastGoodOf(file.file);
          objects.push(...mergeFileLoad(this.id, file, previous, this.options.identify).objects);
        }
      });
      this.publish(objects);
      if (load.problems.length > 0) this.attemptProblems = load.problems.map((p) => withRevision(p, last.revision));
      return;
    }
    this.log.warn({ revision: last.revision }, 'the last applied commit is not in the clone; serving the objects the state DB remembers');
    const objects: Desired[] = [];
    for (const key of this.state.appliedKeys ?? []) {
      const row = this.options.db.getObject(key as ObjectKey);
      const d = row?.desired ?? row?.applied;
      if (d !== undefined) objects.push({ key: d.key, source: d.source, object: d.object, id: d.id, generation: d.generation, specHash: d.specHash, hostName: d.hostName, ...(d.origin === undefined ? {} : { origin: d.origin }) });
    }
    this.publish(objects);
  }

  private publish(objects: readonly Desired[]): void {
    this.published = new Map(objects.map((d) => [d.key, d]));
    this.store?.replaceAll(this.id, objects);
  }

  private currentProblems(): SourceProblem[] {
    const problems = [...this.attemptProblems];
    const block = this.fetchError ?? this.attemptBlock;
    if (block !== undefined && block.reason !== 'InvalidManifests') {
      // The message already names the commit: it is the whole line.
      problems.unshift({ ...makeProblem({ rule: block.reason, message: block.message }), line: block.message, ...(block.revision === undefined ? {} : { revision: block.revision }) });
    }
    return problems;
  }

  private persist(): void {
    const blocked = this.fetchError ?? this.attemptBlock;
    const next: { -readonly [K in keyof GitSourceState]: GitSourceState[K] } = { ...this.state };
    if (blocked === undefined) delete next.blocked;
    else next.blocked = blocked;
    this.state = next;
    const problems = this.currentProblems();
    const text = JSON.stringify([this.state, problems]);
    if (text === this.persisted) return;
    this.persisted = text;
    this.options.db.setSourceState(this.id, this.description, this.state);
    this.options.db.setProblems(this.id, problems);
  }
}

/** The problem, its line prefixed with the commit it was found in. */
function withRevision(p: SourceProblem, revision: string): SourceProblem {
  return { ...p, revision, line: `commit ${short(revision)}: ${p.line}` };
}
