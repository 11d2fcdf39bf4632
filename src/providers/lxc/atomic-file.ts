/** Replacing a file so that readers (LXC, a restarted hyperlet) see the old text or the new, never half. */
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { failpoint } from '../../shared/failpoint.js';

/**
 * The temporary file writeFileAtomic writes `path` through: hidden, beside it, named by hyperlet
 * and by `path` alone, so a write killed halfway leaves at most one such file, which the next
 * write of `path` replaces, and which nothing reads.
 */
export function atomicTempPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.hyperlet-tmp`);
}

/**
 * Writes `text` to `path` through a temporary file beside it (atomicTempPath), then renamed over
 * `path`: readers never see half a file, even when hyperlet is killed. `durable` (the default)
 * also fsyncs it, so it survives a power loss; steps that end in a durable write of their own
 * (create ends by marking its marker complete) skip it for the writes before: each fsync costs
 * tens of ms on a disk busy with lxc-create.
 * Assumptions: one writer per path at a time (the reconciler never runs two steps for one container).
 * Throws "cannot write PATH" with the cause, and then removes the temporary file; a killed
 * process leaves it behind, and the next write of `path` reuses it.
 */
export async function writeFileAtomic(path: string, text: string, mode: number, options: { durable?: boolean } = {}): Promise<void> {
  const tmp = atomicTempPath(path);
  try {
    const handle = await open(tmp, 'w', mode);
    try {
      await handle.writeFile(text, 'utf8');
      if (options.durable !== false) await handle.sync();
    } finally {
      await handle.close();
    }
    failpoint(`write:${basename(path)}`);
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw new Error(`cannot write ${path}`, { cause: err });
  }
}
