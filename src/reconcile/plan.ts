/**
 * The pure decision of a reconcile: what to do to move an instance toward its desired object.
 * No I/O, so its tests are plain tables. The plan lists every step still due; the reconciler
 * runs the first and comes back, so a plan never goes stale while it waits.
 */
import { FIELD_APPLY, type ApplyMode, specFields } from '../api/v1alpha1/fields.js';
import type { PowerState } from '../api/v1alpha1/types.js';
import type { FieldChange, InstanceState, ObservedInstance } from '../providers/provider.js';
import { ADOPT_ANNOTATION, RESTORE_REQUEST_ANNOTATION, snapshotOfRestoreRequest } from '../shared/annotations.js';
import type { Desired } from '../store/desired.js';

/** One idempotent action on an instance; a plan lists them in the order they are due. */
export type Step =
  | { readonly op: 'create' }
  | { readonly op: 'adopt' }
  | { readonly op: 'update'; readonly changes: readonly FieldChange[] }
  | { readonly op: 'setState'; readonly to: PowerState }
  /** One reboot the object asked for (libvirt: the hyperlet.io/reboot-request annotation changed). */
  | { readonly op: 'reboot' }
  /** Put the stopped instance back to a snapshot (the hyperlet.io/restore-request annotation took a new value). */
  | { readonly op: 'restore'; readonly snapshot: string; readonly request: string }
  /** Take a one-off snapshot of the steady instance (the hyperlet.io/snapshot-request annotation names one it lacks). */
  | { readonly op: 'snapshot'; readonly snapshot: string }
  | { readonly op: 'delete'; readonly reason: 'deleted' | 'partial' | 'recreate' };

/** What a reconcile pass decided: the steps due and everything status reports about them. */
export interface Plan {
  readonly steps: readonly Step[];
  /** Every field that differs, classified. */
  readonly changes: readonly FieldChange[];
  /** Changes the update policy holds back (they need a restart or re-create it does not allow). */
  readonly pending: readonly FieldChange[];
  /** Set when the instance is not ours: nothing will be done to it. */
  readonly conflict?: string;
  /** The instance is between states (starting, stopping): wait, then look again. */
  readonly settling?: boolean;
  /** The object is gone or going and nothing is left to do for it (deleted, orphaned, never created). */
  readonly finished?: boolean;
  /** Steps that are due but held back (paused, drift policy, dependencies); `steps` is then empty. */
  readonly held?: readonly Step[];
  /** Why `held` is held: the pause, the drift policy, or objects to wait for. */
  readonly heldBy?: 'paused' | 'driftPolicy' | 'dependencies' | 'dependents';
  /** What differs from the declaration when steps are held ("state Stopped, declared Running", field paths). */
  readonly drift?: readonly string[];
  /** dependencies: objects not Ready yet; dependents: objects to delete first. */
  readonly waitingFor?: readonly string[];
}

/** A step's name as status, events and metrics key it: "create", "setState:Running", "delete:partial". */
export function stepName(step: Step): string {
  switch (step.op) {
    case 'setState': return `setState:${step.to}`;
    case 'delete': return `delete:${step.reason}`;
    default: return step.op;
  }
}


/** Facts beyond desired and observed that decide whether due steps may run. */
export interface PlanOptions {
  readonly applyModeOf?: ApplyModeOf;
  /** Changes are stopped (annotation or source-wide pause): observe and report only. */
  readonly paused?: boolean;
  /** status.convergedGeneration: differences found for this same generation are drift. */
  readonly convergedGeneration?: number;
  /** Objects this one depends on that are not Ready: creating and starting wait for them. */
  readonly dependenciesNotReady?: readonly string[];
  /** Objects depending on this one that may still have an instance: deleting waits for them. */
  readonly dependentsPresent?: readonly string[];
  /** The provider says the object asks for a reboot the instance has not had (Provider.rebootPending). */
  readonly rebootRequested?: boolean;
  /** The snapshot the object's snapshot-request annotation names and the instance does not have (the reconciler lists them). */
  readonly snapshotRequested?: string;
}

/** How a change is applied given the instance (the provider's Provider.applyModeOf). */
export type ApplyModeOf = (change: FieldChange, observed: ObservedInstance) => ApplyMode;

const SETTLING: ReadonlySet<InstanceState> = new Set(['Starting', 'Stopping', 'Unknown']);
const ACTIVE: ReadonlySet<InstanceState> = new Set(['Running', 'Frozen', 'Paused', 'Starting']);

/** The differing fields between desired and observed, each with how it can be applied. */
export function diffFields(desired: Desired, observed: ObservedInstance, applyModeOf?: ApplyModeOf): FieldChange[] {
  const want = specFields(desired.object.kind, desired.object.spec);
  const table = FIELD_APPLY[desired.object.kind];
  const changes: FieldChange[] = [];
  for (const [path, apply] of Object.entries(table)) {
    const to = want[path];
    const from = observed.fields[path];
    if (to === from || (to === null && from === undefined)) continue;
    const change: FieldChange = { path, from, to, apply };
    changes.push(applyModeOf === undefined ? change : { ...change, apply: applyModeOf(change, observed) });
  }
  return changes;
}

function startSteps(desired: Desired): Step[] {
  return desired.object.spec.state === 'Stopped' ? [] : [{ op: 'setState', to: desired.object.spec.state }];
}

/**
 * Decides the steps for `desired` given what the provider observed (undefined: no such instance),
 * then holds them back where GitOps rules say so: a paused object only reports; with driftPolicy
 * Report or Ignore an out-of-band change to a generation that once matched is left alone;
 * creating and starting wait for dependencies, deleting waits for dependents. Pure.
 */
export function plan(desired: Desired, observed: ObservedInstance | undefined, options: PlanOptions = {}): Plan {
  const base = basePlan(desired, observed, options.applyModeOf, options.rebootRequested === true, options.snapshotRequested);
  const first = base.steps[0];
  if (first === undefined) return base;
  const hold = (heldBy: NonNullable<Plan['heldBy']>, extra: Partial<Plan> = {}): Plan =>
    ({ ...base, steps: [], held: base.steps, heldBy, drift: differences(desired, observed, base.changes), ...extra });
  if (options.paused === true) return hold('paused');
  const deleting = desired.deleting === true;
  const owned = observed !== undefined && observed.ownerId === desired.id && observed.partial !== true;
  const policy = desired.object.spec.driftPolicy;
  const reportsOnly = policy !== undefined && policy !== 'Correct';
  if (!deleting && (owned || observed === undefined) && reportsOnly && options.convergedGeneration === desired.generation) {
    return hold('driftPolicy');
  }
  const dependentsPresent = options.dependentsPresent ?? [];
  if (deleting && dependentsPresent.length > 0) return hold('dependents', { waitingFor: dependentsPresent });
  const starts = first.op === 'create' || (first.op === 'setState' && first.to !== 'Stopped');
  const dependenciesNotReady = options.dependenciesNotReady ?? [];
  if (!deleting && starts && dependenciesNotReady.length > 0) return hold('dependencies', { waitingFor: dependenciesNotReady });
  return base;
}

/** What differs between the declaration and the instance, in words for status. */
function differences(desired: Desired, observed: ObservedInstance | undefined, changes: readonly FieldChange[]): string[] {
  if (observed === undefined) return desired.deleting === true ? [] : ['no instance exists'];
  if (desired.deleting === true) return ['the object was removed; the instance remains'];
  const out: string[] = [];
  if (observed.state !== desired.object.spec.state) out.push(`state is ${observed.state}, declared ${desired.object.spec.state}`);
  for (const c of changes) out.push(c.path);
  return out;
}

function basePlan(
  desired: Desired, observed: ObservedInstance | undefined, applyModeOf: ApplyModeOf | undefined, rebootRequested: boolean,
  snapshotRequested: string | undefined,
): Plan {
  const none = { changes: [], pending: [] };
  const owned = observed !== undefined && observed.ownerId === desired.id;

  if (desired.deleting === true) {
    if (observed === undefined) return { ...none, steps: [], finished: true };
    if (!owned) return { ...none, steps: [], finished: true, conflict: conflictMessage(observed) };
    if (desired.object.spec.deletionPolicy === 'Orphan') return { ...none, steps: [], finished: true };
    return { ...none, steps: [{ op: 'delete', reason: 'deleted' }] };
  }

  if (observed === undefined) return { ...none, steps: [{ op: 'create' }, ...startSteps(desired)] };

  if (!owned) {
    const changes = diffFields(desired, observed, applyModeOf);
    if (observed.ownerId === undefined && desired.object.metadata.annotations?.[ADOPT_ANNOTATION] === 'true') {
      return { steps: [{ op: 'adopt' }], changes, pending: [] };
    }
    return { steps: [], changes, pending: [], conflict: conflictMessage(observed) };
  }

  if (observed.partial === true) {
    return { ...none, steps: [{ op: 'delete', reason: 'partial' }, { op: 'create' }, ...startSteps(desired)] };
  }

  const changes = diffFields(desired, observed, applyModeOf);
  const policy = desired.object.spec.updatePolicy;
  const byMode = (mode: ApplyMode): FieldChange[] => changes.filter((c) => c.apply === mode);
  const recreate = byMode('recreate');
  if (recreate.length > 0 && policy === 'Recreate') {
    return { steps: [{ op: 'delete', reason: 'recreate' }, { op: 'create' }, ...startSteps(desired)], changes, pending: [] };
  }
  const pending: FieldChange[] = [...recreate];
  if (SETTLING.has(observed.state)) return { steps: [], changes, pending, settling: true };

  const request = restoreRequestOf(desired, observed);
  if (request !== undefined) {
    // Stop first (its own pass), then restore; the next passes bring it back to the declared state.
    const restore: Step = { op: 'restore', snapshot: snapshotOfRestoreRequest(request), request };
    const stop: Step[] = ACTIVE.has(observed.state) ? [{ op: 'setState', to: 'Stopped' }] : [];
    return { steps: [...stop, restore, ...startSteps(desired)], changes, pending };
  }

  const steps: Step[] = [];
  const live = byMode('live');
  const restart = byMode('restart');
  const active = ACTIVE.has(observed.state);
  if (!active) {
    if (live.length + restart.length > 0) steps.push({ op: 'update', changes: [...live, ...restart] });
  } else {
    if (live.length > 0) steps.push({ op: 'update', changes: live });
    if (restart.length > 0 && policy !== 'Live') {
      // Stop, apply to the config, start again: each its own pass, recomputed each time.
      steps.push({ op: 'setState', to: 'Stopped' }, { op: 'update', changes: restart });
      steps.push(...startSteps(desired));
      return { steps, changes, pending };
    }
    pending.push(...restart);
  }
  if (observed.state !== desired.object.spec.state) steps.push({ op: 'setState', to: desired.object.spec.state });
  else if (rebootRequested && observed.state === 'Running') steps.push({ op: 'reboot' });
  // A one-off snapshot waits for the instance to be as declared, so it holds what was asked for.
  if (steps.length === 0 && snapshotRequested !== undefined) steps.push({ op: 'snapshot', snapshot: snapshotRequested });
  return { steps, changes, pending };
}

/** The restore-request value the instance has not had yet (its provider records the last one in details.restoreRequest). */
export function restoreRequestOf(d: Desired, observed: ObservedInstance): string | undefined {
  const value = d.object.metadata.annotations?.[RESTORE_REQUEST_ANNOTATION];
  if (value === undefined || value === '' || value === (observed.details?.restoreRequest ?? '')) return undefined;
  return value;
}

function conflictMessage(observed: ObservedInstance): string {
  return observed.ownerId === undefined
    ? `An instance named ${observed.hostName} exists that hyperlet did not create; it is left alone`
      + ` (annotate ${ADOPT_ANNOTATION}: "true" to adopt it)`
    : `An instance named ${observed.hostName} belongs to another object (id ${observed.ownerId}); it is left alone`;
}
