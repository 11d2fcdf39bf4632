import { expect } from 'chai';
import type { Status } from '../../../src/api/v1alpha1/types.js';
import { parseWaitCondition } from '../../../src/cli/wait-command.js';
import { isUsageError } from '../../../src/cli/usage-error.js';
import type { ObjectView } from '../../../src/server/object-view.js';

const view = (phase: Status['phase'], ready: 'True' | 'False'): ObjectView => ({
  apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name: 'web', namespace: 'default', uid: 'u', generation: 1 }, spec: {},
  status: { phase, conditions: [{ type: 'Ready', status: ready, reason: 'x', message: 'x', lastTransitionTime: 't' }] },
});

describe('parseWaitCondition', () => {
  const cases: Record<string, { reason: string; text: string; met: ObjectView[]; notMet: ObjectView[] }> = {
    Ready: {
      reason: 'condition=Ready: Ready is True',
      text: 'condition=Ready', met: [view('Running', 'True')], notMet: [view('Running', 'False')],
    },
    NotReady: {
      reason: 'condition=Ready=false: the opposite',
      text: 'condition=Ready=false', met: [view('Failed', 'False')], notMet: [view('Running', 'True')],
    },
    Phase: { reason: 'phase=Stopped, any case', text: 'phase=stopped', met: [view('Stopped', 'True')], notMet: [view('Running', 'True')] },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const c = parseWaitCondition(tc.text);
      if (c.kind !== 'view') throw new Error('expected a view condition');
      for (const v of tc.met) expect(c.test(v), tc.reason).to.equal(true);
      for (const v of tc.notMet) expect(c.test(v), tc.reason).to.equal(false);
    });
  }
  it('delete is met by absence', () => expect(parseWaitCondition('delete')).to.deep.equal({ kind: 'delete' }));
  it('anything else is a usage error', () => {
    let err: unknown;
    try { parseWaitCondition('jsonpath={.x}'); } catch (e) { err = e; }
    expect(isUsageError(err)).to.equal(true);
  });
});
