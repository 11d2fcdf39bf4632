/** `hyperlet exec NAME -- CMD…`: a command inside a running container, on the user's terminal. */
import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { assertHostName } from './container-paths.js';

/** Where the container lives and how long the command may run. */
export interface ExecOptions {
  readonly lxcpath: string;
  readonly hostName: string;
  /** argv inside the container; never a shell string. */
  readonly command: readonly string[];
  /**
   * Kills the command after this long. None by default: an interactive session ends when its
   * user ends it (Ctrl-C reaches lxc-attach, which shares our terminal).
   */
  readonly timeoutMs?: number;
}

/**
 * Runs `command` in the container through `lxc-attach --clear-env` (the container's own
 * environment, not the caller's) with stdin, stdout and stderr inherited, and resolves with its
 * exit code (128 + signal number when it was killed). Rejects only when lxc-attach cannot be run.
 */
export function execInContainer(opts: ExecOptions): Promise<number> {
  assertHostName(opts.hostName);
  if (opts.command.length === 0) return Promise.reject(new Error('cannot exec: no command given'));
  const args = ['-P', opts.lxcpath, '-n', opts.hostName, '--clear-env', '--', ...opts.command];
  return new Promise<number>((resolve, reject) => {
    const child = spawn('lxc-attach', args, { stdio: 'inherit' });
    // Ctrl-C goes to lxc-attach too; we only wait for its exit code.
    const ignore = (): void => undefined;
    process.on('SIGINT', ignore);
    const timer = opts.timeoutMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    const done = (): void => {
      process.off('SIGINT', ignore);
      if (timer !== undefined) clearTimeout(timer);
    };
    child.once('error', (err) => {
      done();
      reject(new Error(`cannot run lxc-attach for ${opts.hostName}: ${err.message}`, { cause: err }));
    });
    child.once('close', (code, signal) => {
      done();
      if (code !== null) resolve(code);
      else resolve(128 + (signal === null ? 0 : osConstants.signals[signal]));
    });
  });
}
