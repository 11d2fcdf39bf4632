/**
 * Parses the location of a git source, `URL[#BRANCH][//SUBDIR]`: URL is anything `git fetch`
 * takes (a path, file://, http(s)://, ssh://, user@host:path), BRANCH defaults to the remote's
 * HEAD, SUBDIR to the repository root. The `//` of a scheme is part of the URL, not a SUBDIR.
 */

export interface GitLocation {
  readonly url: string;
  /** undefined: the remote's default branch (HEAD). */
  readonly branch?: string;
  /** Path inside the repository, no leading or trailing '/', '' for the root. */
  readonly subdir: string;
}

const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;
const BRANCH = /^[A-Za-z0-9._/-]+$/;

/** Whether `text` holds a control character (new line, NUL, escape…). */
function hasControl(text: string): boolean {
  return [...text].some((ch) => (ch.codePointAt(0) ?? 0) < 0x20 || ch === '\u007f');
}

/** Throws an error starting "cannot use git source" that names the broken part. */
export function parseGitLocation(location: string): GitLocation {
  const fail = (why: string): never => { throw new Error(`cannot use git source ${JSON.stringify(location)}: ${why}`); };
  let url: string;
  let branch: string | undefined;
  let subdir = '';
  const hash = location.indexOf('#');
  if (hash >= 0) {
    url = location.slice(0, hash);
    const rest = location.slice(hash + 1);
    const slashes = rest.indexOf('//');
    branch = slashes < 0 ? rest : rest.slice(0, slashes);
    if (slashes >= 0) subdir = rest.slice(slashes + 2);
  } else {
    const skip = SCHEME.exec(location)?.[0].length ?? 0;
    const slashes = location.indexOf('//', skip);
    url = slashes < 0 ? location : location.slice(0, slashes);
    if (slashes >= 0) subdir = location.slice(slashes + 2);
  }
  if (url === '') fail('the URL is empty');
  if (url.startsWith('-')) fail('a URL cannot start with "-"');
  if (/^ext::/i.test(url) || hasControl(url)) fail('this URL form is not allowed');
  if (branch !== undefined) {
    if (branch === '') fail('the branch after "#" is empty');
    if (!BRANCH.test(branch) || branch.startsWith('-') || branch.startsWith('/') || branch.endsWith('/') || branch.includes('..') || branch.includes('//') || branch.endsWith('.lock')) {
      fail(`${JSON.stringify(branch)} is not a branch name`);
    }
  }
  subdir = subdir.replace(/\/+$/, '');
  if (subdir.startsWith('/')) fail('SUBDIR must be relative to the repository root');
  if (subdir.split('/').some((part) => part === '..' || part === '.' || (part === '' && subdir !== '')) || hasControl(subdir) || subdir.includes(':')) {
    fail(`${JSON.stringify(subdir)} is not a plain path inside the repository`);
  }
  return { url, ...(branch === undefined ? {} : { branch }), subdir };
}

/** The location written back, for descriptions. */
export function formatGitLocation(l: GitLocation): string {
  return `${l.url}${l.branch === undefined ? '' : `#${l.branch}`}${l.subdir === '' ? '' : `//${l.subdir}`}`;
}
