/**
 * Builds an object's status from what was observed and decided, following Kubernetes API
 * conventions: `Ready` says the instance is as declared (a deliberately stopped VM is Ready),
 * `Synced` says the last reconcile succeeded. Condition messages are stable (no timestamps), and
 * `lastTransitionTime` moves only when a condition's status flips.
 */
import type { Condition, ConditionType, Phase, Status } from '../api/v1alpha1/types.js';
import type { InstanceState, ObservedInstance } from '../providers/provider.js';
import type { Plan } from '../reconcile/plan.js';
import type { Desired } from '../store/desired.js';
import { canonicalJson } from '../store/desired.js';

export interface StatusFacts {
  readonly d: Desired;
  readonly node: string;
  readonly observed: ObservedInstance | undefined;
  readonly plan?: Plan;
  /** The step this pass ran, if any ("create", "setState:Running"…), and its note. */
  readonly acted?: { readonly step: string; readonly note?: string };
  /** Why this pass failed: a reason (CamelCase) and a message. */
  readonly failure?: { readonly reason: string; readonly message: string };
  readonly previous: Status | undefined;
  readonly now: string;
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
    && plan.settling !== true && observed.state === desiredState && f.failure === undefined;

  let ready: Condition;
  if (conflict !== undefined) ready = condition('Ready', false, 'Conflict', conflict, f);
  else if (f.failure?.reason === 'ProviderUnavailable') ready = condition('Ready', false, 'ProviderUnavailable', f.failure.message, f);
  else if (d.deleting === true) ready = condition('Ready', false, 'Deleting', 'The instance is being removed', f);
  else if (converged) ready = condition('Ready', true, desiredState, `The instance is ${desiredState.toLowerCase()} as declared`, f);
  else if (f.failure !== undefined) ready = condition('Ready', false, f.failure.reason, f.failure.message, f);
  else if (observed === undefined) ready = condition('Ready', false, 'Creating', 'The instance is being created', f);
  else ready = condition('Ready', false, 'Progressing', `The instance is ${observed.state.toLowerCase()}; ${desiredState.toLowerCase()} is declared`, f);

  const synced = f.failure !== undefined
    ? condition('Synced', false, f.failure.reason, f.failure.message, f)
    : conflict !== undefined
      ? condition('Synced', false, 'Conflict', conflict, f)
      : condition('Synced', true, 'ReconcileSuccess', f.acted === undefined ? 'Observed and compared' : `Ran ${f.acted.step}`, f);

  const conditions: Condition[] = [ready, synced];
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
  const note = f.acted?.note ?? f.previous?.details?.lastAction;
  if (note !== undefined) details.lastAction = note;

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
  };
}

/** Whether two statuses say the same thing (so the second need not be written). */
export function sameStatus(a: Status | undefined, b: Status): boolean {
  return a !== undefined && canonicalJson(a) === canonicalJson(b);
}
