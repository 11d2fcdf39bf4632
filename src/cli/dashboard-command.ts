/**
 * `hyperlet dashboard`: prints the address of the daemon's dashboard with the API token in the
 * fragment (`#token=...`), which the browser never sends to any server: the page keeps it for
 * this tab and removes it from the address bar. Without the token the page shows everything but
 * offers no actions.
 */
import { parseArgs } from 'node:util';
import { daemonConnection } from './daemon-connection.js';

/** `hyperlet dashboard --help`. */
export const DASHBOARD_HELP = `Usage: hyperlet dashboard [--server URL] [--state PATH]

Prints the dashboard's address, with the API token (read from the daemon's state directory) in the
part after '#', which browsers keep to themselves. Open it in a browser on this machine.
`;

/** `hyperlet dashboard`: prints the page's address, with the API token after '#' when it can be read. */
export function dashboardCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args, allowPositionals: false, strict: true,
    options: { server: { type: 'string' }, state: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help === true) {
    process.stdout.write(DASHBOARD_HELP);
    return Promise.resolve(0);
  }
  const connection = daemonConnection(values);
  const token = connection.headers.authorization?.replace(/^Bearer /, '');
  const url = new URL('/', connection.server);
  if (token === undefined) {
    process.stderr.write('no API token readable (pass the daemon\'s --state): the page will show everything but offer no actions\n');
  } else {
    url.hash = `token=${token}`;
  }
  process.stdout.write(`${url.toString()}\n`);
  return Promise.resolve(0);
}
