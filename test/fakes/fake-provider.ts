/**
 * An in-memory provider for unit tests and benchmarks: instances live in a map, every call is
 * recorded (sample-controller's action list), and failures can be scripted per method
 * (crossplane's ExternalClientFns). Zero latency unless `latencyMs` is set. It keeps the provider
 * contract (test/conformance/provider-contract.ts): an instance whose owner is not the object
 * is never changed, and a create cut short (`cutShort`) leaves a partial instance.
 */
import { specFields } from '../../src/api/v1alpha1/fields.js';
import type { Kind } from '../../src/api/v1alpha1/group.js';
import type { PowerState } from '../../src/api/v1alpha1/types.js';
import type { FieldChange, InstanceSnapshot, ObservedInstance, Provider, RestoreOutcome, SnapshotOptions } from '../../src/providers/provider.js';
import { ProviderUnavailableError } from '../../src/providers/provider.js';
import { TerminalError } from '../../src/shared/errors.js';
import type { Desired } from '../../src/store/desired.js';
import { ChangeFeed } from '../../src/providers/change-feed.js';

type Method =
  | 'probe' | 'observeAll' | 'observe' | 'create' | 'update' | 'setState' | 'requestStop' | 'forceStop' | 'adopt' | 'delete'
  | 'snapshot' | 'deleteSnapshot' | 'sweepSnapshots';

export class FakeProvider<K extends Kind = Kind> implements Provider<K> {
  readonly name: 'lxc' | 'libvirt';
  readonly instances = new Map<string, ObservedInstance>();
  readonly calls: string[] = [];
  /** Throw this from the next calls of a method (until cleared). */
  readonly failures = new Map<Method, Error>();
  /** Throw this from the next create after it recorded a partial instance, as a create killed halfway leaves one. */
  cutShort: Error | undefined;
  unavailable: string | undefined;
  latencyMs = 0;
  /** Snapshots by host name, oldest first. */
  readonly snapshots = new Map<string, InstanceSnapshot[]>();
  /**
   * Host names of instances whose guest ignores a shutdown request (an init that traps SIGPWR, a
   * guest without ACPI): requestStop leaves them running. Others stop at once when asked.
   */
  readonly ignoresShutdown = new Set<string>();
  /** The time snapshot records get (a test's clock). */
  now: () => number = () => 0;
  private readonly feed = new ChangeFeed();

  constructor(readonly kind: K) {
    this.name = kind === 'Container' ? 'lxc' : 'libvirt';
  }

  /** Counts calls of one method. */
  count(method: Method): number {
    return this.calls.filter((c) => c === method || c.startsWith(`${method}:`)).length;
  }

  /** Pushes a change event, as lxc-monitor or libvirt would. */
  emitChange(host: string): void {
    this.feed.push(host);
  }

  private async call(method: Method, detail?: string): Promise<void> {
    this.calls.push(detail === undefined ? method : `${method}:${detail}`);
    if (this.latencyMs > 0) await new Promise((r) => setTimeout(r, this.latencyMs));
    if (this.unavailable !== undefined && method !== 'probe') throw new ProviderUnavailableError(this.unavailable);
    const failure = this.failures.get(method);
    if (failure !== undefined) throw failure;
  }

  /** The instance of `d`, when it is `d`'s; TerminalError NotOwned when another owns it (or nobody). */
  private owned(d: Desired<K>, verb: string): ObservedInstance | undefined {
    const current = this.instances.get(d.hostName);
    if (current !== undefined && current.ownerId !== d.id) {
      throw new TerminalError('NotOwned', `cannot ${verb} ${d.hostName}: it is not this object's (owner ${current.ownerId ?? 'none'})`);
    }
    return current;
  }

  async probe(): Promise<void> {
    await this.call('probe');
    if (this.unavailable !== undefined) throw new ProviderUnavailableError(this.unavailable);
  }

  async observeAll(): Promise<ReadonlyMap<string, ObservedInstance>> {
    await this.call('observeAll');
    return new Map(this.instances);
  }

  async observe(d: Desired<K>): Promise<ObservedInstance | undefined> {
    await this.call('observe', d.hostName);
    return this.instances.get(d.hostName);
  }

  async create(d: Desired<K>): Promise<void> {
    await this.call('create', d.hostName);
    const current = this.owned(d, 'create');
    if (current !== undefined && current.partial !== true) return;
    const made: ObservedInstance = {
      hostName: d.hostName, state: 'Stopped', fields: specFields(d.object.kind, d.object.spec), ownerId: d.id, specHash: d.specHash,
    };
    const cut = this.cutShort;
    if (cut !== undefined) {
      this.cutShort = undefined;
      this.instances.set(d.hostName, { ...made, partial: true });
      throw cut;
    }
    this.instances.set(d.hostName, made);
  }

  async update(d: Desired<K>, changes: readonly FieldChange[]): Promise<void> {
    await this.call('update', `${d.hostName}:${changes.map((c) => c.path).join(',')}`);
    const current = this.owned(d, 'update');
    if (current === undefined) throw new Error(`cannot update ${d.hostName}: no such instance`);
    const fields = { ...current.fields };
    for (const c of changes) fields[c.path] = c.to ?? null;
    this.instances.set(d.hostName, { ...current, fields, specHash: d.specHash });
  }

  async setState(d: Desired<K>, to: PowerState): Promise<string | void> {
    await this.call('setState', `${d.hostName}:${to}`);
    const current = this.owned(d, 'set the state of');
    if (current === undefined) throw new Error(`cannot set state of ${d.hostName}: no such instance`);
    this.instances.set(d.hostName, { ...current, state: to });
  }

  async requestStop(d: Desired<K>): Promise<void> {
    await this.call('requestStop', d.hostName);
    const current = this.owned(d, 'stop');
    if (current === undefined) throw new Error(`cannot stop ${d.hostName}: no such instance`);
    if (!this.ignoresShutdown.has(d.hostName)) this.instances.set(d.hostName, { ...current, state: 'Stopped' });
  }

  async forceStop(d: Desired<K>): Promise<string | void> {
    await this.call('forceStop', d.hostName);
    const current = this.owned(d, 'stop');
    if (current === undefined) throw new Error(`cannot stop ${d.hostName}: no such instance`);
    if (current.state === 'Stopped') return undefined;
    this.instances.set(d.hostName, { ...current, state: 'Stopped' });
    return 'killed';
  }

  async adopt(d: Desired<K>): Promise<void> {
    await this.call('adopt', d.hostName);
    const current = this.instances.get(d.hostName);
    if (current?.ownerId !== undefined && current.ownerId !== d.id) {
      throw new TerminalError('NotOwned', `cannot adopt ${d.hostName}: it belongs to another object (${current.ownerId})`);
    }
    if (current !== undefined) this.instances.set(d.hostName, { ...current, ownerId: d.id });
  }

  async delete(d: Desired<K>): Promise<void> {
    await this.call('delete', d.hostName);
    this.owned(d, 'delete');
    this.instances.delete(d.hostName);
  }

  async snapshot(d: Desired<K>, name: string, options: SnapshotOptions): Promise<InstanceSnapshot> {
    await this.call('snapshot', `${d.hostName}/${name}`);
    if (this.owned(d, 'snapshot') === undefined) throw new Error(`cannot snapshot ${d.hostName}: it does not exist`);
    const list = this.snapshots.get(d.hostName) ?? [];
    const existing = list.find((s) => s.name === name);
    if (existing !== undefined) return existing;
    const snap: InstanceSnapshot = {
      name, createdAt: new Date(this.now()).toISOString(), origin: options.origin ?? 'request', memory: false, specHash: d.specHash,
    };
    this.snapshots.set(d.hostName, [...list, snap]);
    return snap;
  }

  async listSnapshots(d: Desired<K>): Promise<readonly InstanceSnapshot[]> {
    return this.instances.get(d.hostName)?.ownerId === d.id ? [...(this.snapshots.get(d.hostName) ?? [])] : [];
  }

  async restoreSnapshot(d: Desired<K>, name: string): Promise<RestoreOutcome> {
    const snap = (this.snapshots.get(d.hostName) ?? []).find((s) => s.name === name);
    if (snap === undefined) throw new TerminalError('SnapshotNotFound', `cannot restore ${d.hostName}: it has no snapshot ${name}`);
    return { snapshot: snap, specDiffers: snap.specHash !== d.specHash, note: `restored snapshot ${name}` };
  }

  async sweepSnapshots(d: Desired<K>): Promise<void> {
    await this.call('sweepSnapshots', d.hostName);
  }

  async deleteSnapshot(d: Desired<K>, name: string): Promise<void> {
    await this.call('deleteSnapshot', `${d.hostName}/${name}`);
    this.snapshots.set(d.hostName, (this.snapshots.get(d.hostName) ?? []).filter((s) => s.name !== name));
  }

  changes(signal: AbortSignal): AsyncIterable<string> {
    return this.feed.follow(signal);
  }

  /** Records the call and ends every changes() stream. */
  close(): void {
    this.calls.push('close');
    this.feed.close();
  }
}
