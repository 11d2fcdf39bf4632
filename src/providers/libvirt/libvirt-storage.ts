/**
 * Storage for the libvirt provider. Each disk is a qcow2 volume HOSTNAME-DISK-ID8.qcow2 in its
 * pool (ID8: the start of the object's id, which marks the volume as this object's). A missing
 * pool is created as a `dir` pool under `poolRoot/NAME` (default /var/lib/hyperlet/pools) only
 * when its name is `default` or starts with `hyperlet-` (names hyperlet reserves); any other
 * missing pool is TerminalError PoolNotFound, because an operator's pool name must point at
 * storage the operator set up. Pools are never deleted. The object's volumes (listed in the
 * marker, and recognisable by name even when the domain is gone) are deleted with it. Sizes grow
 * (live with block resize when running) and never shrink (TerminalError DiskShrinkRefused).
 * A disk without size gets `defaultDiskBytes` (10 GiB, sparse).
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { TerminalError } from '../../shared/errors.js';
import { failpoint } from '../../shared/failpoint.js';
import type { Desired } from '../../store/desired.js';
import { planDisks, type ParsedDomain, type VolumeName } from './domain-xml.js';
import type { DomainRef, LibvirtApi, PoolRef } from './libvirt-client.js';
import { isLibvirtError } from './libvirt-error.js';
import type { DiskImages } from './disk-images.js';
import { buildDirPoolXml, buildVolumeXml } from './storage-xml.js';

/** What the storage helper works with and which pools it may create. */
export interface LibvirtStorageOptions {
  readonly client: LibvirtApi;
  readonly logger: Logger;
  /** Where dir pools hyperlet creates live. */
  readonly poolRoot: string;
  /** Which missing pools hyperlet may create. */
  readonly creatablePool: (name: string) => boolean;
  /** Size of a disk declared with an image but no size. */
  readonly defaultDiskBytes: number;
  /** Where disks' images come from (paths, or URLs through the image cache). */
  readonly images: DiskImages;
}

/** Pools and volumes of hyperlet's domains: made, grown and removed idempotently, never another's. */
export class LibvirtStorage {
  private readonly client: LibvirtApi;
  private readonly log: Logger;
  private readonly poolRoot: string;
  private readonly creatablePool: (name: string) => boolean;
  private readonly defaultDiskBytes: number;
  private readonly images: DiskImages;
  private readonly poolLocks = new Map<string, Promise<PoolRef>>();

  constructor(options: LibvirtStorageOptions) {
    this.client = options.client;
    this.log = options.logger;
    this.poolRoot = options.poolRoot;
    this.creatablePool = options.creatablePool;
    this.defaultDiskBytes = options.defaultDiskBytes;
    this.images = options.images;
  }

  /**
   * Creates the volume of one planned disk: a qcow2 overlay on its image when it has one (format
   * and size from qemu-img: disk-images.ts), grown to the declared size (default: the larger of
   * the image and `defaultDiskBytes`).
   */
  async createVolume(pool: PoolRef, disk: ReturnType<typeof planDisks>[number], hostName: string): Promise<void> {
    const image = await this.images.resolve(hostName, disk.disk, disk.sizeBytes);
    const capacity = disk.sizeBytes ?? Math.max(this.defaultDiskBytes, image?.virtualSizeBytes ?? 0);
    await this.client.storageVolCreateXml(pool, buildVolumeXml(disk.volume, capacity, image === undefined ? undefined : { path: image.path, format: image.format }));
  }

  /** A volume's capacity in bytes, or undefined when the pool or the volume does not exist. */
  async capacityOf(poolName: string, volume: string): Promise<number | undefined> {
    const pool = await this.client.lookupStoragePool(poolName);
    if (pool === undefined) return undefined;
    const vol = await this.client.lookupStorageVol(pool, volume);
    if (vol === undefined) return undefined;
    return Number((await this.client.storageVolGetInfo(vol)).capacityBytes);
  }

  /** The pool named `name`, active; created as a dir pool when missing and hyperlet may create it. */
  ensurePool(name: string): Promise<PoolRef> {
    const running = this.poolLocks.get(name);
    if (running !== undefined) return running;
    const p = this.ensurePoolOnce(name).finally(() => this.poolLocks.delete(name));
    this.poolLocks.set(name, p);
    return p;
  }

  private async ensurePoolOnce(name: string): Promise<PoolRef> {
    let pool = await this.client.lookupStoragePool(name);
    if (pool === undefined) {
      if (!this.creatablePool(name)) {
        throw new TerminalError('PoolNotFound', `cannot use storage pool ${name}: it does not exist, and hyperlet only creates pools named "default" or "hyperlet-*"`);
      }
      const dir = path.join(this.poolRoot, name);
      this.log.info({ pool: name, dir }, 'creating dir storage pool');
      // The directory before the pool that names it: a pool defined and then cut short by a crash
      // could never start (its build would not come again), and a directory alone is taken up next time.
      await mkdir(dir, { recursive: true, mode: 0o755 });
      pool = await this.client.storagePoolDefineXml(buildDirPoolXml(name, dir));
      failpoint('libvirt.pool.defined');
      await this.client.storagePoolBuild(pool);
      await this.client.storagePoolSetAutostart(pool, true);
    }
    if (!await this.client.storagePoolIsActive(pool)) {
      try {
        await this.client.storagePoolCreate(pool);
      } catch (err) {
        if (!(isLibvirtError(err) && err.isOperationInvalid)) throw err; // already active: started by someone meanwhile
      }
    }
    return pool;
  }

  /** Creates missing volumes, grows the ones declared bigger, refuses to shrink; returns the volumes hyperlet owns. */
  async reconcileDisks(d: Desired<'VirtualMachine'>, parsed: ParsedDomain, dom: DomainRef, active: boolean): Promise<VolumeName[]> {
    const hostName = d.hostName;
    const ours = new Map((parsed.marker?.volumes ?? []).map((v) => [`${v.pool}/${v.name}`, v]));
    const liveTargets = new Set(parsed.disks.filter((x) => x.volume !== undefined).map((x) => `${x.pool ?? ''}/${x.volume ?? ''}=${x.target}`));
    for (const disk of planDisks(hostName, d.object.spec, d.id)) {
      const pool = await this.ensurePool(disk.disk.pool);
      const vol = await this.client.lookupStorageVol(pool, disk.volume);
      const key = `${disk.disk.pool}/${disk.volume}`;
      ours.set(key, { pool: disk.disk.pool, name: disk.volume });
      if (vol === undefined) {
        await this.createVolume(pool, disk, hostName);
        failpoint('libvirt.update.volume');
        continue;
      }
      if (disk.sizeBytes === undefined) continue;
      const capacity = Number((await this.client.storageVolGetInfo(vol)).capacityBytes);
      if (disk.sizeBytes < capacity) {
        throw new TerminalError('DiskShrinkRefused', `cannot shrink disk ${disk.disk.name} of ${hostName} from ${capacity} to ${disk.sizeBytes} bytes: volumes only grow (restore the size, or delete and re-create the VM)`);
      }
      if (disk.sizeBytes === capacity) continue;
      if (active && liveTargets.has(`${key}=${disk.target}`)) {
        await this.client.domainBlockResize(dom, disk.target, disk.sizeBytes);
      } else {
        await this.client.storageVolResize(vol, disk.sizeBytes);
      }
      this.log.info({ hostName, disk: disk.disk.name, fromBytes: capacity, toBytes: disk.sizeBytes, live: active }, 'disk grown');
    }
    return [...ours.values()];
  }

  /** Deletes the volumes that exist among `volumes` (each once); pools are looked up, never created. */
  async deleteVolumes(volumes: readonly VolumeName[]): Promise<void> {
    const seen = new Set<string>();
    for (const v of volumes) {
      const key = `${v.pool}/${v.name}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const pool = await this.client.lookupStoragePool(v.pool);
      const vol = pool === undefined ? undefined : await this.client.lookupStorageVol(pool, v.name);
      if (vol !== undefined) await this.client.storageVolDelete(vol);
    }
  }
}
