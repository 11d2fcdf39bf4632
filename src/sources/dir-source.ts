/**
 * Desired objects from a directory of manifests, watched with chokidar.
 *
 * Guarantees:
 * - Objects are keyed by kind/namespace/name, not by file: moving one between files changes nothing.
 * - A file that cannot be used (broken YAML, binary, too big) keeps the objects it declared before,
 *   and an invalid document keeps its object's last good spec: a typo never reads as "delete".
 *   After a restart the last good spec comes from `fallback` (the state DB).
 * - Removing a file removes its objects, once they stay gone for `removalGraceMs`.
 * - A file half-written by an editor is read once it stops changing (awaitWriteFinish), and bursts
 *   of events are handled together after a quiet period.
 */
import { watch, type FSWatcher } from 'chokidar';
import { relative, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Kind } from '../api/v1alpha1/group.js';
import { type Desired, hostNameOf, specHashOf } from '../store/desired.js';
import { type ObjectKey, objectKey } from '../store/object-key.js';
import { type FileLoad, type LoadedObject, listManifestFiles, loadFile, makeProblem } from './manifest-loader.js';
import type { Source } from './source.js';
import type { SourceProblem } from '../store/source-problem.js';
import type { StoreWriter } from '../store/desired-store.js';
import type { Clock } from '../shared/clock.js';
import { systemClock } from '../shared/clock.js';

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
  /** Time for the debounce and the removal grace (default: the system clock). */
  readonly clock?: Clock;
  /**
   * How long an object must stay gone from every file before it is removed (default 1 s), so an
   * object moved between files by two separate writes never reads as a deletion.
   */
  readonly removalGraceMs?: number;
  /** Called whenever the set of problems changes. */
  readonly onProblems?: (problems: readonly SourceProblem[]) => void;
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
  private readonly root: string;
  private readonly files = new Map<string, FileState>();
  private readonly dirty = new Set<string>();
  private aggregateProblems: readonly SourceProblem[] = [];
  private published = new Map<ObjectKey, Desired>();
  private readonly vanishedAtMs = new Map<ObjectKey, number>();
  private graceTimer: unknown;
  private timer: unknown;
  private readonly clock: Clock;
  private watcher: FSWatcher | undefined;
  private store: StoreWriter | undefined;
  private running: Promise<void> = Promise.resolve();

  constructor(private readonly options: DirSourceOptions) {
    this.id = options.id ?? 'dir';
    this.clock = options.clock ?? systemClock;
    this.root = resolve(options.path);
    this.description = `dir:${options.path}`;
  }

  async start(store: StoreWriter, signal: AbortSignal): Promise<void> {
    this.store = store;
    const ready = new Promise<void>((resolveReady, reject) => {
      this.watcher = watch(this.root, {
        ignoreInitial: true,
        atomic: true,
        ignored: (p: string) => /(^|\/)\.[^/]/.test(relative(this.root, p)),
        awaitWriteFinish: { stabilityThreshold: 150, pollInterval: 50 },
      });
      this.watcher.on('ready', () => resolveReady());
      this.watcher.on('error', (err) => {
        this.options.logger.error({ err }, 'directory watch failed');
        reject(err instanceof Error ? err : new Error(String(err)));
      });
      this.watcher.on('all', (_event, path) => this.schedule(path));
    });
    signal.addEventListener('abort', () => void this.stop(), { once: true });
    await ready;
    await this.rescanAll();
  }

  problems(): readonly SourceProblem[] {
    return this.aggregateProblems;
  }

  /** Reads every file again (also what a resync does). */
  async rescanAll(): Promise<void> {
    let paths: string[] = [];
    try {
      paths = await listManifestFiles(this.root);
    } catch (err) {
      this.options.logger.error({ err, path: this.root }, 'cannot list the watched directory');
    }
    for (const p of paths) this.dirty.add(p);
    for (const f of this.files.keys()) this.dirty.add(resolve(this.root, f));
    await this.flush();
  }

  private schedule(path: string): void {
    this.dirty.add(path);
    this.clock.clearTimeout(this.timer);
    this.timer = this.clock.setTimeout(() => void this.flush(), this.options.debounceMs ?? 300);
  }

  private async stop(): Promise<void> {
    this.clock.clearTimeout(this.timer);
    this.clock.clearTimeout(this.graceTimer);
    await this.watcher?.close();
  }

  /** Reads the dirty files, one flush at a time, and publishes the merged result. */
  private flush(): Promise<void> {
    this.running = this.running.then(() => this.readDirty()).catch((err: unknown) => {
      this.options.logger.error({ err }, 'cannot read the watched directory');
    });
    return this.running;
  }

  private async readDirty(): Promise<void> {
    const batch = [...this.dirty];
    this.dirty.clear();
    let manifests: Set<string>;
    try {
      manifests = new Set(await listManifestFiles(this.root));
    } catch {
      manifests = new Set();
    }
    for (const abs of batch) {
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
    this.aggregateProblems = problems;
    this.options.onProblems?.(problems);
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
      this.graceTimer = this.clock.setTimeout(() => void this.flush(), Math.max(0, nextDueMs - now) + 10);
    }
  }
}
