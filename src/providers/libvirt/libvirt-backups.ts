/**
 * Backups of VirtualMachines as portable archives (providers/backup/backup-archive.ts, layout
 * `libvirt-qcow2`): every volume disk as a standalone qcow2 (`qemu-img convert`: the backing
 * chain flattened, the internal snapshots left out), under `disks/DISK.qcow2`, with the object.
 * A running domain is read from an internal snapshot taken for the backup (`qemu-img convert -U
 * -l snapshot.name=…`, consistent as of that instant) and removed after it; a stopped one from its
 * volumes. The qcow2 files are made in a scratch directory (beside the archive) and removed after.
 *
 * A restore makes each disk a new volume in the target pool (named like hyperlet's own volumes,
 * with a fresh id) whose file is replaced by the archived qcow2, then defines the domain from the
 * archived spec with that id as its UUID and without hyperlet's marker: an operator's domain.
 * Guarantees: nothing is created before the checksum matched; a failure after that removes the
 * volumes made and the domain defined, so nothing is left behind. A name in use is refused first.
 * Caveats: adopting the restored domain by declaring the printed object keeps the domain, but the
 * object's disks are planned by the object's own id, so its first update would attach new empty
 * volumes; declare the disks as images instead, or restore into the object's own volumes (not yet).
 */
import { randomUUID } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import { hostNameFor } from '../../api/v1alpha1/host-name.js';
import { parseQuantity } from '../../api/v1alpha1/quantity.js';
import type { VirtualMachineSpec } from '../../api/v1alpha1/types.js';
import type { Clock } from '../../shared/clock.js';
import { TerminalError } from '../../shared/errors.js';
import type { Desired } from '../../store/desired.js';
import { BACKUP_FORMAT_VERSION, type BackupHead, type BackupSummary, readBackup, writeBackup } from '../backup/backup-archive.js';
import { archivedObject, restoredObject } from '../backup/restored-object.js';
import { toolOutput } from '../backup/tool-stream.js';
import type { BackupOptions, RestoreBackupOptions, RestoredBackup } from '../provider.js';
import { buildDomainXml, planDisks, volumeNameFor } from './domain-xml.js';
import { Flags, type DomainRef, type LibvirtApi, type VolumeRef } from './libvirt-client.js';
import type { LibvirtSnapshots } from './libvirt-snapshots.js';
import type { LibvirtStorage } from './libvirt-storage.js';
import { buildVolumeXml } from './storage-xml.js';
import { isActive } from './domain-state.js';

/** The archive layout of a VM. */
export const LIBVIRT_BACKUP_LAYOUT = 'libvirt-qcow2';

/** One disk as the archive's head records it. */
interface ArchivedDisk {
  readonly name: string;
  readonly pool: string;
  readonly member: string;
  readonly capacityBytes: number;
}

/** What LibvirtBackups works with. */
export interface LibvirtBackupsOptions {
  readonly client: LibvirtApi;
  readonly storage: LibvirtStorage;
  readonly snapshots: LibvirtSnapshots;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly consolePathOf: (hostName: string) => string;
}

/** Writes and restores VM backups; see the file comment. */
export class LibvirtBackups {
  constructor(private readonly o: LibvirtBackupsOptions) {}

  /** Archives domain `dom` of object `d` to options.out. */
  async backup(d: Desired<'VirtualMachine'>, dom: DomainRef, specHash: string | undefined, options: BackupOptions, signal: AbortSignal): Promise<BackupSummary> {
    const nowMs = this.o.clock.now();
    const running = isActive((await this.o.client.domainGetState(dom)).state);
    const snapshot = running ? `hyperlet-backup-${nowMs}` : undefined;
    const scratch = await mkdtemp(path.join(options.scratchDir ?? tmpdir(), '.hyperlet-backup-'));
    if (snapshot !== undefined) await this.o.snapshots.take(dom, snapshot, specHash, { origin: 'request' });
    try {
      await mkdir(path.join(scratch, 'disks'));
      const disks: ArchivedDisk[] = [];
      for (const planned of planDisks(d.hostName, d.object.spec, d.id)) {
        const vol = await this.volume(planned.disk.pool, planned.volume);
        const source = await this.o.client.storageVolGetPath(vol);
        const member = `disks/${planned.disk.name}.qcow2`;
        const args = ['convert', '-q', '-O', 'qcow2', ...(snapshot === undefined ? [] : ['-U', '-l', `snapshot.name=${snapshot}`]),
          '-f', 'qcow2', source, path.join(scratch, member)];
        for await (const chunk of toolOutput('qemu-img', args, signal)) void chunk;
        const capacityBytes = Number((await this.o.client.storageVolGetInfo(vol)).capacityBytes);
        disks.push({ name: planned.disk.name, pool: planned.disk.pool, member, capacityBytes });
      }
      const head: BackupHead = {
        formatVersion: BACKUP_FORMAT_VERSION, kind: 'VirtualMachine', hostName: d.hostName, createdAt: new Date(nowMs).toISOString(),
        object: archivedObject(d.object as unknown as Record<string, unknown>), layout: LIBVIRT_BACKUP_LAYOUT,
        details: { running, disks, ...(snapshot === undefined ? {} : { fromSnapshot: snapshot }) },
      };
      const payload = toolOutput('tar', ['--format=gnu', '-c', '-f', '-', '-C', scratch, 'disks'], signal);
      const summary = await writeBackup({
        head, payload, out: options.out, signal,
        ...(options.compression === undefined ? {} : { compression: options.compression }),
        ...(options.onProgress === undefined ? {} : { onProgress: options.onProgress }),
      });
      this.o.logger.info({ hostName: d.hostName, bytes: summary.trailer.bytes, compressedBytes: summary.compressedBytes }, 'backup written');
      return summary;
    } finally {
      await rm(scratch, { recursive: true, force: true });
      if (snapshot !== undefined) await this.o.snapshots.delete(dom, snapshot);
    }
  }

  /** Creates a stopped, unmarked domain and its volumes from an archive (see the file comment). */
  async restore(options: RestoreBackupOptions, signal: AbortSignal): Promise<RestoredBackup> {
    const scratch = await mkdtemp(path.join(options.scratchDir ?? tmpdir(), '.hyperlet-restore-'));
    const made: VolumeRef[] = [];
    try {
      let target: { hostName: string; namespace: string; name: string } | undefined;
      const summary = await readBackup({
        input: options.input, extractTo: scratch, signal, label: options.label ?? 'stream',
        ...(options.onProgress === undefined ? {} : { onProgress: options.onProgress }),
        check: async (head) => {
          target = await this.checkTarget(head, options);
        },
      });
      if (target === undefined) throw new Error('cannot restore backup: its head was never checked');
      const { hostName, namespace, name } = target;
      const id = randomUUID();
      const archived = (summary.head.details?.disks ?? []) as ArchivedDisk[];
      const spec = structuredClone(summary.head.object.spec) as VirtualMachineSpec;
      for (const disk of spec.disks ?? []) {
        const saved = archived.find((a) => a.name === disk.name);
        if (saved === undefined) throw new TerminalError('BackupInvalid', `cannot restore ${options.label ?? 'backup'}: disk ${disk.name} is not in it`);
        const poolName = options.pool ?? saved.pool;
        disk.pool = poolName;
        // The archived qcow2 is whole (its chain flattened): it needs no image, and keeps its size.
        delete disk.image;
        const pool = await this.o.storage.ensurePool(poolName);
        const volume = volumeNameFor(hostName, disk.name, id);
        const vol = await this.o.client.storageVolCreateXml(pool, buildVolumeXml(volume, saved.capacityBytes));
        made.push(vol);
        const file = await this.o.client.storageVolGetPath(vol);
        await rename(path.join(scratch, saved.member), file).catch(async (err: NodeJS.ErrnoException) => {
          if (err.code !== 'EXDEV') throw err;
          await copyFile(path.join(scratch, saved.member), file);
        });
        await this.o.client.storagePoolRefresh(pool);
        if (disk.size !== undefined && (parseQuantity(disk.size) ?? 0) < saved.capacityBytes) disk.size = String(saved.capacityBytes);
      }
      const marker = { id, key: '', specHash: '', generation: 0, fields: {}, volumes: [], annotations: {} };
      // The marker is what makes a domain hyperlet's: a restored domain is the operator's until an object adopts it.
      const xml = buildDomainXml({ name: hostName, uuid: id, spec, consolePath: this.o.consolePathOf(hostName), marker })
        .replace(/<metadata>[\s\S]*<\/metadata>/, '')
        .replace(/<description>[^<]*<\/description>/, `<description>restored by hyperlet from ${summary.head.hostName}</description>`);
      await this.o.client.domainDefineXml(xml, Flags.DefineValidate);
      this.o.logger.info({ hostName, from: summary.head.hostName, bytes: summary.trailer.bytes }, 'backup restored');
      const object = restoredObject({ ...summary.head.object, spec }, namespace, name);
      return { hostName, object, summary };
    } catch (err) {
      for (const vol of made) await this.o.client.storageVolDelete(vol).catch(() => undefined);
      throw err;
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }

  private async checkTarget(head: BackupHead, options: RestoreBackupOptions): Promise<{ hostName: string; namespace: string; name: string }> {
    if (head.kind !== 'VirtualMachine' || head.layout !== LIBVIRT_BACKUP_LAYOUT) {
      throw new TerminalError('BackupWrongKind', `cannot restore backup ${options.label ?? ''} as a VM: it holds a ${head.kind} (layout ${head.layout})`);
    }
    const metadata = (head.object.metadata ?? {}) as { name?: string; namespace?: string };
    const namespace = options.namespace ?? metadata.namespace ?? 'default';
    const name = options.name ?? metadata.name ?? head.hostName;
    const hostName = hostNameFor(namespace, name);
    if ((await this.o.client.lookupDomainByName(hostName)) !== undefined) {
      throw new TerminalError('NameInUse', `cannot restore backup as ${hostName}: a domain of that name exists (pick another with --as)`);
    }
    return { hostName, namespace, name };
  }

  private async volume(poolName: string, volume: string): Promise<VolumeRef> {
    const pool = await this.o.client.lookupStoragePool(poolName);
    const vol = pool === undefined ? undefined : await this.o.client.lookupStorageVol(pool, volume);
    if (vol === undefined) throw new Error(`cannot back up volume ${poolName}/${volume}: it does not exist`);
    return vol;
  }
}
