import { expect } from 'chai';
import type { ObjectEvent, StatusSummary } from '../../../src/reconcile/object-events.js';
import { notificationData, notificationTypeOf } from '../../../src/notify/notification-types.js';
import type { ObjectKey } from '../../../src/store/object-key.js';

const identity = {
  key: 'dir/default/Container/web' as ObjectKey, source: 'dir', kind: 'Container', namespace: 'default', name: 'web',
  uid: 'u1', generation: 2,
};
const status = (phase: StatusSummary['phase'], ready = 'True'): StatusSummary => ({
  phase,
  conditions: [{
    type: 'Ready', status: ready as 'True', reason: 'Running', message: 'The instance is running as declared', lastTransitionTime: 't',
  }],
});
const written = (phase: StatusSummary['phase'], previous?: StatusSummary['phase']): ObjectEvent => ({
  type: 'status', atMs: 0, ...identity, status: status(phase), ...(previous === undefined ? {} : { previous: status(previous) }),
});
const recorded = (eventType: 'Normal' | 'Warning', reason: string): ObjectEvent => ({
  type: 'record', atMs: 0, ...identity, eventType, reason, message: `${reason} happened`,
});

describe('notificationTypeOf', () => {
  const cases: Record<string, { reason: string; event: ObjectEvent; want: string | undefined }> = {
    FirstStatusIsAPhaseChange: {
      reason: 'no status before: the object appeared, its phase is news',
      event: written('Pending'), want: 'io.hyperlet.object.phase.changed',
    },
    PhaseMoved: {
      reason: 'Running after Stopped',
      event: written('Running', 'Stopped'), want: 'io.hyperlet.object.phase.changed',
    },
    SamePhaseIsSilent: {
      reason: 'a status write that keeps the phase (a condition message) is not sent',
      event: written('Running', 'Running'), want: undefined,
    },
    Drift: {
      reason: 'drift has its own type, not a failure',
      event: recorded('Warning', 'Drifted'), want: 'io.hyperlet.object.drifted',
    },
    PolicyDenied: {
      reason: 'a policy refusal has its own type',
      event: recorded('Warning', 'PolicyDenied'), want: 'io.hyperlet.policy.refused',
    },
    QuotaExceeded: {
      reason: 'a quota refusal is a policy refusal',
      event: recorded('Warning', 'QuotaExceeded'), want: 'io.hyperlet.policy.refused',
    },
    Snapshot: {
      reason: 'snapshots taken are sent',
      event: recorded('Normal', 'SnapshotTaken'), want: 'io.hyperlet.snapshot.created',
    },
    Restore: {
      reason: 'restores are sent',
      event: recorded('Normal', 'Restored'), want: 'io.hyperlet.snapshot.restored',
    },
    AnyOtherWarningIsAFailure: {
      reason: 'StartFailed and the like are failures',
      event: recorded('Warning', 'StartFailed'), want: 'io.hyperlet.object.failed',
    },
    NormalActionsAreSilent: {
      reason: 'Started is followed by a phase change that says the same',
      event: recorded('Normal', 'Started'), want: undefined,
    },
  };
  for (const [name, tc] of Object.entries(cases)) it(name, () => expect(notificationTypeOf(tc.event), tc.reason).to.equal(tc.want));
});

describe('notificationData', () => {
  it('a phase change carries identity, both phases and Ready, nothing else', () => {
    expect(notificationData(written('Running', 'Stopped') as Extract<ObjectEvent, { type: 'status' }>)).to.deep.equal({
      kind: 'Container', namespace: 'default', name: 'web', uid: 'u1', source: 'dir', generation: 2,
      phase: 'Running', previousPhase: 'Stopped',
      ready: { status: 'True', reason: 'Running', message: 'The instance is running as declared' },
    });
  });
  it('a recorded event carries identity, reason and message', () => {
    expect(notificationData(recorded('Warning', 'StartFailed') as Extract<ObjectEvent, { type: 'record' }>)).to.deep.equal({
      kind: 'Container', namespace: 'default', name: 'web', uid: 'u1', source: 'dir', generation: 2,
      reason: 'StartFailed', message: 'StartFailed happened',
    });
  });
});
