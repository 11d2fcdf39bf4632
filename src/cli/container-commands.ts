/**
 * `hyperlet logs NAME` and `hyperlet exec NAME -- CMD...` for containers: the console log the
 * provider writes, and a command run inside with its exit code passed through. Both reach the
 * instance through the Provider interface only.
 */
import { createReadStream, existsSync, statSync, watchFile, unwatchFile } from 'node:fs';
import { parseArgs } from 'node:util';
import { hostNameFor } from '../api/v1alpha1/host-name.js';
import { TerminalFilter } from '../shared/terminal-text.js';
import type { Provider } from '../providers/provider.js';
import { createProviders } from '../providers/registry.js';
import { silentLogger } from '../telemetry/logger.js';
import { UsageError } from './usage-error.js';

/** The container provider for `lxcpath`, made the way the daemon makes it; the caller closes it. */
async function containerProvider(lxcpath: string): Promise<Provider> {
  const providers = await createProviders({ kinds: ['Container'], lxcpath, libvirtUri: 'qemu:///system', logger: silentLogger() });
  const provider = providers.get('Container');
  if (provider === undefined) throw new Error('cannot reach containers: no container provider');
  return provider;
}

function target(positionals: string[], namespace: string | undefined): string {
  const name = positionals[0];
  if (name === undefined) throw new UsageError('name the container: hyperlet logs|exec NAME');
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name)) throw new UsageError(`${JSON.stringify(name)} is not a container name (a DNS-1123 label)`);
  return hostNameFor(namespace ?? 'default', name);
}

/** `hyperlet logs`: prints (or follows) an instance's console log; resolves to the exit code. */
export async function logsCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true, strict: true,
    options: { namespace: { type: 'string', short: 'n' }, lxcpath: { type: 'string' }, follow: { type: 'boolean', short: 'f' } },
  });
  const host = target(positionals, values.namespace);
  const provider = await containerProvider(values.lxcpath ?? '/var/lib/lxc');
  const path = provider.consoleLogPath?.(host);
  await provider.close();
  if (path === undefined) {
    process.stderr.write(`the ${provider.name} provider keeps no console log\n`);
    return 1;
  }
  if (!existsSync(path)) {
    process.stderr.write(`no console log for ${host} at ${path} (is it a container hyperlet created, and has it started?)\n`);
    return 1;
  }
  // On a terminal, a container's output cannot move the cursor, retitle the window or write the
  // clipboard: control sequences are stripped (a pipe or file gets the bytes as they are).
  const filter = process.stdout.isTTY === true ? new TerminalFilter() : undefined;
  const write = (chunk: Buffer): void => { process.stdout.write(filter === undefined ? chunk : filter.push(chunk)); };
  const copyRange = (file: string, start: number, end: number): Promise<void> => new Promise((resolve, reject) => {
    const stream = createReadStream(file, { start, end });
    stream.on('data', (c) => write(c as Buffer));
    stream.on('error', reject);
    stream.on('end', resolve);
  });
  // The console log is capped and rotated (provider: one older part beside it, NAME.1): oldest first.
  const rotated = `${path}.1`;
  if (existsSync(rotated) && statSync(rotated).size > 0) await copyRange(rotated, 0, statSync(rotated).size - 1);
  let offset = 0;
  const copy = async (): Promise<void> => {
    const size = statSync(path).size;
    if (size < offset) offset = 0; // truncated or rotated
    if (size === offset) return;
    const start = offset;
    offset = size;
    await copyRange(path, start, size - 1);
  };
  await copy();
  if (values.follow !== true) {
    if (filter !== undefined) process.stdout.write(filter.end());
    return 0;
  }
  await new Promise<void>((resolve) => {
    watchFile(path, { interval: 250 }, () => void copy());
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
