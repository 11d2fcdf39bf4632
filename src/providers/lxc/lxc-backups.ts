/**
 * Backups of LXC containers as portable archives (providers/backup/backup-archive.ts, layout
 * `lxc-dir`: the members `config` and `rootfs/`, owners, modes and extended attributes kept by
 * tar). A running or frozen container is archived from a snapshot taken for the backup (frozen
 * for the instant of the copy, lxc-snapshots.ts) and removed after it; a stopped one from its rootfs.
 *
 * Guarantees: a restore extracts into a hidden staging directory under the lxcpath
 * (`.hyperlet-restore-TIME`, never a container: no host name starts with a dot) and renames it
 * to LXCPATH/NAME only once the archive's checksum matched; any failure removes the staging
 * directory, so nothing is created. A name in use is refused before a byte is extracted.
 * Caveats: the restored container has no ownership marker: it is an operator's container until
 * an object adopts it (restoredObject carries the annotation). A staging directory left by a
 * kill -9 is removed by the next restore into that lxcpath.
 */
import { chmod, chown, lstat, mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { hostNameFor } from '../../api/v1alpha1/host-name.js';
import type { Clock } from '../../shared/clock.js';
import { TerminalError } from '../../shared/errors.js';
import { BACKUP_FORMAT_VERSION, type BackupHead, type BackupSummary, readBackup, writeBackup } from '../backup/backup-archive.js';
import { archivedObject, restoredObject } from '../backup/restored-object.js';
import { toolOutput } from '../backup/tool-stream.js';
import type { BackupOptions, RestoreBackupOptions, RestoredBackup } from '../provider.js';
import { assertHostName, containerDir } from './container-paths.js';
import { parseConfigLine } from './lxc-config.js';
import { snapshotsDir, type LxcSnapshots } from './lxc-snapshots.js';

/** The archive layout of a container. */
export const LXC_BACKUP_LAYOUT = 'lxc-dir';
const STAGING_PREFIX = '.hyperlet-restore-';

/** What LxcBackups works with. */
export interface LxcBackupsOptions {
  readonly lxcpath: string;
  readonly snapshots: LxcSnapshots;
  readonly clock: Clock;
  readonly logger: Logger;
  /** The container's LXC state ('RUNNING', 'FROZEN', 'STOPPED'…). */
  readonly stateOf: (hostName: string, signal: AbortSignal) => Promise<string>;
}

/** Writes and restores container backups; see the file comment for guarantees. */
export class LxcBackups {
  constructor(private readonly o: LxcBackupsOptions) {}

  /** Archives container `hostName` (declared as `object`) to options.out. */
  async backup(hostName: string, object: Readonly<Record<string, unknown>>, specHash: string | undefined,
    options: BackupOptions, signal: AbortSignal): Promise<BackupSummary> {
    const state = await this.o.stateOf(hostName, signal);
    const nowMs = this.o.clock.now();
    const snapshot = state === 'STOPPED' ? undefined : `hyperlet-backup-${nowMs}`;
    if (snapshot !== undefined) await this.o.snapshots.take(hostName, snapshot, specHash, { origin: 'request' }, signal);
    try {
      // The container directory's owner and mode: an unprivileged container's mapped root must pass through it.
      const dirStat = await stat(containerDir(this.o.lxcpath, hostName));
      const rootfsParent = snapshot === undefined ? containerDir(this.o.lxcpath, hostName) : join(snapshotsDir(this.o.lxcpath, hostName), snapshot);
      const head: BackupHead = {
        formatVersion: BACKUP_FORMAT_VERSION, kind: 'Container', hostName, createdAt: new Date(nowMs).toISOString(),
        object: archivedObject(object), layout: LXC_BACKUP_LAYOUT,
        details: {
          lxcpath: this.o.lxcpath, state, dirUid: dirStat.uid, dirGid: dirStat.gid, dirMode: dirStat.mode & 0o7777,
          ...(snapshot === undefined ? {} : { fromSnapshot: snapshot }),
        },
      };
      const payload = toolOutput('tar', [
        '--format=gnu', '-c', '-f', '-', '--numeric-owner', '--xattrs', '--xattrs-include=*',
        '-C', containerDir(this.o.lxcpath, hostName), 'config', '-C', rootfsParent, 'rootfs',
      ], signal);
      const summary = await writeBackup({
        head, payload, out: options.out, signal,
        ...(options.compression === undefined ? {} : { compression: options.compression }),
        ...(options.onProgress === undefined ? {} : { onProgress: options.onProgress }),
      });
      this.o.logger.info({ hostName, bytes: summary.trailer.bytes, compressedBytes: summary.compressedBytes }, 'backup written');
      return summary;
    } finally {
      if (snapshot !== undefined) await this.o.snapshots.delete(hostName, snapshot);
    }
  }

  /** Creates a stopped, unmarked container from an archive (see the file comment). */
  async restore(options: RestoreBackupOptions, signal: AbortSignal): Promise<RestoredBackup> {
    await mkdir(this.o.lxcpath, { recursive: true, mode: 0o755 });
    for (const entry of await readdir(this.o.lxcpath)) {
      if (entry.startsWith(STAGING_PREFIX)) await rm(join(this.o.lxcpath, entry), { recursive: true, force: true });
    }
    const staging = join(this.o.lxcpath, `${STAGING_PREFIX}${this.o.clock.now()}`);
    await mkdir(staging, { mode: 0o770 });
    let target: { hostName: string; namespace: string; name: string } | undefined;
    try {
      const summary = await readBackup({
        input: options.input, extractTo: staging, signal, label: options.label ?? 'stream',
        ...(options.onProgress === undefined ? {} : { onProgress: options.onProgress }),
        check: async (head) => {
          target = await this.checkTarget(head, options);
        },
      });
      if (target === undefined) throw new Error('cannot restore backup: its head was never checked');
      const { hostName, namespace, name } = target;
      await this.rewriteConfig(join(staging, 'config'), summary.head, hostName);
      const { dirUid, dirGid, dirMode } = summary.head.details ?? {};
      if (typeof dirUid === 'number' && typeof dirGid === 'number') await chown(staging, dirUid, dirGid);
      await chmod(staging, typeof dirMode === 'number' ? dirMode : 0o770);
      if (await present(containerDir(this.o.lxcpath, hostName))) {
        throw new TerminalError('NameInUse', `cannot restore backup as ${hostName}: a container of that name appeared in ${this.o.lxcpath} meanwhile`);
      }
      await rename(staging, containerDir(this.o.lxcpath, hostName));
      this.o.logger.info({ hostName, from: summary.head.hostName, bytes: summary.trailer.bytes }, 'backup restored');
      return { hostName, object: restoredObject(summary.head.object, namespace, name), summary };
    } catch (err) {
      await rm(staging, { recursive: true, force: true });
      throw err;
    }
  }

  private async checkTarget(head: BackupHead, options: RestoreBackupOptions): Promise<{ hostName: string; namespace: string; name: string }> {
    if (head.kind !== 'Container' || head.layout !== LXC_BACKUP_LAYOUT) {
      throw new TerminalError('BackupWrongKind', `cannot restore backup ${options.label ?? ''} as a container: it holds a ${head.kind} (layout ${head.layout})`);
    }
    const metadata = (head.object.metadata ?? {}) as { name?: string; namespace?: string };
    const namespace = options.namespace ?? metadata.namespace ?? 'default';
    const name = options.name ?? metadata.name ?? head.hostName;
    const hostName = hostNameFor(namespace, name);
    assertHostName(hostName);
    if (await present(containerDir(this.o.lxcpath, hostName))) {
      throw new TerminalError('NameInUse', `cannot restore backup as ${hostName}: a container of that name exists in ${this.o.lxcpath} (pick another with --as)`);
    }
    return { hostName, namespace, name };
  }

  /**
   * The archived config, with every path under the old container directory moved to the new one
   * (rootfs, console log…) and the new host name; other lines stay as they were.
   */
  private async rewriteConfig(path: string, head: BackupHead, hostName: string): Promise<void> {
    const oldPath = typeof head.details?.lxcpath === 'string' ? head.details.lxcpath : undefined;
    const oldDir = oldPath === undefined ? undefined : containerDir(oldPath, head.hostName);
    const newDir = containerDir(this.o.lxcpath, hostName);
    const lines = (await readFile(path, 'utf8')).split('\n').map((line) => {
      const entry = parseConfigLine(line);
      if (entry?.key === 'lxc.uts.name') return `lxc.uts.name = ${hostName}`;
      if (entry === undefined || oldDir === undefined) return line;
      return line.split(`${oldDir}/`).join(`${newDir}/`);
    });
    await writeFile(path, lines.join('\n'));
  }
}

async function present(path: string): Promise<boolean> {
  return lstat(path).then(() => true, (err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return false;
    throw err;
  });
}
