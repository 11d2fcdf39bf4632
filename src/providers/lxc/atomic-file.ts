/** Replacing a file so that readers (LXC, a restarted hyperlet) see the old text or the new, never half. */
import { open, rename, unlink } from 'node:fs/promises';

/**
 * Writes `text` to `path` through a temporary file beside it, fsynced, then renamed over `path`.
 * Throws "cannot write PATH" with the cause; the temporary file never stays behind.
 */
export async function writeFileAtomic(path: string, text: string, mode: number): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    const handle = await open(tmp, 'w', mode);
    try {
      await handle.writeFile(text, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw new Error(`cannot write ${path}`, { cause: err });
  }
}
