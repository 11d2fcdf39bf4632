/**
 * Archive files and the scheduled backups of spec.backups. A file is written as a hidden
 * `.NAME.partial-TIME` beside its target and renamed into place only when complete, so a target
 * is whole or absent; a failed write removes the partial file. Scheduled backups are the files
 * `HOSTNAME.auto-UTCTIME.tar.zst` in the declared directory; only those are ever pruned.
 */
import { createWriteStream } from 'node:fs';
import { readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Writable } from 'node:stream';
import type { Clock } from '../../shared/clock.js';
import type { Desired } from '../../store/desired.js';
import type { InstanceSnapshot, Provider } from '../provider.js';

/** Writes `path` through `write` (see the file comment); never overwrites: an existing target fails the rename's check first. */
export async function writeBackupFile<T>(path: string, clock: Clock, write: (out: Writable) => Promise<T>): Promise<T> {
  const partial = join(dirname(path), `.${basename(path)}.partial-${clock.now()}`);
  try {
    const result = await write(createWriteStream(partial, { flags: 'wx', mode: 0o600 }));
    await rename(partial, path);
    return result;
  } catch (err) {
    await rm(partial, { force: true });
    throw err;
  }
}

const SCHEDULED_SUFFIX = '.tar.zst';

/** The time in a scheduled name (auto-YYYYMMDDTHHMMSSz), or undefined. */
function timeOfLabel(label: string): string | undefined {
  const m = /^auto-(\d{4})(\d{2})(\d{2})t(\d{2})(\d{2})(\d{2})z$/.exec(label);
  return m === null ? undefined : `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.000Z`;
}

/** spec.backups' archives of one provider's objects: listed, written and pruned in the declared directory. */
export class ScheduledBackups {
  constructor(private readonly provider: Provider, private readonly clock: Clock) {}

  /** Whether the provider can write backups. */
  get supported(): boolean {
    return this.provider.backup !== undefined;
  }

  private fileOf(d: Desired, label: string): string {
    const dir = d.object.spec.backups?.directory ?? '';
    return join(dir, `${d.hostName}.${label}${SCHEDULED_SUFFIX}`);
  }

  /** The scheduled backups of `d` in its directory, oldest first (partial files are not listed). */
  async list(d: Desired): Promise<InstanceSnapshot[]> {
    const dir = d.object.spec.backups?.directory;
    if (dir === undefined) return [];
    const out: InstanceSnapshot[] = [];
    for (const entry of await readdir(dir)) {
      if (!entry.startsWith(`${d.hostName}.`) || !entry.endsWith(SCHEDULED_SUFFIX)) continue;
      const label = entry.slice(d.hostName.length + 1, -SCHEDULED_SUFFIX.length);
      const createdAt = timeOfLabel(label);
      if (createdAt !== undefined) out.push({ name: label, createdAt, origin: 'schedule', memory: false });
    }
    return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  /** Writes scheduled backup `label` of `d`. */
  async take(d: Desired, label: string, signal: AbortSignal): Promise<InstanceSnapshot> {
    const backup = this.provider.backup?.bind(this.provider);
    if (backup === undefined) throw new Error(`cannot back up ${d.hostName}: the ${this.provider.name} provider has no backups`);
    const file = this.fileOf(d, label);
    const summary = await writeBackupFile(file, this.clock, (out) => backup(d, { out, scratchDir: dirname(file) }, signal));
    return { name: label, createdAt: timeOfLabel(label) ?? summary.head.createdAt, origin: 'schedule', memory: false, sizeBytes: summary.compressedBytes };
  }

  /** Removes scheduled backup `label` of `d`; a missing one is success. */
  async remove(d: Desired, label: string): Promise<void> {
    await rm(this.fileOf(d, label), { force: true });
  }
}
