/**
 * `hyperlet logs NAME` (containers and VMs) and `hyperlet exec NAME -- CMD...` (containers): the
 * console log the provider writes, and a command run inside with its exit code passed through. Both reach the
 * instance through the Provider interface only.
 */
import { createReadStream, existsSync, statSync, watchFile, unwatchFile } from 'node:fs';
import { parseArgs } from 'node:util';
import { KINDS, type Kind } from '../api/v1alpha1/group.js';
import { kindFromArg } from './get-command.js';
import { LogFollower } from './log-follower.js';
import { hostNameFor } from '../api/v1alpha1/host-name.js';
import { TerminalFilter } from '../shared/terminal-text.js';
import type { Provider } from '../providers/provider.js';
import { createProviders } from '../providers/registry.js';
import { silentLogger } from '../telemetry/logger.js';
import { UsageError } from './usage-error.js';

/** The provider of `kind`, made the way the daemon makes it (libvirt: connects on first use); the caller closes it. */
export async function instanceProvider(kind: Kind, lxcpath: string): Promise<Provider> {
  const providers = await createProviders({ kinds: [kind], lxcpath, libvirtUri: 'qemu:///system', logger: silentLogger() });
  const provider = providers.get(kind);
  if (provider === undefined) throw new Error(`cannot reach ${KINDS[kind].plural}: no provider`);
  return provider;
}

/** The container provider for `lxcpath`, made the way the daemon makes it; the caller closes it. */
function containerProvider(lxcpath: string): Promise<Provider> {
  return instanceProvider('Container', lxcpath);
}

/** The host name of object NAME in namespace `namespace`; throws UsageError on a name that is no DNS-1123 label. */
export function target(positionals: string[], namespace: string | undefined, command = 'logs|exec'): string {
  const name = positionals[0];
  if (name === undefined) throw new UsageError(`name the instance: hyperlet ${command} NAME`);
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name)) throw new UsageError(`${JSON.stringify(name)} is not an instance name (a DNS-1123 label)`);
  return hostNameFor(namespace ?? 'default', name);
}

/** Where a console log is, and the older part rotated out beside it. */
interface LogFiles { readonly kind: Kind; readonly path: string; readonly rotated: string | undefined }

/** The console log files of `host`: of `kind` when given, else the container's when it has one, else the VM's. */
async function logFilesOf(host: string, kind: Kind | undefined, lxcpath: string): Promise<LogFiles | undefined> {
  const kinds: Kind[] = kind === undefined ? ['Container', 'VirtualMachine'] : [kind];
  let first: LogFiles | undefined;
  for (const k of kinds) {
    const provider = await instanceProvider(k, lxcpath);
    const path = provider.consoleLogPath?.(host);
    const rotated = provider.rotatedConsoleLogPath?.(host);
    await provider.close();
    if (path === undefined) continue;
    const files = { kind: k, path, rotated };
    first ??= files;
    if (existsSync(path)) return files;
  }
  return first;
}

/** `hyperlet logs`: prints (or follows) an instance's console log; resolves to the exit code. */
export async function logsCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true, strict: true,
    options: {
      namespace: { type: 'string', short: 'n' }, lxcpath: { type: 'string' }, follow: { type: 'boolean', short: 'f' }, kind: { type: 'string' },
    },
  });
  const host = target(positionals, values.namespace, 'logs');
  const files = await logFilesOf(host, values.kind === undefined ? undefined : kindFromArg(values.kind), values.lxcpath ?? '/var/lib/lxc');
  if (files === undefined) {
    process.stderr.write('no provider keeps console logs\n');
    return 1;
  }
  const { path, rotated } = files;
  if (!existsSync(path)) {
    process.stderr.write(`no console log for ${host} at ${path} (is it an instance hyperlet created, and has it started?)\n`);
    return 1;
  }
  // On a terminal, an instance's output cannot move the cursor, retitle the window or write the
  // clipboard: control sequences are stripped (a pipe or file gets the bytes as they are).
  const filter = process.stdout.isTTY === true ? new TerminalFilter() : undefined;
  const write = (chunk: Buffer): void => { process.stdout.write(filter === undefined ? chunk : filter.push(chunk)); };
  const copyRange = (file: string, start: number, end: number): Promise<void> => new Promise((resolve, reject) => {
    if (end < start) { resolve(); return; }
    const stream = createReadStream(file, { start, end });
    stream.on('data', (c) => write(c as Buffer));
    stream.on('error', reject);
    stream.on('end', resolve);
  });
  // The console log is capped and rotated (containers: NAME.1 by hyperlet; VMs: NAME.log.0 by virtlogd): oldest first.
  if (rotated !== undefined && existsSync(rotated) && statSync(rotated).size > 0) await copyRange(rotated, 0, statSync(rotated).size - 1);
  const follower = new LogFollower(path, rotated, copyRange);
  await follower.copy();
  if (values.follow !== true) {
    if (filter !== undefined) process.stdout.write(filter.end());
    return 0;
  }
  await new Promise<void>((resolve) => {
    let busy = Promise.resolve();
    watchFile(path, { interval: 250 }, () => { busy = busy.then(() => follower.copy()).catch(() => undefined); });
    process.once('SIGINT', () => { unwatchFile(path); resolve(); });
  });
  return 0;
}

/** `hyperlet exec`: runs a command inside an instance with this terminal; resolves to its exit code. */
export async function execCommand(args: string[]): Promise<number> {
  const dashes = args.indexOf('--');
  if (dashes < 0) throw new UsageError('usage: hyperlet exec NAME [-n NS] [--lxcpath PATH] -- COMMAND [ARGS...]');
  const { values, positionals } = parseArgs({
    args: args.slice(0, dashes), allowPositionals: true, strict: true,
    options: { namespace: { type: 'string', short: 'n' }, lxcpath: { type: 'string' } },
  });
  const command = args.slice(dashes + 1);
  if (command.length === 0) throw new UsageError('exec needs a command after --');
  const provider = await containerProvider(values.lxcpath ?? '/var/lib/lxc');
  try {
    if (provider.exec === undefined) throw new UsageError(`the ${provider.name} provider cannot run commands inside instances`);
    return await provider.exec(target(positionals, values.namespace), command);
  } finally {
    await provider.close();
  }
}
