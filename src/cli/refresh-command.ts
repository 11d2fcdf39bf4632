/**
 * `hyperlet refresh [SOURCE]`: asks the running daemon to look for new input now (POST
 * /sources/ID/refresh). The bearer token is read from the daemon's state directory, found the
 * way the daemon finds it (--state, default ./.hyperlet/state.db), so a user who can read that
 * directory (root, by default) needs nothing else.
 */
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { parseArgs } from 'node:util';
import { DEFAULT_STATE_PATH, readApiToken } from '../state/state-dir.js';
import { UsageError } from './usage-error.js';

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

/** Sends one request with the bearer token; resolves with any HTTP answer, rejects only when none came. */
export function callApi(url: URL, method: string, token: string, options: { ca?: Buffer; timeoutMs?: number } = {}): Promise<ApiAnswer> {
  return new Promise((resolve, reject) => {
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(url, {
      method, headers: { authorization: `Bearer ${token}`, 'content-length': '0' },
      timeout: options.timeoutMs ?? 30_000, ...(options.ca === undefined ? {} : { ca: options.ca }),
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

export async function refreshCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true, strict: true,
    options: { server: { type: 'string' }, state: { type: 'string' }, cacert: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help === true) {
    process.stdout.write(REFRESH_HELP);
    return 0;
  }
  let base: URL;
  try {
    base = new URL(values.server ?? 'http://127.0.0.1:9440');
  } catch {
    throw new UsageError(`--server: ${JSON.stringify(values.server)} is not a URL`);
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new UsageError('--server: use an http:// or https:// URL');
  const token = readApiToken(values.state ?? DEFAULT_STATE_PATH);
  const ca = values.cacert === undefined ? undefined : readFileSync(values.cacert);
  const caOption = ca === undefined ? {} : { ca };
  let ids = positionals;
  if (ids.length === 0) {
    const listed = await callApi(new URL('/sources', base), 'GET', token, caOption).catch((err: unknown) => {
      throw new Error(`cannot reach the daemon at ${base.origin}: ${(err as Error).message}`, { cause: err });
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
    const url = new URL(`/sources/${encodeURIComponent(id)}/refresh`, base);
    let answer: ApiAnswer;
    try {
      answer = await callApi(url, 'POST', token, caOption);
    } catch (err) {
      throw new Error(`cannot reach the daemon at ${base.origin}: ${(err as Error).message}`, { cause: err });
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
