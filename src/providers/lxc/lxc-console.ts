/**
 * A container's console (/dev/console, tty 0) as a ConsoleSession, through `lxc-console`, which
 * also works on pipes: its stdin takes our keystrokes and its stdout carries the console output.
 * lxc-console's own escape prefix (Ctrl-a) is doubled on the way in, so every byte the user types
 * reaches the container as typed; the session ends by stopping lxc-console, never the container.
 */
import { spawn } from 'node:child_process';
import type { ConsoleSession } from '../provider.js';
import { assertHostName } from './container-paths.js';

/** lxc-console's escape prefix (Ctrl-a); sent twice, it types one Ctrl-a in the container. */
const LXC_ESCAPE = 0x01;

/** Doubles every Ctrl-a in `data`, so lxc-console passes it through instead of reading a command. */
export function escapeForLxcConsole(data: Buffer): Buffer {
  if (!data.includes(LXC_ESCAPE)) return data;
  const out: number[] = [];
  for (const b of data) {
    out.push(b);
    if (b === LXC_ESCAPE) out.push(b);
  }
  return Buffer.from(out);
}

/** Attaches to tty 0 of running container `hostName` under `lxcpath`; rejects when lxc-console cannot attach. */
export function openLxcConsole(lxcpath: string, hostName: string): Promise<ConsoleSession> {
  assertHostName(hostName);
  const child = spawn('lxc-console', ['-P', lxcpath, '-n', hostName, '-t', '0'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => { stderr = (stderr + c.toString('utf8')).slice(-4096); });
  const held: Buffer[] = [];
  let listener: ((chunk: Buffer) => void) | undefined;
  child.stdout.on('data', (c: Buffer) => { if (listener === undefined) held.push(c); else listener(c); });
  child.stdin.on('error', () => undefined); // a write after lxc-console exited; 'ended' says why
  let closing = false;
  const ended = new Promise<Error | undefined>((resolve) => {
    child.once('error', (err) => resolve(new Error(`cannot run lxc-console for ${hostName}: ${err.message}`, { cause: err })));
    child.once('close', (code) => {
      if (closing || code === 0) resolve(undefined);
      else resolve(new Error(`cannot attach to the console of ${hostName}: lxc-console exited ${code ?? 'on a signal'}: ${stderr.trim()}`));
    });
  });
  const session: ConsoleSession = {
    write: (data) => { if (!closing && child.stdin.writable) child.stdin.write(escapeForLxcConsole(data)); },
    onData: (l) => {
      listener = l;
      for (const c of held.splice(0)) l(c);
    },
    ended,
    close: () => {
      if (closing) return;
      closing = true;
      child.kill('SIGTERM');
    },
  };
  // lxc-console says "Connected to tty 0" on stderr once attached; it exits at once when it cannot attach.
  return new Promise<ConsoleSession>((resolve, reject) => {
    const onStderr = (): void => {
      if (!stderr.includes('Connected to tty')) return;
      child.stderr.off('data', onStderr);
      resolve(session);
    };
    child.stderr.on('data', onStderr);
    void ended.then((err) => reject(err ?? new Error(`cannot attach to the console of ${hostName}: lxc-console ended: ${stderr.trim()}`)));
  });
}
