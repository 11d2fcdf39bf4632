/** The `hyperlet` command: dispatches to one command module per verb. */
import { isUsageError } from './usage-error.js';

/** How the user called us: "hyperlet", or "kubectl hyperlet" through the kubectl plugin (bin/kubectl-hyperlet). */
const NAME = process.env.HYPERLET_COMMAND_NAME ?? 'hyperlet';

const HELP = `Usage: ${NAME} COMMAND [flags]

Declarative manager for LXC containers and libvirt virtual machines.

Commands:
  run                 run the daemon (see hyperlet run --help)
  get KIND [NAME]     list containers (ct) or vms from the state DB  [-o table|wide|json|yaml] [--phase P] [-l k=v] [--limit N --continue T]
  get KIND [NAME] -w  the same from the daemon, then every change as it happens  [--server URL]
  get sources         per source: last applied and latest revisions, and why the latest is not applied
  describe KIND NAME  one object in detail, with its conditions and audit events
  diff -f PATH        what would change on this host for these files (exit 0: nothing, 1: changes)  [--policy FILE]
  validate -f PATH    check files or directories (exit 0: valid, 1: invalid)  [--policy FILE: the policy too,
                      and the objects against it]
  crds [--out DIR]    the CustomResourceDefinitions, generated from the schemas
  logs NAME [-f]      a container's or VM's console log (-f follows, across rotation)  [-n NS] [--kind ct|vm] [--lxcpath PATH]
  console NAME        attach to a VM's serial console or a container's console; Ctrl-] detaches
                      [-n NS] [--kind ct|vm] [--escape ^X] [--force] [--lxcpath PATH]
  exec NAME -- CMD    run CMD in a container; its exit code is ours  [-n NS] [--lxcpath PATH]
  wait KIND NAME...   until objects meet a condition, with progress  [--for condition=Ready|phase=P|delete] [--timeout D]
  reboot KIND NAME    reboot a VM once, through the daemon (a reboot-request the reconcile loop acts on)
  snapshot KIND NAME [SNAPSHOT]
                      take a one-off snapshot, through the daemon (default name snap-UTCTIME)  [--wait]
  restore KIND NAME SNAPSHOT
                      stop, restore the snapshot, bring back to the declared spec, through the daemon  [--wait]
  backup KIND NAME --to FILE
                      a portable archive (tar + zstd, checksummed) of the instance, through the daemon  [--compression gzip]
  restore --from FILE [--as NAME]
                      a stopped instance from an archive, through the daemon; prints the object to declare for it
  dashboard           the dashboard's address, with the API token for actions  [--server URL] [--state PATH]
  completion SHELL    the completion script for bash or zsh  (source <(${NAME} completion bash))
  refresh [SOURCE]    ask the daemon to fetch its git sources now (uses the API token in the state dir)
  scheduler           run only the leader-elected scheduler and node lifecycle check (see hyperlet scheduler --help)
  drain NODE          mark a HypervisorNode unschedulable; what the scheduler placed there moves elsewhere  [--kubeconfig PATH]
  uncordon NODE       make a drained HypervisorNode schedulable again  [--kubeconfig PATH]
`;

type Command = (args: string[]) => Promise<number>;

/**
 * Each command's module, loaded only when that command runs: completion and short commands
 * start without loading the daemon (providers, the Kubernetes client).
 */
export const COMMANDS: Record<string, () => Promise<Command>> = {
  run: async () => (await import('./run-command.js')).runCommand,
  get: async () => (await import('./get-command.js')).getCommand,
  describe: async () => (await import('./get-command.js')).describeCommand,
  diff: async () => (await import('./diff-command.js')).diffCommand,
  validate: async () => (await import('./validate-command.js')).validateCommand,
  logs: async () => (await import('./container-commands.js')).logsCommand,
  exec: async () => (await import('./container-commands.js')).execCommand,
  console: async () => (await import('./console-command.js')).consoleCommand,
  crds: async () => (await import('./crds-command.js')).crdsCommand,
  wait: async () => (await import('./wait-command.js')).waitCommand,
  completion: async () => (await import('./completion-command.js')).completionCommand,
  reboot: async () => (await import('./action-command.js')).actionCommand('reboot'),
  restore: async () => {
    const { isRestoreFromFile, restoreFromCommand } = await import('./backup-command.js');
    const fromSnapshot = (await import('./action-command.js')).actionCommand('restore');
    return (args) => (isRestoreFromFile(args) ? restoreFromCommand(args) : fromSnapshot(args));
  },
  backup: async () => (await import('./backup-command.js')).backupCommand,
  snapshot: async () => (await import('./action-command.js')).actionCommand('snapshot'),
  dashboard: async () => (await import('./dashboard-command.js')).dashboardCommand,
  refresh: async () => (await import('./refresh-command.js')).refreshCommand,
  scheduler: async () => (await import('./scheduler-command.js')).schedulerCommand,
  drain: async () => (await import('./drain-command.js')).cordonCommand(true),
  uncordon: async () => (await import('./drain-command.js')).cordonCommand(false),
  __complete: async () => (await import('./completion-command.js')).completeCommand,
};

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(HELP);
    return command === undefined ? 2 : 0;
  }
  const load = COMMANDS[command];
  if (load === undefined) {
    process.stderr.write(`${NAME}: unknown command ${JSON.stringify(command)}\n\n${HELP}`);
    return 2;
  }
  try {
    return await (await load())(rest);
  } catch (err) {
    const usage = isUsageError(err) || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true;
    process.stderr.write(`${NAME} ${command}: ${(err as Error).message}\n`);
    return usage ? 2 : 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
