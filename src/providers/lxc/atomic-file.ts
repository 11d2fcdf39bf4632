/** Replacing a file so that readers (LXC, a restarted hyperlet) see the old text or the new, never half. */
import { open, rename, unlink } from 'node:fs/promises';

/**
 * Writes `text` to `path` through a temporary file beside it, then renamed over `path`: readers
 * never see half a file, even when hyperlet is killed. `durable` (the default) also fsyncs it,
 * so it survives a power loss; steps that end in a durable write of their own (create ends by
 * marking its marker complete) skip it for the writes before: each fsync costs tens of ms on a
 * disk busy with lxc-create.
 * Throws "cannot write PATH" with the cause; the temporary file never stays behind.
 */
export async function writeFileAtomic(path: string, text: string, mode: number, options: { durable?: boolean } = {}): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    const handle = await open(tmp, 'w', mode);
    try {
      await handle.writeFile(text, 'utf8');
      if (options.durable !== false) await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw new Error(`cannot write ${path}`, { cause: err });
  }
}
