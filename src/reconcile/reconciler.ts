/**
 * Moves one object one step toward its desired state and writes its status.
 *
 * Level-based: the key says which object, never what happened to it. Each pass reads the desired
 * object (or, once it left its source, its tombstone), observes the instance, plans, runs the
 * first due step and writes status; it throws to retry with backoff, or throws `TerminalError`
 * to wait until the object changes. Every step is idempotent, so a crash anywhere is repaired by
 * the next pass.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { environmentReferences, isEnvironmentError, withEnvironmentValues } from '../api/v1alpha1/environment.js';
import type { Status, StatusSnapshot } from '../api/v1alpha1/types.js';
import type { Redactor } from '../shared/redact.js';
import type { ObservedInstance, Provider } from '../providers/provider.js';
import { isProviderUnavailableError } from '../providers/provider.js';
import type { SourceBackend } from './backend.js';
import type { Desired } from '../store/desired.js';
import type { StoreReader } from '../store/desired-store.js';
import { type ObjectKey, parseKey } from '../store/object-key.js';
import { computeStatus, sameStatus, type StatusFacts } from './conditions.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { Admission, Admitter } from '../policy/admission.js';
import { TerminalError, errorMessage, isAbortError, isTerminalError } from '../shared/errors.js';
import type { ObservationCache } from './observation-cache.js';
import { checkDependencies, dependentsOf } from './dependencies.js';
import { PAUSED_ANNOTATION, PRUNE_ANNOTATION } from '../shared/annotations.js';
import { type Plan, type Step, plan, stepName } from './plan.js';
import type { ProviderHealth } from './provider-health.js';
import { type Result, awaitChange, requeueAfter } from './result.js';

export interface ReconcilerOptions {
  readonly store: StoreReader;
  readonly backends: ReadonlyMap<string, SourceBackend>;
  readonly provider: Provider;
  readonly cache: ObservationCache;
  readonly health: ProviderHealth;
  /** This host's name, reported as status.node. */
  readonly node: string;
  readonly logger: Logger;
  readonly metrics?: Metrics;
  /** How long to wait before looking again at an instance between states (default 1 s). */
  readonly settleMs?: number;
  /** How long to wait before probing an unavailable provider again for this object (default 30 s). */
  readonly unavailableRetryMs?: number;
  /** How often an object waiting on dependsOn (or on its dependents) looks again (default 2 s). */
  readonly dependencyRetryMs?: number;
  /** Called when an object turns Ready, so objects waiting on it need not wait for their retry. */
  readonly onReady?: (d: Desired) => void;
  /** The scheduled snapshots to list in status.snapshots (the SnapshotScheduler's last list), when known. */
  readonly snapshotsOf?: (key: ObjectKey) => readonly StatusSnapshot[] | undefined;
  /** The host policy: every object passes it before it is observed or acted on (absent: everything passes). */
  readonly policy?: Admitter;
  /** How often a refused object is looked at again (default 60 s): quotas free up, files appear. */
  readonly policyRetryMs?: number;
  /**
   * The daemon's one Redactor: every value read for a valueFrom reference is added to it, and
   * every Event, audit entry and status message passes it before it is written.
   */
  readonly redactor?: Redactor;
  /** How often an object whose valueFrom cannot be read looks again (default 10 s). */
  readonly environmentRetryMs?: number;
}

const EVENT_REASON: Readonly<Record<string, string>> = {
  create: 'Created', adopt: 'Adopted', update: 'Updated',
  'setState:Running': 'Started', 'setState:Stopped': 'Stopped', 'setState:Frozen': 'Frozen', 'setState:Paused': 'Paused',
  'delete:deleted': 'Deleted', 'delete:partial': 'CleanedUp', 'delete:recreate': 'Recreating', reboot: 'Rebooted',
  restore: 'Restored',
};

const FAILURE_REASON: Readonly<Record<string, string>> = {
  create: 'CreateFailed', adopt: 'AdoptFailed', update: 'UpdateFailed',
  'setState:Running': 'StartFailed', 'setState:Stopped': 'StopFailed', 'setState:Frozen': 'FreezeFailed', 'setState:Paused': 'PauseFailed',
  'delete:deleted': 'DeleteFailed', 'delete:partial': 'CleanupFailed', 'delete:recreate': 'DeleteFailed', reboot: 'RebootFailed',
  restore: 'RestoreFailed',
};

export class Reconciler {
  private readonly provider: Provider;
  /** The note of each key's last step ("destroyed after 60 s"), shown as status.details.lastAction. */
  private readonly lastActions = new Map<ObjectKey, string>();
  /** The last step run per key and how often it ran in a row, to slow down steps that have no effect. */
  private readonly repeats = new Map<ObjectKey, { signature: string; count: number }>();
  /** The last Warning recorded per key, so a failure repeating with backoff is recorded once. */
  private readonly lastWarnings = new Map<ObjectKey, string>();
  /** Each key's last failure (generation, step, reason) and how many passes in a row failed so: Stalled after a few. */
  private readonly failures = new Map<ObjectKey, { signature: string; count: number }>();

  constructor(private readonly options: ReconcilerOptions) {
    this.provider = options.provider;
  }

  async reconcile(key: ObjectKey, signal: AbortSignal): Promise<Result> {
    const backend = this.options.backends.get(parseKey(key).source);
    if (backend === undefined) return awaitChange(); // a source that is not running here
    const found = this.desiredOrTombstone(key, backend);
    if (found === undefined) return awaitChange(); // never acted on, and gone: nothing to undo
    const { tombstone } = found;
    // The host policy comes first: a refused object is never observed, planned or acted on.
    const admission = await this.admit(found.d);
    if (!admission.allowed) {
      this.warnOnce(backend, found.d, admission.reason, admission.message);
      const failure = { reason: admission.reason, message: admission.message };
      await this.writeStatus(backend, found.d, { observed: undefined, failure }, signal);
      // Not this pass's failure but the object's: look again now and then, as quotas free up and files appear.
      return requeueAfter(this.options.policyRetryMs ?? 60_000);
    }
    const d = admission.desired;
    const log = this.options.logger.child({ key, kind: d.object.kind, provider: this.provider.name, reconcileId: randomBytes(4).toString('hex') });

    const paused = pausedBy(d, backend);
    if (tombstone && paused === undefined) {
      const keep = pruneDisabledBy(d, backend);
      if (keep !== undefined) {
        // Left the source, but pruning is off for it: its instance stays, hyperlet lets go of it.
        this.record(backend, d, 'Normal', 'PruneSkipped', `Removed from the source; the instance is kept (${keep})`);
        backend.records?.forget(key);
        this.lastActions.delete(key);
        return awaitChange();
      }
    }
    const retryMs = this.options.dependencyRetryMs ?? 2_000;
    const deps = d.deleting === true ? undefined : checkDependencies(d, (k) => this.options.store.get(k), (dep) => isReady(backend.statusWriter.lastWritten(dep.key), dep.generation));
    if (deps !== undefined && (deps.cycle !== undefined || deps.missing.length > 0)) {
      const failure = deps.cycle !== undefined
        ? { reason: 'DependencyCycle', message: `spec.dependsOn forms a cycle: ${deps.cycle.join(' -> ')}` }
        : { reason: 'DependencyNotFound', message: `spec.dependsOn names ${deps.missing.join(', ')}, which the source does not declare` };
      this.warnOnce(backend, d, failure.reason, failure.message);
      await this.writeStatus(backend, d, { observed: undefined, failure, ...(paused === undefined ? {} : { paused }) }, signal);
      // A spec error, not a hang: look again now and then, since the fix may come in another object.
      return requeueAfter(retryMs);
    }

    const health = await this.options.health.check(signal);
    if (!health.ok) {
      const failuresInARow = this.countFailure(d, 'probe', 'ProviderUnavailable');
      const failure = { reason: 'ProviderUnavailable', message: health.reason };
      const facts = { observed: undefined, failure, failuresInARow, ...(paused === undefined ? {} : { paused }) };
      await this.writeStatus(backend, d, facts, signal);
      // Not an error: the provider's absence is the host's state, not this object's fault.
      return requeueAfter(this.options.unavailableRetryMs ?? 30_000);
    }

    let observed: ObservedInstance | undefined;
    let p: Plan | undefined;
    let step: Step | undefined;
    try {
      observed = await this.observe(d, signal);
      // What the instance gets: d with its valueFrom references read. Status, records and events keep d.
      const resolved = await this.resolveEnvironment(backend, d, signal);
      if ('failure' in resolved) {
        this.warnOnce(backend, d, resolved.failure.reason, resolved.failure.message);
        await this.writeStatus(backend, d, { observed, failure: resolved.failure, ...(paused === undefined ? {} : { paused }) }, signal);
        // The Secret or file may appear, or the object change: look again now and then; the instance is left as it is.
        return requeueAfter(this.options.environmentRetryMs ?? 10_000);
      }
      const target = resolved.target;
      const convergedGeneration = backend.statusWriter.lastWritten(key)?.convergedGeneration;
      p = plan(target, observed, {
        ...(this.provider.applyModeOf === undefined ? {} : { applyModeOf: this.provider.applyModeOf.bind(this.provider) }),
        paused: paused !== undefined,
        ...(convergedGeneration === undefined ? {} : { convergedGeneration }),
        ...(deps === undefined ? {} : { dependenciesNotReady: deps.notReady }),
        ...(d.deleting === true ? { dependentsPresent: this.dependentsPresent(d, backend) } : {}),
        rebootRequested: observed !== undefined && this.provider.rebootPending?.(target, observed) === true,
      });
      if (p.held !== undefined) {
        this.failures.delete(key);
        const before = backend.statusWriter.lastWritten(key)?.conditions.find((c) => c.type === 'Drifted');
        await this.writeStatus(backend, d, { observed, plan: p, ...(paused === undefined ? {} : { paused }) }, signal);
        const after = backend.statusWriter.lastWritten(key)?.conditions.find((c) => c.type === 'Drifted');
        if (after?.status === 'True' && after.message !== before?.message) this.record(backend, d, 'Warning', 'Drifted', after.message);
        // Waiting on other objects: look again soon. Paused or drift left alone: events and resyncs bring us back.
        return p.heldBy === 'dependencies' || p.heldBy === 'dependents' ? requeueAfter(retryMs) : awaitChange();
      }
      if (p.finished === true) {
        this.failures.delete(key);
        if (p.conflict !== undefined) log.warn({ conflict: p.conflict }, 'object deleted; its instance is not ours and stays');
        await backend.finalizers?.release(d, signal);
        backend.records?.forget(key);
        this.lastActions.delete(key);
        return awaitChange();
      }
      step = p.steps[0];
      if (step === undefined) this.repeats.delete(key);
      if (p.conflict !== undefined || step === undefined) {
        this.failures.delete(key);
        await this.writeStatus(backend, d, { observed, plan: p, ...(paused === undefined ? {} : { paused }) }, signal);
        // An instance between states settles on its own: look again soon. Otherwise events and resyncs bring us back.
        return p.settling === true ? requeueAfter(this.options.settleMs ?? 1_000) : awaitChange();
      }
      if (d.deleting !== true) {
        if (step.op === 'create') await backend.finalizers?.ensure(d, signal);
        backend.records?.remember(d); // before acting, so a removed object can still be undone after a crash
      }
      const restore = p.steps.find((s) => s.op === 'restore');
      if (restore?.op === 'restore' && step.op !== 'restore') await this.requireSnapshot(d, restore.snapshot, signal);
      const name = stepName(step);
      // Say so before acting (Reconciling=True), once per stretch of work; a converged instance changed
      // behind our back is reported as seen (Stopped) before it is repaired.
      if (announces(step, backend.statusWriter.lastWritten(key), d.generation)) {
        await this.writeStatus(backend, d, { observed, plan: p, acted: { step: name } }, signal);
      }
      const note = await this.act(step, target, observed, signal);
      this.failures.delete(key);
      this.options.cache.invalidate(d.hostName);
      log.info({ step: name, note }, 'step done');
      if (note !== undefined) this.lastActions.set(key, note);
      this.lastWarnings.delete(key);
      this.record(backend, d, 'Normal', EVENT_REASON[name] ?? 'Reconciled', note ?? describeStep(step, d));
      // One step per pass: come back at once to see its effect, run the next one and write status.
      // A step that has to run again and again had no visible effect yet (a guest still ballooning):
      // come back ever later instead of hot-looping.
      return requeueAfter(this.repeatDelayMs(key, step));
    } catch (err) {
      if (signal.aborted || isAbortError(err)) throw err;
      this.options.cache.invalidate(d.hostName);
      if (isProviderUnavailableError(err)) this.options.health.markUnavailable(err);
      const reason = isTerminalError(err) ? err.reason : isProviderUnavailableError(err) ? 'ProviderUnavailable' : step === undefined ? 'ObserveFailed' : FAILURE_REASON[stepName(step)] ?? 'ReconcileError';
      const message = step === undefined ? `cannot observe ${d.hostName}: ${errorMessage(err)}` : `cannot ${describeStep(step, d).toLowerCase()}: ${errorMessage(err)}`;
      this.warnOnce(backend, d, reason, message);
      const failuresInARow = this.countFailure(d, step === undefined ? 'observe' : stepName(step), reason);
      const failure = { reason, message, terminal: isTerminalError(err) };
      const facts = { observed, ...(p === undefined ? {} : { plan: p }), failure, failuresInARow };
      await this.writeStatus(backend, d, facts, signal).catch((writeErr: unknown) => {
        log.warn({ err: writeErr }, 'cannot write failure status');
      });
      throw err;
    }
  }

  /** Before stopping an instance to restore it: the snapshot must exist, or nothing is touched (TerminalError SnapshotNotFound). */
  private async requireSnapshot(d: Desired, snapshot: string, signal: AbortSignal): Promise<void> {
    if (this.provider.listSnapshots === undefined) return; // the restore step itself says the provider has none
    const list = await this.provider.listSnapshots(d, signal);
    if (!list.some((s) => s.name === snapshot)) {
      throw new TerminalError('SnapshotNotFound', `cannot restore ${d.hostName}: it has no snapshot ${snapshot}`);
    }
  }

  /**
   * Counts one more failed pass of `d`: the count goes on while the generation, the step and the
   * reason stay the same, and starts again at 1 otherwise. Any pass that gets past its step
   * clears it.
   */
  private countFailure(d: Desired, step: string, reason: string): number {
    const signature = `${d.generation}/${step}/${reason}`;
    const last = this.failures.get(d.key);
    const count = last?.signature === signature ? last.count + 1 : 1;
    this.failures.set(d.key, { signature, count });
    return count;
  }

  private repeatDelayMs(key: ObjectKey, step: Step): number {
    const signature = JSON.stringify(step);
    const last = this.repeats.get(key);
    const count = last?.signature === signature ? last.count + 1 : 1;
    this.repeats.set(key, { signature, count });
    return count < 3 ? 0 : Math.min(60_000, 500 * 2 ** (count - 3));
  }

  private warnOnce(backend: SourceBackend, d: Desired, reason: string, message: string): void {
    if (this.lastWarnings.get(d.key) === message) return;
    this.lastWarnings.set(d.key, message);
    this.record(backend, d, 'Warning', reason, message);
  }

  /** The one way events and audit entries leave the reconciler: through the Redactor. */
  private record(backend: SourceBackend, d: Desired, type: 'Normal' | 'Warning', reason: string, message: string): void {
    backend.recorder.record(d, type, reason, this.options.redactor?.text(message) ?? message);
  }

  /**
   * `d` with its valueFrom references read (the Redactor learns every value), `d` itself when it
   * has none or is being deleted, or the failure to report (reason and message name the field).
   */
  private async resolveEnvironment(backend: SourceBackend, d: Desired, signal: AbortSignal): Promise<{ target: Desired } | { failure: { reason: string; message: string } }> {
    const refs = d.deleting === true ? [] : environmentReferences(d.object);
    if (refs.length === 0) return { target: d };
    if (backend.environment === undefined) {
      return { failure: { reason: 'PolicyDenied', message: `spec.environment.${refs[0]?.name ?? ''}: valueFrom is not supported by source ${backend.source.id}` } };
    }
    try {
      const values = await backend.environment.resolve(d, refs, signal);
      for (const value of Object.values(values)) this.options.redactor?.add(value);
      return { target: { ...d, object: withEnvironmentValues(d.object, values) } };
    } catch (err) {
      if (signal.aborted || isAbortError(err)) throw err;
      if (isEnvironmentError(err)) return { failure: { reason: err.reason, message: err.message } };
      return { failure: { reason: 'SecretUnavailable', message: `spec.environment: cannot read valueFrom: ${errorMessage(err)}` } };
    }
  }

  private desiredOrTombstone(key: ObjectKey, backend: SourceBackend): { d: Desired; tombstone: boolean } | undefined {
    const d = this.options.store.get(key);
    if (d !== undefined) return { d, tombstone: false };
    const tombstone = backend.records?.lastApplied(key);
    if (tombstone === undefined) {
      backend.records?.forget(key);
      this.lastActions.delete(key);
      this.lastWarnings.delete(key);
      this.repeats.delete(key);
      this.failures.delete(key);
      return undefined;
    }
    return { d: { ...tombstone, deleting: true }, tombstone: true };
  }

  /** Objects of `d`'s source that depend on it and may still have an instance (remembered). */
  private dependentsPresent(d: Desired, backend: SourceBackend): string[] {
    const records = backend.records;
    if (records === undefined) return dependentsOf(d, this.options.store.list());
    const candidates: Desired[] = [];
    if (records.withDependencies !== undefined) {
      // Remembered objects with dependsOn as declared now (store) or as last applied (tombstones).
      const byKey = new Map<ObjectKey, Desired>();
      for (const c of records.withDependencies()) byKey.set(c.key, this.options.store.get(c.key) ?? c);
      const declaredWithDeps = this.options.store.list().filter((c) => c.object.spec.dependsOn !== undefined && !byKey.has(c.key));
      if (declaredWithDeps.length > 0) {
        const remembered = new Set(records.keys());
        for (const c of declaredWithDeps) if (remembered.has(c.key)) byKey.set(c.key, c);
      }
      return dependentsOf(d, [...byKey.values()]);
    }
    for (const k of records.keys()) {
      const c = this.options.store.get(k) ?? records.lastApplied(k);
      if (c !== undefined) candidates.push(c);
    }
    return dependentsOf(d, candidates);
  }

  /** The host policy's verdict on `d`, judged among every declared object. */
  private async admit(d: Desired): Promise<Admission> {
    const policy = this.options.policy;
    if (policy === undefined) return { allowed: true, desired: d };
    return policy.admit(d, { objects: this.options.store.list(), admittedBefore: (key) => this.admittedBefore(key) });
  }

  /** Whether `key` has a status from a pass that got past the policy (it keeps its MACs and quota place). */
  private admittedBefore(key: ObjectKey): boolean {
    const status = this.options.backends.get(parseKey(key).source)?.statusWriter.lastWritten(key);
    const reason = status?.conditions.find((c) => c.type === 'Ready')?.reason;
    return status !== undefined && reason !== 'PolicyDenied' && reason !== 'QuotaExceeded';
  }

  private async observe(d: Desired, signal: AbortSignal): Promise<ObservedInstance | undefined> {
    const cached = this.options.cache.get(d.hostName);
    if (cached !== undefined) return cached.instance;
    this.options.metrics?.providerCalls.inc({ provider: this.provider.name, method: 'observe' });
    return this.provider.observe(d, signal);
  }

  private async act(step: Step, d: Desired, observed: ObservedInstance | undefined, signal: AbortSignal): Promise<string | undefined> {
    this.options.metrics?.providerCalls.inc({ provider: this.provider.name, method: step.op });
    const need = (): ObservedInstance => {
      if (observed === undefined) throw new Error(`cannot ${step.op} ${d.hostName}: it does not exist`);
      return observed;
    };
    switch (step.op) {
      case 'create': await this.provider.create(d, signal); return undefined;
      case 'adopt': await this.provider.adopt(d, need(), signal); return undefined;
      case 'update': await this.provider.update(d, step.changes, need(), signal); return `Updated ${step.changes.map((c) => c.path).join(', ')}`;
      case 'setState': return (await this.provider.setState(d, step.to, need(), signal)) ?? undefined;
      case 'reboot': return (await this.provider.setState(d, 'Running', need(), signal)) ?? undefined;
      case 'delete': await this.provider.delete(d, signal); return undefined;
      case 'restore': {
        need();
        if (this.provider.restoreSnapshot === undefined) {
          throw new TerminalError('SnapshotUnsupported', `cannot restore ${d.hostName}: provider ${this.provider.name} has no snapshots`);
        }
        const outcome = await this.provider.restoreSnapshot(d, step.snapshot, signal);
        return `${outcome.note} (request ${step.request})`;
      }
    }
  }

  private async writeStatus(backend: SourceBackend, d: Desired, facts: Omit<StatusFacts, 'd' | 'node' | 'previous' | 'now'>, signal: AbortSignal): Promise<void> {
    const previous: Status | undefined = backend.statusWriter.lastWritten(d.key);
    const lastAction = this.lastActions.get(d.key);
    const snapshots = this.options.snapshotsOf?.(d.key);
    const computed = computeStatus({ ...facts, d, node: this.options.node, previous, ...(snapshots === undefined ? {} : { snapshots }), now: new Date().toISOString(), ...(lastAction === undefined ? {} : { lastAction }) });
    const status = this.options.redactor === undefined ? computed : redactStatus(computed, this.options.redactor);
    if (sameStatus(previous, status)) return;
    this.options.metrics?.statusWrites.inc({ source: d.source });
    await backend.statusWriter.write(d, status, signal);
    const readyNow = status.conditions.find((c) => c.type === 'Ready')?.status === 'True';
    const readyBefore = previous?.conditions.find((c) => c.type === 'Ready')?.status === 'True' && previous.observedGeneration === status.observedGeneration;
    if (readyNow && !readyBefore) this.options.onReady?.(d);
  }
}

/** `status` with every message and detail passed through `redactor` (they quote tools and errors). */
function redactStatus(status: Status, redactor: Redactor): Status {
  return {
    ...status,
    conditions: status.conditions.map((c) => ({ ...c, message: redactor.text(c.message) })),
    ...(status.details === undefined ? {} : { details: Object.fromEntries(Object.entries(status.details).map(([k, v]) => [k, redactor.text(v)])) }),
  };
}

/** Why changes to `d` are stopped, or undefined when they are not. */
function pausedBy(d: Desired, backend: SourceBackend): string | undefined {
  if (d.object.metadata.annotations?.[PAUSED_ANNOTATION] === 'true') return `annotation ${PAUSED_ANNOTATION}`;
  if (backend.policy?.paused === true) return `source ${backend.source.id} is paused`;
  return undefined;
}

/** Why the instance of `d`, which left its source, must not be deleted; undefined: prune it. */
function pruneDisabledBy(d: Desired, backend: SourceBackend): string | undefined {
  if (d.object.metadata.annotations?.[PRUNE_ANNOTATION] === 'disabled') return `annotation ${PRUNE_ANNOTATION}: disabled`;
  if (backend.policy?.prune === false) return `source ${backend.source.id} does not prune`;
  return undefined;
}

/**
 * Whether to say that `step` is under way before it runs (kstatus reads Reconciling=True as
 * InProgress). Deleting always: a new intent. Otherwise not while status says Stalled for this
 * generation: a retry of a stalled step (backoff, resync) keeps saying Stalled until it gets
 * through, or kstatus would flap between Failed and InProgress at every retry. Creating always
 * (it takes a while and changes the phase), other steps unless status already says Reconciling.
 */
function announces(step: Step, status: Status | undefined, generation: number): boolean {
  if (step.op === 'delete') return true;
  const current = status?.observedGeneration === generation ? status.conditions : [];
  if (current.some((c) => c.type === 'Stalled' && c.status === 'True')) return false;
  return step.op === 'create' || !current.some((c) => c.type === 'Reconciling' && c.status === 'True');
}

/** Ready for its current generation: what a dependent waits for. */
function isReady(status: Status | undefined, generation: number): boolean {
  const ready = status?.conditions.find((c) => c.type === 'Ready');
  return ready?.status === 'True' && status?.observedGeneration === generation;
}

function describeStep(step: Step, d: Desired): string {
  const what = `${d.object.kind === 'Container' ? 'container' : 'domain'} ${d.hostName}`;
  switch (step.op) {
    case 'create': return `Create ${what}`;
    case 'adopt': return `Adopt ${what}`;
    case 'update': return `Update ${step.changes.map((c) => c.path).join(', ')} of ${what}`;
    case 'setState': return `Set ${what} to ${step.to}`;
    case 'reboot': return `Reboot ${what}`;
    case 'restore': return `Restore ${what} to snapshot ${step.snapshot}`;
    case 'delete': return step.reason === 'partial' ? `Clean up the partial ${what}` : `Delete ${what}`;
  }
}
