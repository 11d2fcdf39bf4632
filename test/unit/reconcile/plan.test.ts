import { expect } from 'chai';
import { plan, type Step } from '../../../src/reconcile/plan.js';
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

  it('lets the provider classify a change by its values', () => {
    const d = vm('vm1', { resources: { cpu: 1, memory: '256Mi' }, disks: [{ name: 'root', size: '2Gi' }] });
    const before = vm('vm1', { resources: { cpu: 1, memory: '256Mi' }, disks: [{ name: 'root', size: '1Gi' }] });
    const p = plan(d, observedAs(before), (c) => (c.path === 'disks' ? 'live' : c.apply));
    expect(p.steps).to.have.length(1);
    expect(p.steps[0]).to.include({ op: 'update' });
    expect(p.pending).to.deep.equal([]);
  });
});
