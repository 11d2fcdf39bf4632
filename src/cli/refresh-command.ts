/**
 * `hyperlet refresh [SOURCE]`: asks the running daemon to look for new input now (POST
 * /sources/ID/refresh). The bearer token is read from the daemon's state directory, found the
 * way the daemon finds it (--state, default ./.hyperlet/state.db; daemon-connection.ts), so a
 * user who can read that directory (root, by default) needs nothing else.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { parseArgs } from 'node:util';
import { type DaemonConnection, daemonConnection } from './daemon-connection.js';
import { UsageError } from './usage-error.js';

/** The help text of `hyperlet refresh`. */
export const REFRESH_HELP = `Usage: hyperlet refresh [SOURCE] [--server URL] [--state PATH] [--cacert FILE]

Asks the daemon to fetch its sources now: every source it lists under /sources (git), or SOURCE.

  --server URL   the daemon's HTTP API (default http://127.0.0.1:9440)
  --state PATH   the daemon's state DB; its directory holds the API token (default ./.hyperlet/state.db)
  --cacert FILE  CA certificate (PEM) to trust for an https:// server, such as its self-signed certificate
`;

/** The answer of one API call. */
export interface ApiAnswer {
  readonly status: number;
  readonly body: string;
}

/** Sends one request over `connection` (token, CA); resolves with any HTTP answer, rejects only when none came. */
export function callApi(connection: DaemonConnection, path: string, method: string, options: { timeoutMs?: number } = {}): Promise<ApiAnswer> {
  const url = new URL(path, connection.server);
  return new Promise((resolve, reject) => {
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(url, {
      method, headers: { ...connection.headers, 'content-length': '0' },
      timeout: options.timeoutMs ?? 30_000, ...(connection.ca === undefined ? {} : { ca: connection.ca }),
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url.origin} within ${options.timeoutMs ?? 30_000} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** `hyperlet refresh`: asks the running daemon to fetch its sources now; resolves to the exit code. */
export async function refreshCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true, strict: true,
    options: { server: { type: 'string' }, state: { type: 'string' }, cacert: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help === true) {
    process.stdout.write(REFRESH_HELP);
    return 0;
  }
  if (positionals.some((id) => !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(id))) throw new UsageError('SOURCE is a source id such as git or git-2');
  const connection = daemonConnection({
    ...(values.server === undefined ? {} : { server: values.server }), ...(values.state === undefined ? {} : { state: values.state }),
    ...(values.cacert === undefined ? {} : { cacert: values.cacert }),
  });
  const origin = connection.server.origin;
  let ids = positionals;
  if (ids.length === 0) {
    const listed = await callApi(connection, '/sources', 'GET').catch((err: unknown) => {
      throw new Error(`cannot reach the daemon at ${origin}: ${(err as Error).message}`, { cause: err });
    });
    if (listed.status !== 200) throw new Error(`cannot list the daemon's sources: ${listed.status} ${listed.body.trim()}`);
    ids = (JSON.parse(listed.body) as { items: { id: string }[] }).items.map((i) => i.id);
    if (ids.length === 0) {
      process.stderr.write('the daemon has no source that refreshes (dir sources watch their directory)\n');
      return 0;
    }
  }
  let failed = 0;
  for (const id of ids) {
    let answer: ApiAnswer;
    try {
      answer = await callApi(connection, `/sources/${encodeURIComponent(id)}/refresh`, 'POST');
    } catch (err) {
      throw new Error(`cannot reach the daemon at ${origin}: ${(err as Error).message}`, { cause: err });
    }
    if (answer.status === 202) process.stdout.write(`${id}: refreshing\n`);
    else {
      failed++;
      const error = (JSON.parse(answer.body || '{}') as { error?: string }).error ?? answer.body.trim();
      process.stderr.write(`${id}: ${answer.status}: ${error}\n`);
    }
  }
  return failed === 0 ? 0 : 1;
}
