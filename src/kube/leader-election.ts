/**
 * Leader election on a coordination.k8s.io/v1 Lease, the algorithm of client-go's
 * leaderelection package (client-node has none), for work that must run once per cluster.
 * Per-node agents (`--node`) do not need it: each owns its own objects.
 *
 * Guarantees:
 * - At most one elector believes it leads while clocks run at the same rate: a candidate takes
 *   the Lease only when its holder has not renewed it for leaseDuration *as measured on the
 *   candidate's own clock since it last saw the record change* (no wall-clock comparison across
 *   hosts), and every write is conditional on the Lease's resourceVersion.
 * - The leader renews every retryPeriod and gives up leadership when it could not renew for
 *   renewDeadline (< leaseDuration), before anyone else may take over.
 * - On cancel the leader releases the Lease (empty holder), so a successor need not wait.
 * Assumptions: renewDeadline < leaseDuration; the clock is injected (tests use a fake one).
 */
import { CoordinationV1Api, type KubeConfig, type V1Lease, V1MicroTime } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { type Clock, sleep, systemClock } from '../shared/clock.js';
import { isConflictError } from '../shared/errors.js';
import { isNotFound, kubeError, requestOptions } from './kube-client.js';

/** The fields of a Lease the election reads and writes (times are epoch milliseconds). */
export interface LeaseRecord {
  readonly holderIdentity: string;
  readonly leaseDurationSeconds: number;
  readonly acquireTimeMs?: number;
  readonly renewTimeMs?: number;
  readonly leaseTransitions: number;
  /** Set on records read from the API; an update sends it back as its precondition. */
  readonly resourceVersion?: string;
}

/** Where the Lease lives. Conflicts (409, or create of an existing Lease) throw ConflictError. */
export interface LeaseClient {
  /** The Lease, or undefined when there is none. */
  get(signal: AbortSignal): Promise<LeaseRecord | undefined>;
  create(record: LeaseRecord, signal: AbortSignal): Promise<LeaseRecord>;
  /** Replaces the Lease if its resourceVersion is still `record.resourceVersion`. */
  update(record: LeaseRecord, signal: AbortSignal): Promise<LeaseRecord>;
}

const toMs = (t: unknown): number | undefined => {
  if (t instanceof Date) return t.getTime();
  if (typeof t === 'string') return Date.parse(t);
  return undefined;
};

/** A LeaseClient on the API server: the Lease `name` in `namespace`. */
export class KubeLeaseClient implements LeaseClient {
  private readonly api: CoordinationV1Api;

  constructor(kubeConfig: KubeConfig, private readonly namespace: string, private readonly name: string) {
    this.api = kubeConfig.makeApiClient(CoordinationV1Api);
  }

  async get(signal: AbortSignal): Promise<LeaseRecord | undefined> {
    try {
      return this.fromLease(await this.api.readNamespacedLease({ name: this.name, namespace: this.namespace }, requestOptions(signal)));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw kubeError(err, `read lease ${this.namespace}/${this.name}`);
    }
  }

  async create(record: LeaseRecord, signal: AbortSignal): Promise<LeaseRecord> {
    try {
      return this.fromLease(await this.api.createNamespacedLease({ namespace: this.namespace, body: this.toLease(record) }, requestOptions(signal)));
    } catch (err) {
      throw kubeError(err, `create lease ${this.namespace}/${this.name}`);
    }
  }

  async update(record: LeaseRecord, signal: AbortSignal): Promise<LeaseRecord> {
    try {
      return this.fromLease(await this.api.replaceNamespacedLease(
        { name: this.name, namespace: this.namespace, body: this.toLease(record) }, requestOptions(signal)));
    } catch (err) {
      throw kubeError(err, `update lease ${this.namespace}/${this.name}`);
    }
  }

  private toLease(r: LeaseRecord): V1Lease {
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: this.name, namespace: this.namespace, ...(r.resourceVersion !== undefined ? { resourceVersion: r.resourceVersion } : {}) },
      spec: {
        holderIdentity: r.holderIdentity,
        leaseDurationSeconds: r.leaseDurationSeconds,
        leaseTransitions: r.leaseTransitions,
        ...(r.acquireTimeMs !== undefined ? { acquireTime: new V1MicroTime(r.acquireTimeMs) } : {}),
        ...(r.renewTimeMs !== undefined ? { renewTime: new V1MicroTime(r.renewTimeMs) } : {}),
      },
    };
  }

  private fromLease(lease: V1Lease): LeaseRecord {
    const s = lease.spec ?? {};
    const acquireTimeMs = toMs(s.acquireTime);
    const renewTimeMs = toMs(s.renewTime);
    return {
      holderIdentity: typeof s.holderIdentity === 'string' ? s.holderIdentity : '',
      leaseDurationSeconds: typeof s.leaseDurationSeconds === 'number' ? s.leaseDurationSeconds : 0,
      leaseTransitions: typeof s.leaseTransitions === 'number' ? s.leaseTransitions : 0,
      ...(acquireTimeMs !== undefined ? { acquireTimeMs } : {}),
      ...(renewTimeMs !== undefined ? { renewTimeMs } : {}),
      ...(lease.metadata?.resourceVersion !== undefined ? { resourceVersion: lease.metadata.resourceVersion } : {}),
    };
  }
}

/** The Lease, the candidate's identity and the timing (client-go's defaults). */
export interface LeaderElectorOptions {
  readonly lease: LeaseClient;
  /** Unique per candidate (client-go: hostname + a random suffix). */
  readonly identity: string;
  readonly logger: Logger;
  /** How long a Lease is honoured after its last renewal (client-go default 15 s). */
  readonly leaseDurationMs?: number;
  /** How long the leader keeps trying to renew before it gives up (default 10 s). */
  readonly renewDeadlineMs?: number;
  /** Time between attempts (default 2 s; candidates add up to 20 % jitter). */
  readonly retryPeriodMs?: number;
  readonly clock?: Clock;
  /** Release the Lease when the run is cancelled (default true). */
  readonly releaseOnCancel?: boolean;
}

/** What a leader elector calls as leadership starts and ends. */
export interface LeaderCallbacks {
  /** Called on becoming leader; `signal` aborts when leadership ends. Not awaited. */
  onStartedLeading(signal: AbortSignal): void;
  /** Called once when leadership ends (lost or cancelled), only after onStartedLeading. */
  onStoppedLeading?(): void;
  /** Called whenever another holder (or this one) is observed. */
  onNewLeader?(identity: string): void;
}

/** One candidate; see the file comment. */
export class LeaderElector {
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly clock: Clock;
  private readonly log: Logger;
  private observed: LeaseRecord | undefined;
  private observedAtMs = 0;
  private leading = false;
  private lastLeader = '';

  constructor(private readonly options: LeaderElectorOptions) {
    this.leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = options.retryPeriodMs ?? 2_000;
    if (this.renewDeadlineMs >= this.leaseDurationMs) throw new TypeError('leader election needs renewDeadlineMs < leaseDurationMs');
    this.clock = options.clock ?? systemClock;
    this.log = options.logger.child({ component: 'leader-election', identity: options.identity });
  }

  /** Whether this candidate currently leads. */
  get isLeader(): boolean {
    return this.leading;
  }

  /** The holder last observed ('' when none). */
  get leader(): string {
    return this.lastLeader;
  }

  /**
   * Campaigns until elected, leads until the Lease cannot be renewed or `signal` aborts, then
   * resolves. Never throws for API errors (they count as failed attempts).
   */
  async run(callbacks: LeaderCallbacks, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      if (await this.tryAcquireOrRenew(signal, callbacks)) break;
      await sleep(this.clock, this.retryPeriodMs * (1 + 0.2 * Math.random()), signal);
    }
    if (signal.aborted) return;
    this.leading = true;
    this.log.info('became leader');
    const leadership = new AbortController();
    callbacks.onStartedLeading(leadership.signal);
    let lastRenewMs = this.clock.now();
    while (!signal.aborted) {
      await sleep(this.clock, this.retryPeriodMs, signal);
      if (signal.aborted) break;
      if (await this.tryAcquireOrRenew(signal, callbacks)) {
        lastRenewMs = this.clock.now();
      } else if (this.clock.now() - lastRenewMs >= this.renewDeadlineMs) {
        this.log.warn('could not renew the lease in time; leadership lost');
        break;
      }
    }
    this.leading = false;
    leadership.abort();
    callbacks.onStoppedLeading?.();
    if (signal.aborted && (this.options.releaseOnCancel ?? true)) await this.release();
  }

  private async tryAcquireOrRenew(signal: AbortSignal, callbacks: LeaderCallbacks): Promise<boolean> {
    const id = this.options.identity;
    const now = this.clock.now();
    const desired: LeaseRecord = {
      holderIdentity: id,
      leaseDurationSeconds: Math.ceil(this.leaseDurationMs / 1000),
      acquireTimeMs: now,
      renewTimeMs: now,
      leaseTransitions: 0,
    };
    try {
      const old = await this.options.lease.get(signal);
      if (old === undefined) {
        this.see(await this.options.lease.create(desired, signal), callbacks);
        return true;
      }
      this.see(old, callbacks);
      // Someone else holds it and, on our clock, renewed it less than a lease duration ago.
      if (old.holderIdentity !== '' && old.holderIdentity !== id && this.observedAtMs + this.leaseDurationMs > now) return false;
      const next: LeaseRecord = {
        ...desired,
        ...(old.holderIdentity === id
          ? { acquireTimeMs: old.acquireTimeMs ?? now, leaseTransitions: old.leaseTransitions }
          : { leaseTransitions: old.leaseTransitions + 1 }),
        ...(old.resourceVersion !== undefined ? { resourceVersion: old.resourceVersion } : {}),
      };
      this.see(await this.options.lease.update(next, signal), callbacks);
      return true;
    } catch (err) {
      if (!isConflictError(err) && !signal.aborted) this.log.debug({ err }, 'lease attempt failed');
      return false;
    }
  }

  /** Notes a record we read or wrote; its observation time moves only when the record changed. */
  private see(record: LeaseRecord, callbacks: LeaderCallbacks): void {
    const o = this.observed;
    if (o === undefined || o.holderIdentity !== record.holderIdentity || o.renewTimeMs !== record.renewTimeMs
      || o.resourceVersion !== record.resourceVersion) {
      this.observed = record;
      this.observedAtMs = this.clock.now();
    }
    if (record.holderIdentity !== this.lastLeader) {
      this.lastLeader = record.holderIdentity;
      if (record.holderIdentity !== '') callbacks.onNewLeader?.(record.holderIdentity);
    }
  }

  /** Gives the Lease up (client-go: empty holder, duration 1 s) if we still hold it. */
  private async release(): Promise<void> {
    const o = this.observed;
    if (o?.holderIdentity !== this.options.identity) return;
    const now = this.clock.now();
    try {
      const released = await this.options.lease.update({
        holderIdentity: '', leaseDurationSeconds: 1, acquireTimeMs: now, renewTimeMs: now, leaseTransitions: o.leaseTransitions,
        ...(o.resourceVersion !== undefined ? { resourceVersion: o.resourceVersion } : {}),
      }, AbortSignal.timeout(5_000));
      this.observed = released;
      this.log.info('released the lease');
    } catch (err) {
      this.log.warn({ err }, 'cannot release the lease');
    }
  }

}
