/**
 * Bytes through a host tool (tar, zstd, qemu-img) as Node streams: argv arrays only, never a
 * shell. A tool that exits non-zero, or is killed, turns into an error carrying its stderr.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';

/** A running tool with its stdin and stdout as streams, and its end as a promise. */
export interface ToolProcess {
  readonly stdin: Writable;
  readonly stdout: Readable;
  /** Resolves when the tool exits 0; rejects with its stderr otherwise. */
  readonly exited: Promise<void>;
  /** Kills the tool (SIGKILL); idempotent. */
  kill(): void;
}

/** Starts `command args` with piped stdin and stdout; stderr is kept (its last 8 KiB) for the error. */
export function startTool(command: string, args: readonly string[], signal?: AbortSignal): ToolProcess {
  const child: ChildProcessByStdio<Writable, Readable, Readable> = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text: string) => {
    stderr = (stderr + text).slice(-8192);
  });
  // A reader that stops early (an error elsewhere) must not crash the process with EPIPE.
  child.stdin.on('error', () => undefined);
  const kill = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  signal?.addEventListener('abort', kill, { once: true });
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', (err) => reject(new Error(`cannot run ${command}: ${err.message}`, { cause: err })));
    child.on('close', (code, sig) => {
      signal?.removeEventListener('abort', kill);
      if (code === 0) resolve();
      else reject(new Error(`cannot run ${command} ${args.join(' ')}: ${sig === null ? `exit ${String(code)}` : `killed by ${sig}`}: ${stderr.trim()}`));
    });
  });
  // Observed by whoever awaits it; never an unhandled rejection when the caller failed first.
  exited.catch(() => undefined);
  return { stdin: child.stdin, stdout: child.stdout, exited, kill };
}

/**
 * The stdout of `command args` (stdin closed) as chunks; throws after the last chunk when the
 * tool failed, so a consumer never takes a cut-short output for a whole one.
 */
export async function* toolOutput(command: string, args: readonly string[], signal?: AbortSignal): AsyncGenerator<Buffer> {
  const tool = startTool(command, args, signal);
  tool.stdin.end();
  try {
    for await (const chunk of tool.stdout) yield chunk as Buffer;
    await tool.exited;
  } finally {
    tool.kill();
  }
}
