/**
 * Moves one object one step toward its desired state and writes its status.
 *
 * Level-based: the key says which object, never what happened to it. Each pass goes through
 * five phases: resolve (the desired object, or its tombstone once it left its source), gate
 * (pruning rules, dependencies, provider health), observe and plan, act (the first due step,
 * admitted by the StepGuard) and report (status and events). A pass returns a Result or throws:
 * any error retries with the queue's backoff, `TerminalError` waits until the object changes.
 * Every step is idempotent, so a crash anywhere is repaired by the next pass.
 */
import type { Logger } from 'pino';
import { environmentReferences, isEnvironmentError, referenceField, withEnvironmentValues } from '../api/v1alpha1/environment.js';
import type { Status, StatusSnapshot } from '../api/v1alpha1/types.js';
import type { Redactor } from '../shared/redact.js';
import type { ObservedInstance, Provider } from '../providers/provider.js';
import { isProviderUnavailableError, isSnapshotName } from '../providers/provider.js';
import type { SourceBackend } from './backend.js';
import type { Desired } from '../store/desired.js';
import type { StoreReader } from '../store/desired-store.js';
import { type ObjectKey, parseKey } from '../store/object-key.js';
import { computeStatus, sameStatus, type StatusFacts } from './conditions.js';
import type { Metrics } from '../telemetry/metrics.js';
import { newReconcileId } from '../telemetry/reconcile-id.js';
import type { Admission, Admitter } from '../policy/admission.js';
import type { Clock } from '../shared/clock.js';
import { isoTime, systemClock } from '../shared/clock.js';
import { TerminalError, errorMessage, isAbortError, isStepPendingError, isTerminalError } from '../shared/errors.js';
import type { ObservationCache } from './observation-cache.js';
import { type DependencyCheck, checkDependencies, dependentsOf } from './dependencies.js';
import {
  PAUSED_ANNOTATION, PRUNE_ANNOTATION, RESTORE_REQUEST_ANNOTATION, SNAPSHOT_REQUEST_ANNOTATION,
} from '../shared/annotations.js';
import { type Plan, type Step, plan as computePlan, stepName } from './plan.js';
import type { ProviderHealth } from './provider-health.js';
import { type Result, awaitChange, nextStep, requeue, requeueAfter } from './result.js';
import { StepGuard, type StepGuardOptions, stepIntent } from './step-guard.js';
import {
  MemoryStopDeadlines, type StopDeadline, type StopDeadlines, type StopMove, type StopWaitOptions, nextStopMove,
} from './stop-deadlines.js';

/** What the reconciler works with; all but the tuning knobs are required. */
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
  /** Time for status timestamps and the step guard (default: the system clock). */
  readonly clock?: Clock;
  /** How long to wait before looking again at an instance between states (default 1 s). */
  readonly settleMs?: number;
  /** How long to wait before probing an unavailable provider again for this object (default 30 s). */
  readonly unavailableRetryMs?: number;
  /** How often an object waiting on dependsOn (or on its dependents) looks again (default 2 s). */
  readonly dependencyRetryMs?: number;
  /** Limits on how often one object acts (see StepGuard); the clock is `clock`. */
  readonly stepGuard?: Omit<StepGuardOptions, 'clock'>;
  /** Called when an object turns Ready, so objects waiting on it need not wait for their retry. */
  readonly onReady?: (desired: Desired) => void;
  /** The scheduled snapshots to list in status.snapshots (the SnapshotScheduler's last list), when known. */
  readonly snapshotsOf?: (key: ObjectKey) => readonly StatusSnapshot[] | undefined;
  /** The host policy: every object passes it before it is observed or acted on (absent: everything passes). */
  readonly policy?: Admitter;
  /** How often a refused object is looked at again (default 60 s): quotas free up, files appear. */
  readonly policyRetryMs?: number;
  /**
   * The daemon's one Redactor: every value read for spec.environmentFrom is added to it, and
   * every Event, audit entry and status message passes it before it is written.
   */
  readonly redactor?: Redactor;
  /** How often an object whose environmentFrom cannot be read looks again (default 10 s). */
  readonly environmentRetryMs?: number;
  /**
   * Graceful stops under way, by key (the daemon's state DB, so a restart keeps their deadlines);
   * default: in memory.
   */
  readonly stopDeadlines?: StopDeadlines;
  /** How a graceful stop polls and asks again (see stop-deadlines.ts). */
  readonly stopWait?: StopWaitOptions;
}

/** A reason (CamelCase) and a message for Ready/Synced when a pass cannot do its work. */
interface Failure {
  readonly reason: string;
  readonly message: string;
}

/** What one pass knows of its object once resolved. */
interface Pass {
  readonly key: ObjectKey;
  readonly desired: Desired;
  /** The object left its source: `desired` is its last applied form, marked deleting. */
  readonly tombstone: boolean;
  readonly backend: SourceBackend;
  readonly log: Logger;
  /** Why changes are stopped (annotation or source), when they are. */
  readonly paused: string | undefined;
  readonly signal: AbortSignal;
}

/**
 * The gate either lets the pass on, with the dependency facts the plan needs, or ends it. The
 * pass it lets on may differ from the one it was given (a gate may complete the desired object).
 */
type GateOutcome =
  | { readonly open: true; readonly pass: Pass; readonly dependencies: DependencyCheck | undefined }
  | { readonly open: false; readonly result: Result };

/**
 * What observe and plan found: the instance, the plan, and the target (the desired object with
 * its spec.environmentFrom read: what the instance gets; status, records and events keep the
 * desired object). Or the result that ends the pass when a reference cannot be read.
 */
type Outlook =
  | { readonly ended: false; readonly observed: ObservedInstance | undefined; readonly plan: Plan; readonly target: Desired }
  | { readonly ended: true; readonly result: Result };

/** What the pass has got to so far, so a failure is reported with what is known. */
interface Progress {
  observed?: ObservedInstance | undefined;
  plan?: Plan;
  step?: Step;
}

/** Facts of a pass that `report` completes with the object, node, time, last action and pause. */
type PassFacts = Omit<StatusFacts, 'd' | 'node' | 'previous' | 'now' | 'lastAction' | 'paused' | 'stopDeadline'>;

const EVENT_REASON: Readonly<Record<string, string>> = {
  create: 'Created', adopt: 'Adopted', update: 'Updated',
  'setState:Running': 'Started', 'setState:Stopped': 'Stopped', 'setState:Frozen': 'Frozen', 'setState:Paused': 'Paused',
  'delete:deleted': 'Deleted', 'delete:partial': 'CleanedUp', 'delete:recreate': 'Recreating', reboot: 'Rebooted',
  restore: 'Restored', snapshot: 'SnapshotTaken', 'stop:request': 'StopRequested',
};

const FAILURE_REASON: Readonly<Record<string, string>> = {
  create: 'CreateFailed', adopt: 'AdoptFailed', update: 'UpdateFailed',
  'setState:Running': 'StartFailed', 'setState:Stopped': 'StopFailed', 'setState:Frozen': 'FreezeFailed', 'setState:Paused': 'PauseFailed',
  'delete:deleted': 'DeleteFailed', 'delete:partial': 'CleanupFailed', 'delete:recreate': 'DeleteFailed', reboot: 'RebootFailed',
  restore: 'RestoreFailed', snapshot: 'SnapshotFailed', 'stop:request': 'StopFailed',
};

/** The step a graceful stop runs as (its request and its force), for the guard, status and events. */
const STOP_STEP: Step = { op: 'setState', to: 'Stopped' };

/** Held steps that wait on other objects are looked at again soon; the others wait for a change. */
const HELD_ON_OTHER_OBJECTS: Readonly<Record<NonNullable<Plan['heldBy']>, boolean>> = {
  paused: false, driftPolicy: false, dependencies: true, dependents: true,
};

/**
 * Reconciles objects of one provider's kind. Call `reconcile` for one key at a time (the work
 * queue guarantees it); different keys may run at once.
 */
export class Reconciler {
  private readonly provider: Provider;
  private readonly clock: Clock;
  private readonly guard: StepGuard<ObjectKey>;
  /** The note of each key's last step ("destroyed after 60 s"), shown as status.details.lastAction. */
  private readonly lastActions = new Map<ObjectKey, string>();
  /** The last Warning recorded per key, so a failure repeating with backoff is recorded once. */
  private readonly lastWarnings = new Map<ObjectKey, string>();
  /** Each key's last failure (generation, step, reason) and how many passes in a row failed so: Stalled after a few. */
  private readonly failures = new Map<ObjectKey, { signature: string; count: number }>();
  private readonly stopDeadlines: StopDeadlines;
  /** When this process last asked each key's instance to shut down (a restart asks again at once). */
  private readonly stopRequests = new Map<ObjectKey, number>();
  /** The snapshot-request value each key's instance is known to have a snapshot for (taken or found), so it is listed once. */
  private readonly snapshotRequestsSeen = new Map<ObjectKey, string>();

  constructor(private readonly options: ReconcilerOptions) {
    this.provider = options.provider;
    this.clock = options.clock ?? systemClock;
    this.stopDeadlines = options.stopDeadlines ?? new MemoryStopDeadlines();
    this.guard = new StepGuard<ObjectKey>({ ...options.stepGuard, clock: this.clock });
  }

  /**
   * A graceful stop that is due (or under way) goes here: asked for, waited for by the queue (never
   * by a worker) and forced at its deadline (see stop-deadlines.ts). Undefined when the pass goes on
   * as usual: no stop is due, or the provider cannot stop without waiting, or gracefulStopSeconds is 0.
   * A stop that ended, or is no longer wanted, is forgotten here.
   */
  private async gracefulStop(
    pass: Pass, outlook: { observed: ObservedInstance | undefined; plan: Plan; target: Desired }, progress: Progress,
  ): Promise<Result | undefined> {
    const { key, desired } = pass;
    const { observed, plan } = outlook;
    const pending = this.stopDeadlines.get(key);
    const due = gracefulStopDue(desired, observed, plan, pending !== undefined, this.provider);
    if (due === undefined) {
      // A step due before the stop (a live change) keeps its deadline; a stop done, dropped or paused does not.
      if (pending !== undefined && !stopStillWanted(desired, observed, plan)) this.endStop(pass, pending, observed);
      return undefined;
    }
    const move = nextStopMove({
      nowMs: this.clock.now(), gracefulStopSeconds: desired.object.spec.gracefulStopSeconds, pending,
      lastRequestMs: this.stopRequests.get(key), mayRequest: due === 'request',
    }, this.options.stopWait);
    if (move.move === 'wait') {
      this.guard.settled(key);
      await this.report(pass, { observed, plan });
      // Asked already: the instance shuts down in its own time; its stop event or this poll brings us back.
      return requeueAfter(move.afterMs);
    }
    return this.act(pass, outlook, STOP_STEP, progress, move);
  }

  /**
   * The stop of the pass's object is over or no longer wanted: forget it. When the instance shut
   * down on its own, say so (status and a Stopped event, as a forced stop does).
   */
  private endStop(pass: Pass, pending: StopDeadline, observed: ObservedInstance | undefined): void {
    const { key } = pass;
    this.stopDeadlines.delete(key);
    this.stopRequests.delete(key);
    if (observed !== undefined && observed.state !== 'Stopped') return;
    const nowMs = this.clock.now();
    // Seen stopped only after the deadline (a crash between the force and forgetting it): no claim on how.
    const note = nowMs < pending.deadlineMs
      ? `shut down gracefully in ${((nowMs - pending.requestedAtMs) / 1000).toFixed(1)} s`
      : 'stopped';
    this.lastActions.set(key, note);
    this.record(pass, 'Normal', EVENT_REASON['setState:Stopped'] ?? 'Stopped', note);
  }

  /** Runs a graceful stop's request or force; resolves to the note for status, if any. */
  private async runStop(
    key: ObjectKey, stop: Exclude<StopMove, { move: 'wait' }>, desired: Desired, observed: ObservedInstance | undefined,
    signal: AbortSignal,
  ): Promise<string | undefined> {
    const provider = this.provider;
    if (observed === undefined || provider.requestStop === undefined || provider.forceStop === undefined) {
      throw new Error(`cannot stop ${desired.hostName}: it does not exist or its provider cannot stop without waiting`);
    }
    const graceSeconds = desired.object.spec.gracefulStopSeconds;
    if (stop.move === 'request') {
      // The deadline is on disk before the instance is asked: a restart neither forces early nor starts the grace again.
      if (stop.first) this.stopDeadlines.set(key, stop.deadline);
      this.options.metrics?.providerCalls.inc({ provider: this.provider.name, method: 'requestStop' });
      await provider.requestStop(desired, observed, signal);
      this.stopRequests.set(key, this.clock.now());
      return stop.first ? `shutdown requested; stopped by force after ${graceSeconds} s if still running` : undefined;
    }
    this.options.metrics?.providerCalls.inc({ provider: this.provider.name, method: 'forceStop' });
    const note = await provider.forceStop(desired, observed, signal);
    this.stopDeadlines.delete(key);
    this.stopRequests.delete(key);
    return note ?? `stopped by force after ${graceSeconds} s without a clean shutdown`;
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
   * The snapshot `target`'s snapshot-request annotation names when its instance (ours, complete)
   * has none of that name; undefined otherwise. Lists the snapshots once per value and key.
   */
  private async snapshotRequested(key: ObjectKey, target: Desired, observed: ObservedInstance | undefined, signal: AbortSignal): Promise<string | undefined> {
    const value = target.object.metadata.annotations?.[SNAPSHOT_REQUEST_ANNOTATION];
    if (value === undefined || value === '' || this.snapshotRequestsSeen.get(key) === value) return undefined;
    if (observed === undefined || observed.ownerId !== target.id || observed.partial === true || target.deleting === true) return undefined;
    if (this.provider.listSnapshots === undefined) return value; // the snapshot step says the provider has none
    const list = await this.provider.listSnapshots(target, signal);
    if (!list.some((s) => s.name === value)) return value;
    this.snapshotRequestsSeen.set(key, value);
    return undefined;
  }

  /**
   * Moves the object named by `key` one step toward its desired state and writes its status.
   * Resolves to when to come back; rejects to retry with backoff (`TerminalError`: wait for the
   * object to change; an abort of `signal`: nothing, the daemon is stopping).
   */
  async reconcile(key: ObjectKey, signal: AbortSignal): Promise<Result> {
    const resolved = this.resolve(key, signal);
    // A source that is not running here, or an object gone that was never acted on: nothing to undo.
    if (resolved === undefined) return awaitChange();
    const gate = await this.gate(resolved);
    if (!gate.open) return gate.result;
    const pass = gate.pass;
    const progress: Progress = {};
    try {
      const outlook = await this.observeAndPlan(pass, gate.dependencies, progress);
      if (outlook.ended) return outlook.result;
      const { observed, plan, target } = outlook;
      const stopping = await this.gracefulStop(pass, outlook, progress);
      if (stopping !== undefined) return stopping;
      const step = plan.steps[0];
      if (step === undefined || plan.conflict !== undefined) return await this.reportWithoutStep(pass, observed, plan);
      return await this.act(pass, { observed, plan, target }, step, progress);
    } catch (err) {
      return await this.reportFailure(pass, err, progress);
    }
  }

  /** Resolve: the object's backend and its desired form (or tombstone); undefined when there is nothing to do. */
  private resolve(key: ObjectKey, signal: AbortSignal): Pass | undefined {
    const backend = this.options.backends.get(parseKey(key).source);
    if (backend === undefined) return undefined;
    const found = this.desiredOrTombstone(key, backend);
    if (found === undefined) return undefined;
    const { desired, tombstone } = found;
    const reconcileId = newReconcileId();
    const log = this.options.logger.child({ key, kind: desired.object.kind, provider: this.provider.name, reconcileId });
    return { key, desired, tombstone, backend, log, paused: pausedBy(desired, backend), signal };
  }

  /**
   * Gate: whether the pass may go on to observe and act. Ends it when a removed object's instance
   * is to be kept, when spec.dependsOn is broken, or when the provider is unavailable.
   */
  private async gate(resolved: Pass): Promise<GateOutcome> {
    // The host policy comes first: a refused object is never observed, planned or acted on.
    const admission = await this.admit(resolved.desired);
    if (!admission.allowed) {
      const failure = { reason: admission.reason, message: admission.message };
      this.warnOnce(resolved, failure);
      await this.report(resolved, { observed: undefined, failure });
      // Not this pass's failure but the object's: look again now and then, as quotas free up and files appear.
      return { open: false, result: requeueAfter(this.options.policyRetryMs ?? 60_000) };
    }
    const pass: Pass = { ...resolved, desired: admission.desired };
    const { key, desired, backend } = pass;
    const keep = pass.tombstone && pass.paused === undefined ? pruneDisabledBy(desired, backend) : undefined;
    if (keep !== undefined) {
      // Left the source, but pruning is off for it: its instance stays, hyperlet lets go of it.
      this.record(pass, 'Normal', 'PruneSkipped', `Removed from the source; the instance is kept (${keep})`);
      backend.records?.forget(key);
      this.forgetKey(key);
      return { open: false, result: awaitChange() };
    }
    const dependencies = desired.deleting === true ? undefined : this.checkDependencies(pass);
    const broken = dependencies === undefined ? undefined : dependencyFailure(dependencies);
    if (broken !== undefined) {
      this.warnOnce(pass, broken);
      await this.report(pass, { observed: undefined, failure: broken });
      // A spec error, not a hang: look again now and then, since the fix may come in another object.
      return { open: false, result: requeueAfter(this.options.dependencyRetryMs ?? 2_000) };
    }
    const health = await this.options.health.check(pass.signal);
    if (!health.ok) {
      const failuresInARow = this.countFailure(pass, 'probe', 'ProviderUnavailable');
      await this.report(pass, { observed: undefined, failure: { reason: 'ProviderUnavailable', message: health.reason }, failuresInARow });
      // Not an error: the provider's absence is the host's state, not this object's fault.
      return { open: false, result: requeueAfter(this.options.unavailableRetryMs ?? 30_000) };
    }
    return { open: true, pass, dependencies };
  }

  /**
   * Observe and plan: the instance as it is now (batch cache or provider), the desired object's
   * spec.environmentFrom read, and the steps still due. Ends the pass when a reference cannot be read.
   */
  private async observeAndPlan(pass: Pass, dependencies: DependencyCheck | undefined, progress: Progress): Promise<Outlook> {
    const { key, desired, backend } = pass;
    const observed = await this.observe(desired, pass.signal);
    progress.observed = observed;
    const environment = await this.resolveEnvironment(pass);
    if ('failure' in environment) {
      this.warnOnce(pass, environment.failure);
      await this.report(pass, { observed, failure: environment.failure });
      // The Secret or file may appear, or the object change: look again now and then; the instance is left as it is.
      return { ended: true, result: requeueAfter(this.options.environmentRetryMs ?? 10_000) };
    }
    const target = environment.target;
    const plan = computePlan(target, observed, {
      applyModeOf: this.provider.applyModeOf?.bind(this.provider),
      paused: pass.paused !== undefined,
      convergedGeneration: backend.statusWriter.lastWritten(key)?.convergedGeneration,
      dependenciesNotReady: dependencies?.notReady,
      dependentsPresent: desired.deleting === true ? this.dependentsPresent(desired, backend) : undefined,
      rebootRequested: observed !== undefined && this.provider.rebootPending?.(target, observed) === true,
      snapshotRequested: await this.snapshotRequested(key, target, observed, pass.signal),
    });
    progress.plan = plan;
    return { ended: false, observed, plan, target };
  }

  /**
   * Act: runs `step` if the step guard admits it, and says when to come back. A step whose last
   * run shows no effect yet is waited for with the queue's backoff; an object acting too often
   * waits for the guard's rate, whatever the provider reports.
   */
  private async act(
    pass: Pass, outlook: { observed: ObservedInstance | undefined; plan: Plan; target: Desired }, step: Step, progress: Progress,
    stop?: Exclude<StopMove, { move: 'wait' }>,
  ): Promise<Result> {
    const { observed, plan, target } = outlook;
    const { key, desired, backend, signal } = pass;
    const admission = this.guard.admit(key, stopIntent(stepIntent(step, desired.generation), stop, this.clock.now()));
    if (!admission.act) {
      await this.report(pass, { observed, plan });
      // The last run of this same step has not shown its effect yet (a guest still ballooning):
      // wait for it with the queue's backoff instead of running it again at once.
      if (admission.waitingFor === 'effect') return requeue();
      // This object acted too often lately: come back when it may act again.
      return requeueAfter(admission.afterMs);
    }
    progress.step = step;
    if (desired.deleting !== true) {
      if (step.op === 'create') await backend.finalizers?.ensure(desired, signal);
      await backend.records?.remember(desired); // before acting, so a removed object can still be undone after a crash
    }
    // A restore stops the instance first: the snapshot must exist before anything is touched.
    const restore = plan.steps.find((due) => due.op === 'restore');
    if (restore?.op === 'restore' && step.op !== 'restore') await this.requireSnapshot(desired, restore.snapshot, signal);
    const name = stop?.move === 'request' ? 'stop:request' : stepName(step);
    // Say so before acting (Reconciling=True), once per stretch of work; a converged instance changed
    // behind our back is reported as seen (Stopped) before it is repaired.
    if (announces(step, backend.statusWriter.lastWritten(key), desired.generation)) {
      await this.report(pass, { observed, plan, acted: { step: name } });
    }
    let note: string | undefined;
    try {
      note = stop === undefined
        ? await this.runStep(step, target, observed, signal)
        : await this.runStop(key, stop, target, observed, signal);
    } catch (err) {
      if (!isStepPendingError(err)) throw err;
      // Begun, not finished (an image downloading in the background): no failure, no backoff.
      // The guard gets its token back, so the next pass may ask again; status shows the progress.
      this.guard.failed(key);
      this.failures.delete(key);
      await this.report(pass, { observed, plan, acted: { step: name }, pending: { reason: err.reason, message: err.message } });
      return requeueAfter(err.retryAfterMs);
    }
    this.failures.delete(key);
    this.options.cache.invalidate(desired.hostName);
    pass.log.info({ step: name, note, repeat: admission.repeat }, 'step done');
    if (note !== undefined) this.lastActions.set(key, note);
    this.lastWarnings.delete(key);
    // A request asked again is a nudge, not news: one event per stop.
    const resend = stop?.move === 'request' && !stop.first;
    if (!resend) this.record(pass, 'Normal', EVENT_REASON[name] ?? 'Reconciled', note ?? describeStep(step, desired));
    // Asked to shut down: the instance takes its time, and no worker waits for it. Its stop event
    // or this bounded poll brings us back; the force comes at the deadline.
    if (stop?.move === 'request') return requeueAfter(stop.afterMs);
    // One step per pass: come back at once to see its effect, run the next one and write status.
    // A step run again because its effect did not show: give it time, with backoff.
    return admission.repeat ? requeue() : nextStep();
  }

  /** Report, when no step is to run: held steps, a finished deletion, a conflict or nothing due. */
  private async reportWithoutStep(pass: Pass, observed: ObservedInstance | undefined, plan: Plan): Promise<Result> {
    const { key, desired, backend } = pass;
    this.guard.settled(key);
    this.failures.delete(key);
    if (plan.held !== undefined) {
      const driftBefore = driftedCondition(backend.statusWriter.lastWritten(key));
      await this.report(pass, { observed, plan });
      const driftAfter = driftedCondition(backend.statusWriter.lastWritten(key));
      if (driftAfter?.status === 'True' && driftAfter.message !== driftBefore?.message) {
        this.record(pass, 'Warning', 'Drifted', driftAfter.message);
      }
      // Waiting on other objects: look again soon. Paused or drift left alone: events and resyncs bring us back.
      const waitsOnOthers = plan.heldBy !== undefined && HELD_ON_OTHER_OBJECTS[plan.heldBy];
      return waitsOnOthers ? requeueAfter(this.options.dependencyRetryMs ?? 2_000) : awaitChange();
    }
    if (plan.finished === true) {
      if (plan.conflict !== undefined) pass.log.warn({ conflict: plan.conflict }, 'object deleted; its instance is not ours and stays');
      await backend.finalizers?.release(desired, pass.signal);
      backend.records?.forget(key);
      this.forgetKey(key);
      return awaitChange();
    }
    await this.report(pass, { observed, plan });
    // An instance between states settles on its own: look again soon. Otherwise events and resyncs bring us back.
    return plan.settling === true ? requeueAfter(this.options.settleMs ?? 1_000) : awaitChange();
  }

  /** Report a failed pass in status and events (a Warning per distinct message), then rethrow for backoff. */
  private async reportFailure(pass: Pass, err: unknown, progress: Progress): Promise<never> {
    if (pass.signal.aborted || isAbortError(err)) throw err;
    const { desired } = pass;
    this.options.cache.invalidate(desired.hostName);
    if (progress.step !== undefined) this.guard.failed(pass.key);
    if (isProviderUnavailableError(err)) this.options.health.markUnavailable(err);
    const reason = failureReason(err, progress.step);
    const failure = { reason, message: failureMessage(err, progress.step, desired), terminal: isTerminalError(err) };
    this.warnOnce(pass, failure);
    const failuresInARow = this.countFailure(pass, progress.step === undefined ? 'observe' : stepName(progress.step), reason);
    await this.report(pass, { observed: progress.observed, plan: progress.plan, failure, failuresInARow }).catch((writeErr: unknown) => {
      pass.log.warn({ err: writeErr }, 'cannot write failure status');
    });
    throw err;
  }

  /** Report: writes the status these facts give when it changed, and tells `onReady` when the object turns Ready. */
  private async report(pass: Pass, facts: PassFacts): Promise<void> {
    const { key, desired, backend } = pass;
    const previous: Status | undefined = backend.statusWriter.lastWritten(key);
    const computed = computeStatus({
      ...facts, d: desired, node: this.options.node, previous, now: isoTime(this.clock.now()),
      lastAction: this.lastActions.get(key), paused: pass.paused, snapshots: this.options.snapshotsOf?.(key),
      stopDeadline: stopDeadlineText(this.stopDeadlines.get(key)),
    });
    const status = this.options.redactor === undefined ? computed : redactStatus(computed, this.options.redactor);
    if (sameStatus(previous, status)) return;
    this.options.metrics?.statusWrites.inc({ source: desired.source });
    await backend.statusWriter.write(desired, status, pass.signal);
    pass.log.debug({ phase: status.phase }, 'status written');
    const readyNow = isReady(status, desired.generation);
    const readyBefore = isReady(previous, desired.generation);
    if (readyNow && !readyBefore) this.options.onReady?.(desired);
  }

  private warnOnce(pass: Pass, failure: Failure): void {
    if (this.lastWarnings.get(pass.key) === failure.message) return;
    this.lastWarnings.set(pass.key, failure.message);
    this.record(pass, 'Warning', failure.reason, failure.message);
  }

  /** The one way events and audit entries leave the reconciler: through the Redactor. */
  private record(pass: Pass, type: 'Normal' | 'Warning', reason: string, message: string): void {
    pass.backend.recorder.record(pass.desired, type, reason, this.options.redactor?.text(message) ?? message);
  }

  /**
   * The desired object with its spec.environmentFrom read (the Redactor learns every value), the
   * object itself when it has none or is being deleted, or the failure to report (reason and
   * message name the field).
   */
  private async resolveEnvironment(pass: Pass): Promise<{ target: Desired } | { failure: Failure }> {
    const { desired, backend, signal } = pass;
    const refs = desired.deleting === true ? [] : environmentReferences(desired.object);
    if (refs.length === 0) return { target: desired };
    if (backend.environment === undefined) {
      const message = `${refs[0] === undefined ? 'spec.environmentFrom' : referenceField(refs[0])}: source ${backend.source.id} cannot read environment references`;
      return { failure: { reason: 'PolicyDenied', message } };
    }
    try {
      const values = await backend.environment.resolve(desired, refs, signal);
      for (const value of Object.values(values)) this.options.redactor?.add(value);
      return { target: { ...desired, object: withEnvironmentValues(desired.object, values) } };
    } catch (err) {
      if (signal.aborted || isAbortError(err)) throw err;
      if (isEnvironmentError(err)) return { failure: { reason: err.reason, message: err.message } };
      return { failure: { reason: 'SecretUnavailable', message: `spec.environmentFrom: cannot read it: ${errorMessage(err)}` } };
    }
  }

  /** Drops what this reconciler keeps for `key` between passes. */
  private forgetKey(key: ObjectKey): void {
    this.lastActions.delete(key);
    this.lastWarnings.delete(key);
    this.failures.delete(key);
    this.snapshotRequestsSeen.delete(key);
    this.guard.forget(key);
    this.stopDeadlines.delete(key);
    this.stopRequests.delete(key);
  }

  /**
   * Counts one more failed pass: the count goes on while the generation, the step and the reason
   * stay the same, and starts again at 1 otherwise. Any pass that gets past its step clears it.
   */
  private countFailure(pass: Pass, step: string, reason: string): number {
    const signature = `${pass.desired.generation}/${step}/${reason}`;
    const last = this.failures.get(pass.key);
    const count = last?.signature === signature ? last.count + 1 : 1;
    this.failures.set(pass.key, { signature, count });
    return count;
  }

  private desiredOrTombstone(key: ObjectKey, backend: SourceBackend): { desired: Desired; tombstone: boolean } | undefined {
    const desired = this.options.store.get(key);
    if (desired !== undefined) return { desired, tombstone: false };
    const lastApplied = backend.records?.lastApplied(key);
    if (lastApplied === undefined) {
      backend.records?.forget(key);
      this.forgetKey(key);
      return undefined;
    }
    return { desired: { ...lastApplied, deleting: true }, tombstone: true };
  }

  private checkDependencies(pass: Pass): DependencyCheck {
    const statuses = pass.backend.statusWriter;
    const ready = (dependency: Readonly<Desired>): boolean => isReady(statuses.lastWritten(dependency.key), dependency.generation);
    return checkDependencies(pass.desired, (key) => this.options.store.get(key), ready);
  }

  /** Objects of `desired`'s source that depend on it and may still have an instance (remembered). */
  private dependentsPresent(desired: Desired, backend: SourceBackend): string[] {
    const records = backend.records;
    const store = this.options.store;
    if (records === undefined) return dependentsOf(desired, store.list());
    if (records.withDependencies !== undefined) {
      // Remembered objects with dependsOn as declared now (store) or as last applied (tombstones).
      const byKey = new Map<ObjectKey, Desired>();
      for (const candidate of records.withDependencies()) byKey.set(candidate.key, store.get(candidate.key) ?? candidate);
      const declaredWithDependencies = store.list()
        .filter((candidate) => candidate.object.spec.dependsOn !== undefined && !byKey.has(candidate.key));
      if (declaredWithDependencies.length > 0) {
        const remembered = new Set(records.keys());
        for (const candidate of declaredWithDependencies) if (remembered.has(candidate.key)) byKey.set(candidate.key, candidate);
      }
      return dependentsOf(desired, [...byKey.values()]);
    }
    const candidates: Desired[] = [];
    for (const key of records.keys()) {
      const candidate = store.get(key) ?? records.lastApplied(key);
      if (candidate !== undefined) candidates.push(candidate);
    }
    return dependentsOf(desired, candidates);
  }

  /** The host policy's verdict on `d`, judged among every declared object. */
  private async admit(d: Desired): Promise<Admission> {
    const policy = this.options.policy;
    if (policy === undefined) return { allowed: true, desired: d };
    const store = this.options.store;
    return policy.admit(d, {
      objects: store.list(), admittedBefore: (key) => this.admittedBefore(key),
      ...(store.revision === undefined ? {} : { objectsRevision: store.revision }),
    });
  }

  /** Whether `key` has a status from a pass that got past the policy (it keeps its MACs and quota place). */
  private admittedBefore(key: ObjectKey): boolean {
    // The source is the key's first part (source ids hold no '/'): no full parse, this runs per object per pass.
    const status = this.options.backends.get(key.slice(0, key.indexOf('/')))?.statusWriter.lastWritten(key);
    const reason = status?.conditions.find((c) => c.type === 'Ready')?.reason;
    return status !== undefined && reason !== 'PolicyDenied' && reason !== 'QuotaExceeded';
  }

  private async observe(desired: Desired, signal: AbortSignal): Promise<ObservedInstance | undefined> {
    const cached = this.options.cache.get(desired.hostName);
    if (cached !== undefined) return cached.instance;
    this.options.metrics?.providerCalls.inc({ provider: this.provider.name, method: 'observe' });
    return this.provider.observe(desired, signal);
  }

  /** Calls the provider for `step`; resolves to the provider's note, if any. */
  private async runStep(
    step: Step, desired: Desired, observed: ObservedInstance | undefined, signal: AbortSignal,
  ): Promise<string | undefined> {
    this.options.metrics?.providerCalls.inc({ provider: this.provider.name, method: step.op });
    const existing = (): ObservedInstance => {
      if (observed === undefined) throw new Error(`cannot ${step.op} ${desired.hostName}: it does not exist`);
      return observed;
    };
    switch (step.op) {
      case 'create':
        await this.provider.create(desired, signal);
        // A new instance has none of the old one's snapshots: a snapshot-request is looked at again.
        this.snapshotRequestsSeen.delete(desired.key);
        return undefined;
      case 'adopt': await this.provider.adopt(desired, existing(), signal); return undefined;
      case 'update':
        await this.provider.update(desired, step.changes, existing(), signal);
        return `Updated ${step.changes.map((c) => c.path).join(', ')}`;
      case 'setState': return (await this.provider.setState(desired, step.to, existing(), signal)) ?? undefined;
      case 'reboot': return (await this.provider.setState(desired, 'Running', existing(), signal)) ?? undefined;
      case 'delete': await this.provider.delete(desired, signal); return undefined;
      case 'restore': {
        existing();
        requireSnapshotName(step.snapshot, RESTORE_REQUEST_ANNOTATION);
        if (this.provider.restoreSnapshot === undefined) {
          throw new TerminalError('SnapshotUnsupported', `cannot restore ${desired.hostName}: provider ${this.provider.name} has no snapshots`);
        }
        const outcome = await this.provider.restoreSnapshot(desired, step.snapshot, signal);
        return `${outcome.note} (request ${step.request})`;
      }
      case 'snapshot': {
        existing();
        requireSnapshotName(step.snapshot, SNAPSHOT_REQUEST_ANNOTATION);
        if (this.provider.snapshot === undefined) {
          throw new TerminalError('SnapshotUnsupported', `cannot snapshot ${desired.hostName}: provider ${this.provider.name} has no snapshots`);
        }
        const taken = await this.provider.snapshot(desired, step.snapshot, { origin: 'request' }, signal);
        this.snapshotRequestsSeen.set(desired.key, step.snapshot);
        const size = taken.sizeBytes === undefined ? '' : `, ${taken.sizeBytes} bytes`;
        return `Took snapshot ${taken.name} of ${desired.hostName} (request${size})`;
      }
    }
  }
}

/** Throws TerminalError InvalidSnapshotName unless `name`, which `annotation` asked for, can name a snapshot (it reaches paths and XML). */
function requireSnapshotName(name: string, annotation: string): void {
  if (!isSnapshotName(name)) {
    throw new TerminalError('InvalidSnapshotName',
      `cannot act on metadata.annotations["${annotation}"]: ${JSON.stringify(name)} is not a snapshot name (a DNS-1123 label: lowercase a-z, 0-9, '-', at most 63)`);
  }
}

/** `status` with every message and detail passed through `redactor` (they quote tools and errors). */
function redactStatus(status: Status, redactor: Redactor): Status {
  return {
    ...status,
    conditions: status.conditions.map((c) => ({ ...c, message: redactor.text(c.message) })),
    ...(status.details === undefined
      ? {}
      : { details: Object.fromEntries(Object.entries(status.details).map(([name, value]) => [name, redactor.text(value)])) }),
  };
}

/** Why changes to `desired` are stopped, or undefined when they are not. */
function pausedBy(desired: Desired, backend: SourceBackend): string | undefined {
  if (desired.object.metadata.annotations?.[PAUSED_ANNOTATION] === 'true') return `annotation ${PAUSED_ANNOTATION}`;
  if (backend.policy?.paused === true) return `source ${backend.source.id} is paused`;
  return undefined;
}

/** Why the instance of `desired`, which left its source, must not be deleted; undefined: prune it. */
function pruneDisabledBy(desired: Desired, backend: SourceBackend): string | undefined {
  if (desired.object.metadata.annotations?.[PRUNE_ANNOTATION] === 'disabled') return `annotation ${PRUNE_ANNOTATION}: disabled`;
  if (backend.policy?.prune === false) return `source ${backend.source.id} does not prune`;
  return undefined;
}

/** The spec error in spec.dependsOn (a loop, a missing object), or undefined when there is none. */
function dependencyFailure(check: DependencyCheck): Failure | undefined {
  if (check.cycle !== undefined) return { reason: 'DependencyCycle', message: `spec.dependsOn forms a cycle: ${check.cycle.join(' -> ')}` };
  if (check.missing.length > 0) {
    return { reason: 'DependencyNotFound', message: `spec.dependsOn names ${check.missing.join(', ')}, which the source does not declare` };
  }
  return undefined;
}

/** The status reason of a failed pass: the terminal error's own, the provider's absence, or the step that failed. */
function failureReason(err: unknown, step: Step | undefined): string {
  if (isTerminalError(err)) return err.reason;
  if (isProviderUnavailableError(err)) return 'ProviderUnavailable';
  if (step === undefined) return 'ObserveFailed';
  return FAILURE_REASON[stepName(step)] ?? 'ReconcileError';
}

/** The status message of a failed pass: what could not be done, and the tool's own words. */
function failureMessage(err: unknown, step: Step | undefined, desired: Desired): string {
  if (step === undefined) return `cannot observe ${desired.hostName}: ${errorMessage(err)}`;
  return `cannot ${describeStep(step, desired).toLowerCase()}: ${errorMessage(err)}`;
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

/** Ready for `generation`: what a dependent waits for, and what onReady fires on. */
function isReady(status: Status | undefined, generation: number): boolean {
  const ready = status?.conditions.find((c) => c.type === 'Ready');
  return ready?.status === 'True' && status?.observedGeneration === generation;
}

function driftedCondition(status: Status | undefined): Status['conditions'][number] | undefined {
  return status?.conditions.find((c) => c.type === 'Drifted');
}

/** A step in words for events and messages ("Set domain web to Running"). */
function describeStep(step: Step, desired: Desired): string {
  const what = `${desired.object.kind === 'Container' ? 'container' : 'domain'} ${desired.hostName}`;
  switch (step.op) {
    case 'create': return `Create ${what}`;
    case 'adopt': return `Adopt ${what}`;
    case 'update': return `Update ${step.changes.map((c) => c.path).join(', ')} of ${what}`;
    case 'setState': return `Set ${what} to ${step.to}`;
    case 'reboot': return `Reboot ${what}`;
    case 'restore': return `Restore ${what} to snapshot ${step.snapshot}`;
    case 'snapshot': return `Snapshot ${what} as ${step.snapshot}`;
    case 'delete': return step.reason === 'partial' ? `Clean up the partial ${what}` : `Delete ${what}`;
  }
}

/**
 * Whether a graceful stop applies to this pass: 'request' when the first due step stops a running
 * instance with gracefulStopSeconds > 0 (or a stop is under way), 'wait' when the instance is
 * already on its way down with a stop under way; undefined otherwise (the pass goes on as usual).
 */
function gracefulStopDue(
  desired: Desired, observed: ObservedInstance | undefined, plan: Plan, underWay: boolean, provider: Provider,
): 'request' | 'wait' | undefined {
  if (provider.requestStop === undefined || provider.forceStop === undefined) return undefined;
  if (desired.deleting === true || observed === undefined || plan.conflict !== undefined) return undefined;
  if (desired.object.spec.gracefulStopSeconds <= 0 && !underWay) return undefined;
  const first = plan.steps[0];
  // Only an instance that runs can be asked; a crashed or unknown one takes the usual step.
  if (first?.op === 'setState' && first.to === 'Stopped' && ASKABLE.has(observed.state)) return 'request';
  if (underWay && plan.settling === true && observed.state === 'Stopping') return 'wait';
  return undefined;
}

/** Whether the plan still stops the running instance, after other steps due first. */
function stopStillWanted(desired: Desired, observed: ObservedInstance | undefined, plan: Plan): boolean {
  if (desired.deleting === true || observed === undefined || observed.state === 'Stopped') return false;
  return plan.steps.some((step) => step.op === 'setState' && step.to === 'Stopped');
}

/** States in which an instance can be asked to shut down (a frozen or paused one is thawed first). */
const ASKABLE: ReadonlySet<ObservedInstance['state']> = new Set(['Running', 'Frozen', 'Paused']);

/**
 * The StepGuard intent of a graceful stop's move: the first request is the stop step itself; each
 * request asked again and the force are actions of their own (the guard's rate still bounds them).
 */
function stopIntent(stepIntentText: string, stop: Exclude<StopMove, { move: 'wait' }> | undefined, nowMs: number): string {
  if (stop === undefined || (stop.move === 'request' && stop.first)) return stepIntentText;
  return stop.move === 'force' ? `${stepIntentText} force` : `${stepIntentText} request ${nowMs}`;
}

/** A graceful stop's deadline as status shows it (RFC 3339), or undefined when no stop is under way. */
function stopDeadlineText(deadline: StopDeadline | undefined): string | undefined {
  return deadline === undefined ? undefined : new Date(deadline.deadlineMs).toISOString();
}
