/**
 * How CLI commands reach the running daemon's HTTP API: its URL (--server, default
 * http://127.0.0.1:9440), the bearer token read from its state directory (--state) and, for an
 * https server with its own certificate, the CA to trust (--cacert). The one place the CLI
 * handles the token: read from the file the daemon wrote, sent as a header, never printed.
 */
import { readFileSync } from 'node:fs';
import { isLoopback } from '../server/host-check.js';
import { DEFAULT_STATE_PATH, readApiToken } from '../state/state-dir.js';
import { UsageError } from './usage-error.js';

/** How the CLI reaches the daemon: its URL, the headers it sends (the API token) and the CA to trust. */
export interface DaemonConnection {
  readonly server: URL;
  /** Authorization, when the token could be read. */
  readonly headers: Record<string, string>;
  readonly ca?: Buffer;
}

/** The daemon's HTTP address (--server, default http://127.0.0.1:9440); throws a usage error for a bad one. */
export function serverUrl(value: string | undefined): URL {
  let url: URL;
  try {
    url = new URL(value ?? 'http://127.0.0.1:9440');
  } catch {
    throw new UsageError(`--server: ${JSON.stringify(value)} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError('--server: use an http:// or https:// URL');
  return url;
}

/**
 * The connection for `--server`, `--state` and `--cacert`. Reads need no token on loopback, so an
 * unreadable token is fine there; a server elsewhere needs it for every route, so its absence is
 * an error naming the file.
 */
export function daemonConnection(flags: { server?: string; state?: string; cacert?: string }): DaemonConnection {
  const server = serverUrl(flags.server);
  let headers: Record<string, string> = {};
  try {
    headers = { authorization: `Bearer ${readApiToken(flags.state ?? DEFAULT_STATE_PATH)}` };
  } catch (err) {
    if (!isLoopback(server.hostname.replace(/^\[(.*)\]$/, '$1'))) throw err;
  }
  let ca: Buffer | undefined;
  if (flags.cacert !== undefined) {
    try {
      ca = readFileSync(flags.cacert);
    } catch (err) {
      throw new UsageError(`--cacert: cannot read ${flags.cacert}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  }
  return { server, headers, ...(ca === undefined ? {} : { ca }) };
}
