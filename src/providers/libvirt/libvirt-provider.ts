/**
 * The VirtualMachine provider: declared VirtualMachines as libvirt domains, driven through
 * libvirt's RPC protocol (libvirt-client.ts), never `virsh`.
 *
 * Contracts worth knowing:
 * - Ownership: a domain is hyperlet's when its `<metadata>` holds `<hyperlet:instance>` with the
 *   object's id (the domain UUID is that id too). Domains without it are observed (ownerId
 *   undefined) and never changed: create() refuses them with TerminalError NotOwned, delete()
 *   leaves them alone.
 * - Storage: volumes named with the object's id, pools hyperlet may create: libvirt-storage.ts.
 * - Stop: the reconciler presses ACPI (requestStop), waits with its queue and destroys at the
 *   deadline (forceStop): no worker waits. setState(…, 'Stopped') still does the whole stop in one
 *   call (ACPI re-sent, then destroy after gracefulStopSeconds: graceful-stop.ts). The note says
 *   which happened and is kept in details.lastStop.
 * - Reboot: a changed `hyperlet.io/reboot-request` token (reboot-request.ts) makes
 *   setState(…, 'Running') and update() reboot a running domain once; creation does not reboot.
 * - Observation: observeAll() makes one CONNECT_LIST_ALL_DOMAINS and one
 *   CONNECT_GET_ALL_DOMAIN_STATS(state) call; domain XML is read only for domains not in the
 *   cache. The cache entry of a domain is dropped on any lifecycle event for it, on hyperlet's own
 *   changes, on reconnect, when its active/inactive state flips, and after `xmlCacheTtlMs`.
 */
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { specFields } from '../../api/v1alpha1/fields.js';
import { DEFAULT_VM_DISK_BYTES } from '../../api/v1alpha1/host-defaults.js';
import type { PowerState } from '../../api/v1alpha1/types.js';
import { TerminalError } from '../../shared/errors.js';
import { failpoint } from '../../shared/failpoint.js';
import type { Desired } from '../../store/desired.js';
import {
  ProviderUnavailableError, assertSnapshotName, type FieldChange, type InstanceSnapshot, type ObservedInstance, type Provider,
  type RestoreOutcome, type SnapshotOptions, type BackupOptions, type RestoreBackupOptions, type RestoredBackup,
} from '../provider.js';
import { LibvirtSnapshots } from './libvirt-snapshots.js';
import { LibvirtBackups } from './libvirt-backups.js';
import type { BackupSummary } from '../backup/backup-archive.js';
import type { ApplyMode } from '../../api/v1alpha1/fields.js';
import {
  HYPERLET_XML_NS, HYPERLET_XML_PREFIX, buildDomainXml, buildMarkerXml, parseDomainXml, planDisks,
  type OwnershipMarker, type ParsedDomain, type VolumeName,
} from './domain-xml.js';
import {
  DomainState, Flags, uuidFromBytes, uuidToBytes, type DomainRef, type LibvirtApi, type PoolRef,
} from './libvirt-client.js';
import { isLibvirtError, isNotFound } from './libvirt-error.js';
import { disksChangeMode, observedFieldsOf } from './observed-fields.js';
import { LibvirtStorage } from './libvirt-storage.js';
import { DiskImages } from './disk-images.js';
import type { ImageCache } from '../images/image-cache.js';
import { cloudInitSeedFiles } from '../../api/v1alpha1/cloud-init.js';
import { seedPathFor, writeSeedIso } from './cloud-init-seed.js';
import { GuestAddresses } from './guest-addresses.js';
import { ChangeFeed } from '../change-feed.js';
import type { ConsoleOptions, ConsoleSession } from '../provider.js';
import { InstanceNotFoundError } from '../provider.js';
import { streamConsoleSession } from './stream-console-session.js';
import { REBOOT_REQUEST_ANNOTATION, RESTORE_REQUEST_ANNOTATION, snapshotOfRestoreRequest } from '../../shared/annotations.js';
import { rebootPending } from './reboot-request.js';
import { REASON_NAMES, STATE_NAMES, instanceStateOf, isActive } from './domain-state.js';
import { sleep, stopGracefully } from './graceful-stop.js';
import type { Clock } from '../../shared/clock.js';
import { systemClock } from '../../shared/clock.js';

export { instanceStateOf } from './domain-state.js';


/** How the libvirt provider reaches libvirtd and where it keeps consoles and pools. */
export interface LibvirtProviderOptions {
  /**
   * The libvirt connection every call goes through: a LibvirtClient (registry.ts makes it from
   * the daemon's URI and socket), or a FakeLibvirtClient in unit tests. The provider connects it
   * lazily and closes it in close().
   */
  readonly client: LibvirtApi;
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
  /** Time for the XML cache, the balloon settle window and graceful stops (default: the system clock). */
  readonly clock?: Clock;
  /** The image cache disks' image URLs are downloaded into (without it, only host paths are images). */
  readonly images?: ImageCache;
  /** Where cloud-init seed ISOs are written, one per VM. Default /var/lib/hyperlet/cloud-init. */
  readonly seedDir?: string;
  /** Where OVMF (UEFI firmware, Debian package ovmf) is looked for. Default /usr/share/OVMF. */
  readonly ovmfDir?: string;
}

interface CacheEntry {
  readonly parsed: ParsedDomain;
  readonly fields: ObservedInstance['fields'];
  readonly active: boolean;
  readonly readAtMs: number;
}

/** How long after a live memory change observations re-read the XML: the guest balloons at its own pace. */
const BALLOON_SETTLE_MS = 30_000;
const KiB = 1024;


/**
 * libvirt domains for VirtualMachine objects. Every method is idempotent and connects lazily;
 * `close()` ends the session. Errors carry libvirtd's own message; spec problems that retrying
 * cannot fix are TerminalErrors (NotOwned, PoolNotFound, DiskShrinkRefused, InvalidSpec, ImageNotFound).
 */
export class LibvirtProvider implements Provider<'VirtualMachine'> {
  readonly name = 'libvirt' as const;
  readonly kind = 'VirtualMachine' as const;
  /** The libvirt connection given in the options. */
  readonly client: LibvirtApi;
  private readonly log: Logger;
  private readonly consoleDir: string;
  private readonly xmlCacheTtlMs: number;
  private readonly clock: Clock;
  private readonly storage: LibvirtStorage;
  private readonly snapshots: LibvirtSnapshots;
  private readonly diskImages: DiskImages;
  private readonly addresses: GuestAddresses;
  private readonly seedDir: string;
  private readonly ovmfDir: string;
  private readonly images: ImageCache | undefined;
  private readonly backups: LibvirtBackups;
  private connecting: Promise<void> | undefined;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly knownNames = new Set<string>();
  private readonly lastStop = new Map<string, string>();
  private readonly feed = new ChangeFeed();
  /** Aborted by close(): ends changes() streams, including one still waiting to connect. */
  private readonly closing = new AbortController();
  /** Domains whose XML is not cached until the given time: a balloon settles after the call that set it, with no lifecycle event. */
  private readonly uncachedUntilMs = new Map<string, number>();

  constructor(options: LibvirtProviderOptions) {
    this.log = options.logger.child({ provider: 'libvirt' });
    this.client = options.client;
    this.consoleDir = options.consoleDir ?? '/var/log/hyperlet/console';
    this.xmlCacheTtlMs = options.xmlCacheTtlMs ?? 300_000;
    this.clock = options.clock ?? systemClock;
    this.seedDir = options.seedDir ?? '/var/lib/hyperlet/cloud-init';
    this.ovmfDir = options.ovmfDir ?? '/usr/share/OVMF';
    this.images = options.images;
    this.diskImages = new DiskImages(options.images);
    this.addresses = new GuestAddresses(this.client, this.clock);
    this.storage = new LibvirtStorage({
      images: this.diskImages,
      client: this.client, logger: this.log,
      poolRoot: options.poolRoot ?? '/var/lib/hyperlet/pools',
      creatablePool: options.creatablePool ?? ((name) => name === 'default' || name.startsWith('hyperlet-')),
      defaultDiskBytes: options.defaultDiskBytes ?? DEFAULT_VM_DISK_BYTES,
    });
    this.snapshots = new LibvirtSnapshots(this.client, this.log);
    this.backups = new LibvirtBackups({
      client: this.client, storage: this.storage, snapshots: this.snapshots, clock: this.clock, logger: this.log,
      consolePathOf: (hostName) => this.consolePathOf(hostName),
    });
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

  /** The serial console log of a domain (the Provider contract's name for it: the dashboard shows its tail). */
  consoleLogPath(hostName: string): string {
    return this.consolePathOf(hostName);
  }

  /**
   * Attaches to the serial console of running domain `hostName` through a libvirt console stream.
   * Refuses a domain without hyperlet's marker (NotOwned) and a missing one (NotFound); libvirtd
   * refuses a stopped domain and a console another session holds (unless `force`).
   */
  async openConsole(hostName: string, options: ConsoleOptions): Promise<ConsoleSession> {
    await this.ensureConnected();
    const dom = await this.client.lookupDomainByName(hostName);
    if (dom === undefined) throw new InstanceNotFoundError(`cannot attach to domain ${hostName}: it does not exist`);
    const marker = (await this.readDomain(dom)).marker;
    if (marker === undefined) {
      throw new TerminalError('NotOwned', `cannot attach to domain ${hostName}: hyperlet does not manage it (no ownership marker)`);
    }
    return streamConsoleSession(await this.client.domainOpenConsole(dom, undefined, options.force === true ? Flags.ConsoleForce : 0));
  }

  /** The part virtlogd rotated the serial console log to (NAME.log.0; older parts are not read). */
  rotatedConsoleLogPath(hostName: string): string {
    return `${this.consolePathOf(hostName)}.0`;
  }

    /** Ends every changes() stream for good, downloads in flight and the libvirt session; later calls reconnect. Idempotent. */
  async close(): Promise<void> {
    this.closing.abort();
    this.feed.close();
    this.images?.close();
    const c = this.connecting;
    this.connecting = undefined;
    if (c !== undefined) await c.catch(() => undefined);
    await this.client.close();
  }

  private notify(hostName: string): void {
    this.feed.push(hostName);
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
    for (const [uuid, until] of this.uncachedUntilMs) if (until <= this.clock.now()) this.uncachedUntilMs.delete(uuid);
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
    if (parsed.marker?.restoreRequest !== undefined) details.restoreRequest = parsed.marker.restoreRequest;
    const stop = this.lastStop.get(dom.name);
    if (stop !== undefined) details.lastStop = stop;
    if (parsed.consolePath !== undefined) details.console = parsed.consolePath;
    const addresses = state === DomainState.Running ? await this.addresses.of(dom, parsed) : [];
    return {
      hostName: dom.name,
      state: instanceStateOf(state),
      fields: entry.fields,
      ...(addresses.length === 0 ? {} : { addresses }),
      ...(parsed.marker === undefined ? {} : { ownerId: parsed.marker.id, specHash: parsed.marker.specHash }),
      ...(parsed.marker?.partial === true ? { partial: true } : {}),
      details,
    };
  }

  private async entryOf(dom: DomainRef, active: boolean): Promise<CacheEntry> {
    const uuid = uuidFromBytes(dom.uuid);
    const cached = this.cache.get(uuid);
    const volatile = (this.uncachedUntilMs.get(uuid) ?? 0) > this.clock.now();
    const fresh = cached !== undefined && this.clock.now() - cached.readAtMs < this.xmlCacheTtlMs;
    if (cached !== undefined && fresh && !volatile && cached.active === active) return cached;
    const parsed = parseDomainXml(await this.client.domainGetXmlDesc(dom));
    const capacities = new Map<string, number>();
    if (parsed.marker !== undefined) {
      await Promise.all(parsed.disks.map(async (disk) => {
        if (disk.pool === undefined || disk.volume === undefined) return;
        const cap = await this.storage.capacityOf(disk.pool, disk.volume);
        if (cap !== undefined) capacities.set(`${disk.pool}/${disk.volume}`, cap);
      }));
    }
    const entry: CacheEntry = { parsed, fields: observedFieldsOf(parsed, dom.name, capacities), active, readAtMs: this.clock.now() };
    this.cache.set(uuid, entry);
    return entry;
  }

  private markerFor(d: Desired<'VirtualMachine'>, volumes: readonly VolumeName[], extra: { rebootRequest?: string; restoreRequest?: string; partial?: boolean } = {}): OwnershipMarker {
    const annotations = d.object.metadata.annotations ?? {};
    const rebootRequest = extra.rebootRequest ?? annotations[REBOOT_REQUEST_ANNOTATION];
    const restoreRequest = extra.restoreRequest ?? annotations[RESTORE_REQUEST_ANNOTATION];
    return {
      id: d.id,
      key: d.key,
      specHash: d.specHash,
      generation: d.generation,
      fields: specFields('VirtualMachine', d.object.spec),
      volumes,
      ...(rebootRequest === undefined ? {} : { rebootRequest }),
      ...(restoreRequest === undefined ? {} : { restoreRequest }),
      ...(extra.partial === true ? { partial: true } : {}),
      annotations,
    };
  }

  private domainXmlFor(d: Desired<'VirtualMachine'>, marker: OwnershipMarker): string {
    try {
      return buildDomainXml({
        name: d.hostName, uuid: d.id, spec: d.object.spec, consolePath: this.consolePathOf(d.hostName), marker,
        ...(d.object.spec.cloudInit === undefined ? {} : { seedPath: seedPathFor(this.seedDir, d.hostName, d.id) }),
      });
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

  /**
   * Writes the NoCloud seed of `d` (spec.cloudInit) and returns its path; undefined without cloudInit.
   * The user-data never reaches a log: only the path and sizes are logged.
   */
  private async writeSeed(d: Desired<'VirtualMachine'>, signal: AbortSignal): Promise<string | undefined> {
    const ci = d.object.spec.cloudInit;
    if (ci === undefined) return undefined;
    if (ci.userDataFrom !== undefined && ci.userData === undefined) {
      throw new TerminalError('InvalidSpec', `cannot write the cloud-init seed of ${d.hostName}: spec.cloudInit.userDataFrom was not read (the source resolves it)`);
    }
    const target = seedPathFor(this.seedDir, d.hostName, d.id);
    const files = cloudInitSeedFiles(ci, { instanceId: d.id, hostName: d.hostName });
    await writeSeedIso(target, files, signal);
    this.log.info({ hostName: d.hostName, seed: target, userDataBytes: Buffer.byteLength(files['user-data']) }, 'cloud-init seed written');
    return target;
  }

  /** TerminalError FirmwareNotInstalled when `d` boots with UEFI and this host has no OVMF. */
  private async requireFirmware(d: Desired<'VirtualMachine'>): Promise<void> {
    const boot = d.object.spec.boot;
    if (boot?.firmware !== 'uefi' || boot.kernel !== undefined) return;
    const names = await readdir(this.ovmfDir).catch(() => [] as string[]);
    if (!names.some((n) => /^OVMF_CODE.*\.fd$/.test(n))) {
      throw new TerminalError('FirmwareNotInstalled',
        `cannot boot ${d.hostName} with boot.firmware uefi: no OVMF firmware in ${this.ovmfDir} (install the Debian package ovmf, or use bios)`);
    }
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
    // Everything that can refuse the spec before anything is made: images downloaded, checked and
    // fitting their disks (pending while a download runs), firmware present.
    for (const disk of planDisks(d.hostName, d.object.spec, d.id)) await this.diskImages.resolve(d.hostName, disk.disk, disk.sizeBytes);
    await this.requireFirmware(d);
    await mkdir(this.consoleDir, { recursive: true, mode: 0o755 });
    const seed = await this.writeSeed(d, signal);
    // A volume named with this object's id is this object's, whoever made it last (a domain undefined behind our back leaves it).
    const ours = new Map((previous?.volumes ?? []).map((v) => [`${v.pool}/${v.name}`, v]));
    const toCreate: { pool: PoolRef; disk: ReturnType<typeof planDisks>[number] }[] = [];
    for (const disk of planDisks(d.hostName, d.object.spec, d.id)) {
      const pool = await this.storage.ensurePool(disk.disk.pool);
      const exists = await this.client.lookupStorageVol(pool, disk.volume);
      ours.set(`${disk.disk.pool}/${disk.volume}`, { pool: disk.disk.pool, name: disk.volume });
      if (exists === undefined) toCreate.push({ pool, disk });
    }
    const volumes = [...ours.values()];
    // Define first, marked partial, so a crash while making volumes leaves a domain that says which volumes are ours.
    const partial = toCreate.length > 0;
    let dom: DomainRef;
    try {
      dom = await this.client.domainDefineXml(this.domainXmlFor(d, this.markerFor(d, volumes, { partial })));
    } catch (err) {
      if (existing === undefined && seed !== undefined) await rm(seed, { force: true });
      throw err;
    }
    failpoint('libvirt.create.defined');
    for (const { pool, disk } of toCreate) {
      signal.throwIfAborted();
      await this.storage.createVolume(pool, disk, d.hostName);
      failpoint('libvirt.create.volume');
    }
    if (partial || previous?.partial === true) dom = await this.client.domainDefineXml(this.domainXmlFor(d, this.markerFor(d, volumes)));
    this.cache.delete(uuidFromBytes(dom.uuid));
    this.log.info({ hostName: d.hostName, volumes: volumes.length }, 'domain defined');
  }

  async update(d: Desired<'VirtualMachine'>, changes: readonly FieldChange[], observed: ObservedInstance, signal: AbortSignal): Promise<void> {
    await this.ensureConnected();
    const dom = await this.requireOwned(d, 'update');
    const parsed = await this.readDomain(dom);
    const st = await this.client.domainGetState(dom);
    const active = isActive(st.state);
    signal.throwIfAborted();
    await this.recordVolumes(d, dom, parsed, active);
    const volumes = await this.storage.reconcileDisks(d, parsed, dom, active);
    await this.requireFirmware(d);
    if (changes.some((c) => c.path === 'cloudInit') || (d.object.spec.cloudInit !== undefined && parsed.seedPath === undefined)) {
      await this.writeSeed(d, signal);
    }
    const marker = this.markerFor(d, volumes, {
      ...(parsed.marker?.rebootRequest === undefined ? {} : { rebootRequest: parsed.marker.rebootRequest }),
      ...(parsed.marker?.restoreRequest === undefined ? {} : { restoreRequest: parsed.marker.restoreRequest }),
    });
    // The persistent definition first: a running domain is observed through its live XML, so a
    // live change made first and then cut short by a crash would hide that the definition lacks it.
    await this.client.domainDefineXml(this.domainXmlFor(d, marker));
    this.cache.delete(uuidFromBytes(dom.uuid));
    failpoint('libvirt.update.defined');
    if (active) {
      for (const c of changes) {
        if (c.apply !== 'live') continue;
        if (c.path === 'resources.memory' && typeof c.to === 'number') {
          await this.client.domainSetMemory(dom, Math.ceil(c.to / KiB), Flags.AffectLive);
          this.uncachedUntilMs.set(uuidFromBytes(dom.uuid), this.clock.now() + BALLOON_SETTLE_MS);
        } else if (c.path === 'resources.cpu' && typeof c.to === 'number') {
          await this.client.domainSetVcpus(dom, c.to, Flags.AffectLive);
        }
      }
      failpoint('libvirt.update.applied');
      await this.client.domainSetMetadata(dom, buildMarkerXml(marker, true), HYPERLET_XML_PREFIX, HYPERLET_XML_NS, Flags.AffectLive);
    }
    this.cache.delete(uuidFromBytes(dom.uuid));
    if (active) await this.rebootIfRequested(d, dom, marker, observed);
    this.log.info({ hostName: d.hostName, fields: changes.map((c) => c.path), live: active }, 'domain updated');
  }

  /**
   * Lists the volumes `d` declares in the domain's marker before any of them is made: a crash
   * right after making one then leaves a volume the domain names, deleted with it, never an
   * orphan (were the disk dropped from the spec meanwhile, nothing else would name it).
   */
  private async recordVolumes(d: Desired<'VirtualMachine'>, dom: DomainRef, parsed: ParsedDomain, active: boolean): Promise<void> {
    const marker = parsed.marker;
    if (marker === undefined) return;
    const recorded = new Set(marker.volumes.map((v) => `${v.pool}/${v.name}`));
    const missing = planDisks(d.hostName, d.object.spec, d.id)
      .map((x) => ({ pool: x.disk.pool, name: x.volume }))
      .filter((v) => !recorded.has(`${v.pool}/${v.name}`));
    if (missing.length === 0) return;
    const next: OwnershipMarker = { ...marker, volumes: [...marker.volumes, ...missing] };
    await this.client.domainSetMetadata(dom, buildMarkerXml(next, true), HYPERLET_XML_PREFIX, HYPERLET_XML_NS, Flags.AffectConfig | (active ? Flags.AffectLive : 0));
    this.cache.delete(uuidFromBytes(dom.uuid));
  }

  private async requireOwned(d: Desired<'VirtualMachine'>, verb: string): Promise<DomainRef> {
    return (await this.requireOwnedMarker(d, verb)).dom;
  }

  /** The domain of `d` with its ownership marker, read once (a snapshot needs the marker's spec hash too). */
  private async requireOwnedMarker(d: Desired<'VirtualMachine'>, verb: string): Promise<{ dom: DomainRef; marker: OwnershipMarker }> {
    const dom = await this.client.lookupDomainByName(d.hostName);
    if (dom === undefined) throw new Error(`cannot ${verb} domain ${d.hostName}: it does not exist`);
    const marker = (await this.readDomain(dom)).marker;
    if (marker?.id !== d.id) throw this.notOwned(d, verb);
    return { dom, marker };
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
            failpoint('libvirt.start.started');
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
          {
            const note = await stopGracefully(this.client, dom, d.object.spec.gracefulStopSeconds, signal, this.clock);
            this.lastStop.set(d.hostName, note);
            this.log.info({ hostName: d.hostName, note }, 'domain stopped');
            return note;
          }
        default:
          throw new TerminalError('InvalidSpec', `cannot set a VirtualMachine to state ${String(to)}`);
      }
    } finally {
      this.cache.delete(uuid);
    }
  }

  /**
   * Presses the power button (ACPI shutdown) and returns at once; a paused domain is resumed first,
   * since a paused guest cannot see the button. An inactive domain is left as it is.
   */
  async requestStop(d: Desired<'VirtualMachine'>, _observed: ObservedInstance, signal: AbortSignal): Promise<void> {
    await this.ensureConnected();
    const dom = await this.requireOwned(d, 'stop');
    signal.throwIfAborted();
    try {
      const st = await this.client.domainGetState(dom);
      if (!isActive(st.state) || st.state === DomainState.Shutdown) return;
      if (st.state === DomainState.Paused || st.state === DomainState.PmSuspended) await this.client.domainResume(dom);
      // The agent when it answers (a clean shutdown from inside), ACPI otherwise: libvirt picks with both flags.
      await this.client.domainShutdown(dom, Flags.ShutdownAcpi | Flags.ShutdownGuestAgent);
    } catch (err) {
      // Not running any more: it went down between the look and the press.
      if (!(isLibvirtError(err) && err.isOperationInvalid)) throw err;
    } finally {
      this.cache.delete(uuidFromBytes(dom.uuid));
    }
    failpoint('libvirt.stop.requested');
  }

  /** Destroys the domain (its power cord); an inactive one is success. Records and returns what happened. */
  async forceStop(d: Desired<'VirtualMachine'>, _observed: ObservedInstance, signal: AbortSignal): Promise<string | void> {
    await this.ensureConnected();
    const dom = await this.requireOwned(d, 'stop');
    signal.throwIfAborted();
    try {
      if (!isActive((await this.client.domainGetState(dom)).state)) return undefined;
      await this.client.domainDestroy(dom);
    } catch (err) {
      // It may have stopped between the look and the destroy.
      if (!(isLibvirtError(err) && err.isOperationInvalid)) throw err;
      return undefined;
    } finally {
      this.cache.delete(uuidFromBytes(dom.uuid));
    }
    failpoint('libvirt.stop.forced');
    const note = `destroyed after ${d.object.spec.gracefulStopSeconds} s: the guest did not power off on ACPI shutdown`;
    this.lastStop.set(d.hostName, note);
    this.log.info({ hostName: d.hostName, note }, 'domain stopped');
    return note;
  }

  async adopt(d: Desired<'VirtualMachine'>, observed: ObservedInstance, signal: AbortSignal): Promise<void> {
    await this.ensureConnected();
    signal.throwIfAborted();
    const dom = await this.client.lookupDomainByName(d.hostName);
    if (dom === undefined) throw new Error(`cannot adopt domain ${d.hostName}: it does not exist`);
    const marker = (await this.readDomain(dom)).marker;
    // Observed unowned a moment ago, maybe from a cache: never take a domain another object marked meanwhile.
    if (marker !== undefined && marker.id !== d.id) {
      throw new TerminalError('NotOwned', `cannot adopt domain ${d.hostName}: it belongs to another object (id ${marker.id})`);
    }
    const st = await this.client.domainGetState(dom);
    // Adopted volumes stay the operator's: the marker lists none, so delete() keeps them.
    const flags = Flags.AffectConfig | (isActive(st.state) ? Flags.AffectLive : 0);
    await this.client.domainSetMetadata(dom, buildMarkerXml(this.markerFor(d, []), true), HYPERLET_XML_PREFIX, HYPERLET_XML_NS, flags);
    failpoint('libvirt.adopt.marked');
    this.cache.delete(uuidFromBytes(dom.uuid));
    this.log.info({ hostName: d.hostName, observedState: observed.state }, 'domain adopted');
  }

  /** An internal snapshot of the domain's qcow2 disks (with memory when running: libvirt-snapshots.ts). */
  async snapshot(d: Desired<'VirtualMachine'>, name: string, options: SnapshotOptions, _signal: AbortSignal): Promise<InstanceSnapshot> {
    assertSnapshotName(name);
    await this.ensureConnected();
    const { dom, marker } = await this.requireOwnedMarker(d, 'snapshot');
    return this.snapshots.take(dom, name, marker.specHash, options);
  }

  /** A portable archive of the domain's disks as qcow2 and its object (libvirt-backups.ts); running ones from a snapshot. */
  async backup(d: Desired<'VirtualMachine'>, options: BackupOptions, signal: AbortSignal): Promise<BackupSummary> {
    await this.ensureConnected();
    const dom = await this.requireOwned(d, 'back up');
    const marker = (await this.readDomain(dom)).marker;
    return this.backups.backup(d, dom, marker?.specHash, options, signal);
  }

  /** A stopped, unmarked domain and its volumes from an archive (libvirt-backups.ts). */
  async restoreBackup(options: RestoreBackupOptions, signal: AbortSignal): Promise<RestoredBackup> {
    await this.ensureConnected();
    return this.backups.restore(options, signal);
  }

  /** The domain's snapshots, oldest first; none when it does not exist or is not `d`'s. */
  async listSnapshots(d: Desired<'VirtualMachine'>, _signal: AbortSignal): Promise<readonly InstanceSnapshot[]> {
    await this.ensureConnected();
    const dom = await this.client.lookupDomainByName(d.hostName);
    if (dom === undefined || (await this.readDomain(dom)).marker?.id !== d.id) return [];
    return this.snapshots.list(dom);
  }

  /**
   * Reverts the domain to the snapshot: disks, and memory when the snapshot has it (the domain then
   * runs as it did). The definition libvirt restores is redefined from the declared spec afterwards
   * by the reconciler's next update; the marker keeps the declared spec hash.
   */
  async restoreSnapshot(d: Desired<'VirtualMachine'>, name: string, _signal: AbortSignal): Promise<RestoreOutcome> {
    assertSnapshotName(name);
    await this.ensureConnected();
    const dom = await this.requireOwned(d, 'restore');
    const before = (await this.readDomain(dom)).marker;
    const snapshot = await this.snapshots.revert(dom, name);
    // libvirt put back the definition the snapshot recorded (its marker, its vCPUs): declare ours again.
    if (before !== undefined) {
      const request = d.object.metadata.annotations?.[RESTORE_REQUEST_ANNOTATION];
      const marker = request !== undefined && snapshotOfRestoreRequest(request) === name ? { ...before, restoreRequest: request } : before;
      const restored = parseDomainXml(await this.client.domainGetXmlDesc(dom, Flags.XmlInactive)).marker;
      if (restored?.specHash !== before.specHash) await this.client.domainDefineXml(this.domainXmlFor(d, marker), Flags.DefineValidate);
      // Recorded (live too when the snapshot's memory left it running) so the request is acted on once.
      const running = isActive((await this.client.domainGetState(dom)).state);
      const flags = Flags.AffectConfig | (running ? Flags.AffectLive : 0);
      await this.client.domainSetMetadata(dom, buildMarkerXml(marker, true), HYPERLET_XML_PREFIX, HYPERLET_XML_NS, flags);
      failpoint('libvirt.restore.marked');
    }
    this.cache.delete(uuidFromBytes(dom.uuid));
    const specDiffers = snapshot.specHash !== undefined && snapshot.specHash !== d.specHash;
    const note = specDiffers
      ? `restored snapshot ${name}; it was taken with another spec, the declared spec is kept`
      : `restored snapshot ${name}`;
    return { snapshot, specDiffers, note };
  }

  /** Deletes one snapshot; a missing one (or a missing domain) is success. */
  async deleteSnapshot(d: Desired<'VirtualMachine'>, name: string, _signal: AbortSignal): Promise<void> {
    assertSnapshotName(name);
    await this.ensureConnected();
    if ((await this.client.lookupDomainByName(d.hostName)) === undefined) return;
    const dom = await this.requireOwned(d, 'delete a snapshot of');
    await this.snapshots.delete(dom, name);
  }

  async delete(d: Desired<'VirtualMachine'>, signal: AbortSignal): Promise<void> {
    await this.ensureConnected();
    const dom = await this.client.lookupDomainByName(d.hostName);
    if (dom === undefined) {
      // The domain went behind our back: its volumes, named with our id, are still ours to remove.
      await this.storage.deleteVolumes(planDisks(d.hostName, d.object.spec, d.id).map((x) => ({ pool: x.disk.pool, name: x.volume })));
      await rm(seedPathFor(this.seedDir, d.hostName, d.id), { force: true });
      await this.removeConsoleLogs(d.hostName);
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
      failpoint('libvirt.delete.destroyed');
    }
    signal.throwIfAborted();
    // Volumes before the domain: if we die in between, the domain still names what is left to delete.
    await this.storage.deleteVolumes([...marker.volumes, ...planDisks(d.hostName, d.object.spec, d.id).map((x) => ({ pool: x.disk.pool, name: x.volume }))]);
    failpoint('libvirt.delete.volumes-deleted');
    try {
      await this.client.domainUndefine(dom);
    } catch (err) {
      if (!(isLibvirtError(err) && err.isNotFound)) throw err;
    }
    this.cache.delete(uuidFromBytes(dom.uuid));
    this.lastStop.delete(d.hostName);
    this.addresses.forget(dom);
    await rm(seedPathFor(this.seedDir, d.hostName, d.id), { force: true });
    await this.removeConsoleLogs(d.hostName);
    this.log.info({ hostName: d.hostName, volumes: marker.volumes.length }, 'domain deleted');
  }

  /**
   * Removes a deleted domain's serial console log and the older parts virtlogd rotated out
   * (NAME.log.0, .1, …: virtlogd caps each at max_size, keeps max_backups; defaults 2 MiB, 3).
   */
  private async removeConsoleLogs(hostName: string): Promise<void> {
    const base = path.basename(this.consolePathOf(hostName));
    let names: string[];
    try {
      names = await readdir(this.consoleDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const name of names) {
      if (name !== base && !(name.startsWith(`${base}.`) && /^[0-9]+$/.test(name.slice(base.length + 1)))) continue;
      await rm(path.join(this.consoleDir, name), { force: true });
    }
  }

  async *changes(signal: AbortSignal): AsyncIterable<string> {
    const events = this.feed.follow(signal);
    const ended = AbortSignal.any([signal, this.closing.signal]);
    // Events flow only on a live session: keep trying until it is up.
    while (!ended.aborted) {
      try {
        await this.ensureConnected();
        break;
      } catch (err) {
        this.log.warn({ err }, 'cannot connect to libvirtd for events; retrying');
        await sleep(1_000, ended, this.clock).catch(() => undefined);
      }
    }
    yield* events;
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
