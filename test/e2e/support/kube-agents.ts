/**
 * Per-node agents for the fleet e2e files: each runs `hyperlet run --source kube --node NODE` as a
 * child process with its own lxcpath and state under a directory of the test, logging to
 * DIR/agent.log (appended across restarts).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, createWriteStream, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './kube-testenv.js';

/** One agent: its node, its directory and lxcpath, and its process while it runs. */
export interface KubeAgent {
  readonly node: string;
  readonly dir: string;
  readonly lxcpath: string;
  child?: ChildProcess;
  exited?: Promise<number | null>;
}

/** An agent for each of `nodes`, with directories under `root` that unprivileged containers can pass (0711). */
export function makeKubeAgents(root: string, nodes: readonly string[]): KubeAgent[] {
  return nodes.map((node) => {
    const dir = join(root, node);
    mkdirSync(join(dir, 'lxc'), { recursive: true, mode: 0o711 });
    chmodSync(dir, 0o711);
    return { node, dir, lxcpath: join(dir, 'lxc') };
  });
}

/** Starts `a` with `hyperlet run` and the given flags, after its own --node, --lxcpath and --state. */
export function startKubeAgent(a: KubeAgent, flags: readonly string[]): void {
  const log = createWriteStream(join(a.dir, 'agent.log'), { flags: 'a' });
  a.child = spawn(process.execPath, [join(REPO_ROOT, 'bin/hyperlet.js'), 'run', '--source', 'kube', '--node', a.node,
    '--lxcpath', a.lxcpath, '--state', join(a.dir, 'state', 'state.db'), ...flags], { stdio: ['ignore', 'pipe', 'pipe'] });
  a.child.stdout?.pipe(log);
  a.child.stderr?.pipe(log);
  const child = a.child;
  a.exited = new Promise((r) => child.once('exit', (code) => r(code)));
}

/** SIGTERM, then SIGKILL after 40 s; resolves to the exit code (undefined: never started, or killed). */
export async function stopKubeAgent(a: KubeAgent): Promise<number | null | undefined> {
  if (a.child === undefined) return undefined;
  if (a.child.exitCode === null) a.child.kill('SIGTERM');
  const code = await Promise.race([a.exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 40_000))]);
  if (code === 'hung') {
    a.child.kill('SIGKILL');
    return undefined;
  }
  return code;
}
