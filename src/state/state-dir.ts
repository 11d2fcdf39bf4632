/**
 * hyperlet's state directory: the directory of `--state` holds the state DB (and its WAL), the
 * HTTP API token and the git clones, and nobody but the daemon's user may enter it. The daemon
 * and the CLI find it the same way: `--state PATH`, default DEFAULT_STATE_PATH.
 *
 * Guarantees: after `secureStateDir` the directory is mode 0700 (created so, or tightened) and
 * `secureStateFile` leaves a file mode 0600, created so before anything is written to it. A
 * directory other users may write to (/tmp, mode 1777) is refused: it cannot be made private
 * without taking it from them.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, fstatSync, lstatSync, mkdirSync, openSync, readFileSync, writeFileSync, constants as fs } from 'node:fs';
import { dirname, join } from 'node:path';

/** Where the state DB lives when --state is not given (relative to the working directory). */
export const DEFAULT_STATE_PATH = './.hyperlet/state.db';

/** The file beside the state DB holding the bearer token of the HTTP API. */
export const API_TOKEN_FILE = 'api-token';

/** What secureStateDir did, for the daemon's log. */
export interface StateDirResult {
  readonly dir: string;
  readonly created: boolean;
  /** The mode the directory had before it was tightened to 0700. */
  readonly tightenedFrom?: number;
}

const octal = (mode: number): string => `0${(mode & 0o7777).toString(8)}`;

/**
 * Creates the directory of `statePath` with mode 0700, or tightens an existing one to 0700.
 * Throws "cannot keep the state ..." for a directory others may write to (world-writable or
 * sticky) or one owned by another user, and for a path that is not a directory.
 */
export function secureStateDir(statePath: string): StateDirResult {
  const dir = dirname(statePath);
  let created = false;
  try {
    mkdirSync(dir, { mode: 0o700 });
    created = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      mkdirSync(dirname(dir), { recursive: true, mode: 0o755 });
      mkdirSync(dir, { mode: 0o700 });
      created = true;
    } else if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new Error(`cannot create the state directory ${dir}`, { cause: err });
    }
  }
  const st = lstatSync(dir);
  if (!st.isDirectory()) throw new Error(`cannot keep the state in ${dir}: it is not a directory`);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new Error(`cannot keep the state in ${dir}: it belongs to uid ${st.uid}, not to this user (${uid}); choose a directory of its own with --state DIR/state.db`);
  }
  const mode = st.mode & 0o7777;
  if ((mode & 0o002) !== 0 || (mode & 0o1000) !== 0) {
    throw new Error(`cannot keep the state in ${dir}: other users may write there (mode ${octal(mode)}); choose a directory of its own with --state DIR/state.db`);
  }
  if (mode === 0o700) return { dir, created };
  chmodSync(dir, 0o700);
  return created ? { dir, created } : { dir, created, tightenedFrom: mode };
}

/**
 * Makes `path` a regular file of mode 0600 owned by us: created empty with that mode when
 * missing, tightened when looser. Throws for a symlink or anything but a regular file.
 */
export function secureStateFile(path: string): void {
  let fd: number;
  try {
    fd = openSync(path, fs.O_RDONLY | fs.O_CREAT | fs.O_NOFOLLOW | fs.O_NONBLOCK, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') throw new Error(`cannot use ${path}: it is a symbolic link`, { cause: err });
    throw new Error(`cannot open ${path}`, { cause: err });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error(`cannot use ${path}: not a regular file`);
    if ((st.mode & 0o777) !== 0o600) chmodSync(path, 0o600);
  } finally {
    closeSync(fd);
  }
}

/** Tightens `path` to 0600 when it exists (SQLite's -wal and -shm files); does nothing otherwise. */
export function tightenIfPresent(path: string): void {
  try {
    const st = lstatSync(path);
    if (st.isFile() && (st.mode & 0o777) !== 0o600) chmodSync(path, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** The token file of the daemon whose state DB is `statePath`. */
export function apiTokenPath(statePath: string): string {
  return join(dirname(statePath), API_TOKEN_FILE);
}

const TOKEN_PATTERN = /^[A-Za-z0-9_-]{32,256}$/;

/**
 * The HTTP API token of the daemon with state DB `statePath`: read from the token file, or made
 * (32 random bytes, base64url) and written with mode 0600 at first start. The directory must
 * already be secured (secureStateDir). Throws for a token file that is not one we wrote.
 */
export function ensureApiToken(statePath: string): string {
  const path = apiTokenPath(statePath);
  const token = randomBytes(32).toString('base64url');
  try {
    writeFileSync(path, `${token}\n`, { flag: 'wx', mode: 0o600 });
    return token;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new Error(`cannot write the API token ${path}`, { cause: err });
  }
  secureStateFile(path);
  return readApiToken(statePath);
}

/** The token the daemon with state DB `statePath` accepts; throws naming the file when there is none. */
export function readApiToken(statePath: string): string {
  const path = apiTokenPath(statePath);
  let text: string;
  try {
    const fd = openSync(path, fs.O_RDONLY | fs.O_NOFOLLOW | fs.O_NONBLOCK);
    try {
      text = readFileSync(fd, 'utf8').slice(0, 1024);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(`cannot read the API token: no ${path} (the daemon writes it at its first start; pass the daemon's --state)`, { cause: err });
    }
    throw new Error(`cannot read the API token ${path}`, { cause: err });
  }
  const token = text.trim();
  if (!TOKEN_PATTERN.test(token)) throw new Error(`cannot use the API token in ${path}: it is not a token hyperlet wrote`);
  return token;
}
