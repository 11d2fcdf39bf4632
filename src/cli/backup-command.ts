/**
 * `hyperlet backup KIND NAME --to FILE` and `hyperlet restore --from FILE [--as NAME]`: through
 * the daemon's authenticated API (server/backup-api.ts), like snapshot and restore. The daemon
 * does the work because it owns what a backup touches: the declared object, the provider (its
 * lxcpath, its libvirt connection), the host policy on the path, and the Event on the object.
 * The CLI and the daemon share the host, so FILE is made absolute here and read or written there.
 * Progress shows for long runs (cli/progress.ts); exit 0 when done, 1 on a refusal or failure.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { dump } from 'js-yaml';
import { KINDS } from '../api/v1alpha1/group.js';
import { type DaemonConnection, daemonConnection } from './daemon-connection.js';
import { kindFromArg } from './get-command.js';
import { Progress } from './progress.js';
import { UsageError } from './usage-error.js';

const BACKUP_USAGE = 'Usage: hyperlet backup KIND NAME --to FILE [--compression zstd|gzip] [-n NS] [--server URL] [--state PATH] [--cacert FILE]';
const RESTORE_USAGE = 'Usage: hyperlet restore --from FILE [--as NAME] [--pool POOL] [-n NS] [--server URL] [--state PATH] [--cacert FILE]';

const MiB = 1024 * 1024;

/** One line of the daemon's answer stream. */
interface RunLine {
  readonly progress?: number;
  readonly done?: Record<string, unknown>;
  readonly error?: string;
  readonly reason?: string;
}

/**
 * POSTs `path` and reads the JSON-lines answer, calling `onLine` for each; resolves to the last
 * line, or rejects with the daemon's refusal (`{error}` with a 4xx) or a broken stream.
 */
function streamRun(connection: DaemonConnection, path: string, onLine: (line: RunLine) => void): Promise<RunLine> {
  const url = new URL(path, connection.server);
  return new Promise((resolvePromise, reject) => {
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(url, {
      method: 'POST', headers: { ...connection.headers, 'content-length': '0' }, ...(connection.ca === undefined ? {} : { ca: connection.ca }),
    }, (res) => {
      let buffered = '';
      let last: RunLine | undefined;
      res.setEncoding('utf8');
      res.on('data', (text: string) => {
        buffered += text;
        for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
          const raw = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          if (raw.trim() === '') continue;
          last = JSON.parse(raw) as RunLine;
          if (res.statusCode === 200) onLine(last);
        }
      });
      res.on('end', () => {
        if (res.statusCode !== 200) {
          reject(new Error(`${res.statusCode ?? 0}: ${last?.error ?? buffered.trim()}`));
          return;
        }
        if (last === undefined || (last.done === undefined && last.error === undefined)) {
          reject(new Error('the daemon\'s answer ended before the outcome'));
          return;
        }
        resolvePromise(last);
      });
      res.on('error', reject);
    });
    req.on('error', (err) => reject(new Error(`cannot reach the daemon at ${url.origin}: ${err.message}`, { cause: err })));
    req.end();
  });
}

/** Runs the daemon's job at `path` with a progress line; prints the outcome; resolves to the exit code. */
async function runWithProgress(connection: DaemonConnection, path: string, label: string): Promise<{ code: number; done?: Record<string, unknown> }> {
  const progress = new Progress({ stream: process.stderr, label, unit: 'MiB' });
  let outcome: RunLine;
  try {
    outcome = await streamRun(connection, path, (line) => {
      if (line.progress !== undefined) progress.update(Math.floor(line.progress / MiB));
    });
  } catch (err) {
    progress.finish('refused');
    process.stderr.write(`${label}: ${(err as Error).message}\n`);
    return { code: 1 };
  }
  if (outcome.error !== undefined) {
    progress.finish(`failed (${outcome.reason ?? 'Failed'})`);
    process.stderr.write(`${label}: ${outcome.error}\n`);
    return { code: 1 };
  }
  progress.finish('done');
  return { code: 0, ...(outcome.done === undefined ? {} : { done: outcome.done }) };
}

const CONNECTION_OPTIONS = {
  namespace: { type: 'string', short: 'n' }, server: { type: 'string' }, state: { type: 'string' }, cacert: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

function connect(values: { server?: string; state?: string; cacert?: string }): DaemonConnection {
  const connection = daemonConnection(values);
  if (connection.headers.authorization === undefined) throw new UsageError('this needs the API token: pass the daemon\'s --state (its directory holds api-token)');
  return connection;
}

/** `hyperlet backup KIND NAME --to FILE`. */
export async function backupCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true, strict: true,
    options: { ...CONNECTION_OPTIONS, to: { type: 'string' }, compression: { type: 'string' } },
  });
  if (values.help === true) {
    process.stdout.write(`${BACKUP_USAGE}\n`);
    return 0;
  }
  const kind = kindFromArg(positionals[0]);
  const name = positionals[1];
  if (name === undefined || positionals.length > 2) throw new UsageError('backup needs KIND NAME');
  if (values.to === undefined) throw new UsageError('backup needs --to FILE');
  const namespace = values.namespace ?? 'default';
  const query = new URLSearchParams({ to: resolve(values.to) });
  if (values.compression !== undefined) query.set('compression', values.compression);
  const path = `/api/v1/objects/${encodeURIComponent(kind)}/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}/backup?${query.toString()}`;
  const { code, done } = await runWithProgress(connect(values), path, `backup ${KINDS[kind].singular} ${namespace}/${name}`);
  if (done !== undefined) {
    process.stdout.write(`${String(done.file)}: ${String(done.bytes)} bytes, ${String(done.compressedBytes)} compressed, sha256 ${String(done.sha256)}\n`);
  }
  return code;
}

/** Whether `args` ask for a restore from a file (`--from`), not of a snapshot. */
export function isRestoreFromFile(args: readonly string[]): boolean {
  return args.some((a) => a === '--from' || a.startsWith('--from='));
}

/** `hyperlet restore --from FILE [--as NAME]`: prints the object to declare for the restored instance. */
export async function restoreFromCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true, strict: true,
    options: { ...CONNECTION_OPTIONS, from: { type: 'string' }, as: { type: 'string' }, pool: { type: 'string' } },
  });
  if (values.help === true) {
    process.stdout.write(`${RESTORE_USAGE}\n`);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError('restore --from takes no KIND NAME: the archive says its kind; name it with --as');
  if (values.from === undefined) throw new UsageError('restore --from needs FILE');
  const query = new URLSearchParams({ from: resolve(values.from) });
  if (values.as !== undefined) query.set('as', values.as);
  if (values.namespace !== undefined) query.set('namespace', values.namespace);
  if (values.pool !== undefined) query.set('pool', values.pool);
  const { code, done } = await runWithProgress(connect(values), `/api/v1/restore?${query.toString()}`, `restore ${values.from}`);
  if (done !== undefined) {
    process.stderr.write(`restored ${String(done.kind)} ${String(done.hostName)} (stopped, not yet managed); declare this object to manage it:\n`);
    process.stdout.write(dump(done.object, { lineWidth: 140 }));
  }
  return code;
}
