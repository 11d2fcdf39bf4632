/**
 * Desired objects from a directory of manifests, watched with chokidar.
 *
 * Guarantees:
 * - Objects are keyed by kind/namespace/name, not by file: moving one between files changes nothing.
 * - A file that cannot be used (broken YAML, binary, too big) keeps the objects it declared before,
 *   and an invalid document keeps its object's last good spec: a typo never reads as "delete".
 *   After a restart the last good spec comes from `fallback` (the state DB).
 * - A listing that fails (the directory gone, replaced by a file, a directory under it unreadable)
 *   changes nothing: every object stays, the source reports itself not ready with the path and
 *   the reason, and lists again with backoff (1 s doubling to 30 s). `start` resolves only once
 *   a listing worked, so a source that never listed never reads as "nothing declared".
 * - Removing a file removes its objects, once they stay gone for `removalGraceMs`.
 * - A file half-written by an editor is read once it stops changing (awaitWriteFinish), and bursts
 *   of events are handled together after a quiet period.
 *
 * Caveats: a watcher loses a directory that is replaced (moved away and back); after the root
 * was seen to go, or a failed listing, the watch is set up again and every file read again.
 */
import { watch, type FSWatcher } from 'chokidar';
import { stat } from 'node:fs/promises';
import { basename, relative, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Kind } from '../api/v1alpha1/group.js';
import { type Clock, systemClock } from '../shared/clock.js';
import { errorMessage } from '../shared/errors.js';
import { type Desired, hostNameOf, specHashOf } from '../store/desired.js';
import { type ObjectKey, objectKey } from '../store/object-key.js';
import { type FileLoad, type LoadedObject, listManifestDir, loadFile, makeProblem } from './manifest-loader.js';
import type { Source } from './source.js';
import type { SourceProblem } from '../store/source-problem.js';
import type { StoreWriter } from '../store/desired-store.js';

/** Assigns the stable id and generation of a key (the state DB does it for dir and git sources). */
export type Identify = (key: ObjectKey, parts: { source: string; kind: Kind; namespace: string; name: string }, specHash: string) => { id: string; generation: number };

/** The watched directory and how changes in it are debounced and confirmed. */
export interface DirSourceOptions {
  readonly id?: string;
  readonly path: string;
  readonly identify: Identify;
  /** The last good objects declared in `file`, for files that are broken when we start. */
  readonly fallback?: (file: string) => readonly Desired[];
  readonly logger: Logger;
  /** Quiet time before a burst of file events is read (default 300 ms). */
  readonly debounceMs?: number;
  /** Time for the debounce, the removal grace and the retries (default: the system clock). */
  readonly clock?: Clock;
  /**
   * How long an object must stay gone from every file before it is removed (default 1 s), so an
   * object moved between files by two separate writes never reads as a deletion.
   */
  readonly removalGraceMs?: number;
  /** Called whenever the set of problems changes. */
  readonly onProblems?: (problems: readonly SourceProblem[]) => void;
  /**
   * How often the root is checked to still be the directory watched (default 10 s): a directory
   * swapped for another (or for a file) leaves the watcher blind without a word.
   */
  readonly rootCheckMs?: number;
  /** First and last wait before listing again after a failed listing (default 1 s and 30 s). */
  readonly listRetryMs?: { readonly min: number; readonly max: number };
}

interface FileState {
  readonly objects: readonly Desired[];
  readonly problems: readonly SourceProblem[];
}

/** Turns loaded objects into Desired, with ids and generations; shared by the dir and git sources. */
export function toDesired(source: string, loaded: LoadedObject, identify: Identify): Desired {
  const o = loaded.object;
  const key = objectKey(source, o.metadata.namespace, o.kind, o.metadata.name);
  const specHash = specHashOf(o.spec);
  const { id, generation } = identify(key, { source, kind: o.kind, namespace: o.metadata.namespace, name: o.metadata.name }, specHash);
  return { key, source, object: o, id, generation, specHash, hostName: hostNameOf(o), origin: { file: loaded.file, document: loaded.document } };
}

/**
 * Merges one file's new load with what it declared before: unusable files keep everything,
 * invalid documents keep their object's previous spec.
 */
export function mergeFileLoad(source: string, load: FileLoad, previous: readonly Desired[], identify: Identify): FileState {
  if (load.unusable) return { objects: previous, problems: load.problems };
  const objects = load.objects.map((o) => toDesired(source, o, identify));
  const present = new Set(objects.map((d) => d.key));
  for (const p of load.problems) {
    if (p.kind === undefined || p.name === undefined) continue;
    const key = objectKey(source, p.namespace ?? 'default', p.kind as Kind, p.name);
    const kept = previous.find((d) => d.key === key);
    if (kept !== undefined && !present.has(key)) {
      objects.push(kept);
      present.add(key);
    }
  }
  return { objects, problems: load.problems };
}

/** Desired objects from the YAML files under a directory, watched with chokidar; a file turned invalid keeps its last valid objects. */
export class DirSource implements Source {
  readonly id: string;
  readonly description: string;
  /**
   * Listings made and failed, and grace periods checked, so far: tests count them instead of
   * waiting a fixed time.
   */
  readonly stats = { listings: 0, failedListings: 0, graceChecks: 0 };
  private readonly root: string;
  private readonly clock: Clock;
  private readonly files = new Map<string, FileState>();
  private readonly dirty = new Set<string>();
  private aggregateProblems: readonly SourceProblem[] = [];
  private published = new Map<ObjectKey, Desired>();
  private readonly vanishedAtMs = new Map<ObjectKey, number>();
  private graceTimer: unknown;
  private timer: unknown;
  private retryTimer: unknown;
  private retryMs: number;
  /** Set while listing fails: the problem that says so. */
  private listFailure: SourceProblem | undefined;
  /** The root was a regular file at the first listing (a source of one file). */
  private rootIsFile: boolean | undefined;
  /** The watcher may have lost the root (it went, or a listing failed): watch it again. */
  private rewatch = false;
  /** Inode of the root the watcher follows. */
  private watchedIno: number | undefined;
  private rootCheckTimer: unknown;
  private watcher: FSWatcher | undefined;
  private store: StoreWriter | undefined;
  private stopped = false;
  private running: Promise<void> = Promise.resolve();
  private markListed: () => void = () => {};
  private readonly listed = new Promise<void>((r) => { this.markListed = r; });

  constructor(private readonly options: DirSourceOptions) {
    this.id = options.id ?? 'dir';
    this.root = resolve(options.path);
    this.description = `dir:${options.path}`;
    this.clock = options.clock ?? systemClock;
    this.retryMs = options.listRetryMs?.min ?? 1_000;
  }

  /** Watches the directory and resolves once a first listing is in the store (or `signal` aborts). */
  async start(store: StoreWriter, signal: AbortSignal): Promise<void> {
    this.store = store;
    signal.addEventListener('abort', () => void this.stop(), { once: true });
    await this.watch();
    await this.rescanAll();
    this.scheduleRootCheck();
    const aborted = new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
    await Promise.race([this.listed, aborted]);
  }

  problems(): readonly SourceProblem[] {
    return this.aggregateProblems;
  }

  /** False while the directory cannot be listed (the objects of the last good listing stay in force). */
  ready(): boolean {
    return this.listFailure === undefined;
  }

  /** Reads every file again now (SIGHUP, POST /sources/ID/refresh). */
  refresh(): void {
    void this.rescanAll();
  }

  /** Reads every file again (also what a resync does). */
  async rescanAll(): Promise<void> {
    this.dirty.add(this.root);
    await this.flush();
  }

  /** (Re)starts the watcher; resolves once it has read the tree. Never rejects: a failure shows in the next listing. */
  private async watch(): Promise<void> {
    const previous = this.watcher;
    this.watcher = undefined;
    await previous?.close();
    if (this.stopped) return;
    const watcher = watch(this.root, {
      ignoreInitial: true,
      atomic: true,
      ignored: (p: string) => /(^|\/)\.[^/]/.test(relative(this.root, p)),
      awaitWriteFinish: { stabilityThreshold: 150, pollInterval: 50 },
    });
    this.watcher = watcher;
    await new Promise<void>((resolveReady) => {
      watcher.on('ready', () => resolveReady());
      watcher.on('error', (err) => {
        this.options.logger.error({ err, path: this.root }, 'directory watch failed; watching again after the next listing');
        this.rewatch = true;
        this.schedule(this.root);
        resolveReady();
      });
      // fs.watch reports the root itself being renamed or removed; chokidar may stay silent.
      watcher.on('raw', (_event, path, details) => {
        if ((details as { watchedPath?: string }).watchedPath === this.root && path === basename(this.root)) this.schedule(this.root);
      });
      watcher.on('all', (event, path) => {
        // The root itself came or went: the watcher follows the old directory, if any.
        if (resolve(path) === this.root && event !== 'change') this.rewatch = true;
        this.schedule(path);
      });
    });
  }

  /** Now and then: is the root still the directory the watcher follows? If not, read everything again. */
  private scheduleRootCheck(): void {
    if (this.stopped) return;
    this.rootCheckTimer = this.clock.setTimeout(() => {
      void stat(this.root).then(
        (info) => { if (info.ino !== this.watchedIno) this.schedule(this.root); },
        () => this.schedule(this.root), // the next listing fails and says why
      ).finally(() => this.scheduleRootCheck());
    }, this.options.rootCheckMs ?? 10_000);
  }

  private schedule(path: string): void {
    this.dirty.add(path);
    this.clock.clearTimeout(this.timer);
    this.timer = this.clock.setTimeout(() => void this.flush(), this.options.debounceMs ?? 300);
  }

  private async stop(): Promise<void> {
    this.stopped = true;
    this.clock.clearTimeout(this.timer);
    this.clock.clearTimeout(this.graceTimer);
    this.clock.clearTimeout(this.retryTimer);
    this.clock.clearTimeout(this.rootCheckTimer);
    await this.watcher?.close();
  }

  /** Reads the dirty files, one flush at a time, and publishes the merged result. */
  private flush(): Promise<void> {
    this.running = this.running.then(() => this.readDirty()).catch((err: unknown) => {
      this.options.logger.error({ err }, 'cannot read the watched directory');
    });
    return this.running;
  }

  /** Every manifest file there is now, and the root's inode; throws when that cannot be known. */
  private async list(): Promise<{ manifests: Set<string>; ino: number }> {
    this.stats.listings++;
    const info = await stat(this.root);
    this.rootIsFile ??= info.isFile();
    if (this.rootIsFile) {
      if (!info.isFile()) throw new Error(`cannot read ${this.root}: it is no longer a regular file`);
      return { manifests: new Set([this.root]), ino: info.ino };
    }
    return { manifests: new Set(await listManifestDir(this.root)), ino: info.ino };
  }

  private async readDirty(): Promise<void> {
    if (this.stopped) return;
    const batch = [...this.dirty];
    this.dirty.clear();
    let manifests: Set<string>;
    let ino: number;
    try {
      ({ manifests, ino } = await this.list());
    } catch (err) {
      // A listing that failed says nothing about which files exist: keep everything, look again.
      for (const p of batch) this.dirty.add(p);
      this.failListing(err);
      return;
    }
    // The root in the batch asks for every file (a rescan); so does a watch set up afresh.
    let everything = batch.includes(this.root);
    this.watchedIno ??= ino;
    if (this.listFailure !== undefined || this.rewatch || ino !== this.watchedIno) {
      await this.recover(ino);
      if (this.stopped) return;
      everything = true;
    }
    if (everything) {
      for (const f of this.files.keys()) batch.push(resolve(this.root, f));
      batch.push(...manifests);
    }
    for (const abs of new Set(batch)) {
      if (abs === this.root && !this.rootIsFile) continue;
      const file = relative(this.root, abs);
      if (!manifests.has(abs)) {
        if (this.files.delete(file)) this.options.logger.info({ file }, 'manifest removed');
        continue;
      }
      const previous = this.files.get(file)?.objects ?? this.options.fallback?.(file) ?? [];
      const load = await loadFile(abs, file);
      const state = mergeFileLoad(this.id, load, previous, this.options.identify);
      for (const p of state.problems) this.options.logger.warn({ file, problem: p.line }, 'invalid manifest');
      this.files.set(file, state);
    }
    this.publish();
    this.markListed();
  }

  /** Reports a failed listing and lists again later, with backoff; nothing in the store changes. */
  private failListing(err: unknown): void {
    this.stats.failedListings++;
    const message = `cannot list ${this.options.path}: ${errorMessage(err)}; nothing changed, the last good listing stays in force`;
    const first = this.listFailure?.message !== message;
    this.listFailure = makeProblem({ file: this.options.path, rule: 'list', message });
    this.rewatch = true;
    const retryInMs = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, this.options.listRetryMs?.max ?? 30_000);
    if (first) this.options.logger.error({ err, path: this.root, retryInMs }, 'cannot list the watched directory; nothing changed');
    else this.options.logger.debug({ err, path: this.root, retryInMs }, 'cannot list the watched directory yet');
    this.setProblems([this.listFailure, ...this.fileProblems()]);
    this.clock.clearTimeout(this.retryTimer);
    this.retryTimer = this.clock.setTimeout(() => void this.flush(), retryInMs);
  }

  /** The directory lists again: watch it afresh (the old watch may follow a directory that went). */
  private async recover(ino: number): Promise<void> {
    if (this.listFailure !== undefined) this.options.logger.info({ path: this.root }, 'the watched directory lists again');
    this.listFailure = undefined;
    this.retryMs = this.options.listRetryMs?.min ?? 1_000;
    this.clock.clearTimeout(this.retryTimer);
    this.rewatch = false;
    this.watchedIno = ino;
    await this.watch();
  }

  private fileProblems(): SourceProblem[] {
    const problems: SourceProblem[] = [];
    for (const file of [...this.files.keys()].sort()) problems.push(...(this.files.get(file)?.problems ?? []));
    return problems;
  }

  private setProblems(problems: readonly SourceProblem[]): void {
    this.aggregateProblems = problems;
    this.options.onProblems?.(problems);
  }

  private publish(): void {
    const problems: SourceProblem[] = [];
    const byKey = new Map<ObjectKey, Desired>();
    for (const file of [...this.files.keys()].sort()) {
      const state = this.files.get(file);
      if (state === undefined) continue;
      problems.push(...state.problems);
      for (const d of state.objects) {
        const first = byKey.get(d.key);
        if (first === undefined) {
          byKey.set(d.key, d);
          continue;
        }
        problems.push(makeProblem({
          file, ...(d.origin ? { document: d.origin.document } : {}), kind: d.object.kind, namespace: d.object.metadata.namespace,
          name: d.object.metadata.name, path: 'metadata.name', rule: 'unique',
          message: `also declared in ${first.origin?.file ?? '?'}; this one is ignored`,
        }));
      }
    }
    this.holdVanished(byKey);
    this.setProblems(problems);
    this.published = byKey;
    this.store?.replaceAll(this.id, [...byKey.values()]);
  }

  /** Keeps objects that just disappeared in `byKey` until their grace period ends. */
  private holdVanished(byKey: Map<ObjectKey, Desired>): void {
    const now = this.clock.now();
    const graceMs = this.options.removalGraceMs ?? 1_000;
    for (const key of this.vanishedAtMs.keys()) if (byKey.has(key)) this.vanishedAtMs.delete(key);
    let nextDueMs: number | undefined;
    for (const [key, d] of this.published) {
      if (byKey.has(key)) continue;
      const since = this.vanishedAtMs.get(key) ?? now;
      if (now - since >= graceMs) {
        this.vanishedAtMs.delete(key);
        continue;
      }
      this.vanishedAtMs.set(key, since);
      byKey.set(key, d);
      nextDueMs = Math.min(nextDueMs ?? Infinity, since + graceMs);
    }
    if (nextDueMs !== undefined) {
      this.clock.clearTimeout(this.graceTimer);
      const check = (): void => void this.flush().then(() => { this.stats.graceChecks++; });
      this.graceTimer = this.clock.setTimeout(check, Math.max(0, nextDueMs - now) + 10);
    }
  }
}
