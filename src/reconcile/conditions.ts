/**
 * Builds an object's status from what was observed and decided, following Kubernetes API
 * conventions: `Ready` says the instance is as declared (a deliberately stopped VM is Ready),
 * `Synced` says the last reconcile succeeded. `Reconciling` and `Stalled` follow kstatus
 * (sigs.k8s.io/cli-utils, what Flux, Argo CD and kpt read): `Reconciling=True` while work is
 * under way or being retried, `Stalled=True` when nothing more can happen until the object or the
 * host changes (STALLED_REASONS), both False once converged. Condition messages are stable (no
 * timestamps), and `lastTransitionTime` moves only when a condition's status flips.
 */
import type { Condition, ConditionType, Phase, Status, StatusSnapshot } from '../api/v1alpha1/types.js';
import type { InstanceState, ObservedInstance } from '../providers/provider.js';
import { type Plan, stepName } from './plan.js';
import { RETRIES_BEFORE_STALLED, isStalledReason } from './stalled-reasons.js';
import type { Desired } from '../store/desired.js';
import { canonicalEqual } from '../store/desired.js';

/** What one reconcile pass knows that status is computed from. */
export interface StatusFacts {
  readonly d: Desired;
  readonly node: string;
  readonly observed: ObservedInstance | undefined;
  readonly plan?: Plan;
  /** The step this pass ran, if any ("create", "setState:Running"…), and its note. */
  readonly acted?: { readonly step: string; readonly note?: string };
  /**
   * Why this pass failed: a reason (CamelCase) and a message; `terminal` when it is a
   * TerminalError (never retried until the object changes).
   */
  readonly failure?: { readonly reason: string; readonly message: string; readonly terminal?: boolean };
  /**
   * The step this pass ran has begun but not finished (StepPendingError: an image downloading):
   * Ready and Reconciling say what it waits for, with progress.
   */
  readonly pending?: { readonly reason: string; readonly message: string };
  /** How many passes in a row failed like this one (same step, reason and generation), this one included. */
  readonly failuresInARow?: number;
  /** The note of the last step taken in an earlier pass, when there is one. */
  readonly lastAction?: string;
  /** When a graceful stop under way is forced (RFC 3339), shown as details.stopDeadline. */
  readonly stopDeadline?: string;
  readonly previous: Status | undefined;
  readonly now: string;
  /** Why changes are stopped (annotation or --paused), when they are: adds condition Paused. */
  readonly paused?: string;
  /** The scheduled snapshots the snapshot scheduler last listed, when the object has a schedule. */
  readonly snapshots?: readonly StatusSnapshot[];
}

const PHASE_OF_STATE: Readonly<Record<InstanceState, Phase>> = {
  Running: 'Running', Stopped: 'Stopped', Frozen: 'Frozen', Paused: 'Paused',
  Starting: 'Creating', Stopping: 'Running', Crashed: 'Failed', Unknown: 'Pending',
};

function phaseOf(f: StatusFacts): Phase {
  if (f.d.deleting === true) return 'Deleting';
  if (f.failure !== undefined && f.failure.reason !== 'ProviderUnavailable' && f.failure.reason !== 'Conflict' && f.observed === undefined) return 'Failed';
  if (f.acted?.step === 'create') return 'Creating';
  if (f.observed === undefined) return 'Pending';
  if (f.observed.partial === true) return 'Creating';
  return PHASE_OF_STATE[f.observed.state];
}

function condition(type: ConditionType, ok: boolean, reason: string, message: string, f: StatusFacts): Condition {
  const status = ok ? 'True' : 'False';
  const before = f.previous?.conditions.find((c) => c.type === type);
  return {
    type, status, reason, message,
    lastTransitionTime: before !== undefined && before.status === status ? before.lastTransitionTime : f.now,
    observedGeneration: f.d.generation,
  };
}

/** Computes the whole status of `f.d`. */
export function computeStatus(f: StatusFacts): Status {
  const { d, observed, plan } = f;
  const desiredState = d.object.spec.state;
  const conflict = plan?.conflict;
  const converged = observed !== undefined && plan !== undefined && plan.steps.length === 0 && conflict === undefined
    && plan.settling !== true && plan.held === undefined && observed.state === desiredState && f.failure === undefined;
  const held = plan?.held === undefined ? undefined : heldReason(f, plan);

  let ready: Condition;
  if (conflict !== undefined) ready = condition('Ready', false, 'Conflict', conflict, f);
  else if (held !== undefined) ready = condition('Ready', false, held.reason, held.message, f);
  else if (f.failure?.reason === 'ProviderUnavailable') ready = condition('Ready', false, 'ProviderUnavailable', f.failure.message, f);
  else if (d.deleting === true) ready = condition('Ready', false, 'Deleting', 'The instance is being removed', f);
  else if (converged) ready = condition('Ready', true, desiredState, `The instance is ${desiredState.toLowerCase()} as declared`, f);
  else if (f.failure !== undefined) ready = condition('Ready', false, f.failure.reason, f.failure.message, f);
  else if (f.pending !== undefined) ready = condition('Ready', false, f.pending.reason, f.pending.message, f);
  else if (observed === undefined) ready = condition('Ready', false, 'Creating', 'The instance is being created', f);
  else ready = condition('Ready', false, 'Progressing', `The instance is ${observed.state.toLowerCase()}; ${desiredState.toLowerCase()} is declared`, f);

  const synced = f.failure !== undefined
    ? condition('Synced', false, f.failure.reason, f.failure.message, f)
    : conflict !== undefined
      ? condition('Synced', false, 'Conflict', conflict, f)
      : condition('Synced', true, 'ReconcileSuccess', f.acted === undefined ? 'Observed and compared' : `Ran ${f.acted.step}`, f);

  const conditions: Condition[] = [ready, synced, ...progressConditions(f, { converged, held })];
  if (f.paused !== undefined) conditions.push(condition('Paused', true, 'Paused', `Changes are stopped (${f.paused}); observing and reporting only`, f));
  const drift = plan?.heldBy === 'paused' || plan?.heldBy === 'driftPolicy' ? plan.drift ?? [] : [];
  const policy = d.object.spec.driftPolicy;
  if (drift.length > 0 && policy !== 'Ignore') {
    const why = plan?.heldBy === 'paused' ? 'paused' : `driftPolicy ${policy}`;
    conditions.push(condition('Drifted', true, 'DriftDetected', `Left as it is (${why}): ${drift.join('; ')}`, f));
  } else if (policy === 'Report' || (f.paused !== undefined && policy !== 'Ignore')) {
    conditions.push(condition('Drifted', false, 'InSync', 'The instance matches the declaration', f));
  }
  const pending = plan?.pending ?? [];
  const restart = pending.filter((c) => c.apply === 'restart').map((c) => c.path);
  const recreate = pending.filter((c) => c.apply === 'recreate').map((c) => c.path);
  if (restart.length > 0) {
    conditions.push(condition('RestartRequired', true, 'UpdatePolicy', `Changes to ${restart.join(', ')} take effect at the next restart (updatePolicy ${d.object.spec.updatePolicy})`, f));
  }
  if (recreate.length > 0) {
    conditions.push(condition('RecreateRequired', true, 'UpdatePolicy', `Changes to ${recreate.join(', ')} need the instance re-created (updatePolicy ${d.object.spec.updatePolicy})`, f));
  }

  const details: Record<string, string> = { ...(observed?.details ?? {}) };
  const note = f.acted?.note ?? f.lastAction ?? f.previous?.details?.lastAction;
  if (note !== undefined) details.lastAction = note;
  if (f.stopDeadline !== undefined) details.stopDeadline = f.stopDeadline;

  return {
    phase: phaseOf(f),
    conditions,
    observedGeneration: d.generation,
    id: d.id,
    hostName: d.hostName,
    node: f.node,
    ...(observed?.pid === undefined ? {} : { pid: observed.pid }),
    ...(observed?.addresses === undefined || observed.addresses.length === 0 ? {} : { addresses: [...observed.addresses] }),
    ...(observed?.startedAt === undefined ? {} : { startedAt: observed.startedAt }),
    ...(Object.keys(details).length === 0 ? {} : { details }),
    ...(pending.length === 0 ? {} : { pendingChanges: pending.map((c) => ({ field: c.path, apply: c.apply as 'restart' | 'recreate' })) }),
    ...(converged ? { convergedGeneration: d.generation } : f.previous?.convergedGeneration === undefined ? {} : { convergedGeneration: f.previous.convergedGeneration }),
    ...(f.snapshots === undefined ? {} : { snapshots: f.snapshots.map((s) => ({ ...s })) }),
  };
}

/** Reconciling's reason while a step of this name is under way. */
const PROGRESS_REASON: Readonly<Record<string, string>> = {
  create: 'Creating', adopt: 'Adopting', update: 'Updating', reboot: 'Rebooting',
  'setState:Running': 'Starting', 'setState:Stopped': 'Stopping', 'setState:Frozen': 'Freezing', 'setState:Paused': 'Pausing',
  'delete:deleted': 'Deleting', 'delete:partial': 'CleaningUp', 'delete:recreate': 'Recreating',
};

/** A condition's reason and message. */
type ReasonAndMessage = { readonly reason: string; readonly message: string };

/** Why the object cannot progress until it or the host changes, if it cannot. */
function stalledBy(f: StatusFacts): ReasonAndMessage | undefined {
  const conflict = f.plan?.conflict;
  if (conflict !== undefined) return { reason: 'Conflict', message: conflict };
  const failure = f.failure;
  if (failure === undefined) return undefined;
  if (failure.terminal === true || isStalledReason(failure.reason)) return { reason: failure.reason, message: failure.message };
  if ((f.failuresInARow ?? 0) >= RETRIES_BEFORE_STALLED) {
    const message = `${failure.reason} ${RETRIES_BEFORE_STALLED} times in a row or more; still retrying with backoff: ${failure.message}`;
    return { reason: 'RetriesExhausted', message };
  }
  return undefined;
}

/**
 * kstatus' Reconciling and Stalled: never both True (kstatus reads Reconciling first). Held back
 * by a pause or the drift policy is neither: nothing is under way, and Ready says what differs.
 */
function progressConditions(f: StatusFacts, state: { converged: boolean; held: ReasonAndMessage | undefined }): Condition[] {
  const stalled = stalledBy(f);
  if (stalled !== undefined) {
    return [
      condition('Reconciling', false, 'Stalled', 'Waiting for a change to the object or the host; see condition Stalled', f),
      condition('Stalled', true, stalled.reason, stalled.message, f),
    ];
  }
  const idle = state.converged ? { reason: 'Converged', message: 'The instance matches the declaration' }
    : f.plan?.heldBy === 'paused' || f.plan?.heldBy === 'driftPolicy' ? state.held : undefined;
  if (idle !== undefined) {
    return [condition('Reconciling', false, idle.reason, idle.message, f), condition('Stalled', false, idle.reason, idle.message, f)];
  }
  const progress = progressOf(f, state.held);
  return [
    condition('Reconciling', true, progress.reason, progress.message, f),
    condition('Stalled', false, 'Progressing', 'Nothing blocks progress', f),
  ];
}

/** Reconciling's reason and message while work is under way or retried. */
function progressOf(f: StatusFacts, held: ReasonAndMessage | undefined): ReasonAndMessage {
  if (f.failure !== undefined) return { reason: f.failure.reason, message: `${f.failure.message} (retrying with backoff)` };
  if (held !== undefined) return held;
  if (f.pending !== undefined) return f.pending;
  const step = f.acted?.step ?? (f.plan?.steps[0] === undefined ? undefined : stepName(f.plan.steps[0]));
  const reason = step === undefined ? undefined : PROGRESS_REASON[step];
  if (reason !== undefined) return { reason, message: `${reason} the instance` };
  if (f.d.deleting === true) return { reason: 'Deleting', message: 'The instance is being removed' };
  if (f.observed === undefined) return { reason: 'Creating', message: 'The instance is being created' };
  const declared = f.d.object.spec.state.toLowerCase();
  return { reason: 'Progressing', message: `The instance is ${f.observed.state.toLowerCase()}; ${declared} is declared` };
}

/** Ready's reason and message while due steps are held back. */
function heldReason(f: StatusFacts, plan: Plan): { reason: string; message: string } {
  const list = (plan.waitingFor ?? []).join(', ');
  switch (plan.heldBy) {
    case 'paused': return { reason: 'Paused', message: `Changes are stopped (${f.paused ?? 'paused'}); ${(plan.drift ?? []).length === 0 ? 'nothing differs' : 'the instance differs from the declaration'}` };
    case 'driftPolicy': return f.d.object.spec.driftPolicy === 'Ignore'
      ? { reason: 'DriftIgnored', message: `The instance changed outside hyperlet and is left so (driftPolicy Ignore): ${(plan.drift ?? []).join('; ')}` }
      : { reason: 'Drifted', message: 'The instance changed outside hyperlet and is left so (driftPolicy Report); see condition Drifted' };
    case 'dependencies': return { reason: 'WaitingForDependencies', message: `Waiting for ${list} to be Ready` };
    case 'dependents': return { reason: 'WaitingForDependents', message: `Waiting for ${list}, which depend on it, to be deleted first` };
    default: return { reason: 'Held', message: 'Changes are held back' };
  }
}

/** Whether two statuses say the same thing (so the second need not be written). */
export function sameStatus(a: Status | undefined, b: Status): boolean {
  return a !== undefined && canonicalEqual(a, b);
}
