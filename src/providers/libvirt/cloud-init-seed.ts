/**
 * Writes a VM's NoCloud seed: an ISO 9660 image labelled `cidata` holding user-data, meta-data and
 * (when declared) network-config, made with genisoimage or else xorriso (argv only), attached to
 * the domain read-only as a cdrom. The ISO appears under its final name by one rename of a
 * complete file, mode 0600 (user-data may hold secrets; libvirt hands it to QEMU). Nothing here
 * logs the files' contents.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { CloudInitSeedFiles } from '../../api/v1alpha1/cloud-init.js';
import { errorMessage } from '../../shared/errors.js';

const run = promisify(execFile);

/** The seed ISO of instance `hostName` with id `id` in `dir`: HOSTNAME-ID8-cidata.iso. */
export function seedPathFor(dir: string, hostName: string, id: string): string {
  return join(dir, `${hostName}-${id.replace(/-/g, '').slice(0, 8).toLowerCase()}-cidata.iso`);
}

/** Which ISO tool this host has: genisoimage first, xorriso (as mkisofs) second; asked once per process. */
let toolFound: Promise<'genisoimage' | 'xorriso'> | undefined;
function isoTool(): Promise<'genisoimage' | 'xorriso'> {
  toolFound ??= run('genisoimage', ['-version']).then(() => 'genisoimage' as const, () =>
    run('xorriso', ['-version']).then(() => 'xorriso' as const, (err: unknown) => {
      toolFound = undefined;
      throw new Error('cannot write a cloud-init seed: neither genisoimage nor xorriso is installed (apt-get install genisoimage)', { cause: err });
    }));
  return toolFound;
}

/** Writes `files` as the cidata ISO at `target` (created or replaced whole). */
export async function writeSeedIso(target: string, files: CloudInitSeedFiles, signal?: AbortSignal): Promise<void> {
  const dir = join(target, '..');
  await mkdir(dir, { recursive: true, mode: 0o711 });
  const work = await mkdtemp(join(dir, '.seed-'));
  try {
    const names = Object.keys(files) as (keyof CloudInitSeedFiles)[];
    for (const name of names) await writeFile(join(work, name), files[name] ?? '', { mode: 0o600 });
    const iso = join(dir, `.${randomBytes(4).toString('hex')}.iso.partial`);
    const tool = await isoTool();
    const argv = ['-quiet', '-output', iso, '-volid', 'cidata', '-joliet', '-rock', ...names.map((n) => join(work, n))];
    try {
      if (tool === 'genisoimage') await run('genisoimage', argv, { timeout: 60_000, ...(signal === undefined ? {} : { signal }) });
      else await run('xorriso', ['-as', 'mkisofs', ...argv], { timeout: 60_000, ...(signal === undefined ? {} : { signal }) });
      await chmod(iso, 0o600);
      await rename(iso, target);
    } catch (err) {
      await rm(iso, { force: true });
      const raw = (err as { stderr?: unknown }).stderr;
      throw new Error(`cannot write the cloud-init seed ${target}: ${typeof raw === 'string' && raw.trim() !== '' ? raw.trim().split('\n')[0] ?? '' : errorMessage(err)}`, { cause: err });
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
