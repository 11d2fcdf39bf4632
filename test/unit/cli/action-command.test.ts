import { expect } from 'chai';
import { actionOutcome } from '../../../src/cli/action-command.js';

describe('actionOutcome: which Event ends hyperlet restore/snapshot --wait', () => {
  interface Case { reason: string; action: string; value: string; event: { type: 'Normal' | 'Warning'; reason: string; message: string }; want: string | undefined }
  const cases: Record<string, Case> = {
    RestoredThisRequest: {
      reason: 'the Restored Event names the request it honoured', action: 'restore', value: 'golden@20261201003055947',
      event: { type: 'Normal', reason: 'Restored', message: 'restored rootfs from snapshot golden (request golden@20261201003055947)' }, want: 'done',
    },
    RestoredAnotherRequest: {
      reason: 'an earlier request of the same snapshot (another token) is not ours', action: 'restore', value: 'golden@2',
      event: { type: 'Normal', reason: 'Restored', message: 'restored rootfs from snapshot golden (request golden@1)' }, want: undefined,
    },
    SnapshotNotFound: {
      reason: 'a Warning naming the snapshot is the failure', action: 'restore', value: 'nope@1',
      event: { type: 'Warning', reason: 'SnapshotNotFound', message: 'cannot set container web to stopped: cannot restore web: it has no snapshot nope' },
      want: 'failed',
    },
    WarningAboutAnotherSnapshot: {
      reason: 'a Warning that does not name the snapshot is not ours (a longer name containing it neither)', action: 'restore', value: 'nope@1',
      event: { type: 'Warning', reason: 'SnapshotFailed', message: 'cannot snapshot container web as nope-2' }, want: undefined,
    },
    StartedMeanwhile: {
      reason: 'the steps around a restore (Stopped, Started) are not its outcome', action: 'restore', value: 'golden@1',
      event: { type: 'Normal', reason: 'Started', message: 'started' }, want: undefined,
    },
    SnapshotTaken: {
      reason: 'SnapshotTaken of that snapshot', action: 'snapshot', value: 'before-upgrade',
      event: { type: 'Normal', reason: 'SnapshotTaken', message: 'Took snapshot before-upgrade of web (request, 4096 bytes)' }, want: 'done',
    },
    OtherSnapshotTaken: {
      reason: 'a scheduled snapshot taken meanwhile is not ours', action: 'snapshot', value: 'before-upgrade',
      event: { type: 'Normal', reason: 'SnapshotTaken', message: 'Took scheduled snapshot auto-20261201t000000z' }, want: undefined,
    },
    SnapshotFailed: {
      reason: 'a failure naming the snapshot', action: 'snapshot', value: 'before-upgrade',
      event: { type: 'Warning', reason: 'SnapshotFailed', message: 'cannot snapshot container web as before-upgrade: no space left on device' }, want: 'failed',
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      expect(actionOutcome(tc.action, tc.value, tc.event), tc.reason).to.equal(tc.want);
    });
  }
});
