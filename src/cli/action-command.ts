/**
 * `hyperlet reboot KIND NAME`, `hyperlet restore KIND NAME SNAPSHOT` and `hyperlet snapshot KIND
 * NAME [SNAPSHOT]`: ask the daemon for an action through its API (POST
 * /api/v1/objects/KIND/NAMESPACE/NAME/ACTION[?snapshot=NAME], with the token), the same route the
 * dashboard's buttons use. The daemon lays the matching request annotation over the object; the
 * reconcile loop acts on it once, and records what it did in the audit log and as an Event.
 */
import { parseArgs } from 'node:util';
import { KINDS } from '../api/v1alpha1/group.js';
import { daemonConnection } from './daemon-connection.js';
import { kindFromArg } from './get-command.js';
import { callApi } from './refresh-command.js';
import { UsageError } from './usage-error.js';

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
  return `Usage: hyperlet ${action} KIND NAME${snapshot} [-n NS] [--server URL] [--state PATH] [--cacert FILE]`;
}

/** The command for `action` ("reboot", "restore" or "snapshot"). */
export function actionCommand(action: string): (args: string[]) => Promise<number> {
  return async (args) => {
    const { values, positionals } = parseArgs({
      args, allowPositionals: true, strict: true,
      options: {
        namespace: { type: 'string', short: 'n' }, server: { type: 'string' }, state: { type: 'string' }, cacert: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
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
    const namespace = values.namespace ?? 'default';
    const connection = daemonConnection(values);
    if (connection.headers.authorization === undefined) throw new UsageError('this needs the API token: pass the daemon\'s --state (its directory holds api-token)');
    const query = snapshot === undefined ? '' : `?snapshot=${encodeURIComponent(snapshot)}`;
    const path = `/api/v1/objects/${encodeURIComponent(kind)}/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}/${action}${query}`;
    const answer = await callApi(connection, path, 'POST').catch((err: unknown) => {
      throw new Error(`cannot reach the daemon at ${connection.server.origin}: ${(err as Error).message}`, { cause: err });
    });
    if (answer.status !== 202) {
      const error = (JSON.parse(answer.body || '{}') as { error?: string }).error ?? answer.body.trim();
      process.stderr.write(`${KINDS[kind].singular} ${namespace}/${name}: ${answer.status}: ${error}\n`);
      return 1;
    }
    const { value } = JSON.parse(answer.body) as { value: string };
    const said = REQUESTED[action]?.(value) ?? `${action} requested (${value})`;
    process.stdout.write(`${KINDS[kind].singular} ${namespace}/${name}: ${said}\n`);
    return 0;
  };
}
