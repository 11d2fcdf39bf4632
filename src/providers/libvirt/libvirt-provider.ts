/**
 * The VirtualMachine provider: declared VirtualMachines as libvirt domains, driven through
 * libvirt's RPC protocol (libvirt-client.ts), never `virsh`.
 *
 * Contracts worth knowing:
 * - Ownership: a domain is hyperlet's when its `<metadata>` holds `<hyperlet:instance>` with the
 *   object's id (the domain UUID is that id too). Domains without it are observed (ownerId
 *   undefined) and never changed: create() refuses them with TerminalError NotOwned, delete()
 *   leaves them alone.
 * - Storage: each disk is a qcow2 volume HOSTNAME-DISK-ID8.qcow2 in its pool (ID8: the start of
 *   the object's id, which marks the volume as this object's). A missing pool is
 *   created as a `dir` pool under `poolRoot/NAME` (default /var/lib/hyperlet/pools) only when its
 *   name is `default` or starts with `hyperlet-` (names hyperlet reserves); any other missing pool
 *   is TerminalError PoolNotFound, because an operator's pool name must point at storage the
 *   operator set up. Pools are never deleted. The object's volumes (listed in the marker, and
 *   recognisable by name even when the domain is gone) are deleted with it. Sizes grow
 *   (live with block resize when running) and never shrink (TerminalError DiskShrinkRefused).
 *   A disk without size gets `defaultDiskBytes` (10 GiB, sparse).
 * - Stop: ACPI shutdown (re-sent every 5 s), waiting up to gracefulStopSeconds for the STOPPED
 *   event, then destroy; the note returned says which happened and is kept in details.lastStop.
 * - Reboot: the annotation `hyperlet.io/reboot-request` holds an opaque token (a timestamp, a
 *   counter). When a running domain's marker records a different token (details.rebootRequest),
 *   setState(…, 'Running') and update() reboot it once (libvirt's default reboot: ACPI, with QEMU
 *   restarting the guest when it powers off) and record the token. Setting the annotation at
 *   creation does not reboot. Callers tell a reboot is pending with `rebootPending(d, observed)`.
 * - Observation: observeAll() makes one CONNECT_LIST_ALL_DOMAINS and one
 *   CONNECT_GET_ALL_DOMAIN_STATS(state) call; domain XML is read only for domains not in the
 *   cache. The cache entry of a domain is dropped on any lifecycle event for it, on hyperlet's own
 *   changes, on reconnect, when its active/inactive state flips, and after `xmlCacheTtlMs`.
 */
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, open } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { specFields } from '../../api/v1alpha1/fields.js';
import type { PowerState } from '../../api/v1alpha1/types.js';
import { TerminalError } from '../../reconcile/errors.js';
import type { Desired } from '../../store/desired.js';
import {
  ProviderUnavailableError, type FieldChange, type InstanceState, type ObservedInstance, type Provider,
} from '../provider.js';
import type { ApplyMode } from '../../api/v1alpha1/fields.js';
import {
  HYPERLET_XML_NS, HYPERLET_XML_PREFIX, buildDomainXml, buildMarkerXml, parseDomainXml, planDisks,
  type OwnershipMarker, type ParsedDomain, type VolumeName,
} from './domain-xml.js';
import {
  DomainState, Flags, LibvirtClient, LifecycleEventType, uuidFromBytes, uuidToBytes, type DomainRef, type PoolRef,
} from './libvirt-client.js';
import { isLibvirtError, isNotFound } from './libvirt-error.js';
import { disksChangeMode, observedFieldsOf } from './observed-fields.js';
import { buildDirPoolXml, buildVolumeXml, imageFormatOf } from './storage-xml.js';

/** The annotation that asks for one reboot; see the file comment for the contract. */
export const REBOOT_REQUEST_ANNOTATION = 'hyperlet.io/reboot-request';

export interface LibvirtProviderOptions {
  /** Default qemu:///system. */
  readonly uri?: string;
  /** Default /run/libvirt/libvirt-sock. */
  readonly socketPath?: string;
  readonly logger: Logger;
  /** Where serial console logs go, one NAME.log per domain. Default /var/log/hyperlet/console. */
  readonly consoleDir?: string;
  /** Parent directory of the dir pools hyperlet creates. Default /var/lib/hyperlet/pools. */
  readonly poolRoot?: string;
  /** Which missing pools hyperlet may create. Default: `default` and `hyperlet-*`. */
  readonly creatablePool?: (name: string) => boolean;
  /**
   * Default 5 min: how long a domain's parsed XML is trusted without a lifecycle event. Long, so
   * a periodic resync of unchanged domains costs two calls in all; it only bounds how late a
   * live change made behind hyperlet's back that raises no lifecycle event (virsh setmem) is seen.
   */
  readonly xmlCacheTtlMs?: number;
  /** Capacity of a disk declared without size. Default 10 GiB (qcow2: sparse). */
  readonly defaultDiskBytes?: number;
}

interface CacheEntry {
  readonly parsed: ParsedDomain;
  readonly fields: ObservedInstance['fields'];
  readonly active: boolean;
  readonly readAtMs: number;
}

const STATE_NAMES = ['nostate', 'running', 'blocked', 'paused', 'shutdown', 'shutoff', 'crashed', 'pmsuspended'];
const REASON_NAMES: Readonly<Record<number, readonly string[]>> = {
  [DomainState.Running]: ['unknown', 'booted', 'migrated', 'restored', 'from snapshot', 'unpaused', 'migration canceled', 'save canceled', 'wakeup', 'crashed', 'post-copy'],
  [DomainState.Paused]: ['unknown', 'user', 'migrating', 'saving', 'dumping', 'ioerror', 'watchdog', 'from snapshot', 'shutting down', 'creating snapshot', 'api error', 'starting up', 'post-copy', 'post-copy failed'],
  [DomainState.Shutdown]: ['unknown', 'user'],
  [DomainState.Shutoff]: ['unknown', 'shutdown', 'destroyed', 'crashed', 'migrated', 'saved', 'failed', 'from snapshot', 'daemon'],
  [DomainState.Crashed]: ['unknown', 'panicked'],
};
const ACPI_RESEND_MS = 5_000;
/** How long after a live memory change observations re-read the XML: the guest balloons at its own pace. */
const BALLOON_SETTLE_MS = 30_000;
const KiB = 1024;

/** libvirt state → the provider-neutral state. */
export function instanceStateOf(state: number): InstanceState {
  switch (state) {
    case DomainState.Running: case DomainState.Blocked: return 'Running';
    case DomainState.Paused: case DomainState.PmSuspended: return 'Paused';
    case DomainState.Shutdown: return 'Stopping';
    case DomainState.Shutoff: return 'Stopped';
    case DomainState.Crashed: return 'Crashed';
    default: return 'Unknown';
  }
}

const isActive = (state: number): boolean => state !== DomainState.Shutoff && state !== DomainState.NoState && state !== DomainState.Crashed;

/** True when `d` asks for a reboot that `observed` has not had yet. */
export function rebootPending(d: Desired<'VirtualMachine'>, observed: ObservedInstance): boolean {
  const token = d.object.metadata.annotations?.[REBOOT_REQUEST_ANNOTATION];
  return token !== undefined && token !== (observed.details?.rebootRequest ?? '') && observed.state === 'Running';
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> => new Promise((resolve, reject) => {
  const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
  const onAbort = (): void => { clearTimeout(t); reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted')); };
  signal?.addEventListener('abort', onAbort, { once: true });
});

/**
 * libvirt domains for VirtualMachine objects. Every method is idempotent and connects lazily;
 * `close()` ends the session. Errors carry libvirtd's own message; spec problems that retrying
 * cannot fix are TerminalErrors (NotOwned, PoolNotFound, DiskShrinkRefused, InvalidSpec, ImageNotFound).
 */
export class LibvirtProvider implements Provider<'VirtualMachine'> {
  readonly name = 'libvirt' as const;
  readonly kind = 'VirtualMachine' as const;
  /** The RPC client (exposed for benchmarks and tests that need raw calls). */
  readonly client: LibvirtClient;
  private readonly log: Logger;
  private readonly consoleDir: string;
  private readonly poolRoot: string;
  private readonly creatablePool: (name: string) => boolean;
  private readonly xmlCacheTtlMs: number;
  private readonly defaultDiskBytes: number;
  private connecting: Promise<void> | undefined;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly knownNames = new Set<string>();
  private readonly lastStop = new Map<string, string>();
  private readonly listeners = new Set<(hostName: string) => void>();
  private readonly poolLocks = new Map<string, Promise<PoolRef>>();
  /** Domains whose XML is not cached until the given time: a balloon settles after the call that set it, with no lifecycle event. */
  private readonly uncachedUntilMs = new Map<string, number>();

  constructor(options: LibvirtProviderOptions) {
    this.log = options.logger.child({ provider: 'libvirt' });
    this.client = new LibvirtClient({ logger: this.log, ...(options.uri === undefined ? {} : { uri: options.uri }), ...(options.socketPath === undefined ? {} : { socketPath: options.socketPath }) });
    this.consoleDir = options.consoleDir ?? '/var/log/hyperlet/console';
    this.poolRoot = options.poolRoot ?? '/var/lib/hyperlet/pools';
    this.creatablePool = options.creatablePool ?? ((name) => name === 'default' || name.startsWith('hyperlet-'));
    this.xmlCacheTtlMs = options.xmlCacheTtlMs ?? 300_000;
    this.defaultDiskBytes = options.defaultDiskBytes ?? 10 * 1024 ** 3;
    this.client.on('lifecycle', (e) => {
      this.cache.delete(uuidFromBytes(e.domain.uuid));
      this.notify(e.domain.name);
    });
    this.client.on('reconnected', () => {
      // Events were lost while disconnected: forget everything and have every known domain looked at.
      this.cache.clear();
      for (const name of this.knownNames) this.notify(name);
    });
  }

  /** The serial console log of a domain. */
  consolePathOf(hostName: string): string {
    return path.join(this.consoleDir, `${hostName}.log`);
  }

  /** Ends the libvirt session; later calls reconnect. */
  async close(): Promise<void> {
    const c = this.connecting;
    this.connecting = undefined;
    if (c !== undefined) await c.catch(() => undefined);
    await this.client.close();
  }

  private notify(hostName: string): void {
    for (const l of this.listeners) l(hostName);
  }

  private async ensureConnected(): Promise<void> {
    if (this.client.connected) return;
    if (this.connecting === undefined) {
      this.connecting = this.client.connect().catch((err: unknown) => {
        this.connecting = undefined;
        throw err;
      });
    }
    await this.connecting;
    if (!this.client.connected) {
      throw new Error(`cannot reach libvirtd at ${this.client.socketPath}: reconnecting`);
    }
  }

  async probe(signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    try {
      await access(this.client.socketPath, fsConstants.R_OK | fsConstants.W_OK);
    } catch (err) {
      throw new ProviderUnavailableError(`cannot use libvirt: socket ${this.client.socketPath} is missing or not writable (is libvirtd running? run scripts/setup-host.sh)`, { cause: err });
    }
    try {
      await this.ensureConnected();
      await this.client.getLibVersion();
    } catch (err) {
      throw new ProviderUnavailableError(`cannot use libvirt at ${this.client.uri}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }

  async observeAll(signal: AbortSignal): Promise<ReadonlyMap<string, ObservedInstance>> {
    await this.ensureConnected();
    signal.throwIfAborted();
    const [domains, stats] = await Promise.all([this.client.listAllDomains(), this.client.getAllDomainStats(Flags.StatsState)]);
    const states = new Map(stats.map((s) => [uuidFromBytes(s.domain.uuid), {
      state: Number(s.params.get('state.state') ?? DomainState.NoState), reason: Number(s.params.get('state.reason') ?? 0),
    }]));
    const live = new Set<string>();
    const described = await Promise.all(domains.map(async (dom) => {
      const uuid = uuidFromBytes(dom.uuid);
      live.add(uuid);
      try {
        const st = states.get(uuid) ?? await this.client.domainGetState(dom);
        return await this.describe(dom, st.state, st.reason);
      } catch (err) {
        if (isNotFound(err)) return undefined; // undefined between the list and this look: it is gone
        throw err;
      }
    }));
    const observed = described.filter((o): o is ObservedInstance => o !== undefined);
    for (const uuid of this.cache.keys()) if (!live.has(uuid)) this.cache.delete(uuid);
    for (const [uuid, until] of this.uncachedUntilMs) if (until <= Date.now()) this.uncachedUntilMs.delete(uuid);
    this.knownNames.clear();
    for (const o of observed) this.knownNames.add(o.hostName);
    return new Map(observed.map((o) => [o.hostName, o]));
  }

  async observe(d: Desired<'VirtualMachine'>, signal: AbortSignal): Promise<ObservedInstance | undefined> {
    await this.ensureConnected();
    signal.throwIfAborted();
    const dom = await this.client.lookupDomainByName(d.hostName);
    if (dom === undefined) return undefined;
    this.knownNames.add(dom.name);
    try {
      const st = await this.client.domainGetState(dom);
      return await this.describe(dom, st.state, st.reason);
    } catch (err) {
      if (isNotFound(err)) return undefined; // undefined right after the lookup
      throw err;
    }
  }

  /** One domain as observed, reading its XML (and volume sizes) only when the cache has nothing current. */
  private async describe(dom: DomainRef, state: number, reason: number): Promise<ObservedInstance> {
    const entry = await this.entryOf(dom, isActive(state));
    const { parsed } = entry;
    const details: Record<string, string> = {
      libvirtState: STATE_NAMES[state] ?? String(state),
      libvirtReason: REASON_NAMES[state]?.[reason] ?? String(reason),
      uuid: parsed.uuid,
    };
    if (parsed.marker?.rebootRequest !== undefined) details.rebootRequest = parsed.marker.rebootRequest;
    const stop = this.lastStop.get(dom.name);
    if (stop !== undefined) details.lastStop = stop;
    if (parsed.consolePath !== undefined) details.console = parsed.consolePath;
    return {
      hostName: dom.name,
      state: instanceStateOf(state),
      fields: entry.fields,
      ...(parsed.marker === undefined ? {} : { ownerId: parsed.marker.id, specHash: parsed.marker.specHash }),
      ...(parsed.marker?.partial === true ? { partial: true } : {}),
      details,
    };
  }

  private async entryOf(dom: DomainRef, active: boolean): Promise<CacheEntry> {
    const uuid = uuidFromBytes(dom.uuid);
    const cached = this.cache.get(uuid);
    const volatile = (this.uncachedUntilMs.get(uuid) ?? 0) > Date.now();
    if (cached !== undefined && !volatile && cached.active === active && Date.now() - cached.readAtMs < this.xmlCacheTtlMs) return cached;
    const parsed = parseDomainXml(await this.client.domainGetXmlDesc(dom));
    const capacities = new Map<string, number>();
    if (parsed.marker !== undefined) {
      await Promise.all(parsed.disks.map(async (disk) => {
        if (disk.pool === undefined || disk.volume === undefined) return;
        const cap = await this.volumeCapacity(disk.pool, disk.volume);
        if (cap !== undefined) capacities.set(`${disk.pool}/${disk.volume}`, cap);
      }));
    }
    const entry: CacheEntry = { parsed, fields: observedFieldsOf(parsed, dom.name, capacities), active, readAtMs: Date.now() };
    this.cache.set(uuid, entry);
    return entry;
  }

  private async volumeCapacity(poolName: string, volume: string): Promise<number | undefined> {
    const pool = await this.client.lookupStoragePool(poolName);
    if (pool === undefined) return undefined;
    const vol = await this.client.lookupStorageVol(pool, volume);
    if (vol === undefined) return undefined;
    return Number((await this.client.storageVolGetInfo(vol)).capacityBytes);
  }

  private markerFor(d: Desired<'VirtualMachine'>, volumes: readonly VolumeName[], extra: { rebootRequest?: string; partial?: boolean } = {}): OwnershipMarker {
    const annotations = d.object.metadata.annotations ?? {};
    const rebootRequest = extra.rebootRequest ?? annotations[REBOOT_REQUEST_ANNOTATION];
    return {
      id: d.id,
      key: d.key,
      specHash: d.specHash,
      generation: d.generation,
      fields: specFields('VirtualMachine', d.object.spec),
      volumes,
      ...(rebootRequest === undefined ? {} : { rebootRequest }),
      ...(extra.partial === true ? { partial: true } : {}),
      annotations,
    };
  }

  private domainXmlFor(d: Desired<'VirtualMachine'>, marker: OwnershipMarker): string {
    try {
      return buildDomainXml({ name: d.hostName, uuid: d.id, spec: d.object.spec, consolePath: this.consolePathOf(d.hostName), marker });
    } catch (err) {
      throw new TerminalError('InvalidSpec', `cannot build domain XML for ${d.hostName}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }

  private async readDomain(dom: DomainRef): Promise<ParsedDomain> {
    return parseDomainXml(await this.client.domainGetXmlDesc(dom));
  }

  private notOwned(d: Desired<'VirtualMachine'>, verb: string): TerminalError {
    return new TerminalError('NotOwned', `cannot ${verb} domain ${d.hostName}: a domain of that name exists and hyperlet does not own it (no marker with id ${d.id})`);
  }

  async create(d: Desired<'VirtualMachine'>, signal: AbortSignal): Promise<void> {
    await this.ensureConnected();
    const existing = await this.client.lookupDomainByName(d.hostName);
    let previous: OwnershipMarker | undefined;
    if (existing !== undefined) {
      previous = (await this.readDomain(existing)).marker;
      if (previous?.id !== d.id) throw this.notOwned(d, 'create');
      if (previous.partial !== true) return; // created already
    } else {
      let uuid: Buffer;
      try {
        uuid = uuidToBytes(d.id);
      } catch (err) {
        throw new TerminalError('InvalidId', `cannot create domain ${d.hostName}: its id ${JSON.stringify(d.id)} is not a UUID (the domain UUID is the object's id)`, { cause: err });
      }
      const clash = await this.client.lookupDomainByUuid(uuid);
      if (clash !== undefined) {
        throw new TerminalError('UuidInUse', `cannot create domain ${d.hostName}: UUID ${d.id} is already used by domain ${clash.name}`);
      }
    }
    signal.throwIfAborted();
    await mkdir(this.consoleDir, { recursive: true, mode: 0o755 });
    // A volume named with this object's id is this object's, whoever made it last (a domain undefined behind our back leaves it).
    const ours = new Map((previous?.volumes ?? []).map((v) => [`${v.pool}/${v.name}`, v]));
    const toCreate: { pool: PoolRef; disk: ReturnType<typeof planDisks>[number] }[] = [];
    for (const disk of planDisks(d.hostName, d.object.spec, d.id)) {
      const pool = await this.ensurePool(disk.disk.pool);
      const exists = await this.client.lookupStorageVol(pool, disk.volume);
      ours.set(`${disk.disk.pool}/${disk.volume}`, { pool: disk.disk.pool, name: disk.volume });
      if (exists === undefined) toCreate.push({ pool, disk });
    }
    const volumes = [...ours.values()];
    // Define first, marked partial, so a crash while making volumes leaves a domain that says which volumes are ours.
    const partial = toCreate.length > 0;
    let dom = await this.client.domainDefineXml(this.domainXmlFor(d, this.markerFor(d, volumes, { partial })));
    for (const { pool, disk } of toCreate) {
      signal.throwIfAborted();
      await this.client.storageVolCreateXml(pool, buildVolumeXml(disk.volume, disk.sizeBytes ?? this.defaultDiskBytes, await this.backingOf(disk.disk.image)));
    }
    if (partial || previous?.partial === true) dom = await this.client.domainDefineXml(this.domainXmlFor(d, this.markerFor(d, volumes)));
    this.cache.delete(uuidFromBytes(dom.uuid));
    this.log.info({ hostName: d.hostName, volumes: volumes.length }, 'domain defined');
  }

  private async backingOf(image: string | undefined): Promise<{ path: string; format: 'qcow2' | 'raw' } | undefined> {
    if (image === undefined) return undefined;
    try {
      const fh = await open(image, 'r');
      try {
        const head = Buffer.alloc(4);
        await fh.read(head, 0, 4, 0);
        return { path: image, format: imageFormatOf(head) };
      } finally {
        await fh.close();
      }
    } catch (err) {
      throw new TerminalError('ImageNotFound', `cannot read backing image ${image}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }

  /** The pool named `name`, active; created as a dir pool when missing and hyperlet may create it. */
  private ensurePool(name: string): Promise<PoolRef> {
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
      await mkdir(this.poolRoot, { recursive: true, mode: 0o755 });
      pool = await this.client.storagePoolDefineXml(buildDirPoolXml(name, dir));
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

  async update(d: Desired<'VirtualMachine'>, changes: readonly FieldChange[], observed: ObservedInstance, signal: AbortSignal): Promise<void> {
    await this.ensureConnected();
    const dom = await this.requireOwned(d, 'update');
    const parsed = await this.readDomain(dom);
    const st = await this.client.domainGetState(dom);
    const active = isActive(st.state);
    if (active) {
      for (const c of changes) {
        if (c.apply !== 'live') continue;
        if (c.path === 'resources.memory' && typeof c.to === 'number') {
          await this.client.domainSetMemory(dom, Math.ceil(c.to / KiB), Flags.AffectLive);
          this.uncachedUntilMs.set(uuidFromBytes(dom.uuid), Date.now() + BALLOON_SETTLE_MS);
        } else if (c.path === 'resources.cpu' && typeof c.to === 'number') {
          await this.client.domainSetVcpus(dom, c.to, Flags.AffectLive);
        }
      }
    }
    signal.throwIfAborted();
    const volumes = await this.reconcileDisks(d, parsed, dom, active);
    const marker = this.markerFor(d, volumes, parsed.marker?.rebootRequest === undefined ? {} : { rebootRequest: parsed.marker.rebootRequest });
    await this.client.domainDefineXml(this.domainXmlFor(d, marker));
    if (active) await this.client.domainSetMetadata(dom, buildMarkerXml(marker, true), HYPERLET_XML_PREFIX, HYPERLET_XML_NS, Flags.AffectLive);
    this.cache.delete(uuidFromBytes(dom.uuid));
    if (active) await this.rebootIfRequested(d, dom, marker, observed);
    this.log.info({ hostName: d.hostName, fields: changes.map((c) => c.path), live: active }, 'domain updated');
  }

  /** Creates missing volumes, grows the ones declared bigger, refuses to shrink; returns the volumes hyperlet owns. */
  private async reconcileDisks(d: Desired<'VirtualMachine'>, parsed: ParsedDomain, dom: DomainRef, active: boolean): Promise<VolumeName[]> {
    const hostName = d.hostName;
    const ours = new Map((parsed.marker?.volumes ?? []).map((v) => [`${v.pool}/${v.name}`, v]));
    const liveTargets = new Set(parsed.disks.filter((x) => x.volume !== undefined).map((x) => `${x.pool ?? ''}/${x.volume ?? ''}=${x.target}`));
    for (const disk of planDisks(hostName, d.object.spec, d.id)) {
      const pool = await this.ensurePool(disk.disk.pool);
      const vol = await this.client.lookupStorageVol(pool, disk.volume);
      const key = `${disk.disk.pool}/${disk.volume}`;
      ours.set(key, { pool: disk.disk.pool, name: disk.volume });
      if (vol === undefined) {
        await this.client.storageVolCreateXml(pool, buildVolumeXml(disk.volume, disk.sizeBytes ?? this.defaultDiskBytes, await this.backingOf(disk.disk.image)));
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

  private async requireOwned(d: Desired<'VirtualMachine'>, verb: string): Promise<DomainRef> {
    const dom = await this.client.lookupDomainByName(d.hostName);
    if (dom === undefined) throw new Error(`cannot ${verb} domain ${d.hostName}: it does not exist`);
    const marker = (await this.readDomain(dom)).marker;
    if (marker?.id !== d.id) throw this.notOwned(d, verb);
    return dom;
  }

  private async rebootIfRequested(d: Desired<'VirtualMachine'>, dom: DomainRef, marker: OwnershipMarker, observed: ObservedInstance): Promise<string | undefined> {
    const token = d.object.metadata.annotations?.[REBOOT_REQUEST_ANNOTATION];
    if (token === undefined || token === (observed.details?.rebootRequest ?? '')) return undefined;
    await this.client.domainReboot(dom, 0);
    const next = { ...marker, rebootRequest: token };
    await this.client.domainSetMetadata(dom, buildMarkerXml(next, true), HYPERLET_XML_PREFIX, HYPERLET_XML_NS, Flags.AffectLive | Flags.AffectConfig);
    this.cache.delete(uuidFromBytes(dom.uuid));
    this.log.info({ hostName: d.hostName, token }, 'domain rebooted on request');
    return `rebooted on request ${token}`;
  }

  async setState(d: Desired<'VirtualMachine'>, to: PowerState, observed: ObservedInstance, signal: AbortSignal): Promise<string | void> {
    await this.ensureConnected();
    const dom = await this.requireOwned(d, 'change the state of');
    const st = await this.client.domainGetState(dom);
    const uuid = uuidFromBytes(dom.uuid);
    try {
      switch (to) {
        case 'Running':
          if (st.state === DomainState.Paused || st.state === DomainState.PmSuspended) {
            await this.client.domainResume(dom);
            return 'resumed';
          }
          if (st.state === DomainState.Crashed) await this.client.domainDestroy(dom);
          if (!isActive(st.state)) {
            await this.client.domainCreate(dom);
            return 'started';
          }
          return await this.rebootIfRequested(d, dom, (await this.readDomain(dom)).marker ?? this.markerFor(d, []), observed);
        case 'Paused':
          if (!isActive(st.state)) {
            await this.client.domainCreate(dom, Flags.StartPaused);
            return 'started paused';
          }
          if (st.state !== DomainState.Paused) await this.client.domainSuspend(dom);
          return 'paused';
        case 'Stopped':
          if (!isActive(st.state)) return undefined;
          if (st.state === DomainState.Paused) await this.client.domainResume(dom); // a paused guest cannot see the power button
          return await this.stopGracefully(d, dom, signal);
        default:
          throw new TerminalError('InvalidSpec', `cannot set a VirtualMachine to state ${String(to)}`);
      }
    } finally {
      this.cache.delete(uuid);
    }
  }

  /** ACPI shutdown, re-sent every 5 s, up to gracefulStopSeconds; then destroy. Returns and records what happened. */
  private async stopGracefully(d: Desired<'VirtualMachine'>, dom: DomainRef, signal: AbortSignal): Promise<string> {
    const timeoutMs = d.object.spec.gracefulStopSeconds * 1000;
    const started = Date.now();
    let note: string;
    if (timeoutMs === 0) {
      await this.client.domainDestroy(dom);
      note = 'destroyed at once (gracefulStopSeconds is 0)';
    } else if (await this.waitForAcpiStop(dom, timeoutMs, signal)) {
      note = `shut down by ACPI in ${((Date.now() - started) / 1000).toFixed(1)} s`;
    } else {
      try {
        await this.client.domainDestroy(dom);
      } catch (err) {
        // It may have stopped between the last look and the destroy.
        if (!(isLibvirtError(err) && err.isOperationInvalid)) throw err;
      }
      note = `destroyed after ${d.object.spec.gracefulStopSeconds} s: the guest did not power off on ACPI shutdown`;
    }
    this.lastStop.set(d.hostName, note);
    this.log.info({ hostName: d.hostName, note }, 'domain stopped');
    return note;
  }

  private async waitForAcpiStop(dom: DomainRef, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
    const uuid = uuidFromBytes(dom.uuid);
    let stopped = false;
    let wake: (() => void) | undefined;
    const onEvent = (e: { domain: DomainRef; event: number }): void => {
      if (uuidFromBytes(e.domain.uuid) === uuid && (e.event === LifecycleEventType.Stopped || e.event === LifecycleEventType.Undefined)) {
        stopped = true;
        wake?.();
      }
    };
    this.client.on('lifecycle', onEvent);
    try {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        try {
          await this.client.domainShutdown(dom, Flags.ShutdownAcpi);
        } catch (err) {
          if (isLibvirtError(err) && err.isOperationInvalid) return true; // not running any more
          throw err;
        }
        const until = Math.min(deadline, Date.now() + ACPI_RESEND_MS);
        while (!stopped && Date.now() < until) {
          signal.throwIfAborted();
          // Events are the fast path; a state poll covers events lost in a reconnect.
          await Promise.race([new Promise<void>((r) => { wake = r; }), sleep(Math.min(500, Math.max(0, until - Date.now())), signal)]);
          if (!stopped && !isActive((await this.client.domainGetState(dom)).state)) stopped = true;
        }
        if (stopped) return true;
      }
      return !isActive((await this.client.domainGetState(dom)).state);
    } finally {
      this.client.off('lifecycle', onEvent);
    }
  }

  async adopt(d: Desired<'VirtualMachine'>, observed: ObservedInstance, signal: AbortSignal): Promise<void> {
    await this.ensureConnected();
    signal.throwIfAborted();
    const dom = await this.client.lookupDomainByName(d.hostName);
    if (dom === undefined) throw new Error(`cannot adopt domain ${d.hostName}: it does not exist`);
    const st = await this.client.domainGetState(dom);
    // Adopted volumes stay the operator's: the marker lists none, so delete() keeps them.
    const flags = Flags.AffectConfig | (isActive(st.state) ? Flags.AffectLive : 0);
    await this.client.domainSetMetadata(dom, buildMarkerXml(this.markerFor(d, []), true), HYPERLET_XML_PREFIX, HYPERLET_XML_NS, flags);
    this.cache.delete(uuidFromBytes(dom.uuid));
    this.log.info({ hostName: d.hostName, observedState: observed.state }, 'domain adopted');
  }

  async delete(d: Desired<'VirtualMachine'>, signal: AbortSignal): Promise<void> {
    await this.ensureConnected();
    const dom = await this.client.lookupDomainByName(d.hostName);
    if (dom === undefined) {
      // The domain went behind our back: its volumes, named with our id, are still ours to remove.
      await this.deleteVolumes(planDisks(d.hostName, d.object.spec, d.id).map((x) => ({ pool: x.disk.pool, name: x.volume })));
      return;
    }
    const marker = (await this.readDomain(dom)).marker;
    if (marker?.id !== d.id) {
      this.log.warn({ hostName: d.hostName }, 'not deleting a domain hyperlet does not own');
      return;
    }
    const st = await this.client.domainGetState(dom);
    if (isActive(st.state) || st.state === DomainState.Crashed) {
      try {
        await this.client.domainDestroy(dom);
      } catch (err) {
        if (!(isLibvirtError(err) && err.isOperationInvalid)) throw err;
      }
    }
    signal.throwIfAborted();
    // Volumes before the domain: if we die in between, the domain still names what is left to delete.
    await this.deleteVolumes([...marker.volumes, ...planDisks(d.hostName, d.object.spec, d.id).map((x) => ({ pool: x.disk.pool, name: x.volume }))]);
    try {
      await this.client.domainUndefine(dom);
    } catch (err) {
      if (!(isLibvirtError(err) && err.isNotFound)) throw err;
    }
    this.cache.delete(uuidFromBytes(dom.uuid));
    this.lastStop.delete(d.hostName);
    this.log.info({ hostName: d.hostName, volumes: marker.volumes.length }, 'domain deleted');
  }

  /** Deletes the volumes that exist among `volumes` (each once); pools are looked up, never created. */
  private async deleteVolumes(volumes: readonly VolumeName[]): Promise<void> {
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

  async *changes(signal: AbortSignal): AsyncIterable<string> {
    const queue: string[] = [];
    let wake: (() => void) | undefined;
    const listener = (hostName: string): void => {
      queue.push(hostName);
      wake?.();
    };
    const onAbort = (): void => wake?.();
    this.listeners.add(listener);
    signal.addEventListener('abort', onAbort);
    try {
      // Events flow only on a live session: keep trying until it is up.
      while (!signal.aborted) {
        try {
          await this.ensureConnected();
          break;
        } catch (err) {
          this.log.warn({ err }, 'cannot connect to libvirtd for events; retrying');
          await sleep(1_000, signal).catch(() => undefined);
        }
      }
      while (!signal.aborted) {
        if (queue.length === 0) await new Promise<void>((r) => { wake = r; });
        wake = undefined;
        while (queue.length > 0 && !signal.aborted) {
          const next = queue.shift();
          if (next !== undefined) yield next;
        }
      }
    } finally {
      this.listeners.delete(listener);
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** Whether `d`'s reboot-request annotation names a reboot `observed` has not had (see the file header). */
  rebootPending(d: Desired<'VirtualMachine'>, observed: ObservedInstance): boolean {
    return rebootPending(d, observed);
  }

  applyModeOf(change: FieldChange, observed: ObservedInstance): ApplyMode {
    void observed;
    if (change.path === 'disks') return disksChangeMode(change.from, change.to) ?? change.apply;
    return change.apply;
  }
}
