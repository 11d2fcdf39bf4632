/**
 * The file system as the host policy sees it: the few questions path rules ask, behind an
 * interface so the rules are table-tested with a fake; `nodePolicyFs` is the real one.
 *
 * Guarantees (nodePolicyFs): nothing is written; a file is opened only after lstat says it is a
 * regular file, and then with O_NONBLOCK | O_NOFOLLOW, and fstat must agree, so a device, FIFO
 * or socket is never opened and a link swapped in meanwhile is not followed.
 */
import { type Stats, constants as fsConstants } from 'node:fs';
import { lstat, open, realpath } from 'node:fs/promises';

/** What a path is, as lstat tells it (symlinks are never followed). */
export type FileKind = 'file' | 'directory' | 'symlink' | 'block-device' | 'char-device' | 'fifo' | 'socket' | 'unknown';

/** The filesystem reads the path rules need; injected so the rules stay table-testable. */
export interface PolicyFs {
  /** The canonical absolute path of `path`, every link resolved; undefined when it does not exist. */
  realpath(path: string): Promise<string | undefined>;
  /** What `path` itself is (a final link is not followed); undefined when it does not exist. */
  kindOf(path: string): Promise<FileKind | undefined>;
  /**
   * Up to `length` bytes from the start of the regular file `path`, opened non-blocking without
   * following links; `kind` says what was found when it is not a regular file (then no bytes).
   */
  readHead(path: string, length: number): Promise<{ readonly kind: FileKind; readonly bytes: Uint8Array }>;
}

function kindOfStats(st: Stats): FileKind {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isBlockDevice()) return 'block-device';
  if (st.isCharacterDevice()) return 'char-device';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  return 'unknown';
}

const isMissing = (err: unknown): boolean => ['ENOENT', 'ENOTDIR', 'ELOOP'].includes((err as { code?: string }).code ?? '');

/** The host's file system. */
export const nodePolicyFs: PolicyFs = {
  async realpath(path) {
    try {
      return await realpath(path);
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
  },
  async kindOf(path) {
    try {
      return kindOfStats(await lstat(path));
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
  },
  async readHead(path, length) {
    const before = await lstat(path);
    if (!before.isFile()) return { kind: kindOfStats(before), bytes: new Uint8Array(0) };
    const fh = await open(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | fsConstants.O_NOFOLLOW);
    try {
      const st = await fh.stat();
      if (!st.isFile()) return { kind: kindOfStats(st), bytes: new Uint8Array(0) };
      const buffer = Buffer.alloc(Math.min(length, st.size));
      const { bytesRead } = await fh.read(buffer, 0, buffer.length, 0);
      return { kind: 'file', bytes: buffer.subarray(0, bytesRead) };
    } finally {
      await fh.close();
    }
  },
};
