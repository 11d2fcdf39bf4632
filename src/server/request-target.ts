/**
 * Parses the request target of an HTTP request into decoded path segments and a query, refusing
 * what the API never serves: an absolute or asterisk form, bad percent-encoding, encoded slashes,
 * control characters, dot segments and empty segments. A refusal is a 400 (414 for length), never
 * a 500, and nothing of the target is decoded twice.
 */

/** Longest request target served (Kubernetes' API server allows about the same). */
export const MAX_TARGET_CHARS = 4096;

/** A request target parsed: its path, segments and query, or the HTTP status and error refusing it. */
export type RequestTarget =
  | { readonly ok: true; readonly path: string; readonly segments: readonly string[]; readonly query: URLSearchParams }
  | { readonly ok: false; readonly status: 400 | 414; readonly error: string };

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/** Splits and decodes `raw` (IncomingMessage.url); see the file comment for what is refused. */
export function parseRequestTarget(raw: string | undefined): RequestTarget {
  const target = raw ?? '';
  if (target.length > MAX_TARGET_CHARS) return { ok: false, status: 414, error: `the request target is longer than ${MAX_TARGET_CHARS} characters` };
  if (!target.startsWith('/')) return { ok: false, status: 400, error: 'the request target must be a path starting with /' };
  const q = target.indexOf('?');
  const rawPath = q < 0 ? target : target.slice(0, q);
  const rawQuery = q < 0 ? '' : target.slice(q + 1);
  if (rawQuery.includes('#') || rawPath.includes('#')) return { ok: false, status: 400, error: 'a request target holds no fragment (#)' };
  if (rawPath === '/') return { ok: true, path: '/', segments: [], query: new URLSearchParams(rawQuery) };
  const parts = rawPath.slice(1).split('/');
  if (parts[parts.length - 1] === '') parts.pop(); // one trailing slash is the same resource
  const segments: string[] = [];
  for (const part of parts) {
    if (part === '') return { ok: false, status: 400, error: 'the path has an empty segment (//)' };
    let decoded: string;
    try {
      decoded = decodeURIComponent(part);
    } catch {
      return { ok: false, status: 400, error: `the path segment ${JSON.stringify(part)} is not valid percent-encoding` };
    }
    if (decoded.includes('/')) return { ok: false, status: 400, error: 'the path holds an encoded slash (%2F)' };
    if (CONTROL.test(decoded)) return { ok: false, status: 400, error: 'the path holds a control character' };
    if (decoded === '.' || decoded === '..') return { ok: false, status: 400, error: 'the path holds a dot segment' };
    segments.push(decoded);
  }
  if (!isWellFormedQuery(rawQuery)) return { ok: false, status: 400, error: 'the query is not valid percent-encoding' };
  return { ok: true, path: `/${segments.join('/')}`, segments, query: new URLSearchParams(rawQuery) };
}

/** URLSearchParams decodes leniently; a query that is not proper percent-encoding is refused instead. */
function isWellFormedQuery(rawQuery: string): boolean {
  if (rawQuery === '') return true;
  try {
    for (const pair of rawQuery.split('&')) decodeURIComponent(pair.replace(/\+/g, ' '));
  } catch {
    return false;
  }
  return !CONTROL.test(rawQuery);
}
