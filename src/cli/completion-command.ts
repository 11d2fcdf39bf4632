/**
 * Shell completion. `hyperlet completion bash|zsh` prints a script that asks the CLI itself what
 * fits (`hyperlet __complete WORDS...`), so bash, zsh and kubectl (`kubectl_complete-hyperlet`,
 * for `kubectl hyperlet ...`) complete the same way: commands, flags, kinds, flag values, and the
 * names of objects in the state DB. Nothing fits: the shell completes file names.
 */
import { existsSync } from 'node:fs';
import { KINDS, type Kind } from '../api/v1alpha1/group.js';
import { StateDb } from '../state/state-db.js';
import { UsageError } from './usage-error.js';

/** Flags of each command, and the values some of them take. */
const FLAGS: Readonly<Record<string, readonly string[]>> = {
  run: [
    '--source', '--state', '--lxcpath', '--libvirt-uri', '--libvirt-socket', '--kinds', '--node', '--kubeconfig', '--namespace', '--http',
    '--resync', '--concurrency', '--max-per-scope', '--qps', '--burst', '--shutdown-timeout', '--log-level', '--interval', '--prune',
    '--max-prune', '--confirm', '--paused', '--notify', '--notify-secret-file', '--notify-timeout', '--notify-max-retry-delay',
    '--peer-listen', '--peer-url', '--peer-token-file', '--secrets-dir', '--console-log-size', '--image-cache', '--image-cache-max-size',
    '--leader-elect', '--scheduler', '--heartbeat', '--http-host-allow', '--tls-cert', '--tls-key', '--policy', '--help',
  ],
  get: [
    '--output', '-o', '--phase', '--selector', '-l', '--limit', '--continue', '--namespace', '-n', '--all-namespaces', '-A', '--state',
    '--watch', '-w', '--server', '--cacert',
  ],
  describe: ['--namespace', '-n', '--state'],
  wait: ['--for', '--timeout', '--all', '--selector', '-l', '--namespace', '-n', '--all-namespaces', '-A', '--server', '--state', '--cacert', '--help'],
  diff: ['-f', '--filename', '--lxcpath', '--libvirt-uri', '--state'],
  validate: ['-f', '--filename'],
  logs: ['-f', '--follow', '--namespace', '-n', '--lxcpath', '--kind'],
  exec: ['--namespace', '-n', '--lxcpath'],
  console: ['--namespace', '-n', '--lxcpath', '--kind', '--escape', '--force'],
  crds: ['--out'],
  completion: [],
  dashboard: ['--server', '--state', '--help'],
  reboot: ['--namespace', '-n', '--server', '--state', '--cacert', '--help'],
  restore: ['--namespace', '-n', '--server', '--state', '--cacert', '--wait', '--timeout', '--from', '--as', '--pool', '--help'],
  backup: ['--to', '--compression', '--namespace', '-n', '--server', '--state', '--cacert', '--help'],
  snapshot: ['--namespace', '-n', '--server', '--state', '--cacert', '--wait', '--timeout', '--help'],
  refresh: ['--server', '--state', '--cacert', '--help'],
  scheduler: [
    '--kubeconfig', '--namespace', '--lease-namespace', '--node-check', '--lease-duration', '--container-memory', '--health-listen',
    '--log-level', '--help',
  ],
  drain: ['--kubeconfig', '--help'],
  uncordon: ['--kubeconfig', '--help'],
};

const VALUES: Readonly<Record<string, readonly string[]>> = {
  '-o': ['table', 'wide', 'json', 'yaml'], '--output': ['table', 'wide', 'json', 'yaml'],
  '--for': ['condition=Ready', 'condition=Ready=false', 'phase=Running', 'phase=Stopped', 'delete'],
  '--kinds': ['Container', 'VirtualMachine', 'Container,VirtualMachine'],
  '--log-level': ['trace', 'debug', 'info', 'warn', 'error'],
  '--kind': ['ct', 'vm'],
  '--prune': ['true', 'false'], '--phase': ['Pending', 'Creating', 'Running', 'Stopped', 'Frozen', 'Paused', 'Failed', 'Deleting'],
  '--source': ['dir:', 'git:', 'kube'],
  '--compression': ['zstd', 'gzip'],
};

/** Flags that take a value (the next word is that value, not a name). */
const TAKES_VALUE = new Set([
  ...Object.keys(VALUES), '--state', '--lxcpath', '--libvirt-uri', '--libvirt-socket', '--node', '--kubeconfig', '--namespace', '-n',
  '--http', '--resync', '--concurrency', '--max-per-scope',
  '--qps', '--burst', '--shutdown-timeout', '--interval', '--max-prune', '--confirm', '--notify',
  '--notify-secret-file', '--notify-timeout', '--notify-max-retry-delay', '--selector', '-l', '--limit', '--continue', '--server',
  '--timeout', '-f', '--filename', '--out', '--cacert', '--kind', '--escape', '--peer-listen', '--peer-url', '--peer-token-file',
  '--lease-namespace', '--node-check', '--lease-duration', '--container-memory', '--health-listen', '--secrets-dir',
  '--console-log-size', '--image-cache', '--image-cache-max-size', '--heartbeat', '--http-host-allow', '--tls-cert', '--tls-key', '--policy',
  '--from', '--as', '--pool', '--to', '--compression',
]);

const KIND_WORDS = Object.values(KINDS).flatMap((k) => [k.plural, ...k.shortNames]);

/** Commands that take KIND then object names; logs and exec take container names. */
const KIND_COMMANDS = new Set(['get', 'describe', 'wait', 'reboot', 'restore', 'snapshot', 'backup']);
const CONTAINER_COMMANDS = new Set(['logs', 'exec', 'console']);

/**
 * What can come at the last word of `words` (the words after the program name, the last one
 * being completed, possibly empty). `names` lists objects of a kind (from the state DB).
 */
export function complete(words: readonly string[], names: (kind: Kind, state: string) => string[]): string[] {
  const current = words[words.length - 1] ?? '';
  const before = words.slice(0, -1);
  const command = before[0];
  const fits = (candidates: readonly string[]): string[] => candidates.filter((c) => c.startsWith(current));
  if (command === undefined) return fits([...Object.keys(FLAGS), 'help']);
  const previous = before[before.length - 1] ?? '';
  if (before.length > 1 && takesValue(command, previous)) return fits(VALUES[previous] ?? []);
  if (current.startsWith('-')) return fits(FLAGS[command] ?? []);
  if (command === 'completion') return before.length === 1 ? fits(['bash', 'zsh']) : [];
  const positionals = positionalsOf(command, before.slice(1));
  const stateAt = before.indexOf('--state');
  const state = stateAt >= 0 ? before[stateAt + 1] ?? './.hyperlet/state.db' : './.hyperlet/state.db';
  if (KIND_COMMANDS.has(command)) {
    if (positionals.length === 0) return fits(command === 'get' ? [...KIND_WORDS, 'sources'] : KIND_WORDS);
    const kind = kindOf(positionals[0] ?? '');
    return kind === undefined ? [] : fits(names(kind, state).filter((n) => !positionals.includes(n)));
  }
  if (CONTAINER_COMMANDS.has(command) && positionals.length === 0) return fits(names('Container', state));
  return [];
}

/** Whether `flag` of `command` takes a value (logs -f follows; elsewhere -f names a file). */
function takesValue(command: string, flag: string): boolean {
  return flag === '-f' ? command !== 'logs' : TAKES_VALUE.has(flag);
}

/** The words of `args` that are not flags or flag values. */
function positionalsOf(command: string, args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? '';
    if (a === '--') break;
    if (a.startsWith('-')) {
      if (takesValue(command, a)) i++;
      continue;
    }
    out.push(a);
  }
  return out;
}

function kindOf(word: string): Kind | undefined {
  for (const [kind, k] of Object.entries(KINDS) as [Kind, (typeof KINDS)[Kind]][]) {
    if ([kind.toLowerCase(), k.plural, k.singular, ...k.shortNames].includes(word.toLowerCase())) return kind;
  }
  return undefined;
}

/** Names of objects of `kind` in the state DB at `state`; none when there is no DB or it cannot be read. */
export function namesInState(kind: Kind, state: string): string[] {
  if (!existsSync(state)) return [];
  let db: StateDb | undefined;
  try {
    db = new StateDb(state, { readonly: true });
    return [...new Set(db.listObjects().filter((r) => r.kind === kind).map((r) => r.name))].sort();
  } catch {
    return []; // completion must never print an error into the user's command line
  } finally {
    db?.close();
  }
}

/** `hyperlet __complete [--cobra] WORDS...`: candidates, one per line (cobra: then `:DIRECTIVE`). */
export function completeCommand(args: string[]): Promise<number> {
  const cobra = args[0] === '--cobra';
  const words = cobra ? args.slice(1) : args;
  const candidates = complete(words.length === 0 ? [''] : words, namesInState);
  process.stdout.write(candidates.map((c) => `${c}\n`).join(''));
  // Cobra's directives (kubectl plugins): 4 = no file completion, 0 = default (files).
  if (cobra) process.stdout.write(`:${candidates.length > 0 ? 4 : 0}\n`);
  return Promise.resolve(0);
}

const BASH = `# bash completion for hyperlet. Load it with:  source <(hyperlet completion bash)
# or install it:  hyperlet completion bash > /etc/bash_completion.d/hyperlet
_hyperlet() {
  local IFS=$'\\n'
  COMPREPLY=($("\${COMP_WORDS[0]}" __complete "\${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _hyperlet hyperlet
`;

const ZSH = `#compdef hyperlet
# zsh completion for hyperlet. Load it with:  source <(hyperlet completion zsh)
# or install it as _hyperlet in a directory of your fpath.
_hyperlet() {
  local -a candidates
  candidates=("\${(@f)$("\${words[1]}" __complete "\${(@)words[2,CURRENT]}" 2>/dev/null)}")
  candidates=("\${(@)candidates:#}")
  if (( \${#candidates} == 0 )); then
    _files
    return
  fi
  compadd -a candidates
}
if (( $+functions[compdef] )); then
  compdef _hyperlet hyperlet
fi
`;

/** `hyperlet completion bash|zsh`: the script for that shell. */
export function completionCommand(args: string[]): Promise<number> {
  const shell = args[0];
  if (shell === 'bash') process.stdout.write(BASH);
  else if (shell === 'zsh') process.stdout.write(ZSH);
  else throw new UsageError(`completion needs bash or zsh (is ${JSON.stringify(shell ?? '')})`);
  return Promise.resolve(0);
}
