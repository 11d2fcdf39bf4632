/**
 * `hyperlet run` as a real child process for e2e tests: started with the given flags, its log
 * written to a file, its HTTP address read from its own "serving" log line (so `--http
 * 127.0.0.1:0` works), stopped with a signal of the test's choosing.
 *
 * Guarantees: `start` resolves only once the daemon serves HTTP; it rejects with the log's tail
 * if the daemon exits first or does not serve within the timeout.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
export const cliPath = join(repoRoot, 'bin', 'hyperlet.js');

export class DaemonProcess {
  private exited: Promise<void>;

  private constructor(readonly child: ChildProcess, readonly logPath: string, readonly baseUrl: string) {
    this.exited = new Promise((r) => child.once('exit', () => r()));
  }

  /** Starts `hyperlet run ARGS` (add `--http 127.0.0.1:0` to ARGS); resolves once it serves HTTP. */
  static async start(
    args: readonly string[], logPath: string, options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
  ): Promise<DaemonProcess> {
    const child = spawn(process.execPath, [cliPath, 'run', ...args], {
      cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env,
    });
    const log = createWriteStream(logPath, { flags: 'a' });
    child.stdout?.pipe(log);
    let buffered = '';
    const address = await new Promise<string>((resolveAddress, reject) => {
      const timeoutMs = options.timeoutMs ?? 60_000;
      const timer = setTimeout(() => fail(new Error(`the daemon did not serve HTTP within ${timeoutMs} ms`)), timeoutMs);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        child.kill('SIGKILL');
        reject(new Error(`${err.message}; log tail:\n${buffered.split('\n').slice(-30).join('\n')}`));
      };
      child.once('exit', (code, signal) => fail(new Error(`the daemon exited (${code ?? signal}) before serving HTTP`)));
      child.stderr?.on('data', (chunk: Buffer) => {
        log.write(chunk);
        if (buffered.length < 1_000_000) buffered += chunk.toString('utf8');
        const m = /"address":"([^"]+)"[^\n]*"msg":"serving|"msg":"serving[^\n]*"address":"([^"]+)"/.exec(buffered);
        const found = m?.[1] ?? m?.[2];
        if (found !== undefined) {
          clearTimeout(timer);
          child.removeAllListeners('exit');
          resolveAddress(found);
        }
      });
    });
    child.stderr?.removeAllListeners('data');
    child.stderr?.pipe(log);
    const [host, port] = [address.slice(0, address.lastIndexOf(':')), address.slice(address.lastIndexOf(':') + 1)];
    return new DaemonProcess(child, logPath, `http://${host.includes(':') ? `[${host}]` : host}:${port}`);
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** Whether the process is still running. */
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Sends `signal` and waits for the process to exit (SIGKILL: the kill -9 of the tests). */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (!this.running) return;
    this.child.kill(signal);
    await this.exited;
  }

  /** GET `path` on the daemon; the body as text. */
  async get(path: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string; headers: Headers }> {
    const res = await fetch(`${this.baseUrl}${path}`, { headers });
    return { status: res.status, text: await res.text(), headers: res.headers };
  }

  /** The last `lines` lines of the daemon's log, for failure messages. */
  async logTail(lines = 40): Promise<string> {
    const text = await readFile(this.logPath, 'utf8').catch(() => '');
    return text.split('\n').slice(-lines).join('\n');
  }
}
