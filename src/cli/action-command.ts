/**
 * `hyperlet reboot KIND NAME`: asks the daemon for an action through its API (POST
 * /api/v1/objects/KIND/NAMESPACE/NAME/ACTION, with the token), the same route the dashboard's
 * buttons use. The daemon lays the matching request annotation over the object; the reconcile
 * loop acts on it once.
 */
import { parseArgs } from 'node:util';
import { KINDS } from '../api/v1alpha1/group.js';
import { daemonConnection } from './daemon-connection.js';
import { kindFromArg } from './get-command.js';
import { callApi } from './refresh-command.js';
import { UsageError } from './usage-error.js';

/** The command for `action` ("reboot"). */
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
      process.stdout.write(`Usage: hyperlet ${action} KIND NAME [-n NS] [--server URL] [--state PATH] [--cacert FILE]\n`);
      return 0;
    }
    const kind = kindFromArg(positionals[0]);
    const name = positionals[1];
    if (name === undefined || positionals.length > 2) throw new UsageError(`${action} needs KIND NAME`);
    const namespace = values.namespace ?? 'default';
    const connection = daemonConnection(values);
    if (connection.headers.authorization === undefined) throw new UsageError('this needs the API token: pass the daemon\'s --state (its directory holds api-token)');
    const path = `/api/v1/objects/${encodeURIComponent(kind)}/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}/${action}`;
    const answer = await callApi(connection, path, 'POST').catch((err: unknown) => {
      throw new Error(`cannot reach the daemon at ${connection.server.origin}: ${(err as Error).message}`, { cause: err });
    });
    if (answer.status !== 202) {
      const error = (JSON.parse(answer.body || '{}') as { error?: string }).error ?? answer.body.trim();
      process.stderr.write(`${KINDS[kind].singular} ${namespace}/${name}: ${answer.status}: ${error}\n`);
      return 1;
    }
    const { value } = JSON.parse(answer.body) as { value: string };
    process.stdout.write(`${KINDS[kind].singular} ${namespace}/${name}: ${action} requested (${value})\n`);
    return 0;
  };
}
