/**
 * Container snapshots kept under the container's own directory:
 * LXCPATH/NAME/hyperlet-snapshots/SNAP/{rootfs/, snapshot.json}. A copy of the rootfs made with
 * `cp -a --reflink=auto` (copy-on-write where the filesystem can: btrfs, xfs; a plain copy on
 * ext4), with the container frozen for the instant of the copy so it is consistent.
 *
 * Guarantees: a snapshot is built in a dot-directory and renamed into place once complete, so a
 * snapshot cut short (kill -9, full disk) is never listed and the next take, delete or sweep
 * removes it. A deletion first renames the snapshot to a dot-directory, so one cut short is
 * never listed either. A restore swaps the rootfs by renames; one cut short is finished or undone
 * by the next restore or recoverRestore (the provider calls it before every start).
 * Failpoints (shared/failpoint.ts): `lxc.snapshot.frozen` (container frozen, nothing copied),
 * `lxc.snapshot.copied` (rootfs copied, still frozen), `lxc.snapshot.placed` (renamed into place),
 * `lxc.snapshot.delete.moved` (renamed out of the list, not removed), `lxc.restore.copied` (the
 * snapshot's rootfs copied beside the container's), `lxc.restore.swapped-out` (the container's
 * rootfs moved aside: it has none), `lxc.restore.swapped` (the snapshot's rootfs in place, the
 * old one not removed yet).
 * Assumptions: the caller checked ownership and the snapshot name (assertSnapshotName).
 */
import { lstat, mkdir, readFile, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Clock } from '../../shared/clock.js';
import { TerminalError } from '../../shared/errors.js';
import { failpoint } from '../../shared/failpoint.js';
import type { InstanceSnapshot, SnapshotOptions, SnapshotOrigin } from '../provider.js';
import { writeFileAtomic } from './atomic-file.js';
import { containerDir, rootfsPath } from './container-paths.js';
import type { LxcToolRunner } from './lxc-tools.js';

/** The directory all of a container's snapshots live in; lxc-destroy removes it with the container. */
export function snapshotsDir(lxcpath: string, hostName: string): string {
  return join(containerDir(lxcpath, hostName), 'hyperlet-snapshots');
}

const META_FILE = 'snapshot.json';
/** Beside the rootfs during a restore: the snapshot's copy on its way in, and the old rootfs on its way out. */
export const RESTORE_INCOMING = '.rootfs.restore';
/** See RESTORE_INCOMING. */
export const RESTORE_OUTGOING = '.rootfs.old';
const ORIGINS: ReadonlySet<string> = new Set(['schedule', 'object', 'request']);

/** What LxcSnapshots works with: the lxcpath, the tool runner, the clock, and how to read a state. */
export interface LxcSnapshotsOptions {
  readonly lxcpath: string;
  readonly tools: LxcToolRunner;
  readonly clock: Clock;
  readonly logger: Logger;
  /** The container's LXC state ('RUNNING', 'FROZEN', 'STOPPED'…), as lxc-info says it. */
  readonly stateOf: (hostName: string, signal: AbortSignal) => Promise<string>;
  /**
   * Freezes or thaws the running container through its cgroup at once (cgroup-host.ts setFrozen);
   * false when it cannot, and lxc-freeze / lxc-unfreeze are used instead.
   */
  readonly setFrozen?: (hostName: string, frozen: boolean, signal: AbortSignal) => Promise<boolean>;
}

/** Takes, lists, restores and deletes snapshots of LXC containers; see the file comment for guarantees. */
export class LxcSnapshots {
  constructor(private readonly o: LxcSnapshotsOptions) {}

  /**
   * Snapshot `name` of `hostName`, frozen for the copy when running (left frozen when it was).
   * Returns the existing snapshot when there is one of that name.
   */
  async take(hostName: string, name: string, specHash: string | undefined, options: SnapshotOptions, signal: AbortSignal): Promise<InstanceSnapshot> {
    if (options.memory === true) {
      throw new TerminalError('SnapshotUnsupported', `cannot snapshot container ${hostName} with memory: LXC snapshots hold the filesystem only`);
    }
    const dir = snapshotsDir(this.o.lxcpath, hostName);
    const existing = await readMeta(join(dir, name)).catch(() => undefined);
    if (existing !== undefined) return existing;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await this.removeLeftovers(dir);
    const partial = join(dir, `.${name}.partial`);
    await mkdir(partial, { mode: 0o700 });
    const createdAt = new Date(this.o.clock.now()).toISOString();
    const args = ['-P', this.o.lxcpath, '-n', hostName];
    const state = await this.o.stateOf(hostName, signal);
    const freeze = state === 'RUNNING';
    try {
      const direct = freeze && (await this.o.setFrozen?.(hostName, true, signal)) === true;
      if (freeze && !direct) await this.o.tools.run('lxc-freeze', args, { signal });
      try {
        failpoint('lxc.snapshot.frozen');
        await this.o.tools.run('cp', ['-a', '--reflink=auto', '--', rootfsPath(this.o.lxcpath, hostName), join(partial, 'rootfs')], {
          signal, timeoutMs: 600_000,
        });
        failpoint('lxc.snapshot.copied');
      } finally {
        // Thawed even when the copy failed or was aborted: a snapshot never leaves a container frozen.
        const thawSignal = AbortSignal.timeout(30_000);
        if (freeze && !(direct && (await this.o.setFrozen?.(hostName, false, thawSignal)) === true)) {
          await this.o.tools.run('lxc-unfreeze', args, { signal: thawSignal });
        }
      }
      const snapshot: InstanceSnapshot = {
        name, createdAt, origin: options.origin ?? 'request', memory: false,
        sizeBytes: await treeBytes(join(partial, 'rootfs')),
        ...(specHash === undefined ? {} : { specHash }),
      };
      await writeFileAtomic(join(partial, META_FILE), `${JSON.stringify(snapshot, null, 2)}\n`, 0o600);
      await rename(partial, join(dir, name));
      failpoint('lxc.snapshot.placed');
      this.o.logger.info({ hostName, snapshot: name, frozen: freeze }, 'snapshot taken');
      return snapshot;
    } catch (err) {
      await rm(partial, { recursive: true, force: true });
      throw new Error(`cannot snapshot container ${hostName} as ${name}`, { cause: err });
    }
  }

  /** Complete snapshots, oldest first; dot-directories (cut short) and unreadable entries are skipped. */
  async list(hostName: string): Promise<InstanceSnapshot[]> {
    const dir = snapshotsDir(this.o.lxcpath, hostName);
    let entries: string[];
    try {
      entries = await readdir(dir);
    } catch {
      return [];
    }
    const out: InstanceSnapshot[] = [];
    for (const entry of entries) {
      if (entry.startsWith('.')) continue;
      const meta = await readMeta(join(dir, entry)).catch(() => undefined);
      if (meta !== undefined) out.push(meta);
    }
    return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.name.localeCompare(b.name));
  }

  /** Replaces the stopped container's rootfs with the snapshot's copy; the config (the declared spec) is kept. */
  async restore(hostName: string, name: string, signal: AbortSignal): Promise<InstanceSnapshot> {
    const snapDir = join(snapshotsDir(this.o.lxcpath, hostName), name);
    const meta = await readMeta(snapDir).catch(() => undefined);
    if (meta === undefined) throw new TerminalError('SnapshotNotFound', `cannot restore container ${hostName}: it has no snapshot ${name}`);
    const state = await this.o.stateOf(hostName, signal);
    if (state !== 'STOPPED') throw new Error(`cannot restore container ${hostName} while it is ${state.toLowerCase()}: stop it first`);
    const { rootfs, incoming, outgoing } = this.swapPaths(hostName);
    await this.recoverRestore(hostName);
    await this.o.tools.run('cp', ['-a', '--reflink=auto', '--', join(snapDir, 'rootfs'), incoming], { signal, timeoutMs: 600_000 });
    failpoint('lxc.restore.copied');
    await rename(rootfs, outgoing);
    failpoint('lxc.restore.swapped-out');
    await rename(incoming, rootfs);
    failpoint('lxc.restore.swapped');
    await rm(outgoing, { recursive: true, force: true });
    this.o.logger.info({ hostName, snapshot: name }, 'snapshot restored');
    return meta;
  }

  /**
   * Removes snapshot `name`; a missing one is success. Renamed out of the list first, so a
   * deletion cut short never leaves a snapshot listed that is half gone.
   */
  async delete(hostName: string, name: string): Promise<void> {
    const dir = snapshotsDir(this.o.lxcpath, hostName);
    const going = join(dir, `.${name}.deleting`);
    try {
      await rename(join(dir, name), going);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    failpoint('lxc.snapshot.delete.moved');
    await this.sweep(hostName);
  }

  /** Removes what snapshots and deletions cut short left behind (dot-directories); complete snapshots stay. */
  async sweep(hostName: string): Promise<void> {
    const dir = snapshotsDir(this.o.lxcpath, hostName);
    if (!(await lstat(dir).then(() => true, () => false))) return;
    await this.removeLeftovers(dir);
  }

  /**
   * Finishes or undoes a restore cut short: a container left without its rootfs between the two
   * renames gets its old one back; the copies beside it are removed. Does nothing otherwise.
   */
  async recoverRestore(hostName: string): Promise<void> {
    const { rootfs, incoming, outgoing } = this.swapPaths(hostName);
    if (!(await lstat(rootfs).then(() => true, () => false)) && (await lstat(outgoing).then(() => true, () => false))) {
      await rename(outgoing, rootfs);
    }
    await rm(outgoing, { recursive: true, force: true });
    await rm(incoming, { recursive: true, force: true });
  }

  private swapPaths(hostName: string): { rootfs: string; incoming: string; outgoing: string } {
    const cdir = containerDir(this.o.lxcpath, hostName);
    return { rootfs: rootfsPath(this.o.lxcpath, hostName), incoming: join(cdir, RESTORE_INCOMING), outgoing: join(cdir, RESTORE_OUTGOING) };
  }

  /** Snapshots cut short leave dot-directories behind: they are never listed, and removed here. */
  private async removeLeftovers(dir: string): Promise<void> {
    for (const entry of await readdir(dir)) {
      if (entry.startsWith('.')) await rm(join(dir, entry), { recursive: true, force: true });
    }
  }
}

async function readMeta(snapDir: string): Promise<InstanceSnapshot> {
  const raw = JSON.parse(await readFile(join(snapDir, META_FILE), 'utf8')) as Record<string, unknown>;
  const { name, createdAt, sizeBytes, origin, memory, specHash } = raw;
  if (typeof name !== 'string' || typeof createdAt !== 'string' || typeof origin !== 'string' || !ORIGINS.has(origin)) {
    throw new Error(`cannot parse ${join(snapDir, META_FILE)}: not a snapshot record`);
  }
  return {
    name, createdAt, origin: origin as SnapshotOrigin, memory: memory === true,
    ...(typeof sizeBytes === 'number' ? { sizeBytes } : {}),
    ...(typeof specHash === 'string' ? { specHash } : {}),
  };
}

/** Bytes allocated by the files under `root` (lstat, no symlinks followed): what the snapshot costs on disk. */
async function treeBytes(root: string): Promise<number> {
  let total = 0;
  const stack = [root];
  while (stack.length > 0) {
    const dir = stack.pop() as string;
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      const st = await lstat(path);
      total += st.blocks * 512;
      if (entry.isDirectory()) stack.push(path);
    }
  }
  return total;
}
