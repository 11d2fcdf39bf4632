/**
 * The image-cache trees containers under an lxcpath still use: the lower directories of their
 * overlay root filesystems (`lxc.rootfs.path = overlay:LOWER:UPPER`), running or not. The image
 * cache never evicts these.
 */
import { readFile, readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseConfig } from './lxc-config.js';

/** The lower directories named by `lxc.rootfs.path` in config `text` (none when it is no overlay). */
export function overlayLowerDirsOf(text: string): string[] {
  const value = parseConfig(text).filter((e) => e.key === 'lxc.rootfs.path').at(-1)?.value ?? '';
  const m = /^(?:overlay|overlayfs):(.*)$/.exec(value);
  if (m === null) return [];
  const parts = (m[1] ?? '').split(':');
  return parts.slice(0, -1).filter((p) => p !== '').map((p) => resolve(p));
}

/** Every lower directory of every container under `lxcpath` (absolute paths). */
export async function overlayLowerDirs(lxcpath: string): Promise<Set<string>> {
  const out = new Set<string>();
  for (const name of await readdir(lxcpath).catch(() => [])) {
    const text = await readFile(join(lxcpath, name, 'config'), 'utf8').catch(() => undefined);
    if (text !== undefined) for (const dir of overlayLowerDirsOf(text)) out.add(dir);
  }
  return out;
}
