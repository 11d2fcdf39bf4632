/** The `hyperlet` command: dispatches to one command module per verb. */
import { execCommand, logsCommand } from './container-commands.js';
import { crdsCommand } from './crds-command.js';
import { describeCommand, getCommand } from './get-command.js';
import { diffCommand } from './diff-command.js';
import { refreshCommand } from './refresh-command.js';
import { runCommand } from './run-command.js';
import { isUsageError } from './usage-error.js';
import { validateCommand } from './validate-command.js';

const HELP = `Usage: hyperlet COMMAND [flags]

Declarative manager for LXC containers and libvirt virtual machines.

Commands:
  run                 run the daemon (see hyperlet run --help)
  get KIND [NAME]     list containers (ct) or vms from the state DB  [-o table|wide|json|yaml] [--phase P] [-l k=v] [--limit N --continue T]
  get sources         per source: last applied and latest revisions, and why the latest is not applied
  describe KIND NAME  one object in detail, with its conditions and audit events
  diff -f PATH        what would change on this host for these files (exit 0: nothing, 1: changes)
  validate -f PATH    check files or directories (exit 0: valid, 1: invalid)
  crds [--out DIR]    the CustomResourceDefinitions, generated from the schemas
  logs NAME [-f]      a container's console log  [-n NS] [--lxcpath PATH]
  exec NAME -- CMD    run CMD in a container; its exit code is ours  [-n NS] [--lxcpath PATH]
  refresh [SOURCE]    ask the daemon to fetch its git sources now (uses the API token in the state dir)
`;

/** Every CLI command by name; each takes its arguments and resolves to an exit code. */
export const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  run: runCommand,
  get: getCommand,
  describe: describeCommand,
  diff: diffCommand,
  validate: validateCommand,
  logs: logsCommand,
  exec: execCommand,
  crds: crdsCommand,
  refresh: refreshCommand,
};

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(HELP);
    return command === undefined ? 2 : 0;
  }
  const handler = COMMANDS[command];
  if (handler === undefined) {
    process.stderr.write(`hyperlet: unknown command ${JSON.stringify(command)}\n\n${HELP}`);
    return 2;
  }
  try {
    return await handler(rest);
  } catch (err) {
    const usage = isUsageError(err) || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true;
    process.stderr.write(`hyperlet ${command}: ${(err as Error).message}\n`);
    return usage ? 2 : 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
