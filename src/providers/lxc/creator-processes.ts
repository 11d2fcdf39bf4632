/**
 * Processes still creating a container: an lxc-create, or the template script it started, left
 * running by a hyperlet that was killed mid-create. They must be gone before the partial
 * container is removed, or they write it back behind the cleanup.
 */
import { readdir, readFile } from 'node:fs/promises';
import type { Clock } from '../../shared/clock.js';
import { systemClock } from '../../shared/clock.js';

/**
 * True when `argv` is creating the container `name` under `lxcpath`: lxc-create with both in its
 * arguments, or a template script called with `--path=LXCPATH/NAME` (how lxc-create calls them).
 */
export function isCreatorOf(argv: readonly string[], lxcpath: string, name: string): boolean {
  const dir = `${lxcpath.replace(/\/+$/, '')}/${name}`;
  if (argv.some((a) => a === `--path=${dir}` || a === `--rootfs=${dir}/rootfs`)) return true;
  const tool = argv[0] ?? '';
  return (tool === 'lxc-create' || tool.endsWith('/lxc-create')) && argv.includes(lxcpath) && argv.includes(name);
}

/** Pids of the processes creating `name` under `lxcpath`, from /proc (no process spawned). */
export async function findCreators(lxcpath: string, name: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline === '') continue;
    if (isCreatorOf(cmdline.split('\0').filter((a) => a !== ''), lxcpath, name)) pids.push(Number(entry));
  }
  return pids;
}

/** Kills (SIGKILL) every process creating `name` under `lxcpath` and waits up to `waitMs` (5 s) for them to go. */
export async function killCreators(lxcpath: string, name: string, options: { waitMs?: number; clock?: Clock } = {}): Promise<number[]> {
  const clock = options.clock ?? systemClock;
  const pids = await findCreators(lxcpath, name);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  const deadline = clock.now() + (options.waitMs ?? 5_000);
  while (pids.length > 0 && clock.now() < deadline && (await findCreators(lxcpath, name)).length > 0) {
    await new Promise<void>((resolve) => { clock.setTimeout(resolve, 20); });
  }
  return pids;
}
