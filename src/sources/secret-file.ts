/**
 * Reads a secret file for `environmentFrom: {NAME: {file: PATH}}` (dir and git sources): the one check of where such a
 * file may be. Until the host policy (src/policy/) owns it, the allowed place is one directory,
 * `--secrets-dir` (default /etc/hyperlet/secrets), owned by the host operator.
 *
 * Guarantees: the file read is a regular file whose real path lies inside the real path of the
 * secrets directory, checked on the opened descriptor itself (so a symlink swapped in between
 * check and open changes nothing); it is opened without following a final symlink and without
 * blocking (a FIFO cannot hang the reconcile); at most MAX_SECRET_FILE_BYTES are read. Errors are
 * EnvironmentErrors naming the field and the rule, never the contents.
 */
import { constants } from 'node:fs';
import { open, readlink, realpath } from 'node:fs/promises';
import { isAbsolute, join, relative, sep } from 'node:path';
import { EnvironmentError, MAX_ENVIRONMENT_VALUE_BYTES, checkedEnvironmentValue } from '../api/v1alpha1/environment.js';
import { MAX_CLOUD_INIT_BYTES } from '../api/v1alpha1/virtual-machine-schema.js';

/** The default --secrets-dir. */
export const DEFAULT_SECRETS_DIR = '/etc/hyperlet/secrets';

/** Largest file read: a value of MAX_ENVIRONMENT_VALUE_BYTES plus a CRLF. */
export const MAX_SECRET_FILE_BYTES = MAX_ENVIRONMENT_VALUE_BYTES + 2;

/** Whether `child` is strictly inside `parent` (both absolute, normalized). */
function inside(parent: string, child: string): boolean {
  const rel = relative(parent, child);
  return rel !== '' && !rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel);
}

/**
 * The value in secret file `requested` (relative to `secretsDir`, or absolute inside it) for
 * `field` (spec.environmentFrom.NAME). Throws EnvironmentError: SecretNotFound when the file or the
 * directory is missing, PolicyDenied for a path outside the directory (`..`, a symlink leading
 * out), anything but a regular file, or contents too big or not one line of UTF-8 text.
 */
export async function readSecretFile(secretsDir: string, requested: string, field: string, document = false): Promise<string> {
  const maxBytes = document ? MAX_CLOUD_INIT_BYTES : MAX_SECRET_FILE_BYTES;
  const where = `file ${JSON.stringify(requested)}`;
  const deny = (rule: string): never => { throw new EnvironmentError('PolicyDenied', `${field}: ${where} ${rule}`); };
  if (requested.split('/').includes('..')) deny(`must not contain ".." (secret files are read from ${secretsDir} only)`);
  let root: string;
  try {
    root = await realpath(secretsDir);
  } catch {
    throw new EnvironmentError('SecretNotFound', `${field}: ${where}: the secrets directory ${secretsDir} does not exist on this host`);
  }
  const path = isAbsolute(requested) ? requested : join(secretsDir, requested);
  if (isAbsolute(requested) && !inside(secretsDir, path) && !inside(root, path)) deny(`is not under the secrets directory ${secretsDir}`);
  let real: string;
  try {
    real = await realpath(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new EnvironmentError('SecretNotFound', `${field}: ${where}: no such file in ${secretsDir}`);
    throw new EnvironmentError('SecretUnavailable', `${field}: ${where}: cannot resolve the path (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  if (!inside(root, real)) deny(`leads out of the secrets directory ${secretsDir} (through a symbolic link)`);
  let handle;
  try {
    handle = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new EnvironmentError('SecretNotFound', `${field}: ${where}: no such file in ${secretsDir}`);
    if (code === 'ELOOP') return deny('is a symbolic link');
    throw new EnvironmentError('SecretUnavailable', `${field}: ${where}: cannot open it (${code ?? 'error'})`);
  }
  try {
    const opened = await readlink(`/proc/self/fd/${handle.fd}`);
    if (!inside(root, opened)) deny(`leads out of the secrets directory ${secretsDir}`);
    const st = await handle.stat();
    if (!st.isFile()) deny('is not a regular file');
    if (st.size > maxBytes) deny(`is larger than ${maxBytes} bytes`);
    const buf = Buffer.alloc(maxBytes + 1);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    if (bytesRead > maxBytes) deny(`is larger than ${maxBytes} bytes`);
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(0, bytesRead));
    } catch {
      return deny('is not UTF-8 text');
    }
    return checkedEnvironmentValue(field, text, where, document);
  } finally {
    await handle.close();
  }
}
