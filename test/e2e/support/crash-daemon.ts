/**
 * `hyperlet run` as a child process for crash tests: started with or without failpoints
 * (HYPERLET_FAILPOINTS, src/shared/failpoint.ts), killed with SIGKILL at a random instant, and
 * waited for. Its output goes to a log file per start, whose tail failure messages show.
 *
 * Caveats: a killed daemon leaves the tools it spawned running (detached lxc-create, template
 * scripts, lxc-monitor), as a real kill -9 does; `leftoverProcesses` finds them for cleanup.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { readdir, readFile, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { FAILPOINTS_ENV } from '../../../src/shared/failpoint.js';

/** The repository root (this file runs from dist/test/e2e/support). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const CLI = join(REPO_ROOT, 'bin', 'hyperlet.js');

/** How one daemon process ended. */
export interface DaemonExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** One `hyperlet run` process. */
export class DaemonProcess {
  readonly exited: Promise<DaemonExit>;
  private readonly child: ChildProcess;

  private constructor(child: ChildProcess, readonly logPath: string) {
    this.child = child;
    this.exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
  }

  /** Starts `hyperlet run ARGS`, logging to `logPath`; `failpoints` enables those failpoints in it. */
  static start(args: readonly string[], logPath: string, failpoints: readonly string[] = []): DaemonProcess {
    const env = { ...process.env };
    delete env[FAILPOINTS_ENV];
    if (failpoints.length > 0) env[FAILPOINTS_ENV] = failpoints.join(',');
    const child = spawn(process.execPath, [CLI, 'run', ...args], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const log = createWriteStream(logPath);
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    return new DaemonProcess(child, logPath);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Sends `signal` (default SIGKILL) and waits for the process to end. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<DaemonExit> {
    if (this.running) this.child.kill(signal);
    return this.exited;
  }

  /**
   * Waits until the process killed itself at failpoint `name` (SIGKILL, and its log says so);
   * throws when it ends otherwise or is still running after `timeoutMs`.
   */
  async diedAt(name: string, timeoutMs = 90_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((r) => { timer = setTimeout(() => r('late'), timeoutMs); });
    const exit = await Promise.race([this.exited, late]);
    clearTimeout(timer);
    if (exit === 'late') {
      await this.kill();
      throw new Error(`the daemon never reached failpoint ${name} in ${timeoutMs} ms\n${await this.tail()}`);
    }
    // Let the pipes deliver the last line.
    await new Promise((r) => setTimeout(r, 100));
    const log = await readFile(this.logPath, 'utf8');
    if (exit.signal !== 'SIGKILL' || !log.includes(`failpoint ${name}: killing the process`)) {
      throw new Error(`the daemon ended with ${exit.signal ?? `exit code ${String(exit.code)}`}, not at failpoint ${name}\n${await this.tail()}`);
    }
  }

  /** The last `lines` lines of the log. */
  async tail(lines = 40): Promise<string> {
    const text = await readFile(this.logPath, 'utf8').catch(() => '');
    return `--- last lines of ${this.logPath} ---\n${text.split('\n').slice(-lines).join('\n')}`;
  }
}

/** Pids of processes whose command line contains `needle` (the tools a killed daemon left running). */
export async function leftoverProcesses(needle: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0').some((a) => a.includes(needle))) pids.push(Number(entry));
  }
  return pids;
}

/** A pseudo-random integer in [min, max] from `next` (a seeded generator, so a failed soak can be replayed). */
export function randomBetween(next: () => number, min: number, max: number): number {
  return min + Math.floor(next() * (max - min + 1));
}

/** mulberry32: a small seeded generator; the soak tests print their seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The `after` of a test that ran daemons on its own lxcpath under `tmp`: kills what a killed daemon
 * left running there, stops and destroys every container in the lxcpath, then removes `tmp`.
 */
export async function removeLxcTestDir(tmp: string, lxcpath: string): Promise<void> {
  if (tmp === '') return;
  for (const pid of await leftoverProcesses(lxcpath)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  await destroyContainersIn(lxcpath);
  await rm(tmp, { recursive: true, force: true });
}

/** Stops (killing) and destroys every container in `lxcpath`; a missing lxcpath is nothing to do. */
export async function destroyContainersIn(lxcpath: string): Promise<void> {
  const lxc = promisify(execFile);
  for (const name of await readdir(lxcpath).catch(() => [] as string[])) {
    await lxc('lxc-stop', ['-P', lxcpath, '-n', name, '-k'], { timeout: 60_000 }).catch(() => undefined);
    await lxc('lxc-destroy', ['-P', lxcpath, '-n', name], { timeout: 60_000 }).catch(() => undefined);
  }
}
