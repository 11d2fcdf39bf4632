import { expect } from 'chai';
import { type Plan, type PlanOptions, plan, type Step } from '../../../src/reconcile/plan.js';
import type { ObservedInstance } from '../../../src/providers/provider.js';
import type { Desired } from '../../../src/store/desired.js';
import { container, observedAs, vm } from '../../fakes/desired-objects.js';

interface Case {
  reason: string;
  d: Desired;
  observed: ObservedInstance | undefined;
  want: { steps: Step[]; pending?: string[]; changes?: [string, string][]; conflict?: boolean; settling?: boolean; finished?: boolean };
}

const web = container('web', { resources: { cpu: 2, memory: '256Mi' } });
const webStopped = container('web', { state: 'Stopped', resources: { cpu: 2, memory: '256Mi' } });
const old = container('web', { resources: { cpu: 1, memory: '128Mi' } });
const withEnv = (policy: string) => container('web', { environment: { A: '1' }, updatePolicy: policy });
const plainWeb = container('web');
const v = vm('vm1', { resources: { cpu: 1, memory: '256Mi' } });
const RESTORE = 'hyperlet.io/restore-request';
const restoring = (value: string, spec: Record<string, unknown> = { resources: { cpu: 2, memory: '256Mi' } }) =>
  container('web', spec, { annotations: { [RESTORE]: value } });

const cases: Record<string, Case> = {
  MissingIsCreatedThenStarted: {
    reason: 'no instance: create it, then start it because the desired state is Running',
    d: web, observed: undefined,
    want: { steps: [{ op: 'create' }, { op: 'setState', to: 'Running' }] },
  },
  MissingStoppedIsOnlyCreated: {
    reason: 'a Stopped object is created and left stopped',
    d: webStopped, observed: undefined,
    want: { steps: [{ op: 'create' }] },
  },
  RestoreRequestStopsRunningInstanceFirst: {
    reason: 'a new restore-request value on a running instance: stop, restore, start again (one step per pass)',
    d: restoring('nightly'), observed: observedAs(restoring('nightly')),
    want: { steps: [{ op: 'setState', to: 'Stopped' }, { op: 'restore', snapshot: 'nightly', request: 'nightly' }, { op: 'setState', to: 'Running' }] },
  },
  RestoreRequestOnStoppedInstanceRestoresAtOnce: {
    reason: 'already stopped: restore first, then bring it to the declared state',
    d: restoring('nightly@2'), observed: observedAs(restoring('nightly@2'), 'Stopped'),
    want: { steps: [{ op: 'restore', snapshot: 'nightly', request: 'nightly@2' }, { op: 'setState', to: 'Running' }] },
  },
  RestoreRequestOnFrozenInstanceStopsIt: {
    reason: 'a frozen container is active: it is stopped before the restore',
    d: restoring('a', { state: 'Frozen' }), observed: observedAs(restoring('a', { state: 'Frozen' }), 'Frozen'),
    want: { steps: [{ op: 'setState', to: 'Stopped' }, { op: 'restore', snapshot: 'a', request: 'a' }, { op: 'setState', to: 'Frozen' }] },
  },
  RestoreRequestHonouredOnce: {
    reason: 'the provider recorded this value: nothing to do',
    d: restoring('nightly'), observed: observedAs(restoring('nightly'), 'Running', { details: { restoreRequest: 'nightly' } }),
    want: { steps: [] },
  },
  RestoreRequestNewValueAfterAnother: {
    reason: 'a new token after an honoured one restores again (stopped instance declared Stopped: no start)',
    d: restoring('nightly@3', { state: 'Stopped' }),
    observed: observedAs(restoring('nightly@3', { state: 'Stopped' }), 'Stopped', { details: { restoreRequest: 'nightly@2' } }),
    want: { steps: [{ op: 'restore', snapshot: 'nightly', request: 'nightly@3' }] },
  },
  RestoreRequestWaitsForSettling: {
    reason: 'an instance between states is left to settle before anything, restores included',
    d: restoring('nightly'), observed: observedAs(restoring('nightly'), 'Stopping'),
    want: { steps: [], settling: true },
  },
  ConvergedDoesNothing: {
    reason: 'observed equals desired: no steps, no changes',
    d: web, observed: observedAs(web),
    want: { steps: [] },
  },
  StoppedBehindOurBackIsStarted: {
    reason: 'drift in power state is corrected',
    d: web, observed: observedAs(web, 'Stopped'),
    want: { steps: [{ op: 'setState', to: 'Running' }] },
  },
  FrozenRequested: {
    reason: 'desired Frozen on a running instance freezes it',
    d: container('web', { state: 'Frozen', resources: { cpu: 2, memory: '256Mi' } }), observed: observedAs(web),
    want: { steps: [{ op: 'setState', to: 'Frozen' }] },
  },
  CpuAndMemoryChangeLive: {
    reason: 'cpu and memory are live fields: one update on the running instance',
    d: web, observed: observedAs(old),
    want: { steps: [{ op: 'update', changes: [
      { path: 'resources.cpu', from: 1, to: 2, apply: 'live' },
      { path: 'resources.memory', from: 134217728, to: 268435456, apply: 'live' },
    ] }], changes: [['resources.cpu', 'live'], ['resources.memory', 'live']] },
  },
  RestartFieldHeldBackByLivePolicy: {
    reason: 'environment needs a restart; policy Live holds it back and reports it pending',
    d: withEnv('Live'), observed: observedAs(plainWeb),
    want: { steps: [], pending: ['environment'], changes: [['environment', 'restart']] },
  },
  RestartFieldAppliedWhileStopped: {
    reason: 'a stopped instance takes restart fields without disruption, whatever the policy',
    d: container('web', { state: 'Stopped', environment: { A: '1' } }), observed: observedAs(plainWeb, 'Stopped'),
    want: { steps: [{ op: 'update', changes: [{ path: 'environment', from: '{}', to: '{"A":"1"}', apply: 'restart' }] }] },
  },
  RestartFieldWithRestartPolicy: {
    reason: 'policy Restart stops, updates and starts again',
    d: withEnv('Restart'), observed: observedAs(plainWeb),
    want: { steps: [
      { op: 'setState', to: 'Stopped' },
      { op: 'update', changes: [{ path: 'environment', from: '{}', to: '{"A":"1"}', apply: 'restart' }] },
      { op: 'setState', to: 'Running' },
    ] },
  },
  RecreateFieldHeldBack: {
    reason: 'a new template needs a re-create; the default policy only reports it',
    d: container('web', { template: 'alpine' }), observed: observedAs(plainWeb),
    want: { steps: [], pending: ['template'], changes: [['template', 'recreate']] },
  },
  RecreateFieldWithRecreatePolicy: {
    reason: 'policy Recreate deletes and creates again',
    d: container('web', { template: 'alpine', updatePolicy: 'Recreate' }), observed: observedAs(plainWeb),
    want: { steps: [{ op: 'delete', reason: 'recreate' }, { op: 'create' }, { op: 'setState', to: 'Running' }] },
  },
  UnownedIsAConflict: {
    reason: 'an instance without our marker is never touched',
    d: web, observed: observedAs(web, 'Running', { ownerId: undefined }),
    want: { steps: [], conflict: true },
  },
  OwnedByAnotherObjectIsAConflict: {
    reason: 'an instance whose marker names another id is not ours either',
    d: web, observed: observedAs(web, 'Running', { ownerId: 'someone-else' }),
    want: { steps: [], conflict: true },
  },
  AdoptionTakesOverAnUnmarkedInstance: {
    reason: 'with the adopt annotation, an unmarked instance is adopted first, with its diff reported',
    d: container('web', { resources: { cpu: 2 } }, { annotations: { 'hyperlet.io/adopt': 'true' } }),
    observed: observedAs(plainWeb, 'Running', { ownerId: undefined }),
    want: { steps: [{ op: 'adopt' }], changes: [['resources.cpu', 'live']] },
  },
  AdoptionNeverTakesAnotherObjectsInstance: {
    reason: 'adoption is for unmarked instances only',
    d: container('web', {}, { annotations: { 'hyperlet.io/adopt': 'true' } }),
    observed: observedAs(plainWeb, 'Running', { ownerId: 'someone-else' }),
    want: { steps: [], conflict: true },
  },
  PartialIsCleanedAndCreatedAgain: {
    reason: 'a half-created instance of ours is removed, then created again',
    d: web, observed: observedAs(web, 'Stopped', { partial: true }),
    want: { steps: [{ op: 'delete', reason: 'partial' }, { op: 'create' }, { op: 'setState', to: 'Running' }] },
  },
  SettlingWaits: {
    reason: 'an instance between states is left to settle',
    d: web, observed: observedAs(web, 'Stopping'),
    want: { steps: [], settling: true },
  },
  DeletedIsDeleted: {
    reason: 'a deleted object removes its owned instance',
    d: container('web', {}, { deleting: true }), observed: observedAs(plainWeb),
    want: { steps: [{ op: 'delete', reason: 'deleted' }] },
  },
  DeletedWithOrphanPolicyKeepsTheInstance: {
    reason: 'deletionPolicy Orphan leaves the instance on the host',
    d: container('web', { deletionPolicy: 'Orphan' }, { deleting: true }), observed: observedAs(plainWeb),
    want: { steps: [], finished: true },
  },
  DeletedNeverTouchesAnUnownedInstance: {
    reason: 'deleting an object never deletes an instance it does not own',
    d: container('web', {}, { deleting: true }), observed: observedAs(plainWeb, 'Running', { ownerId: undefined }),
    want: { steps: [], finished: true, conflict: true },
  },
  DeletedAndGoneIsFinished: {
    reason: 'nothing to delete: finished',
    d: container('web', {}, { deleting: true }), observed: undefined,
    want: { steps: [], finished: true },
  },
  VmPausedOnRequest: {
    reason: 'a VM asked to be Paused is suspended',
    d: vm('vm1', { state: 'Paused', resources: { cpu: 1, memory: '256Mi' } }), observed: observedAs(v),
    want: { steps: [{ op: 'setState', to: 'Paused' }] },
  },
  VmCrashedIsStarted: {
    reason: 'a crashed VM is brought back to its desired state',
    d: v, observed: observedAs(v, 'Crashed'),
    want: { steps: [{ op: 'setState', to: 'Running' }] },
  },
};

interface GitOpsCase {
  reason: string;
  d: Desired;
  observed: ObservedInstance | undefined;
  options: PlanOptions;
  want: { steps: Step[]; heldBy?: Plan['heldBy']; held?: Step[]; drift?: string[]; waitingFor?: string[] };
}

const reported = container('web', { driftPolicy: 'Report' });
const ignored = container('web', { driftPolicy: 'Ignore' });
const webTombstone = container('web', {}, { deleting: true });

const gitOpsCases: Record<string, GitOpsCase> = {
  PausedHoldsStart: {
    reason: 'a paused object is observed but not started; the held step and the drift are reported',
    d: web, observed: observedAs(web, 'Stopped'), options: { paused: true },
    want: { steps: [], heldBy: 'paused', held: [{ op: 'setState', to: 'Running' }], drift: ['state is Stopped, declared Running'] },
  },
  PausedHoldsCreate: {
    reason: 'a paused object that has no instance yet is not created',
    d: web, observed: undefined, options: { paused: true },
    want: { steps: [], heldBy: 'paused', held: [{ op: 'create' }, { op: 'setState', to: 'Running' }], drift: ['no instance exists'] },
  },
  PausedHoldsDelete: {
    reason: 'a paused tombstone is not deleted',
    d: webTombstone, observed: observedAs(webTombstone), options: { paused: true },
    want: { steps: [], heldBy: 'paused', held: [{ op: 'delete', reason: 'deleted' }], drift: ['the object was removed; the instance remains'] },
  },
  PausedConvergedHoldsNothing: {
    reason: 'a paused object that matches has nothing to hold',
    d: web, observed: observedAs(web), options: { paused: true },
    want: { steps: [] },
  },
  ReportLeavesExternalStop: {
    reason: 'driftPolicy Report: a generation that once matched and was stopped behind our back is left alone and reported',
    d: reported, observed: observedAs(reported, 'Stopped'), options: { convergedGeneration: 1 },
    want: { steps: [], heldBy: 'driftPolicy', held: [{ op: 'setState', to: 'Running' }], drift: ['state is Stopped, declared Running'] },
  },
  ReportLeavesFieldDrift: {
    reason: 'driftPolicy Report: a field changed outside hyperlet is named, not corrected',
    d: container('web', { driftPolicy: 'Report', resources: { memory: '256Mi' } }), observed: observedAs(container('web', { driftPolicy: 'Report', resources: { memory: '128Mi' } })),
    options: { convergedGeneration: 1 },
    want: { steps: [], heldBy: 'driftPolicy', drift: ['resources.memory'] },
  },
  ReportAppliesNewGeneration: {
    reason: 'driftPolicy Report only concerns out-of-band changes: a new generation is applied',
    d: container('web', { driftPolicy: 'Report' }, { generation: 2 }), observed: observedAs(reported, 'Stopped'), options: { convergedGeneration: 1 },
    want: { steps: [{ op: 'setState', to: 'Running' }] },
  },
  ReportCreatesFirstTime: {
    reason: 'before the first match there is no drift: create and start as usual',
    d: reported, observed: undefined, options: {},
    want: { steps: [{ op: 'create' }, { op: 'setState', to: 'Running' }] },
  },
  IgnoreLeavesExternalStop: {
    reason: 'driftPolicy Ignore holds the correction too',
    d: ignored, observed: observedAs(ignored, 'Stopped'), options: { convergedGeneration: 1 },
    want: { steps: [], heldBy: 'driftPolicy', held: [{ op: 'setState', to: 'Running' }] },
  },
  CorrectFixesDrift: {
    reason: 'the default Correct puts a matched generation back',
    d: web, observed: observedAs(web, 'Stopped'), options: { convergedGeneration: 1 },
    want: { steps: [{ op: 'setState', to: 'Running' }] },
  },
  DependenciesHoldCreate: {
    reason: 'creation waits for dependencies that are not Ready',
    d: web, observed: undefined, options: { dependenciesNotReady: ['Container/db'] },
    want: { steps: [], heldBy: 'dependencies', waitingFor: ['Container/db'] },
  },
  DependenciesHoldStart: {
    reason: 'starting waits too',
    d: web, observed: observedAs(web, 'Stopped'), options: { dependenciesNotReady: ['Container/db'] },
    want: { steps: [], heldBy: 'dependencies', waitingFor: ['Container/db'] },
  },
  DependenciesDoNotHoldStop: {
    reason: 'stopping never waits for dependencies',
    d: webStopped, observed: observedAs(webStopped, 'Running'), options: { dependenciesNotReady: ['Container/db'] },
    want: { steps: [{ op: 'setState', to: 'Stopped' }] },
  },
  DependentsHoldDelete: {
    reason: 'a removed object is deleted only after the objects depending on it',
    d: webTombstone, observed: observedAs(webTombstone), options: { dependentsPresent: ['Container/app'] },
    want: { steps: [], heldBy: 'dependents', waitingFor: ['Container/app'] },
  },
  SnapshotRequestOnASteadyInstance: {
    reason: 'a steady instance lacking the requested snapshot: take it (one step)',
    d: web, observed: observedAs(web), options: { snapshotRequested: 'before-upgrade' },
    want: { steps: [{ op: 'snapshot', snapshot: 'before-upgrade' }] },
  },
  SnapshotRequestWaitsForConvergence: {
    reason: 'the snapshot holds what was declared: the start comes first, the snapshot on a later pass',
    d: web, observed: observedAs(web, 'Stopped'), options: { snapshotRequested: 'before-upgrade' },
    want: { steps: [{ op: 'setState', to: 'Running' }] },
  },
  SnapshotRequestWaitsForAChangeToApply: {
    reason: 'a pending update is applied before the snapshot is taken',
    d: web, observed: observedAs(old), options: { snapshotRequested: 's1' },
    want: { steps: [{ op: 'update', changes: [
      { path: 'resources.cpu', from: 1, to: 2, apply: 'live' },
      { path: 'resources.memory', from: 134217728, to: 268435456, apply: 'live' },
    ] }] },
  },
  SnapshotRequestAfterARestore: {
    reason: 'a restore request goes first (its stop, restore and start), the snapshot after',
    d: restoring('nightly'), observed: observedAs(restoring('nightly'), 'Stopped'), options: { snapshotRequested: 's1' },
    want: { steps: [{ op: 'restore', snapshot: 'nightly', request: 'nightly' }, { op: 'setState', to: 'Running' }] },
  },
  SnapshotRequestHeldWhenPaused: {
    reason: 'a paused object takes no snapshot either: the step is held',
    d: web, observed: observedAs(web), options: { snapshotRequested: 's1', paused: true },
    want: { steps: [], heldBy: 'paused', held: [{ op: 'snapshot', snapshot: 's1' }] },
  },
  SnapshotRequestNotForADeletion: {
    reason: 'an object being deleted is deleted, never snapshotted',
    d: webTombstone, observed: observedAs(webTombstone), options: { snapshotRequested: 's1' },
    want: { steps: [{ op: 'delete', reason: 'deleted' }] },
  },
  NoDependentsDeletes: {
    reason: 'with no dependents left, delete',
    d: webTombstone, observed: observedAs(webTombstone), options: { dependentsPresent: [] },
    want: { steps: [{ op: 'delete', reason: 'deleted' }] },
  },
};

describe('plan: pause, drift policy, dependsOn', () => {
  for (const [name, tc] of Object.entries(gitOpsCases)) {
    it(name, () => {
      const p = plan(tc.d, tc.observed, tc.options);
      expect(p.steps, tc.reason).to.deep.equal(tc.want.steps);
      expect(p.heldBy, tc.reason).to.equal(tc.want.heldBy);
      if (tc.want.held) expect(p.held, tc.reason).to.deep.equal(tc.want.held);
      if (tc.want.drift) expect(p.drift, tc.reason).to.deep.equal(tc.want.drift);
      if (tc.want.waitingFor) expect(p.waitingFor, tc.reason).to.deep.equal(tc.want.waitingFor);
    });
  }
});

describe('plan', () => {
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const p = plan(tc.d, tc.observed);
      expect(p.steps, tc.reason).to.deep.equal(tc.want.steps);
      expect(p.pending.map((c) => c.path), tc.reason).to.deep.equal(tc.want.pending ?? []);
      if (tc.want.changes) expect(p.changes.map((c) => [c.path, c.apply]), tc.reason).to.deep.equal(tc.want.changes);
      expect(p.conflict !== undefined, tc.reason).to.equal(tc.want.conflict ?? false);
      expect(p.settling ?? false, tc.reason).to.equal(tc.want.settling ?? false);
      expect(p.finished ?? false, tc.reason).to.equal(tc.want.finished ?? false);
    });
  }

  it('reboots a running instance once when the provider says a reboot is requested', () => {
    expect(plan(v, observedAs(v), { rebootRequested: true }).steps).to.deep.equal([{ op: 'reboot' }]);
    expect(plan(v, observedAs(v, 'Stopped'), { rebootRequested: true }).steps, 'a stopped VM is started, not rebooted')
      .to.deep.equal([{ op: 'setState', to: 'Running' }]);
    expect(plan(v, observedAs(v), { rebootRequested: false }).steps).to.deep.equal([]);
  });

  it('lets the provider classify a change by its values', () => {
    const d = vm('vm1', { resources: { cpu: 1, memory: '256Mi' }, disks: [{ name: 'root', size: '2Gi' }] });
    const before = vm('vm1', { resources: { cpu: 1, memory: '256Mi' }, disks: [{ name: 'root', size: '1Gi' }] });
    const p = plan(d, observedAs(before), { applyModeOf: (c) => (c.path === 'disks' ? 'live' : c.apply) });
    expect(p.steps).to.have.length(1);
    expect(p.steps[0]).to.include({ op: 'update' });
    expect(p.pending).to.deep.equal([]);
  });
});
