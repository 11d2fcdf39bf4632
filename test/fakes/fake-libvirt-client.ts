/**
 * A FakeLibvirtClient for the libvirt provider's unit tests: an in-memory libvirtd behind the
 * LibvirtApi boundary, where LibvirtClient speaks RPC. Domains keep the XML they were defined
 * with (metadata set by DOMAIN_SET_METADATA is written into it, as libvirt does), a power state
 * and its reason; pools keep their volumes. Every call is recorded; any method can be made to
 * fail with `failNext`. Not-found and invalid-operation answers are LibvirtErrors with libvirt's
 * codes, so the provider's guards see what they would see from libvirtd.
 *
 * Caveats: no guest runs. A domain started here stays running until told otherwise: ACPI
 * shutdown powers it off only when `obeysAcpi` is set, and live changes (memory, vCPUs, disk
 * size) are recorded, not reflected in the XML.
 */
import { EventEmitter } from 'node:events';
import {
  DomainState, Flags, LifecycleEventType, uuidFromBytes, uuidToBytes,
  type DhcpLease, type DomainInterface, type NetworkRef,
  type DomainRef, type DomainStateInfo, type LibvirtApi, type LibvirtClientEvents, type PoolRef, type SnapshotRef,
  type TypedParamValue, type VolumeInfo, type VolumeRef,
} from '../../src/providers/libvirt/libvirt-client.js';
import { parseDomainXml } from '../../src/providers/libvirt/domain-xml.js';
import { LibvirtError, LibvirtErrorCode } from '../../src/providers/libvirt/libvirt-error.js';
import { RpcStream } from '../../src/providers/libvirt/rpc-stream.js';

/** One defined domain. */
export interface FakeDomain {
  ref: DomainRef;
  xml: string;
  state: number;
  reason: number;
}

interface FakePool {
  readonly ref: PoolRef;
  active: boolean;
  readonly volumes: Map<string, { capacityBytes: number; xml: string }>;
}

/** virDomainShutoffReason and virDomainRunningReason values the fake reports. */
const REASON = { booted: 1, shutdown: 1, destroyed: 2, unknown: 0 } as const;

/** The first text of `<tag>` in `xml`. */
function textOf(xml: string, tag: string): string | undefined {
  return new RegExp(`<${tag}[^>]*>([^<]*)</${tag}>`).exec(xml)?.[1];
}

/** An in-memory libvirtd behind the LibvirtApi boundary (see the file header). */
export class FakeLibvirtClient extends EventEmitter<LibvirtClientEvents> implements LibvirtApi {
  readonly socketPath = '/run/fake-libvirt/libvirt-sock';
  readonly uri = 'test:///fake';
  connected = false;
  /** Every call, in order: the method and its arguments. */
  readonly calls: { method: string; args: readonly unknown[] }[] = [];
  readonly domains = new Map<string, FakeDomain>();
  readonly pools = new Map<string, FakePool>();
  /** Snapshots by domain name: their XML as given to create, in creation order. */
  readonly snapshots = new Map<string, { name: string; xml: string; flags: number }[]>();
  /** Whether a running domain powers off on an ACPI shutdown request. */
  obeysAcpi = true;
  private readonly failures = new Map<string, { error: Error; after: number }>();

  /** Makes the call of `method` after `after` more successful ones throw `error` (once). */
  failNext(method: keyof LibvirtApi, error: Error, after = 0): this {
    this.failures.set(method, { error, after });
    return this;
  }

  /** The arguments of every call of `method`. */
  callsOf(method: keyof LibvirtApi): (readonly unknown[])[] {
    return this.calls.filter((c) => c.method === method).map((c) => c.args);
  }

  /** Emits a lifecycle event for `name`, as libvirtd does when a domain changes. */
  emitLifecycle(name: string, event: number): void {
    const dom = this.domains.get(name);
    if (dom !== undefined) this.emit('lifecycle', { domain: dom.ref, event, detail: 0 });
  }

  /** Defines a pool (active) as an operator would have. */
  addPool(name: string): PoolRef {
    const ref = { name, uuid: Buffer.alloc(16, this.pools.size + 1) };
    this.pools.set(name, { ref, active: true, volumes: new Map() });
    return ref;
  }

  private record(method: string, args: readonly unknown[]): void {
    this.calls.push({ method, args });
    const failure = this.failures.get(method);
    if (failure === undefined) return;
    if (failure.after > 0) {
      failure.after -= 1;
      return;
    }
    this.failures.delete(method);
    throw failure.error;
  }

  private domainOf(dom: DomainRef): FakeDomain {
    const found = [...this.domains.values()].find((d) => d.ref.uuid.equals(dom.uuid));
    if (found === undefined) {
      const message = `Domain not found: no domain with matching uuid '${uuidFromBytes(dom.uuid)}' (${dom.name})`;
      throw new LibvirtError(message, LibvirtErrorCode.NoDomain, 10);
    }
    return found;
  }

  private poolOf(pool: PoolRef | string): FakePool {
    const name = typeof pool === 'string' ? pool : pool.name;
    const found = this.pools.get(name);
    if (found === undefined) {
      throw new LibvirtError(`Storage pool not found: no storage pool with matching name '${name}'`, LibvirtErrorCode.NoStoragePool, 18);
    }
    return found;
  }

  private static isActive(state: number): boolean {
    return state !== DomainState.Shutoff && state !== DomainState.Crashed && state !== DomainState.NoState;
  }

  private invalid(message: string): LibvirtError {
    return new LibvirtError(`Requested operation is not valid: ${message}`, LibvirtErrorCode.OperationInvalid, 10);
  }

  async connect(): Promise<void> {
    this.record('connect', []);
    this.connected = true;
  }

  async close(): Promise<void> {
    this.record('close', []);
    this.connected = false;
  }

  async getLibVersion(): Promise<number> {
    this.record('getLibVersion', []);
    return 9_000_000;
  }

  async listAllDomains(flags = 0): Promise<DomainRef[]> {
    this.record('listAllDomains', [flags]);
    return [...this.domains.values()].map((d) => d.ref);
  }

  async getAllDomainStats(
    stats: number, doms: readonly DomainRef[] = [], flags = 0,
  ): Promise<{ domain: DomainRef; params: Map<string, TypedParamValue> }[]> {
    this.record('getAllDomainStats', [stats, doms, flags]);
    return [...this.domains.values()].map((d) => ({
      domain: d.ref, params: new Map<string, TypedParamValue>([['state.state', d.state], ['state.reason', d.reason]]),
    }));
  }

  async lookupDomainByName(name: string): Promise<DomainRef | undefined> {
    this.record('lookupDomainByName', [name]);
    return this.domains.get(name)?.ref;
  }

  async lookupDomainByUuid(uuid: Buffer): Promise<DomainRef | undefined> {
    this.record('lookupDomainByUuid', [uuid]);
    return [...this.domains.values()].find((d) => d.ref.uuid.equals(uuid))?.ref;
  }

  async domainDefineXml(xml: string, flags = 0): Promise<DomainRef> {
    this.record('domainDefineXml', [xml, flags]);
    const parsed = parseDomainXml(xml);
    const uuid = parsed.uuid === '' ? Buffer.alloc(16, this.domains.size + 1) : uuidToBytes(parsed.uuid);
    const existing = this.domains.get(parsed.name);
    if (existing !== undefined && !existing.ref.uuid.equals(uuid)) {
      const message = `operation failed: domain '${parsed.name}' already exists with uuid ${uuidFromBytes(existing.ref.uuid)}`;
      throw new LibvirtError(message, LibvirtErrorCode.OperationFailed, 10);
    }
    const clash = [...this.domains.values()].find((d) => d.ref.uuid.equals(uuid) && d.ref.name !== parsed.name);
    if (clash !== undefined) {
      const message = `operation failed: domain '${clash.ref.name}' already exists with the same uuid`;
      throw new LibvirtError(message, LibvirtErrorCode.OperationFailed, 10);
    }
    const withUuid = parsed.uuid === '' ? xml.replace(/<\/name>/, `</name><uuid>${uuidFromBytes(uuid)}</uuid>`) : xml;
    if (existing !== undefined) {
      existing.xml = withUuid;
      return existing.ref;
    }
    const ref: DomainRef = { name: parsed.name, uuid, id: -1 };
    this.domains.set(parsed.name, { ref, xml: withUuid, state: DomainState.Shutoff, reason: REASON.unknown });
    return ref;
  }

  async domainCreate(dom: DomainRef, flags = 0): Promise<DomainRef> {
    this.record('domainCreate', [dom, flags]);
    const d = this.domainOf(dom);
    if (FakeLibvirtClient.isActive(d.state)) throw this.invalid('domain is already running');
    d.state = (flags & Flags.StartPaused) !== 0 ? DomainState.Paused : DomainState.Running;
    d.reason = REASON.booted;
    return d.ref;
  }

  async domainShutdown(dom: DomainRef, flags: number = Flags.ShutdownAcpi): Promise<void> {
    this.record('domainShutdown', [dom, flags]);
    const d = this.domainOf(dom);
    if (!FakeLibvirtClient.isActive(d.state)) throw this.invalid('domain is not running');
    if (!this.obeysAcpi) return;
    d.state = DomainState.Shutoff;
    d.reason = REASON.shutdown;
    this.emitLifecycle(d.ref.name, LifecycleEventType.Stopped);
  }

  async domainDestroy(dom: DomainRef, flags = 0): Promise<void> {
    this.record('domainDestroy', [dom, flags]);
    const d = this.domainOf(dom);
    if (!FakeLibvirtClient.isActive(d.state)) throw this.invalid('domain is not running');
    d.state = DomainState.Shutoff;
    d.reason = REASON.destroyed;
  }

  async domainSuspend(dom: DomainRef): Promise<void> {
    this.record('domainSuspend', [dom]);
    const d = this.domainOf(dom);
    if (!FakeLibvirtClient.isActive(d.state)) throw this.invalid('domain is not running');
    d.state = DomainState.Paused;
  }

  async domainResume(dom: DomainRef): Promise<void> {
    this.record('domainResume', [dom]);
    const d = this.domainOf(dom);
    if (d.state !== DomainState.Paused) throw this.invalid('domain is not paused');
    d.state = DomainState.Running;
  }

  async domainReboot(dom: DomainRef, flags = 0): Promise<void> {
    this.record('domainReboot', [dom, flags]);
    if (!FakeLibvirtClient.isActive(this.domainOf(dom).state)) throw this.invalid('domain is not running');
  }

  async domainUndefine(dom: DomainRef, flags = 0): Promise<void> {
    this.record('domainUndefine', [dom, flags]);
    this.domains.delete(this.domainOf(dom).ref.name);
  }

  async domainGetState(dom: DomainRef): Promise<DomainStateInfo> {
    this.record('domainGetState', [dom]);
    const d = this.domainOf(dom);
    return { state: d.state, reason: d.reason };
  }

  async domainGetXmlDesc(dom: DomainRef, flags = 0): Promise<string> {
    this.record('domainGetXmlDesc', [dom, flags]);
    return this.domainOf(dom).xml;
  }

  /** A running domain's console: a stream that echoes what is written to it (no guest runs here). */
  async domainOpenConsole(dom: DomainRef, devName: string | undefined, flags = 0): Promise<RpcStream> {
    this.record('domainOpenConsole', [dom, devName, flags]);
    const d = this.domainOf(dom);
    if (d.state !== DomainState.Running) throw new LibvirtError('Requested operation is not valid: domain is not running', LibvirtErrorCode.OperationInvalid, 10);
    const stream: RpcStream = new RpcStream((status, payload) => {
      if (status === 2) queueMicrotask(() => stream.deliverData(Buffer.from(payload)));
    });
    return stream;
  }

  async domainSetVcpus(dom: DomainRef, count: number, flags: number): Promise<void> {
    this.record('domainSetVcpus', [dom, count, flags]);
    this.domainOf(dom);
  }

  async domainSetMemory(dom: DomainRef, memoryKiB: number, flags: number): Promise<void> {
    this.record('domainSetMemory', [dom, memoryKiB, flags]);
    this.domainOf(dom);
  }

  async domainBlockResize(dom: DomainRef, disk: string, sizeBytes: number): Promise<void> {
    this.record('domainBlockResize', [dom, disk, sizeBytes]);
    this.domainOf(dom);
  }

  async domainSetMetadata(dom: DomainRef, xml: string | undefined, key: string, uri: string, flags: number): Promise<void> {
    this.record('domainSetMetadata', [dom, xml, key, uri, flags]);
    const d = this.domainOf(dom);
    // As libvirt does: the root element gets the prefix and the namespace; one element per namespace.
    const element = xml === undefined
      ? ''
      : xml.replace(/^<([A-Za-z]+)>/, `<${key}:$1 xmlns:${key}="${uri}">`).replace(/<\/([A-Za-z]+)>$/, `</${key}:$1>`);
    const withoutOld = d.xml.replace(/<metadata>[\s\S]*<\/metadata>/, '');
    d.xml = withoutOld.replace(/<\/domain>\s*$/, `<metadata>${element}</metadata></domain>`);
  }

  async lookupStoragePool(name: string): Promise<PoolRef | undefined> {
    this.record('lookupStoragePool', [name]);
    return this.pools.get(name)?.ref;
  }

  async storagePoolDefineXml(xml: string): Promise<PoolRef> {
    this.record('storagePoolDefineXml', [xml]);
    const name = textOf(xml, 'name') ?? '';
    const ref = { name, uuid: Buffer.alloc(16, this.pools.size + 1) };
    this.pools.set(name, { ref, active: false, volumes: new Map() });
    return ref;
  }

  async storagePoolBuild(pool: PoolRef): Promise<void> {
    this.record('storagePoolBuild', [pool]);
    this.poolOf(pool);
  }

  async storagePoolCreate(pool: PoolRef): Promise<void> {
    this.record('storagePoolCreate', [pool]);
    const p = this.poolOf(pool);
    if (p.active) throw this.invalid('storage pool is already active');
    p.active = true;
  }

  async storagePoolSetAutostart(pool: PoolRef, autostart: boolean): Promise<void> {
    this.record('storagePoolSetAutostart', [pool, autostart]);
    this.poolOf(pool);
  }

  async storagePoolIsActive(pool: PoolRef): Promise<boolean> {
    this.record('storagePoolIsActive', [pool]);
    return this.poolOf(pool).active;
  }

  async storageVolCreateXml(pool: PoolRef, xml: string, flags = 0): Promise<VolumeRef> {
    this.record('storageVolCreateXml', [pool, xml, flags]);
    const p = this.poolOf(pool);
    const name = textOf(xml, 'name') ?? '';
    if (p.volumes.has(name)) throw new LibvirtError(`storage volume '${name}' exists already`, LibvirtErrorCode.StorageVolExists, 18);
    p.volumes.set(name, { capacityBytes: Number(textOf(xml, 'capacity') ?? 0), xml });
    return { pool: pool.name, name, key: `${pool.name}/${name}` };
  }

  async lookupStorageVol(pool: PoolRef, name: string): Promise<VolumeRef | undefined> {
    this.record('lookupStorageVol', [pool, name]);
    return this.poolOf(pool).volumes.has(name) ? { pool: pool.name, name, key: `${pool.name}/${name}` } : undefined;
  }

  private volumeOf(vol: VolumeRef): { capacityBytes: number; xml: string } {
    const v = this.poolOf(vol.pool).volumes.get(vol.name);
    if (v === undefined) {
      const message = `Storage volume not found: no storage vol with matching name '${vol.name}'`;
      throw new LibvirtError(message, LibvirtErrorCode.NoStorageVol, 18);
    }
    return v;
  }

  async storageVolDelete(vol: VolumeRef): Promise<void> {
    this.record('storageVolDelete', [vol]);
    this.volumeOf(vol);
    this.poolOf(vol.pool).volumes.delete(vol.name);
  }

  async storageVolResize(vol: VolumeRef, capacityBytes: number): Promise<void> {
    this.record('storageVolResize', [vol, capacityBytes]);
    this.volumeOf(vol).capacityBytes = capacityBytes;
  }

  async storageVolGetInfo(vol: VolumeRef): Promise<VolumeInfo> {
    this.record('storageVolGetInfo', [vol]);
    return { type: 0, capacityBytes: BigInt(this.volumeOf(vol).capacityBytes), allocationBytes: 0n };
  }

  async storageVolGetPath(vol: VolumeRef): Promise<string> {
    this.record('storageVolGetPath', [vol]);
    this.volumeOf(vol);
    return `/fake-pools/${vol.pool}/${vol.name}`;
  }

  async storagePoolRefresh(pool: PoolRef): Promise<void> {
    this.record('storagePoolRefresh', [pool]);
    this.poolOf(pool.name);
  }

  private snapshotsOf(dom: DomainRef): { name: string; xml: string; flags: number }[] {
    const name = this.domainOf(dom).ref.name;
    const list = this.snapshots.get(name) ?? [];
    this.snapshots.set(name, list);
    return list;
  }

  private snapshotOf(snap: SnapshotRef): { name: string; xml: string; flags: number } {
    const found = this.snapshotsOf(snap.domain).find((s) => s.name === snap.name);
    if (found === undefined) throw new LibvirtError(`Domain snapshot not found: no domain snapshot with matching name '${snap.name}'`, LibvirtErrorCode.NoDomainSnapshot, 10);
    return found;
  }

  async domainSnapshotCreateXml(dom: DomainRef, xml: string, flags = 0): Promise<SnapshotRef> {
    this.record('domainSnapshotCreateXml', [dom, xml, flags]);
    const name = textOf(xml, 'name') ?? `snap-${this.calls.length}`;
    const list = this.snapshotsOf(dom);
    if (list.some((s) => s.name === name)) throw new LibvirtError(`operation failed: domain snapshot '${name}' already exists`, LibvirtErrorCode.OperationFailed, 10);
    const d = this.domainOf(dom);
    const state = FakeLibvirtClient.isActive(d.state) ? 'running' : 'shutoff';
    list.push({ name, flags, xml: xml.replace('</domainsnapshot>', `<state>${state}</state><creationTime>1700000000</creationTime></domainsnapshot>`) });
    return { name, domain: d.ref };
  }

  async domainSnapshotGetXmlDesc(snap: SnapshotRef, flags = 0): Promise<string> {
    this.record('domainSnapshotGetXmlDesc', [snap, flags]);
    return this.snapshotOf(snap).xml;
  }

  async domainListAllSnapshots(dom: DomainRef, flags = 0): Promise<SnapshotRef[]> {
    this.record('domainListAllSnapshots', [dom, flags]);
    const d = this.domainOf(dom);
    return this.snapshotsOf(dom).map((s) => ({ name: s.name, domain: d.ref }));
  }

  async lookupDomainSnapshot(dom: DomainRef, name: string): Promise<SnapshotRef | undefined> {
    this.record('lookupDomainSnapshot', [dom, name]);
    const d = this.domainOf(dom);
    return this.snapshotsOf(dom).some((s) => s.name === name) ? { name, domain: d.ref } : undefined;
  }

  async domainRevertToSnapshot(snap: SnapshotRef, flags = 0): Promise<void> {
    this.record('domainRevertToSnapshot', [snap, flags]);
    this.snapshotOf(snap);
  }

  async domainSnapshotDelete(snap: SnapshotRef, flags = 0): Promise<void> {
    this.record('domainSnapshotDelete', [snap, flags]);
    this.snapshotOf(snap);
    const list = this.snapshotsOf(snap.domain);
    list.splice(list.findIndex((s) => s.name === snap.name), 1);
  }

  // ---- networks and guest addresses ----

  /** DHCP leases per libvirt network name (tests put them here). */
  readonly leases = new Map<string, DhcpLease[]>();
  /** What the guest agent reports per domain name; a domain not listed has no agent answering. */
  readonly agentInterfaces = new Map<string, DomainInterface[]>();

  async lookupNetwork(name: string): Promise<NetworkRef | undefined> {
    this.record('lookupNetwork', [name]);
    return this.leases.has(name) ? { name, uuid: Buffer.alloc(16) } : undefined;
  }

  async networkGetDhcpLeases(net: NetworkRef, mac?: string): Promise<DhcpLease[]> {
    this.record('networkGetDhcpLeases', [net, mac]);
    return (this.leases.get(net.name) ?? []).filter((l) => mac === undefined || l.mac === mac);
  }

  async domainInterfaceAddresses(dom: DomainRef, source: number): Promise<DomainInterface[]> {
    this.record('domainInterfaceAddresses', [dom, source]);
    const found = this.agentInterfaces.get(this.domainOf(dom).ref.name);
    if (found === undefined) throw new LibvirtError('Guest agent is not responding: QEMU guest agent is not connected', 86, 10);
    return found;
  }
}
