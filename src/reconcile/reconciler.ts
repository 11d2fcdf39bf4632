/**
 * Moves one object one step toward its desired state and writes its status.
 *
 * Level-based: the key says which object, never what happened to it. Each pass reads the desired
 * object (or, once it left its source, its tombstone), observes the instance, plans, runs the
 * first due step and writes status; it throws to retry with backoff, or throws `TerminalError`
 * to wait until the object changes. Every step is idempotent, so a crash anywhere is repaired by
 * the next pass.
 */
import type { Logger } from 'pino';
import type { Status } from '../api/v1alpha1/types.js';
import type { ObservedInstance, Provider } from '../providers/provider.js';
import { isProviderUnavailableError } from '../providers/provider.js';
import type { SourceBackend } from './backend.js';
import type { Desired } from '../store/desired.js';
import type { StoreReader } from '../store/desired-store.js';
import { type ObjectKey, parseKey } from '../store/object-key.js';
import { computeStatus, sameStatus, type StatusFacts } from './conditions.js';
import type { Metrics } from '../telemetry/metrics.js';
import { newReconcileId } from '../telemetry/reconcile-id.js';
import { errorMessage, isAbortError, isTerminalError } from '../shared/errors.js';
import type { ObservationCache } from './observation-cache.js';
import { checkDependencies, dependentsOf } from './dependencies.js';
import { PAUSED_ANNOTATION, PRUNE_ANNOTATION } from '../shared/annotations.js';
import { type Plan, type Step, plan } from './plan.js';
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
}

const EVENT_REASON: Readonly<Record<string, string>> = {
  create: 'Created', adopt: 'Adopted', update: 'Updated',
  'setState:Running': 'Started', 'setState:Stopped': 'Stopped', 'setState:Frozen': 'Frozen', 'setState:Paused': 'Paused',
  'delete:deleted': 'Deleted', 'delete:partial': 'CleanedUp', 'delete:recreate': 'Recreating', reboot: 'Rebooted',
};

const FAILURE_REASON: Readonly<Record<string, string>> = {
  create: 'CreateFailed', adopt: 'AdoptFailed', update: 'UpdateFailed',
  'setState:Running': 'StartFailed', 'setState:Stopped': 'StopFailed', 'setState:Frozen': 'FreezeFailed', 'setState:Paused': 'PauseFailed',
  'delete:deleted': 'DeleteFailed', 'delete:partial': 'CleanupFailed', 'delete:recreate': 'DeleteFailed', reboot: 'RebootFailed',
};

export function stepName(step: Step): string {
  switch (step.op) {
    case 'setState': return `setState:${step.to}`;
    case 'delete': return `delete:${step.reason}`;
    default: return step.op;
  }
}

export class Reconciler {
  private readonly provider: Provider;
  /** The note of each key's last step ("destroyed after 60 s"), shown as status.details.lastAction. */
  private readonly lastActions = new Map<ObjectKey, string>();
  /** The last step run per key and how often it ran in a row, to slow down steps that have no effect. */
  private readonly repeats = new Map<ObjectKey, { signature: string; count: number }>();
  /** The last Warning recorded per key, so a failure repeating with backoff is recorded once. */
  private readonly lastWarnings = new Map<ObjectKey, string>();

  constructor(private readonly options: ReconcilerOptions) {
    this.provider = options.provider;
  }

  async reconcile(key: ObjectKey, signal: AbortSignal): Promise<Result> {
    const backend = this.options.backends.get(parseKey(key).source);
    if (backend === undefined) return awaitChange(); // a source that is not running here
    const found = this.desiredOrTombstone(key, backend);
    if (found === undefined) return awaitChange(); // never acted on, and gone: nothing to undo
    const { d, tombstone } = found;
    const log = this.options.logger.child({ key, kind: d.object.kind, provider: this.provider.name, reconcileId: newReconcileId() });

    const paused = pausedBy(d, backend);
    if (tombstone && paused === undefined) {
      const keep = pruneDisabledBy(d, backend);
      if (keep !== undefined) {
        // Left the source, but pruning is off for it: its instance stays, hyperlet lets go of it.
        backend.recorder.record(d, 'Normal', 'PruneSkipped', `Removed from the source; the instance is kept (${keep})`);
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
      await this.writeStatus(backend, d, { observed: undefined, failure: { reason: 'ProviderUnavailable', message: health.reason }, ...(paused === undefined ? {} : { paused }) }, signal);
      // Not an error: the provider's absence is the host's state, not this object's fault.
      return requeueAfter(this.options.unavailableRetryMs ?? 30_000);
    }

    let observed: ObservedInstance | undefined;
    let p: Plan | undefined;
    let step: Step | undefined;
    try {
      observed = await this.observe(d, signal);
      const convergedGeneration = backend.statusWriter.lastWritten(key)?.convergedGeneration;
      p = plan(d, observed, {
        ...(this.provider.applyModeOf === undefined ? {} : { applyModeOf: this.provider.applyModeOf.bind(this.provider) }),
        paused: paused !== undefined,
        ...(convergedGeneration === undefined ? {} : { convergedGeneration }),
        ...(deps === undefined ? {} : { dependenciesNotReady: deps.notReady }),
        ...(d.deleting === true ? { dependentsPresent: this.dependentsPresent(d, backend) } : {}),
        rebootRequested: observed !== undefined && this.provider.rebootPending?.(d, observed) === true,
      });
      if (p.held !== undefined) {
        const before = backend.statusWriter.lastWritten(key)?.conditions.find((c) => c.type === 'Drifted');
        await this.writeStatus(backend, d, { observed, plan: p, ...(paused === undefined ? {} : { paused }) }, signal);
        const after = backend.statusWriter.lastWritten(key)?.conditions.find((c) => c.type === 'Drifted');
        if (after?.status === 'True' && after.message !== before?.message) backend.recorder.record(d, 'Warning', 'Drifted', after.message);
        // Waiting on other objects: look again soon. Paused or drift left alone: events and resyncs bring us back.
        return p.heldBy === 'dependencies' || p.heldBy === 'dependents' ? requeueAfter(retryMs) : awaitChange();
      }
      if (p.finished === true) {
        if (p.conflict !== undefined) log.warn({ conflict: p.conflict }, 'object deleted; its instance is not ours and stays');
        await backend.finalizers?.release(d, signal);
        backend.records?.forget(key);
        this.lastActions.delete(key);
        return awaitChange();
      }
      step = p.steps[0];
      if (step === undefined) this.repeats.delete(key);
      if (p.conflict !== undefined || step === undefined) {
        await this.writeStatus(backend, d, { observed, plan: p, ...(paused === undefined ? {} : { paused }) }, signal);
        // An instance between states settles on its own: look again soon. Otherwise events and resyncs bring us back.
        return p.settling === true ? requeueAfter(this.options.settleMs ?? 1_000) : awaitChange();
      }
      if (d.deleting !== true) {
        if (step.op === 'create') await backend.finalizers?.ensure(d, signal);
        await backend.records?.remember(d); // before acting, so a removed object can still be undone after a crash
      }
      const name = stepName(step);
      // Creating and deleting take a while: say so before. Other steps show in the next pass's status, ms later.
      if (step.op === 'create' || step.op === 'delete') await this.writeStatus(backend, d, { observed, plan: p, acted: { step: name } }, signal);
      const note = await this.act(step, d, observed, signal);
      this.options.cache.invalidate(d.hostName);
      log.info({ step: name, note }, 'step done');
      if (note !== undefined) this.lastActions.set(key, note);
      this.lastWarnings.delete(key);
      backend.recorder.record(d, 'Normal', EVENT_REASON[name] ?? 'Reconciled', note ?? describeStep(step, d));
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
      await this.writeStatus(backend, d, { observed, ...(p === undefined ? {} : { plan: p }), failure: { reason, message } }, signal).catch((writeErr: unknown) => {
        log.warn({ err: writeErr }, 'cannot write failure status');
      });
      throw err;
    }
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
    backend.recorder.record(d, 'Warning', reason, message);
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
    }
  }

  private async writeStatus(backend: SourceBackend, d: Desired, facts: Omit<StatusFacts, 'd' | 'node' | 'previous' | 'now'>, signal: AbortSignal): Promise<void> {
    const previous: Status | undefined = backend.statusWriter.lastWritten(d.key);
    const lastAction = this.lastActions.get(d.key);
    const status = computeStatus({ ...facts, d, node: this.options.node, previous, now: new Date().toISOString(), ...(lastAction === undefined ? {} : { lastAction }) });
    if (sameStatus(previous, status)) return;
    this.options.metrics?.statusWrites.inc({ source: d.source });
    await backend.statusWriter.write(d, status, signal);
    const readyNow = status.conditions.find((c) => c.type === 'Ready')?.status === 'True';
    const readyBefore = previous?.conditions.find((c) => c.type === 'Ready')?.status === 'True' && previous.observedGeneration === status.observedGeneration;
    if (readyNow && !readyBefore) this.options.onReady?.(d);
  }
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
    case 'delete': return step.reason === 'partial' ? `Clean up the partial ${what}` : `Delete ${what}`;
  }
}
