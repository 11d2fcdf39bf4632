/**
 * Takes the snapshots spec.snapshots schedules and prunes them by its retain rules, for every
 * object of one provider's kind, on a timer of the injected Clock.
 *
 * Guarantees: a run is due when the schedule's next time after the newest scheduled snapshot
 * (or after the object was first seen, when it has none) has passed; one pass takes at most one
 * snapshot per object, and the next time is counted from that snapshot, so runs missed while the
 * daemon was down are made up by one snapshot at start, never a burst. Only snapshots whose
 * origin is 'schedule' are pruned. A failure for one object is logged and recorded as a Warning
 * and the others go on.
 * The same pass serves spec.backups (a ScheduledCopies of archive files instead of snapshots):
 * one schedule and retention code for both.
 * Caveats: snapshots run beside the reconcile queue, not through it.
 */
import type { Logger } from 'pino';
import { nextRunAfter, parseSchedule } from '../api/v1alpha1/snapshot-schedule.js';
import type { InstanceSnapshot, Provider } from '../providers/provider.js';
import type { SnapshotPolicy, StatusSnapshot } from '../api/v1alpha1/types.js';
import type { Clock } from '../shared/clock.js';
import { errorMessage, isAbortError } from '../shared/errors.js';
import type { StoreReader } from '../store/desired-store.js';
import type { Desired } from '../store/desired.js';
import { snapshotsToKeep } from './snapshot-retention.js';
import { ScheduledBackups } from '../providers/backup/backup-file.js';

/**
 * What a schedule makes and prunes: the provider's snapshots (spec.snapshots) or backup archives
 * (spec.backups). `list` returns only the scheduled ones, which alone are pruned.
 */
export interface ScheduledCopies {
  /** The spec field the schedule comes from. */
  readonly field: 'snapshots' | 'backups';
  /** Event reasons: taken, pruned, failed. */
  readonly reasons: { readonly taken: string; readonly pruned: string; readonly failed: string };
  readonly supported: boolean;
  policyOf(d: Desired): SnapshotPolicy | undefined;
  sweep?(d: Desired, signal: AbortSignal): Promise<void>;
  list(d: Desired, signal: AbortSignal): Promise<InstanceSnapshot[]>;
  take(d: Desired, name: string, signal: AbortSignal): Promise<InstanceSnapshot>;
  remove(d: Desired, name: string, signal: AbortSignal): Promise<void>;
}

/** The provider's snapshots as spec.snapshots schedules them. */
export function snapshotCopies(provider: Provider): ScheduledCopies {
  return {
    field: 'snapshots',
    reasons: { taken: 'SnapshotTaken', pruned: 'SnapshotPruned', failed: 'SnapshotFailed' },
    supported: provider.snapshot !== undefined && provider.listSnapshots !== undefined,
    policyOf: (d) => d.object.spec.snapshots,
    sweep: async (d, signal) => provider.sweepSnapshots?.(d, signal),
    list: async (d, signal) => (await (provider.listSnapshots?.(d, signal) ?? Promise.resolve([]))).filter((x) => x.origin === 'schedule'),
    take: async (d, name, signal) => {
      if (provider.snapshot === undefined) throw new Error(`cannot snapshot ${d.hostName}: no snapshots here`);
      return provider.snapshot(d, name, { origin: 'schedule' }, signal);
    },
    remove: async (d, name, signal) => provider.deleteSnapshot?.(d, name, signal),
  };
}

/** spec.backups' archive files (providers/backup/backup-file.ts) as a schedule makes them. */
export function backupCopies(provider: Provider, clock: Clock): ScheduledCopies {
  const files = new ScheduledBackups(provider, clock);
  return {
    field: 'backups',
    reasons: { taken: 'BackedUp', pruned: 'BackupPruned', failed: 'BackupFailed' },
    supported: files.supported,
    policyOf: (d) => d.object.spec.backups,
    list: (d) => files.list(d),
    take: (d, name, signal) => files.take(d, name, signal),
    remove: (d, name) => files.remove(d, name),
  };
}

/** What the SnapshotScheduler works with: provider, store, clock, and where it records. */
export interface SnapshotSchedulerOptions {
  readonly store: StoreReader;
  readonly provider: Provider;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Records what was done (the source's recorder: Events in kube mode, the audit log otherwise). */
  readonly record: (d: Desired, type: 'Normal' | 'Warning', reason: string, message: string) => void;
  /** How often schedules are looked at; 30 s: cron's resolution is a minute. */
  readonly tickMs?: number;
  /** Called when an object's list of scheduled snapshots changed, so its status can be written again. */
  readonly onChange?: (d: Desired) => void;
  /** What the schedule makes (default: the provider's snapshots, spec.snapshots). */
  readonly copies?: ScheduledCopies;
}

/** The name of a scheduled snapshot taken at `ms`: "auto-" and the UTC time, a DNS label. */
export function scheduledSnapshotName(ms: number): string {
  return `auto-${new Date(ms).toISOString().replace(/\.\d+Z$/, 'z').replace(/[-:]/g, '').toLowerCase()}`;
}

/** Evaluates spec.snapshots for one provider's objects (see the file comment). */
export class SnapshotScheduler {
  private readonly firstSeenMs = new Map<string, number>();
  private readonly listed = new Map<string, StatusSnapshot[]>();
  private timer: unknown;
  private running: Promise<void> | undefined;

  private readonly copies: ScheduledCopies;

  constructor(private readonly o: SnapshotSchedulerOptions) {
    this.copies = o.copies ?? snapshotCopies(o.provider);
  }

  /** Runs a pass now and then every tickMs until `signal` fires. */
  start(signal: AbortSignal): void {
    const tick = (): void => {
      if (signal.aborted) return;
      this.running = this.runOnce(signal).finally(() => {
        if (!signal.aborted) this.timer = this.o.clock.setTimeout(tick, this.o.tickMs ?? 30_000);
      });
    };
    signal.addEventListener('abort', () => this.o.clock.clearTimeout(this.timer), { once: true });
    tick();
  }

  /** Resolves when the pass in flight (if any) has ended. */
  async stopped(): Promise<void> {
    await this.running;
  }

  /** One pass over every object with spec.snapshots: take what is due, prune what the rules drop. */
  async runOnce(signal: AbortSignal): Promise<void> {
    const { provider, store, clock } = this.o;
    const copies = this.copies;
    if (!copies.supported) return;
    for (const d of store.list()) {
      if (signal.aborted) return;
      const policy = copies.policyOf(d);
      if (d.object.kind !== provider.kind || policy === undefined || d.deleting === true) {
        this.firstSeenMs.delete(d.key);
        this.listed.delete(d.key);
        continue;
      }
      try {
        // First sight since start: what a snapshot or a pruning cut short by a crash left goes now.
        if (!this.firstSeenMs.has(d.key)) await copies.sweep?.(d, signal);
        const scheduled = await copies.list(d, signal);
        const now = clock.now();
        const newest = scheduled.reduce((m, s) => Math.max(m, Date.parse(s.createdAt)), Number.NEGATIVE_INFINITY);
        if (!this.firstSeenMs.has(d.key)) this.firstSeenMs.set(d.key, now);
        const since = Number.isFinite(newest) ? newest : (this.firstSeenMs.get(d.key) ?? now);
        if (now >= nextRunAfter(parseSchedule(policy.schedule), since)) {
          const taken = await copies.take(d, scheduledSnapshotName(now), signal);
          scheduled.push(taken);
          this.o.record(d, 'Normal', copies.reasons.taken, copies.field === 'snapshots'
            ? `Took scheduled snapshot ${taken.name}` : `Wrote scheduled backup ${taken.name} (${taken.sizeBytes ?? 0} bytes)`);
        }
        const kept = await this.prune(d, scheduled, signal);
        const list = kept.map((s): StatusSnapshot => ({
          name: s.name, time: s.createdAt, origin: s.origin, ...(s.sizeBytes === undefined ? {} : { sizeBytes: s.sizeBytes }),
        }));
        const before = JSON.stringify(this.listed.get(d.key));
        this.listed.set(d.key, list);
        if (JSON.stringify(list) !== before) this.o.onChange?.(d);
      } catch (err) {
        if (isAbortError(err)) return;
        const message = `cannot run the ${copies.field === 'snapshots' ? 'snapshot' : 'backup'} schedule of ${d.hostName}: ${errorMessage(err)}`;
        this.o.logger.warn({ key: d.key, err }, `${copies.field} schedule failed`);
        this.o.record(d, 'Warning', copies.reasons.failed, message);
      }
    }
  }

  /** The scheduled snapshots of `key` as last listed (after pruning), for status.snapshots; undefined without a schedule. */
  snapshotsOf(key: string): readonly StatusSnapshot[] | undefined {
    return this.listed.get(key);
  }

  /** Deletes what the retain rules drop; returns the snapshots kept, oldest first. */
  private async prune(d: Desired, scheduled: readonly InstanceSnapshot[], signal: AbortSignal): Promise<InstanceSnapshot[]> {
    const rules = this.copies.policyOf(d)?.retain ?? {};
    const keep = snapshotsToKeep(scheduled.map((s) => ({ name: s.name, createdAtMs: Date.parse(s.createdAt) })), rules);
    for (const s of scheduled) {
      if (keep.has(s.name)) continue;
      await this.copies.remove(d, s.name, signal);
      this.o.record(d, 'Normal', this.copies.reasons.pruned, `Pruned scheduled ${this.copies.field === 'snapshots' ? 'snapshot' : 'backup'} ${s.name} (retain rules)`);
    }
    return scheduled.filter((s) => keep.has(s.name)).sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }
}
