/**
 * `hyperlet reboot KIND NAME`, `hyperlet restore KIND NAME SNAPSHOT` and `hyperlet snapshot KIND
 * NAME [SNAPSHOT]`: ask the daemon for an action through its API (POST
 * /api/v1/objects/KIND/NAMESPACE/NAME/ACTION[?snapshot=NAME], with the token), the same route the
 * dashboard's buttons use. The daemon lays the matching request annotation over the object; the
 * reconcile loop acts on it once, and records what it did in the audit log and as an Event. With
 * --wait, restore and snapshot follow the daemon's event stream (opened before the request, so
 * nothing is missed) until that Event comes, print its message and exit 0, or 1 on a failure or
 * at the timeout.
 */
import { parseArgs } from 'node:util';
import { KINDS } from '../api/v1alpha1/group.js';
import type { WatchEvent } from '../server/watch-stream.js';
import { systemClock } from '../shared/clock.js';
import { type DaemonConnection, daemonConnection } from './daemon-connection.js';
import { readEventStream } from './event-stream.js';
import { kindFromArg } from './get-command.js';
import { callApi } from './refresh-command.js';
import { UsageError, parseDurationMs } from './usage-error.js';

/** Whether an action takes a SNAPSHOT word after KIND NAME, and whether it must. */
type SnapshotWord = 'none' | 'required' | 'optional';

const SNAPSHOT_WORD: Readonly<Record<string, SnapshotWord>> = { reboot: 'none', restore: 'required', snapshot: 'optional' };

/** What each action says it asked for, given the annotation value the daemon set. */
const REQUESTED: Readonly<Record<string, (value: string) => string>> = {
  reboot: (value) => `reboot requested (${value})`,
  restore: (value) => `restore of snapshot ${value.split('@')[0] ?? value} requested (${value}); the declared spec is kept`,
  snapshot: (value) => `snapshot ${value} requested`,
};

/** The usage line of `action`. */
function usage(action: string): string {
  const word = SNAPSHOT_WORD[action] ?? 'none';
  const snapshot = word === 'required' ? ' SNAPSHOT' : word === 'optional' ? ' [SNAPSHOT]' : '';
  const wait = word === 'none' ? '' : ' [--wait] [--timeout D]';
  return `Usage: hyperlet ${action} KIND NAME${snapshot}${wait} [-n NS] [--server URL] [--state PATH] [--cacert FILE]`;
}

/**
 * Whether `event` ends a wait for `action` whose request annotation got `value`: 'done' for the
 * Event of that request (Restored naming it, SnapshotTaken of that snapshot), 'failed' for a
 * Warning that names its snapshot; undefined for any other event.
 */
export function actionOutcome(action: string, value: string, event: Pick<WatchEvent, 'type' | 'reason' | 'message'>): 'done' | 'failed' | undefined {
  const snapshot = value.split('@')[0] ?? value;
  // The name as a whole word of DNS-label characters ("a" is not in "a-1").
  if (event.type === 'Warning') return new RegExp(`(^|[^a-z0-9-])${snapshot}($|[^a-z0-9-])`).test(event.message) ? 'failed' : undefined;
  if (action === 'restore' && event.reason === 'Restored' && event.message.includes(`(request ${value})`)) return 'done';
  if (action === 'snapshot' && event.reason === 'SnapshotTaken' && event.message.startsWith(`Took snapshot ${snapshot} `)) return 'done';
  return undefined;
}

/**
 * The events of one object from the daemon's stream; resolves once the daemon listens for them
 * (its SYNCED message), so the request made next cannot be missed. `close` ends it.
 */
async function objectEvents(
  connection: DaemonConnection, kind: string, namespace: string, name: string,
): Promise<{ events: AsyncGenerator<WatchEvent>; close: () => void }> {
  const url = new URL('/api/v1/watch', connection.server);
  url.searchParams.set('kind', kind);
  url.searchParams.set('namespace', namespace);
  url.searchParams.set('name', name);
  url.searchParams.set('events', 'true');
  const abort = new AbortController();
  const stream = readEventStream(url.toString(), {
    signal: abort.signal, headers: connection.headers, ...(connection.ca === undefined ? {} : { ca: connection.ca }),
  });
  for (;;) {
    const next = await stream.next();
    if (next.done === true) throw new Error(`cannot follow the daemon's events at ${connection.server.origin}: the stream ended before it was synced`);
    if (next.value.event === 'SYNCED') break;
  }
  async function* events(): AsyncGenerator<WatchEvent> {
    for (;;) {
      const next = await stream.next();
      if (next.done === true) return;
      if (next.value.event !== 'EVENT') continue;
      const { event } = JSON.parse(next.value.data) as { event?: WatchEvent };
      if (event !== undefined) yield event;
    }
  }
  return { events: events(), close: () => abort.abort() };
}

/** The command for `action` ("reboot", "restore" or "snapshot"). */
export function actionCommand(action: string): (args: string[]) => Promise<number> {
  return async (args) => {
    const { values, positionals } = parseArgs({
      args, allowPositionals: true, strict: true,
      options: {
        namespace: { type: 'string', short: 'n' }, server: { type: 'string' }, state: { type: 'string' }, cacert: { type: 'string' },
        wait: { type: 'boolean' }, timeout: { type: 'string' }, help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help === true) {
      process.stdout.write(`${usage(action)}\n`);
      return 0;
    }
    const word = SNAPSHOT_WORD[action] ?? 'none';
    const kind = kindFromArg(positionals[0]);
    const name = positionals[1];
    const snapshot = positionals[2];
    const most = word === 'none' ? 2 : 3;
    if (name === undefined || positionals.length > most || (word === 'required' && snapshot === undefined)) {
      throw new UsageError(`${action} needs KIND NAME${word === 'required' ? ' SNAPSHOT' : word === 'optional' ? ' [SNAPSHOT]' : ''}`);
    }
    if (word === 'none' && (values.wait === true || values.timeout !== undefined)) throw new UsageError(`${action} takes no --wait`);
    const timeoutMs = values.timeout === undefined ? 300_000 : parseDurationMs('--timeout', values.timeout);
    const namespace = values.namespace ?? 'default';
    const connection = daemonConnection(values);
    if (connection.headers.authorization === undefined) throw new UsageError('this needs the API token: pass the daemon\'s --state (its directory holds api-token)');
    const query = snapshot === undefined ? '' : `?snapshot=${encodeURIComponent(snapshot)}`;
    const path = `/api/v1/objects/${encodeURIComponent(kind)}/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}/${action}${query}`;
    // Opened before the request, so its Event cannot come before we listen.
    const watch = values.wait === true ? await objectEvents(connection, kind, namespace, name) : undefined;
    const answer = await callApi(connection, path, 'POST').catch((err: unknown) => {
      watch?.close();
      throw new Error(`cannot reach the daemon at ${connection.server.origin}: ${(err as Error).message}`, { cause: err });
    });
    if (answer.status !== 202) {
      watch?.close();
      const error = (JSON.parse(answer.body || '{}') as { error?: string }).error ?? answer.body.trim();
      process.stderr.write(`${KINDS[kind].singular} ${namespace}/${name}: ${answer.status}: ${error}\n`);
      return 1;
    }
    const { value } = JSON.parse(answer.body) as { value: string };
    const said = REQUESTED[action]?.(value) ?? `${action} requested (${value})`;
    process.stdout.write(`${KINDS[kind].singular} ${namespace}/${name}: ${said}\n`);
    if (watch === undefined) return 0;
    return awaitOutcome(action, value, watch, timeoutMs, `${KINDS[kind].singular} ${namespace}/${name}`);
  };
}

/** Reads `watch` until the request's outcome or `timeoutMs`; prints it; resolves to the exit code. */
async function awaitOutcome(
  action: string, value: string, watch: { events: AsyncGenerator<WatchEvent>; close: () => void }, timeoutMs: number, what: string,
): Promise<number> {
  let timedOut = false;
  const timer = systemClock.setTimeout(() => {
    timedOut = true;
    watch.close();
  }, timeoutMs);
  try {
    for await (const event of watch.events) {
      const outcome = actionOutcome(action, value, event);
      if (outcome === undefined) continue;
      const line = `${what}: ${event.reason}: ${event.message}\n`;
      if (outcome === 'done') {
        process.stdout.write(line);
        return 0;
      }
      process.stderr.write(line);
      return 1;
    }
    process.stderr.write(timedOut ? `${what}: no outcome of ${action} ${value} within ${timeoutMs} ms\n` : `${what}: the daemon's event stream ended\n`);
    return 1;
  } finally {
    systemClock.clearTimeout(timer);
    watch.close();
  }
}
