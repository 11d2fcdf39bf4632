/**
 * The host's image cache: root filesystem tarballs by URL, downloaded once and unpacked once,
 * shared by every container made from them (each gets a copy-on-write clone of the unpacked base).
 *
 * Layout under the cache directory (default /var/cache/hyperlet/image-cache), every name keyed by
 * a SHA-256 of its inputs:
 * - `downloads/KEY`: a complete tarball (KEY from the URL and the declared sha256), verified when
 *   a digest was declared; `downloads/.partial-KEY-PID-N` while it downloads.
 * - `rootfs/UKEY/`: the unpacked tree (UKEY adds the variant, e.g. the id range its files were
 *   shifted into); `rootfs/.staging-UKEY-PID-N/` while it unpacks.
 *
 * Guarantees: a download or unpack appears under its final name only by one rename of a complete,
 * verified file or tree, so a failed, truncated or killed one never poisons the cache. Leftovers
 * are hidden names carrying the pid of the process that made them; those of dead processes are
 * removed at first use. Concurrent requests for one key share one download and one unpack.
 * Redirects are never followed (the policy judged the URL as written, not where it leads).
 * Eviction (with `maxBytes`): after each new image, least recently used entries go until the cache
 * fits (plan-eviction.ts), never a tree `inUse` reports (an overlay lowerdir of a container), never
 * one used within `evictionGraceMs`, never one a job is preparing. A tree leaves by one rename to a
 * hidden `.evicting-…` name, then is removed, so no reader sees half of one.
 * Caveats: without a declared sha256 a URL is downloaded once and kept: declare the digest, or
 * change the URL, to get new content.
 */
import { createHash, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { setMaxListeners } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, lstat, mkdir, open, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { basename, dirname, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import type { ImageSource } from '../../api/v1alpha1/types.js';
import { type Clock, systemClock } from '../../shared/clock.js';
import { TerminalError, errorMessage, isTerminalError } from '../../shared/errors.js';
import { failpoint } from '../../shared/failpoint.js';
import { type CacheEntry, planEviction } from './plan-eviction.js';

const run = promisify(execFile);

/** Where the cache lives when the daemon is not told otherwise. */
export const DEFAULT_IMAGE_CACHE_DIR = '/var/cache/hyperlet/image-cache';

/** What the cache can say about an image right now. */
export type ImageFetch =
  | { readonly state: 'ready'; readonly path: string }
  | {
    readonly state: 'pending';
    readonly phase: 'downloading' | 'unpacking' | 'checking';
    readonly receivedBytes: number;
    readonly totalBytes?: number;
    /** Passes that found it pending so far (callers space their polls by it). */
    readonly polls: number;
  };

/** How a tarball is compressed, from its first bytes (never from its name). */
export type TarCompression = 'gzip' | 'xz' | 'zstd' | 'bzip2' | 'none';

/** The compression of a tarball whose first bytes are `head`; 'none' when no known magic matches. */
export function compressionOf(head: Uint8Array): TarCompression {
  const starts = (...magic: number[]): boolean => magic.every((b, i) => head[i] === b);
  if (starts(0x1f, 0x8b)) return 'gzip';
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return 'xz';
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return 'zstd';
  if (starts(0x42, 0x5a, 0x68)) return 'bzip2';
  return 'none';
}

/** tar's flag for each compression. */
const TAR_FLAG: Readonly<Record<TarCompression, readonly string[]>> = {
  gzip: ['--gzip'], xz: ['--xz'], zstd: ['--zstd'], bzip2: ['--bzip2'], none: [],
};

/** The cache key of a download: the URL and the declared digest, nothing else. */
export function downloadKey(image: ImageSource): string {
  return createHash('sha256').update(JSON.stringify(['download', image.url, image.sha256 ?? null])).digest('hex');
}

/** The cache key of an unpacked tree: the download's key and the variant it was prepared for. */
export function unpackKey(image: ImageSource, variant: string): string {
  return createHash('sha256').update(JSON.stringify(['rootfs', downloadKey(image), variant])).digest('hex');
}

/** The file name of a leftover (`.partial-KEY-PID-N`, `.staging-KEY-PID-N`) and the pid that made it. */
export function leftoverPid(name: string): number | undefined {
  const m = /^\.(?:partial|staging|evicting)-[0-9a-f]{64}-([0-9]+)-[0-9a-f]+$/.exec(name);
  return m === null ? undefined : Number(m[1]);
}

/** How the cache is set up. */
export interface ImageCacheOptions {
  /** The cache directory; created (0755: unprivileged containers' mapped root walks through it) at first use. */
  readonly dir: string;
  readonly logger: Logger;
  /** A download that receives nothing this long fails (transient): 60 s. */
  readonly idleTimeoutMs?: number;
  /** How long a refusal (404, wrong sha256, not a tarball) is repeated before the URL is tried again: 5 min. */
  readonly refusalMs?: number;
  /** Time for refusals and last use (default: the system clock). */
  readonly clock?: Clock;
  /** Cap of the cache's size on disk; absent: no eviction. */
  readonly maxBytes?: number;
  /** The cached trees containers still use (absolute paths), asked before each eviction. */
  readonly inUse?: () => Promise<ReadonlySet<string>>;
  /** Entries used more recently than this are never evicted: 10 min. */
  readonly evictionGraceMs?: number;
}

/** What one in-flight job knows, for status. */
interface Job {
  phase: 'downloading' | 'unpacking' | 'checking';
  receivedBytes: number;
  totalBytes?: number;
  polls: number;
  done: boolean;
  error?: Error;
  promise: Promise<void>;
}

/** Root filesystem images by URL: downloaded once, verified, unpacked once, shared (see the file's doc). */
export class ImageCache {
  private readonly dir: string;
  private readonly log: Logger;
  private readonly idleTimeoutMs: number;
  private readonly refusalMs: number;
  private readonly clock: Clock;
  private readonly abort = new AbortController();
  private readonly downloads = new Map<string, Promise<string>>();
  private readonly jobs = new Map<string, Job>();
  private readonly refusals = new Map<string, { error: TerminalError; atMs: number }>();
  private swept: Promise<void> | undefined;
  private counter = 0;
  private readonly maxBytes: number | undefined;
  private readonly inUse: (() => Promise<ReadonlySet<string>>) | undefined;
  private readonly evictionGraceMs: number;
  /** The eviction running now: lookups wait for it, so none finds a tree it is removing. */
  private evicting: Promise<unknown> = Promise.resolve();

  constructor(options: ImageCacheOptions) {
    this.dir = options.dir;
    this.log = options.logger.child({ component: 'image-cache', dir: options.dir });
    this.idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
    this.refusalMs = options.refusalMs ?? 300_000;
    this.clock = options.clock ?? systemClock;
    this.maxBytes = options.maxBytes;
    this.inUse = options.inUse;
    this.evictionGraceMs = options.evictionGraceMs ?? 10 * 60_000;
    // One signal for every job: each download and unpack in flight listens (request, pipeline, tar), ~3 each.
    setMaxListeners(256, this.abort.signal);
  }

  /** The cache directory. */
  get directory(): string {
    return this.dir;
  }

  /**
   * The unpacked tree of `image` for `variant`: ready with its path, or pending while a background
   * job downloads or unpacks it (started by the first call, shared by the next). Throws the job's
   * error once when it failed (TerminalError ImageNotFound, ImageChecksumMismatch or InvalidImage
   * for what retrying cannot fix, a plain Error otherwise); the next call starts it again, except
   * that a refusal is repeated for `refusalMs`. `prepare` runs on the unpacked tree before it is
   * renamed into place (shifting its owners into a container id range).
   */
  async rootfs(image: ImageSource, variant: string, prepare?: (dir: string, signal: AbortSignal) => Promise<void>): Promise<ImageFetch> {
    const key = unpackKey(image, variant);
    const path = join(this.dir, 'rootfs', key);
    this.throwIfRefused(image);
    const job = this.jobs.get(key);
    if (job !== undefined) {
      if (!job.done) return this.pendingOf(job);
      this.jobs.delete(key);
      if (job.error !== undefined) throw job.error;
    }
    await this.evicting;
    if (await isDirectory(path)) {
      await this.markUsed(path);
      return { state: 'ready', path };
    }
    return this.startJob(key, image, (job) => this.prepareTree(image, key, job, prepare), () => {
      void this.evict().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'cannot evict from the image cache'));
    });
  }

  /**
   * The downloaded, verified file of `image` (a VM disk image, used as it is): ready with its
   * path, or pending while a background job downloads it and runs `check` on it (phase
   * 'checking'). Errors and refusals as rootfs(). `check` (throwing TerminalError InvalidImage for
   * a file that is no usable image) runs on each newly started job, also when the file was cached
   * by an earlier process, so a refused file is never handed out.
   */
  async file(image: ImageSource, check: (path: string, signal: AbortSignal) => Promise<void>): Promise<ImageFetch> {
    const key = createHash('sha256').update(JSON.stringify(['file', downloadKey(image)])).digest('hex');
    this.throwIfRefused(image);
    const job = this.jobs.get(key);
    if (job !== undefined) {
      if (!job.done) return this.pendingOf(job);
      if (job.error !== undefined) {
        this.jobs.delete(key);
        throw job.error;
      }
      const path = join(this.dir, 'downloads', downloadKey(image));
      if ((await stat(path).catch(() => undefined))?.isFile() === true) return { state: 'ready', path };
      this.jobs.delete(key);
    }
    return this.startJob(key, image, async (job) => {
      await this.sweep();
      const path = await this.download(image, job);
      job.phase = 'checking';
      try {
        await check(path, this.abort.signal);
      } catch (err) {
        // A download that is no usable image is not kept: the next try fetches it again.
        if (isTerminalError(err)) await rm(path, { force: true }).catch(() => undefined);
        throw err;
      }
    });
  }

  /** Throws the refusal of `image` while it holds (refusalMs); forgets an older one. */
  private throwIfRefused(image: ImageSource): void {
    const refused = this.refusals.get(downloadKey(image));
    if (refused === undefined) return;
    if (this.clock.now() - refused.atMs < this.refusalMs) throw refused.error;
    this.refusals.delete(downloadKey(image));
  }

  /** What a caller polling a running job gets (the poll counted). */
  private pendingOf(job: Job): ImageFetch {
    job.polls++;
    return { state: 'pending', phase: job.phase, receivedBytes: job.receivedBytes, polls: job.polls,
      ...(job.totalBytes === undefined ? {} : { totalBytes: job.totalBytes }) };
  }

  /**
   * Starts background job `key` running `work`, shared by the next calls until it ends; a failure
   * is kept for the next call, and a refusal (TerminalError) for refusalMs.
   */
  private startJob(key: string, image: ImageSource, work: (job: Job) => Promise<void>, onDone?: () => void): ImageFetch {
    const started: Job = { phase: 'downloading', receivedBytes: 0, polls: 0, done: false, promise: Promise.resolve() };
    started.promise = work(started).then(
      () => {
        started.done = true;
        onDone?.();
      },
      (err: unknown) => {
        started.done = true;
        started.error = err instanceof Error ? err : new Error(errorMessage(err));
        if (isTerminalError(err)) this.refusals.set(downloadKey(image), { error: err, atMs: this.clock.now() });
        this.log.warn({ url: image.url, err: errorMessage(err) }, 'cannot prepare image');
      },
    );
    this.jobs.set(key, started);
    return { state: 'pending', phase: 'downloading', receivedBytes: 0, polls: 0 };
  }

  /**
   * Removes least recently used entries until the cache fits `maxBytes` (nothing without a cap);
   * resolves to the paths removed. Runs after each new image; lookups wait while it runs.
   */
  evict(): Promise<string[]> {
    const run = this.evicting.then(() => this.evictNow());
    this.evicting = run.catch(() => undefined);
    return run;
  }

  private async evictNow(): Promise<string[]> {
    if (this.maxBytes === undefined) return [];
    await this.sweep();
    const inUse = new Set([...(this.inUse === undefined ? [] : await this.inUse())].map((p) => resolve(p)));
    const busy = new Set([...this.jobs.entries()].filter(([, j]) => !j.done).map(([k]) => k));
    const entries: CacheEntry[] = [];
    for (const sub of ['downloads', 'rootfs'] as const) {
      for (const name of await readdir(join(this.dir, sub))) {
        if (name.startsWith('.') || busy.has(name)) continue;
        const path = resolve(this.dir, sub, name);
        const st = await lstat(path).catch(() => undefined);
        if (st === undefined) continue;
        const bytes = sub === 'downloads' ? st.blocks * 512 : await treeBytes(path);
        entries.push({ path, bytes, lastUsedMs: st.mtimeMs, inUse: sub === 'rootfs' && inUse.has(path) });
      }
    }
    const plan = planEviction(entries, { maxBytes: this.maxBytes, nowMs: this.clock.now(), graceMs: this.evictionGraceMs });
    for (const e of plan) {
      const hidden = join(dirname(e.path), `.evicting-${basename(e.path)}-${process.pid}-${this.nextId()}`);
      await rename(e.path, hidden);
      await rm(hidden, { recursive: true, force: true });
      this.log.info({ path: e.path, bytes: e.bytes, lastUsed: new Date(e.lastUsedMs).toISOString() }, 'evicted from the image cache');
    }
    return plan.map((e) => e.path);
  }

  /** Records that `path` was used now (its mtime; nothing else sets it after the rename into place). */
  private async markUsed(path: string): Promise<void> {
    const now = new Date(this.clock.now());
    await utimes(path, now, now).catch(() => undefined);
  }

  /** Waits for every job in flight (tests, shutdown). */
  async settle(): Promise<void> {
    await Promise.all([...this.jobs.values()].map((j) => j.promise));
  }

  /** Aborts downloads and unpacks in flight; their leftovers are removed by the next start. */
  close(): void {
    this.abort.abort();
  }

  private async prepareTree(
    image: ImageSource, key: string, job: Job, prepare?: (dir: string, signal: AbortSignal) => Promise<void>,
  ): Promise<void> {
    await this.sweep();
    const file = await this.download(image, job);
    job.phase = 'unpacking';
    const rootfsDir = join(this.dir, 'rootfs');
    const staging = join(rootfsDir, `.staging-${key}-${process.pid}-${this.nextId()}`);
    await mkdir(staging, { mode: 0o755 });
    try {
      await this.unpack(image, file, staging);
      if (prepare !== undefined) await prepare(staging, this.abort.signal);
      await chmod(staging, 0o755);
      failpoint('images.unpack.extracted');
      try {
        await rename(staging, join(rootfsDir, key));
        await this.markUsed(join(rootfsDir, key));
      } catch (err) {
        // Another process renamed the same tree into place first: theirs is as good.
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
      }
      this.log.info({ url: image.url, key }, 'image unpacked into the cache');
    } finally {
      await rm(staging, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  /** The verified tarball of `image` in the cache, downloading it once (shared by concurrent callers). */
  private async download(image: ImageSource, job: Job): Promise<string> {
    const key = downloadKey(image);
    const path = join(this.dir, 'downloads', key);
    if ((await stat(path).catch(() => undefined))?.isFile() === true) {
      await this.markUsed(path);
      const st = await stat(path);
      job.receivedBytes = st.size;
      job.totalBytes = st.size;
      return path;
    }
    let shared = this.downloads.get(key);
    if (shared === undefined) {
      shared = this.fetchTo(image, path, job).finally(() => this.downloads.delete(key));
      this.downloads.set(key, shared);
    }
    return shared;
  }

  private async fetchTo(image: ImageSource, path: string, job: Job): Promise<string> {
    const partial = join(this.dir, 'downloads', `.partial-${downloadKey(image)}-${process.pid}-${this.nextId()}`);
    // Hashing costs more than the transfer on loopback (about 2 s/GiB here): only a declared digest needs it.
    const hash = image.sha256 === undefined ? undefined : createHash('sha256');
    try {
      const { body, totalBytes } = await this.open(image);
      if (totalBytes !== undefined) job.totalBytes = totalBytes;
      // Counted (and hashed) beside the pipe rather than through a generator stage: one less hop per chunk.
      body.on('data', (chunk: Buffer) => {
        hash?.update(chunk);
        job.receivedBytes += chunk.length;
      });
      await pipeline(body, createWriteStream(partial, { mode: 0o644, flags: 'wx', highWaterMark: 1 << 20 }), { signal: this.abort.signal });
      if (totalBytes !== undefined && job.receivedBytes !== totalBytes) {
        throw new Error(`cannot download ${image.url}: truncated, ${job.receivedBytes} of ${totalBytes} bytes received`);
      }
      const digest = hash?.digest('hex');
      if (image.sha256 !== undefined && digest !== image.sha256) {
        throw new TerminalError('ImageChecksumMismatch',
          `cannot use image ${image.url}: its sha256 is ${digest}, not the declared ${image.sha256}`);
      }
      const handle = await open(partial, 'r');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
      failpoint('images.download.verified');
      await rename(partial, path);
      await this.markUsed(path);
      this.log.info({ url: image.url, bytes: job.receivedBytes, ...(digest === undefined ? {} : { sha256: digest }) }, 'image downloaded into the cache');
      return path;
    } catch (err) {
      await rm(partial, { force: true }).catch(() => undefined);
      throw err;
    }
  }

  /** The body of `image.url` and its length when known; refusals as TerminalError, the rest as Error. */
  private async open(image: ImageSource): Promise<{ body: Readable; totalBytes?: number }> {
    const url = new URL(image.url);
    if (url.protocol === 'file:') {
      const path = decodeURIComponent(url.pathname);
      const st = await stat(path).catch((err: unknown) => {
        throw new TerminalError('ImageNotFound', `cannot read image ${image.url}: ${errorMessage(err)}`, { cause: err });
      });
      if (!st.isFile()) throw new TerminalError('ImageNotFound', `cannot read image ${image.url}: not a regular file`);
      return { body: createReadStream(path), totalBytes: st.size };
    }
    const get = url.protocol === 'https:' ? https.get : http.get;
    return new Promise((resolve, reject) => {
      const req = get(url, { signal: this.abort.signal, headers: { 'user-agent': 'hyperlet' } }, (res) => {
        const status = res.statusCode ?? 0;
        if (status === 200) {
          const length = Number(res.headers['content-length']);
          resolve({ body: res, ...(Number.isSafeInteger(length) && length >= 0 ? { totalBytes: length } : {}) });
          return;
        }
        res.resume();
        if (status >= 300 && status < 400) {
          reject(new TerminalError('ImageNotFound', `cannot download ${image.url}: the server redirects (HTTP ${status}) `
            + 'and redirects are not followed; declare the final URL'));
        } else if (status === 404 || status === 410 || status === 403 || status === 401) {
          reject(new TerminalError('ImageNotFound', `cannot download ${image.url}: HTTP ${status}`));
        } else {
          reject(new Error(`cannot download ${image.url}: HTTP ${status}`));
        }
      });
      req.setTimeout(this.idleTimeoutMs, () => req.destroy(new Error(`no data for ${this.idleTimeoutMs} ms`)));
      req.on('error', (err) => reject(new Error(`cannot download ${image.url}: ${err.message}`, { cause: err })));
    });
  }

  /** Unpacks `file` into `dir` with GNU tar (argv only), decompressing by the file's magic. */
  private async unpack(image: ImageSource, file: string, dir: string): Promise<void> {
    const handle = await open(file, 'r');
    const head = Buffer.alloc(8);
    try {
      await handle.read(head, 0, 8, 0);
    } finally {
      await handle.close();
    }
    const compression = compressionOf(head);
    try {
      await run('tar', ['-x', ...TAR_FLAG[compression], '--numeric-owner', '-f', file, '-C', dir], {
        signal: this.abort.signal, maxBuffer: 4 * 1024 * 1024, timeout: 30 * 60_000,
      });
    } catch (err) {
      const raw = (err as { stderr?: unknown }).stderr;
      const stderr = (typeof raw === 'string' ? raw : '').trim().split('\n').slice(0, 3).join('; ');
      throw new TerminalError('InvalidImage',
        `cannot unpack image ${image.url} (${compression === 'none' ? 'uncompressed' : compression}): not a usable tarball (${stderr || errorMessage(err)})`,
        { cause: err });
    }
    if ((await readdir(dir)).length === 0) throw new TerminalError('InvalidImage', `cannot use image ${image.url}: the tarball is empty`);
  }

  /** Removes the leftovers of processes that are gone (a killed download or unpack). */
  private sweep(): Promise<void> {
    this.swept ??= (async () => {
      for (const sub of ['downloads', 'rootfs']) {
        const dir = join(this.dir, sub);
        await mkdir(dir, { recursive: true, mode: 0o755 });
        for (const name of await readdir(dir)) {
          const pid = leftoverPid(name);
          // Every job awaits this sweep before it makes anything, so a leftover named with our own
          // pid is a previous process's (the pid was reused), never one of ours in flight.
          if (pid === undefined || (pid !== process.pid && isAlive(pid))) continue;
          await rm(join(dir, name), { recursive: true, force: true });
          this.log.info({ leftover: name }, 'removed what a stopped hyperlet left in the image cache');
        }
      }
      await chmod(this.dir, 0o755);
    })().catch((err: unknown) => {
      this.swept = undefined;
      throw err;
    });
    return this.swept;
  }

  private nextId(): string {
    this.counter++;
    return `${this.counter.toString(16)}${randomBytes(2).toString('hex')}`;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Bytes a tree takes on disk (allocated blocks; each inode once, so hard links count once). */
async function treeBytes(root: string): Promise<number> {
  const seen = new Set<number>();
  let total = 0;
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const path = join(dir, entry.name);
      const st = await lstat(path).catch(() => undefined);
      if (st === undefined || seen.has(st.ino)) continue;
      seen.add(st.ino);
      total += st.blocks * 512;
      if (st.isDirectory()) await walk(path);
    }
  };
  const top = await lstat(root);
  total += top.blocks * 512;
  await walk(root);
  return total;
}

async function isDirectory(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => undefined))?.isDirectory() === true;
}
