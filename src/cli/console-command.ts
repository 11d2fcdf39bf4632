/**
 * `hyperlet console NAME`: attaches this terminal to a VM's serial console or a container's
 * console until the escape key (Ctrl-] by default, as virsh) or the end of input. On a terminal
 * it switches to raw mode (restored on exit); on pipes it copies bytes both ways, so a script (or a
 * test) can drive a console.
 *
 * The CLI attaches through the provider on this host (libvirt's RPC socket, lxc-console), not
 * through the daemon's HTTP API, as `logs` and `exec` do: a console needs root on this host anyway
 * (libvirtd's socket, the lxcpath), and the API then needs no bidirectional stream endpoint. The
 * trust boundary is the provider's: only instances that carry hyperlet's ownership marker attach.
 */
import { parseArgs } from 'node:util';
import type { Kind } from '../api/v1alpha1/group.js';
import { type ConsoleSession, isInstanceNotFoundError } from '../providers/provider.js';
import { instanceProvider, target } from './container-commands.js';
import { kindFromArg } from './get-command.js';
import { UsageError } from './usage-error.js';

/** The escape byte a `--escape` value names: "^]" (Ctrl-]) or "^A"…"^_", or one ASCII character. */
export function parseEscape(value: string): number {
  if (/^\^[@A-Za-z[\\\]^_]$/.test(value)) return value.toUpperCase().charCodeAt(1) & 0x1f;
  if (value.length === 1 && value.charCodeAt(0) < 0x80) return value.charCodeAt(0);
  throw new UsageError(`--escape: cannot use ${JSON.stringify(value)}; give ^ and a letter or one of @[\\]^_ (e.g. ^]), or one ASCII character`);
}

/** Splits typed input at the escape byte: what goes to the console, and whether the user asked to detach. */
export function splitAtEscape(chunk: Buffer, escape: number): { forward: Buffer; detach: boolean } {
  const at = chunk.indexOf(escape);
  return at < 0 ? { forward: chunk, detach: false } : { forward: chunk.subarray(0, at), detach: true };
}

/** Opens the console of `host`: of `kind` when given, else the container's when it exists, else the VM's. */
async function openConsole(host: string, kind: Kind | undefined, lxcpath: string, force: boolean): Promise<{ session: ConsoleSession; close(): Promise<void> }> {
  const kinds: Kind[] = kind === undefined ? ['Container', 'VirtualMachine'] : [kind];
  let lastErr: unknown;
  for (const k of kinds) {
    const provider = await instanceProvider(k, lxcpath);
    try {
      if (provider.openConsole === undefined) throw new Error(`cannot attach: the ${provider.name} provider has no consoles`);
      const session = await provider.openConsole(host, { force });
      return { session, close: async () => { await provider.close(); } };
    } catch (err) {
      await provider.close();
      lastErr = err;
      // Not there: look for a VM of that name (when no kind was given); anything else is the answer.
      if (!isInstanceNotFoundError(err)) break;
    }
  }
  throw lastErr;
}

/** `hyperlet console NAME`: resolves to the exit code (0 detached or the console closed, 1 it could not attach or broke). */
export async function consoleCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true, strict: true,
    options: {
      namespace: { type: 'string', short: 'n' }, lxcpath: { type: 'string' }, kind: { type: 'string' },
      escape: { type: 'string' }, force: { type: 'boolean' },
    },
  });
  const host = target(positionals, values.namespace, 'console');
  const escape = parseEscape(values.escape ?? '^]');
  const kind = values.kind === undefined ? undefined : kindFromArg(values.kind);
  const attached = await openConsole(host, kind, values.lxcpath ?? '/var/lib/lxc', values.force === true);
  const { session } = attached;
  const stdin = process.stdin;
  const raw = stdin.isTTY === true;
  process.stderr.write(`Connected to ${host}; escape character is ${values.escape ?? '^]'}\n`);
  let detached = false;
  const detach = (): void => {
    if (detached) return;
    detached = true;
    session.close();
  };
  const onInput = (chunk: Buffer): void => {
    const { forward, detach: stop } = splitAtEscape(chunk, escape);
    if (forward.length > 0) session.write(forward);
    if (stop) detach();
  };
  if (raw) stdin.setRawMode(true);
  stdin.on('data', onInput);
  stdin.once('end', detach);
  stdin.resume();
  session.onData((chunk) => { process.stdout.write(chunk); });
  try {
    const err = await session.ended;
    if (err !== undefined && !detached) {
      process.stderr.write(`\r\nhyperlet console: ${err.message}\n`);
      return 1;
    }
    process.stderr.write(raw ? '\r\n' : '');
    return 0;
  } finally {
    stdin.off('data', onInput);
    stdin.off('end', detach);
    if (raw) stdin.setRawMode(false);
    stdin.destroy();
    await attached.close();
  }
}
