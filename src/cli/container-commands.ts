/**
 * `hyperlet logs NAME` and `hyperlet exec NAME -- CMD...` for containers: the console log LXC
 * writes, and a command run through lxc-attach with its exit code passed through.
 */
import { createReadStream, existsSync, statSync, watchFile, unwatchFile } from 'node:fs';
import { parseArgs } from 'node:util';
import { hostNameFor } from '../api/v1alpha1/host-name.js';
import { consoleLogPath, execInContainer } from '../providers/lxc/lxc-provider.js';
import { UsageError } from './usage-error.js';

function target(positionals: string[], namespace: string | undefined): string {
  const name = positionals[0];
  if (name === undefined) throw new UsageError('name the container: hyperlet logs|exec NAME');
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name)) throw new UsageError(`${JSON.stringify(name)} is not a container name (a DNS-1123 label)`);
  return hostNameFor(namespace ?? 'default', name);
}

export async function logsCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true, strict: true,
    options: { namespace: { type: 'string', short: 'n' }, lxcpath: { type: 'string' }, follow: { type: 'boolean', short: 'f' } },
  });
  const host = target(positionals, values.namespace);
  const path = consoleLogPath(values.lxcpath ?? '/var/lib/lxc', host);
  if (!existsSync(path)) {
    process.stderr.write(`no console log for ${host} at ${path} (is it a container hyperlet created, and has it started?)\n`);
    return 1;
  }
  let offset = 0;
  const copy = (): Promise<void> => new Promise((resolve, reject) => {
    const size = statSync(path).size;
    if (size < offset) offset = 0; // truncated or rotated
    if (size === offset) return resolve();
    const stream = createReadStream(path, { start: offset, end: size - 1 });
    offset = size;
    stream.on('error', reject);
    stream.on('end', resolve);
    stream.pipe(process.stdout, { end: false });
  });
  await copy();
  if (values.follow !== true) return 0;
  await new Promise<void>((resolve) => {
    watchFile(path, { interval: 250 }, () => void copy());
    process.once('SIGINT', () => { unwatchFile(path); resolve(); });
  });
  return 0;
}

export async function execCommand(args: string[]): Promise<number> {
  const dashes = args.indexOf('--');
  if (dashes < 0) throw new UsageError('usage: hyperlet exec NAME [-n NS] [--lxcpath PATH] -- COMMAND [ARGS...]');
  const { values, positionals } = parseArgs({
    args: args.slice(0, dashes), allowPositionals: true, strict: true,
    options: { namespace: { type: 'string', short: 'n' }, lxcpath: { type: 'string' } },
  });
  const command = args.slice(dashes + 1);
  if (command.length === 0) throw new UsageError('exec needs a command after --');
  return execInContainer({ lxcpath: values.lxcpath ?? '/var/lib/lxc', hostName: target(positionals, values.namespace), command });
}
