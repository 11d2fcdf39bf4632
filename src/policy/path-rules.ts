/**
 * Rules for host paths an object names: VM disk images, kernels and initrds (regular files under
 * an allowed image directory, with every file a qcow2 makes QEMU open checked the same way), and
 * container rootfs directories (under an allowed rootfs directory, never /, /proc, /sys or /dev).
 * Paths are judged by their real path, so a link cannot lead outside. Each check returns
 * undefined when the path is allowed, else the sentence that says why not (without the field).
 */
import { dirname, resolve } from 'node:path';
import type { FileKind, PolicyFs } from './policy-fs.js';
import { QCOW2_READ_BYTES, parseQcow2Header } from './qcow2-header.js';

/** Never a rootfs, whatever the policy says: the host itself and its kernel interfaces. */
const NEVER_ROOTFS = ['/proc', '/sys', '/dev'];
/** Backing chains longer than this are refused (QEMU's own limit is higher; no sane image needs it). */
const MAX_BACKING_DEPTH = 16;

const KIND_WORDS: Readonly<Record<FileKind, string>> = {
  file: 'a regular file', directory: 'a directory', symlink: 'a symbolic link', 'block-device': 'a block device',
  'char-device': 'a character device', fifo: 'a FIFO', socket: 'a socket', unknown: 'not a regular file',
};

/** Whether `path` lies strictly inside directory `dir` (both canonical). */
export function isInside(path: string, dir: string): boolean {
  return dir === '/' ? path !== '/' : path.startsWith(`${dir}/`);
}

/** The canonical forms of the allowed directories that exist. */
async function realDirs(dirs: readonly string[], fs: PolicyFs): Promise<string[]> {
  const reals = await Promise.all(dirs.map((dir) => fs.realpath(dir)));
  return reals.filter((real): real is string => real !== undefined);
}

/**
 * Checks a disk image, kernel or initrd: it must resolve to a regular file inside one of
 * `allowedDirs`; a qcow2 image's backing file and external data file must pass the same check.
 */
export async function checkImageFile(path: string, allowedDirs: readonly string[], fs: PolicyFs): Promise<string | undefined> {
  const dirs = await realDirs(allowedDirs, fs);
  const why = await imageProblem(path, dirs, fs, 0);
  if (why === undefined) return undefined;
  return `${path} is not a regular file under an allowed image directory (${allowedDirs.join(', ') || 'none allowed'}): ${why}`;
}

async function imageProblem(path: string, dirs: readonly string[], fs: PolicyFs, depth: number): Promise<string | undefined> {
  const real = await fs.realpath(path);
  if (real === undefined) return depth === 0 ? 'it does not exist' : `${path} does not exist`;
  const what = depth === 0 ? 'it' : path;
  const via = real === path ? '' : ` (it resolves to ${real})`;
  if (!dirs.some((dir) => isInside(real, dir))) return `${what} is outside them${via}`;
  // The magic first: only a qcow2 needs its header extensions read (a kernel or raw image does not).
  const head = await fs.readHead(real, 8);
  if (head.kind !== 'file') return `${what} is ${KIND_WORDS[head.kind]}${via}`;
  if (!parseQcow2Header(head.bytes).qcow2) return undefined;
  const { kind, bytes } = await fs.readHead(real, QCOW2_READ_BYTES);
  if (kind !== 'file') return `${what} is ${KIND_WORDS[kind]}${via}`;
  const header = parseQcow2Header(bytes);
  if (!header.qcow2) return undefined;
  if (header.unreadable !== undefined) return `${what} is a qcow2 image whose header cannot be checked: ${header.unreadable}`;
  for (const [role, name] of [['backing file', header.backingFile], ['data file', header.dataFile]] as const) {
    if (name === undefined) continue;
    if (depth + 1 > MAX_BACKING_DEPTH) return `its chain of backing files is longer than ${MAX_BACKING_DEPTH}`;
    // QEMU reads a name with a protocol prefix ("nbd:", "json:{…}") as that protocol, not as a file.
    if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(name)) return `its ${role} ${JSON.stringify(name)} is not a plain file name`;
    const next = resolve(dirname(real), name);
    const problem = await imageProblem(next, dirs, fs, depth + 1);
    if (problem !== undefined) return `its ${role} ${next} is refused: ${problem}`;
  }
  return undefined;
}

/**
 * Checks a backup archive path: for `write`, a path that does not exist yet (backups are never
 * overwritten) whose directory resolves inside one of `allowedDirs`; for `read`, a regular file
 * that resolves inside one of them.
 */
export async function checkBackupFile(path: string, mode: 'read' | 'write', allowedDirs: readonly string[], fs: PolicyFs): Promise<string | undefined> {
  const prefix = `${path} is not ${mode === 'read' ? 'a regular file' : 'a new file'} under an allowed backup directory (${allowedDirs.join(', ') || 'none allowed'})`;
  if (!path.startsWith('/')) return `${path} is not an absolute path`;
  const dirs = await realDirs(allowedDirs, fs);
  if (mode === 'write') {
    if ((await fs.kindOf(path)) !== undefined) return `${prefix}: it exists already (backups are never overwritten)`;
    const parent = await fs.realpath(dirname(path));
    if (parent === undefined) return `${prefix}: its directory does not exist`;
    if (!dirs.some((dir) => parent === dir || isInside(parent, dir))) return `${prefix}: it is outside them (its directory resolves to ${parent})`;
    return undefined;
  }
  const real = await fs.realpath(path);
  if (real === undefined) return `${prefix}: it does not exist`;
  const via = real === path ? '' : ` (it resolves to ${real})`;
  if (!dirs.some((dir) => isInside(real, dir))) return `${prefix}: it is outside them${via}`;
  const kind = await fs.kindOf(real);
  if (kind !== 'file') return `${prefix}: it is ${KIND_WORDS[kind ?? 'unknown']}${via}`;
  return undefined;
}

/** Checks a directory scheduled backups go to: an existing directory that is, or resolves inside, one of `allowedDirs`. */
export async function checkBackupDir(path: string, allowedDirs: readonly string[], fs: PolicyFs): Promise<string | undefined> {
  const prefix = `${path} is not a directory under an allowed backup directory (${allowedDirs.join(', ') || 'none allowed'})`;
  const real = await fs.realpath(path);
  if (real === undefined) return `${prefix}: it does not exist`;
  const via = real === path ? '' : ` (it resolves to ${real})`;
  const dirs = await realDirs(allowedDirs, fs);
  if (!dirs.some((dir) => real === dir || isInside(real, dir))) return `${prefix}: it is outside them${via}`;
  if ((await fs.kindOf(real)) !== 'directory') return `${prefix}: it is not a directory${via}`;
  return undefined;
}

/** Checks a container rootfs: a directory inside one of `allowedDirs`, never /, /proc, /sys or /dev. */
export async function checkRootfsDir(path: string, allowedDirs: readonly string[], fs: PolicyFs): Promise<string | undefined> {
  const real = await fs.realpath(path);
  const via = real === undefined || real === path ? '' : ` (it resolves to ${real})`;
  if (real === '/' || (real !== undefined && NEVER_ROOTFS.some((p) => real === p || isInside(real, p)))) {
    return `${path} can never be a container rootfs${via}: /, /proc, /sys and /dev are refused whatever the policy says`;
  }
  const prefix = `${path} is not a directory under an allowed rootfs directory (${allowedDirs.join(', ') || 'none allowed'})`;
  if (real === undefined) return `${prefix}: it does not exist`;
  const dirs = await realDirs(allowedDirs, fs);
  if (!dirs.some((dir) => isInside(real, dir))) return `${prefix}: it is outside them${via}`;
  const kind = await fs.kindOf(real);
  if (kind !== 'directory') return `${prefix}: it is ${KIND_WORDS[kind ?? 'unknown']}${via}`;
  return undefined;
}
