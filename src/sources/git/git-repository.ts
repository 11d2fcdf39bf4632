/**
 * hyperlet's own bare clone of a followed repository: fetch one branch into a private ref, tell
 * whether history was rewritten, and read the manifest files of one commit straight from git's
 * object store (no work tree, so nothing on disk can be half-checked-out).
 *
 * Guarantees: the last applied commit is pinned by a ref, so neither a force-push upstream nor a
 * gc here can make it unreadable; reading a commit never changes the clone.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GitCli } from './git-cli.js';

const FETCHED_REF = 'refs/hyperlet/fetched';

/** user:password of an http(s) URL, decoded, with the host[:port] they are for. */
export interface UrlCredentials {
  readonly host: string;
  readonly username: string;
  readonly password: string;
}

/**
 * Takes the userinfo out of an http(s) URL: git gets the URL without it and the credentials
 * through credentialHelperEnv. Other URLs come back as they are (an ssh user name is no secret,
 * and ssh never takes a password from a URL). Throws for credentials holding a control character.
 */
export function splitCredentials(url: string): { url: string; credentials?: UrlCredentials } {
  const m = /^(https?:\/\/)([^/?#]*)@([^/?#@]+)(.*)$/i.exec(url);
  if (m === null) return { url };
  const [, scheme = '', userinfo = '', host = '', rest = ''] = m;
  const colon = userinfo.indexOf(':');
  let username: string;
  let password: string;
  try {
    username = decodeURIComponent(colon < 0 ? userinfo : userinfo.slice(0, colon));
    password = colon < 0 ? '' : decodeURIComponent(userinfo.slice(colon + 1));
  } catch {
    throw new Error('cannot use the credentials in the git URL: they are not valid percent-encoding');
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(username + password)) throw new Error('cannot use the credentials in the git URL: they hold a control character');
  return { url: `${scheme}${host}${rest}`, credentials: { host: host.toLowerCase(), username, password } };
}

/**
 * Environment that makes git take `credentials` from a helper, for their host only (a redirect to
 * another host gets nothing). The helper is a fixed shell function; the values reach it only
 * through the environment, never through its text.
 */
export function credentialHelperEnv(credentials: UrlCredentials): Record<string, string> {
  const helper = '!f() { test "$1" = get || return 0; h=; while IFS= read -r l && [ -n "$l" ]; do case "$l" in host=*) h="${l#host=}";; esac; done; '
    + '[ "$h" = "$HYPERLET_GIT_HOST" ] || return 0; printf \'username=%s\\npassword=%s\\n\' "$HYPERLET_GIT_USERNAME" "$HYPERLET_GIT_PASSWORD"; }; f';
  return {
    GIT_CONFIG_COUNT: '2',
    // An empty helper first: no helper configured on the host sees (or stores) these credentials.
    GIT_CONFIG_KEY_0: 'credential.helper', GIT_CONFIG_VALUE_0: '',
    GIT_CONFIG_KEY_1: 'credential.helper', GIT_CONFIG_VALUE_1: helper,
    HYPERLET_GIT_HOST: credentials.host, HYPERLET_GIT_USERNAME: credentials.username, HYPERLET_GIT_PASSWORD: credentials.password,
  };
}
const APPLIED_REF = 'refs/hyperlet/applied';

/** One file of a commit's tree. */
export interface TreeFile {
  /** Path relative to the followed subdirectory. */
  readonly path: string;
  readonly blob: string;
  readonly sizeBytes: number;
  /** A regular file (not a symlink or submodule). */
  readonly regular: boolean;
}

/** A bare local clone: fetches from the remote and reads trees and files at a commit; never pushes. */
export class GitRepository {
  readonly git: GitCli;

  /** `gitDir` is created on first use; `timeoutMs` bounds every git call. */
  constructor(readonly gitDir: string, timeoutMs?: number) {
    this.git = new GitCli(gitDir, timeoutMs);
  }

  /** Creates the bare clone if it is not there yet; idempotent. */
  async ensure(): Promise<void> {
    if (existsSync(join(this.gitDir, 'HEAD'))) return;
    await mkdir(this.gitDir, { recursive: true });
    await this.git.run(['init', '--bare', '--quiet']);
  }

  /**
   * Fetches `branch` (undefined: the remote's HEAD) of `url` into a private ref, overwriting it
   * even when history was rewritten: deciding what to do about that is the caller's job.
   */
  async fetch(url: string, branch: string | undefined, timeoutMs?: number): Promise<void> {
    const from = branch === undefined ? 'HEAD' : `refs/heads/${branch}`;
    // Credentials never go on git's command line (any local user can read it in ps): git asks
    // a helper for them, and the helper reads them from git's environment (readable by us only).
    const { url: bare, credentials } = splitCredentials(url);
    await this.git.run(['fetch', '--quiet', '--no-tags', '--no-write-fetch-head', '--no-recurse-submodules', '--', bare, `+${from}:${FETCHED_REF}`], {
      ...(timeoutMs === undefined ? {} : { timeoutMs }),
      ...(credentials === undefined ? {} : { env: credentialHelperEnv(credentials) }),
    });
  }

  /** The fetched commit: read from the ref file (no process), or asked of git when refs are packed. */
  async fetchedRevision(): Promise<string | undefined> {
    try {
      const text = (await readFile(join(this.gitDir, FETCHED_REF), 'utf8')).trim();
      if (/^[0-9a-f]{40,64}$/.test(text)) return text;
    } catch { /* packed or absent */ }
    const r = await this.git.run(['rev-parse', '--verify', '--quiet', `${FETCHED_REF}^{commit}`], { okCodes: [1] });
    const sha = r.stdout.toString('utf8').trim();
    return r.exitCode === 0 && sha !== '' ? sha : undefined;
  }

  /** Whether `revision` is a commit in this clone. */
  async hasCommit(revision: string): Promise<boolean> {
    const r = await this.git.run(['cat-file', '-e', `${revision}^{commit}`], { okCodes: [1, 128] });
    return r.exitCode === 0;
  }

  /** Whether `older` is an ancestor of (or equal to) `newer`: false means history was rewritten. */
  async isAncestor(older: string, newer: string): Promise<boolean> {
    const r = await this.git.run(['merge-base', '--is-ancestor', older, newer], { okCodes: [1] });
    return r.exitCode === 0;
  }

  /** Keeps `revision` reachable (the last applied commit). */
  async pin(revision: string): Promise<void> {
    await this.git.run(['update-ref', APPLIED_REF, revision]);
  }

  /** One-line subject of a commit, for status. */
  async subject(revision: string): Promise<string> {
    const r = await this.git.run(['log', '-1', '--format=%s', revision]);
    return r.stdout.toString('utf8').trim();
  }

  /**
   * Every file under `subdir` at `revision`, recursively, with paths relative to `subdir`.
   * Undefined when `subdir` does not exist there (or is not a directory).
   */
  async listFiles(revision: string, subdir: string): Promise<TreeFile[] | undefined> {
    const treeish = subdir === '' ? `${revision}^{tree}` : `${revision}:${subdir}`;
    const kind = await this.git.run(['cat-file', '-t', treeish], { okCodes: [1, 128] });
    if (kind.exitCode !== 0 || kind.stdout.toString('utf8').trim() !== 'tree') return undefined;
    const r = await this.git.run(['ls-tree', '-r', '-z', '--long', treeish]);
    const files: TreeFile[] = [];
    for (const entry of r.stdout.toString('utf8').split('\0')) {
      if (entry === '') continue;
      const tab = entry.indexOf('\t');
      const [mode, type, blob, size] = entry.slice(0, tab).split(/ +/);
      if (type !== 'blob' || blob === undefined) continue; // submodules are not followed
      files.push({ path: entry.slice(tab + 1), blob, sizeBytes: Number(size), regular: mode === '100644' || mode === '100755' });
    }
    return files;
  }

  /** The contents of `blobs`, in one `git cat-file --batch` call. */
  async readBlobs(blobs: readonly string[]): Promise<Map<string, Buffer>> {
    const out = new Map<string, Buffer>();
    if (blobs.length === 0) return out;
    const r = await this.git.run(['cat-file', '--batch'], { input: `${blobs.join('\n')}\n` });
    const buf = r.stdout;
    let at = 0;
    while (at < buf.length) {
      const eol = buf.indexOf(0x0a, at);
      if (eol < 0) break;
      const header = buf.subarray(at, eol).toString('utf8');
      const [sha, type, size] = header.split(' ');
      if (type === 'missing' || sha === undefined) throw new Error(`cannot read blob ${sha ?? header}: missing from the clone`);
      const n = Number(size);
      out.set(sha, buf.subarray(eol + 1, eol + 1 + n));
      at = eol + 1 + n + 1; // content, then a new line
    }
    return out;
  }
}
