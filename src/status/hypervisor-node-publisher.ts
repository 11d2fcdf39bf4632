/**
 * Publishes this agent's HypervisorNode and renews its heartbeat Lease
 * (hyperlet-system/hyperlet-node-NODE), as the kubelet does for a Node.
 *
 * Guarantees:
 * - The Lease is renewed every `heartbeatMs` with leaseDurationSeconds = 4 × heartbeat (the
 *   kubelet's 10 s / 40 s); a failed renewal is retried at the next beat.
 * - The object is created when missing; its status is written (a JSON merge patch of /status)
 *   only when it differs from what the API server holds: after `poke()` (debounced), at start
 *   and every `resyncMs`, so a Ready=Unknown written by the elected agent while this one was
 *   cut off is corrected, and an unchanged host writes nothing.
 * - The labels this agent owns (kubernetes.io/hostname, /os, /arch, hyperlet.io/kvm) are merged
 *   into metadata.labels; labels set by others are kept.
 * Failures are logged and retried at the next tick; nothing here throws out of `run`.
 */
import { CustomObjectsApi, type KubeConfig, PatchStrategy } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { GROUP, VERSION } from '../api/v1alpha1/group.js';
import { HYPERVISOR_NODE, type HypervisorNodeObject, type HypervisorNodeStatus, nodeLeaseName } from '../api/v1alpha1/hypervisor-node.js';
import { isNotFound, kubeError, requestOptions } from '../kube/kube-client.js';
import { KubeLeaseClient, type LeaseClient, type LeaseRecord } from '../kube/leader-election.js';
import { type Clock, sleep, systemClock } from '../shared/clock.js';
import { canonicalEqual } from '../store/desired.js';
import type { Desired } from '../store/desired.js';
import { type HostFacts, hypervisorNodeStatus } from './hypervisor-node-status.js';

/** What the publisher reads and where it writes. */
export interface HypervisorNodePublisherOptions {
  readonly kubeConfig: KubeConfig;
  readonly node: string;
  /** The agents' namespace, where heartbeat Leases live (default hyperlet-system). */
  readonly leaseNamespace?: string;
  readonly facts: () => Promise<HostFacts>;
  /** The objects placed on this node. */
  readonly objects: () => readonly Desired[];
  /** The labels this agent owns on its HypervisorNode. */
  readonly labels: Readonly<Record<string, string>>;
  readonly logger: Logger;
  /** Lease renewal period (default 10 s). */
  readonly heartbeatMs?: number;
  /** Full comparison with the API server's copy (default 60 s). */
  readonly resyncMs?: number;
  /** Wait after a poke before publishing, to gather a burst of changes (default 1 s). */
  readonly debounceMs?: number;
  readonly clock?: Clock;
  /** Tests: the Lease client (default: the API server's). */
  readonly lease?: LeaseClient;
}

const plural = HYPERVISOR_NODE.plural;

/** See the file comment. */
export class HypervisorNodePublisher {
  private readonly api: CustomObjectsApi;
  private readonly lease: LeaseClient;
  private readonly log: Logger;
  private readonly clock: Clock;
  private pokeTimer: unknown;
  private publishing: Promise<void> = Promise.resolve();
  private signal: AbortSignal | undefined;
  private statusWrites = 0;

  constructor(private readonly options: HypervisorNodePublisherOptions) {
    this.api = options.kubeConfig.makeApiClient(CustomObjectsApi);
    this.lease = options.lease ?? new KubeLeaseClient(options.kubeConfig, options.leaseNamespace ?? 'hyperlet-system', nodeLeaseName(options.node));
    this.log = options.logger.child({ component: 'hypervisor-node', node: options.node });
    this.clock = options.clock ?? systemClock;
  }

  /** Status writes sent so far. */
  get writeCount(): number {
    return this.statusWrites;
  }

  /** Something that may change the status happened (objects placed, a provider's health). */
  poke(): void {
    if (this.signal === undefined || this.signal.aborted || this.pokeTimer !== undefined) return;
    this.pokeTimer = this.clock.setTimeout(() => {
      this.pokeTimer = undefined;
      this.publishSoon();
    }, this.options.debounceMs ?? 1_000);
  }

  /** Beats and publishes until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    this.signal = signal;
    const heartbeatMs = this.options.heartbeatMs ?? 10_000;
    const resyncMs = this.options.resyncMs ?? 60_000;
    let sinceResyncMs = resyncMs;
    while (!signal.aborted) {
      await this.beat(heartbeatMs, signal);
      if (sinceResyncMs >= resyncMs) {
        sinceResyncMs = 0;
        this.publishSoon();
      }
      await sleep(this.clock, heartbeatMs, signal);
      sinceResyncMs += heartbeatMs;
    }
    this.clock.clearTimeout(this.pokeTimer);
    await this.publishing;
  }

  private publishSoon(): void {
    const signal = this.signal;
    if (signal === undefined || signal.aborted) return;
    this.publishing = this.publishing.then(() => this.publish(signal)).catch((err: unknown) => {
      if (!signal.aborted) this.log.warn({ err }, 'cannot publish the HypervisorNode; retrying at the next resync');
    });
  }

  private async beat(heartbeatMs: number, signal: AbortSignal): Promise<void> {
    const now = this.clock.now();
    const record: LeaseRecord = {
      holderIdentity: this.options.node, leaseDurationSeconds: Math.ceil((4 * heartbeatMs) / 1000), renewTimeMs: now, leaseTransitions: 0,
    };
    try {
      const old = await this.lease.get(signal);
      if (old === undefined) await this.lease.create({ ...record, acquireTimeMs: now }, signal);
      else {
        await this.lease.update({
          ...record, acquireTimeMs: old.acquireTimeMs ?? now, leaseTransitions: old.leaseTransitions,
          ...(old.resourceVersion !== undefined ? { resourceVersion: old.resourceVersion } : {}),
        }, signal);
      }
    } catch (err) {
      if (!signal.aborted) this.log.warn({ err }, 'cannot renew the heartbeat Lease; retrying at the next beat');
    }
  }

  /** Reads the object, creates it when missing, and writes labels and status where they differ. */
  private async publish(signal: AbortSignal): Promise<void> {
    const name = this.options.node;
    let current = await this.read(signal);
    if (current === undefined) {
      const body: HypervisorNodeObject = {
        apiVersion: `${GROUP}/${VERSION}`, kind: 'HypervisorNode', metadata: { name, labels: { ...this.options.labels } },
      };
      try {
        current = await this.api.createClusterCustomObject({ group: GROUP, version: VERSION, plural, body }, requestOptions(signal)) as HypervisorNodeObject;
        this.log.info('created the HypervisorNode');
      } catch (err) {
        throw kubeError(err, `create HypervisorNode ${name}`);
      }
    }
    const labels = current.metadata.labels ?? {};
    const missing = Object.entries(this.options.labels).filter(([k, v]) => labels[k] !== v);
    if (missing.length > 0) {
      try {
        await this.api.patchClusterCustomObject({
          group: GROUP, version: VERSION, plural, name, body: { metadata: { labels: Object.fromEntries(missing) } },
        }, requestOptions(signal, PatchStrategy.MergePatch));
      } catch (err) {
        throw kubeError(err, `label HypervisorNode ${name}`);
      }
    }
    const status: HypervisorNodeStatus = hypervisorNodeStatus(
      await this.options.facts(), this.options.objects(), current.status?.conditions, new Date(this.clock.now()).toISOString(),
    );
    if (current.status !== undefined && canonicalEqual(current.status, status)) return;
    try {
      await this.api.patchClusterCustomObjectStatus({ group: GROUP, version: VERSION, plural, name, body: { status } },
        requestOptions(signal, PatchStrategy.MergePatch));
      this.statusWrites++;
      this.log.debug({ ready: status.conditions[0]?.status, allocated: status.allocated }, 'published the HypervisorNode status');
    } catch (err) {
      throw kubeError(err, `write the status of HypervisorNode ${name}`);
    }
  }

  private async read(signal: AbortSignal): Promise<HypervisorNodeObject | undefined> {
    try {
      return await this.api.getClusterCustomObject({ group: GROUP, version: VERSION, plural, name: this.options.node },
        requestOptions(signal)) as HypervisorNodeObject;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw kubeError(err, `read HypervisorNode ${this.options.node}`);
    }
  }

}
