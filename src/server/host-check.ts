/**
 * Which Host headers the HTTP API answers, against DNS rebinding: a web page whose name the
 * attacker points at 127.0.0.1 sends its own name as Host, so only names that cannot be
 * rebound are served: loopback names and addresses, the address the server is bound to, and the
 * names the operator allows (--http-host-allow). And whether a bind address is loopback (a
 * non-loopback bind needs TLS and the token on every route).
 */
import { isIP } from 'node:net';

/** Whether `address` (a bind address or a Host name without port) is this machine's loopback. */
export function isLoopback(address: string): boolean {
  const a = address.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (a === 'localhost' || a.endsWith('.localhost')) return true;
  if (isIP(a) === 4) return a.startsWith('127.');
  if (isIP(a) === 6) return a === '::1' || a === '0:0:0:0:0:0:0:1' || /^::ffff:127\./.test(a);
  return false;
}

/** The host part of a Host header (no port, lower case, no trailing dot); undefined when malformed. */
export function hostOf(header: string): string | undefined {
  const h = header.trim().toLowerCase();
  const m = /^(\[[0-9a-f:.]+\]|[a-z0-9._-]+)(?::([0-9]{1,5}))?$/.exec(h);
  if (m === null || m[1] === undefined) return undefined;
  if (m[2] !== undefined && Number(m[2]) > 65535) return undefined;
  const host = m[1].replace(/\.$/, '');
  if (host.startsWith('[') && isIP(host.slice(1, -1)) !== 6) return undefined;
  return host === '' ? undefined : host;
}

/** What the server accepts as Host besides loopback names. */
export interface HostAllowList {
  /** Names and addresses allowed by the operator (--http-host-allow), without port. */
  readonly names: readonly string[];
  /** The address the server is bound to, when it is one address (not 0.0.0.0 or ::). */
  readonly boundAddress?: string;
}

/**
 * Whether a request with Host header `header` may be served. Guarantees: a missing or malformed
 * header, or any name not listed, is refused; the port is not looked at (a rebinding page can
 * use ours).
 */
export function isAllowedHost(header: string | undefined, allow: HostAllowList): boolean {
  if (header === undefined) return false;
  const host = hostOf(header);
  if (host === undefined) return false;
  const bare = host.replace(/^\[(.*)\]$/, '$1');
  if (isLoopback(bare) && (isIP(bare) !== 0 || bare === 'localhost')) return true;
  const bound = allow.boundAddress?.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (bound !== undefined && bound !== '0.0.0.0' && bound !== '::' && bare === bound) return true;
  return allow.names.some((n) => n.toLowerCase().replace(/\.$/, '').replace(/^\[(.*)\]$/, '$1') === bare);
}
