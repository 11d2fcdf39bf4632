/**
 * What an unprivileged container needs on disk: a root filesystem owned by its mapped ids, and a
 * path to it that its mapped root may walk.
 */
import { chmod, lchown, lstat, readdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { IdRange } from '../../api/v1alpha1/host-defaults.js';

/** The id a container id becomes on the host; ids past the range become the range's last id (nobody). */
export function shiftedId(id: number, range: IdRange): number {
  return range.hostId + (id < range.size ? id : range.size - 1);
}

/**
 * Moves every file, directory and link under `root` (and `root` itself) into `range`: uid and gid
 * N become hostId + N, modes (setuid and setgid too) stay. Links are changed, never followed;
 * a hard-linked inode is shifted once. Returns how many inodes it changed.
 * Assumptions: the tree is a fresh copy hyperlet made (ids still unshifted) and nothing else writes to it.
 */
export async function shiftOwnership(root: string, range: IdRange, signal?: AbortSignal): Promise<number> {
  let changed = 0;
  const stack = [root];
  // A hard-linked file is one inode under several names (busybox is /bin/busybox and /sbin/init): shift it once.
  const seen = new Set<string>();
  while (stack.length > 0) {
    signal?.throwIfAborted();
    const path = stack.pop() ?? root;
    const st = await lstat(path);
    if (st.isDirectory()) for (const name of await readdir(path)) stack.push(join(path, name));
    const inode = `${st.dev}:${st.ino}`;
    if (seen.has(inode)) continue;
    seen.add(inode);
    await lchown(path, shiftedId(st.uid, range), shiftedId(st.gid, range));
    // chown clears setuid and setgid bits, for root too (since Linux 2.2.13): put them back.
    if (!st.isSymbolicLink() && (st.mode & 0o6000) !== 0) await chmod(path, st.mode & 0o7777);
    changed++;
  }
  return changed;
}

/**
 * Throws unless every directory from `path` up to / lets others search it (o+x): a container's
 * mapped root is "others" to directories root owns, and LXC must reach the rootfs as that user.
 */
export async function assertSearchableByOthers(path: string): Promise<void> {
  for (let dir = path; ; dir = dirname(dir)) {
    const st = await stat(dir);
    if ((st.mode & 0o001) === 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
      throw new Error(`cannot run unprivileged containers under ${path}: ${dir} is mode ${mode}, and their mapped root needs to search it `
        + `(chmod o+x ${dir})`);
    }
    if (dirname(dir) === dir) return;
  }
}
