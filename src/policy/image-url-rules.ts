/**
 * Which image URLs a container may be made from: file:// URLs name a regular file inside one of
 * the policy's image directories (judged as VM images are, by real path), http:// and https://
 * URLs a host the policy lists in imageHosts. Any other scheme is refused.
 */
import { checkImageFile } from './path-rules.js';
import { matchesAny } from './host-policy.js';
import type { PolicyFs } from './policy-fs.js';

/** The policy rule an image URL broke, and why; undefined from checkImageUrl when it is allowed. */
export interface ImageUrlProblem {
  /** `paths.images` for file:// URLs, `imageHosts` for http(s). */
  readonly rule: string;
  readonly message: string;
}

/** The path a file:// URL names (percent-escapes decoded), or undefined when it is not a local file URL. */
export function filePathOfUrl(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined;
  }
  if (parsed.protocol !== 'file:' || (parsed.host !== '' && parsed.host !== 'localhost')) return undefined;
  try {
    return decodeURIComponent(parsed.pathname);
  } catch {
    return undefined;
  }
}

/** Checks `url` against the image rules; undefined when it is allowed. */
export async function checkImageUrl(
  url: string, rules: { readonly imageDirs: readonly string[]; readonly imageHosts: readonly string[] }, fs: PolicyFs,
): Promise<ImageUrlProblem | undefined> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { rule: 'imageHosts', message: `${url} is not a URL` };
  }
  if (parsed.protocol === 'file:') {
    const path = filePathOfUrl(url);
    if (path === undefined || path.includes('\0')) return { rule: 'paths.images', message: `${url} does not name a file on this host` };
    const why = await checkImageFile(path, rules.imageDirs, fs);
    return why === undefined ? undefined : { rule: 'paths.images', message: why };
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    return { rule: 'imageHosts', message: `${parsed.protocol.slice(0, -1)} URLs are not allowed (file, http and https are)` };
  }
  if (parsed.username !== '' || parsed.password !== '') {
    return { rule: 'imageHosts', message: 'a URL with credentials is not allowed' };
  }
  if (!matchesAny(rules.imageHosts, parsed.host)) {
    const listed = rules.imageHosts.join(', ') || 'none allowed';
    return { rule: 'imageHosts', message: `${parsed.host} is not an allowed image host (${listed})` };
  }
  return undefined;
}
