import { expect } from 'chai';
import { StateDeduplicator, parseMonitorLine } from '../../../../src/providers/lxc/lxc-monitor.js';

describe('parseMonitorLine', () => {
  const cases = {
    Changed: { reason: 'a state change', line: "'t2' changed state to [RUNNING]", want: { name: 't2', state: 'RUNNING' } },
    Exited: { reason: 'an exit carries no state of its own', line: "'t2' exited with status [0]", want: { name: 't2', state: 'EXITED' } },
    Namespaced: { reason: 'host names may hold a dot', line: "'team-a.db' changed state to [FROZEN]", want: { name: 'team-a.db', state: 'FROZEN' } },
    Other: { reason: 'anything else is ignored', line: 'lxc-monitor: some warning', want: undefined },
    Empty: { reason: 'blank lines are ignored', line: '', want: undefined },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => expect(parseMonitorLine(tc.line), tc.reason).to.deep.equal(tc.want));
  }
});

describe('StateDeduplicator', () => {
  const cases = {
    FreezeThaw: {
      reason: 'the sequence seen on this host for a freeze and thaw: repeats are dropped',
      events: ['t:FREEZING', 't:FROZEN', 't:FROZEN', 't:THAWED', 't:THAWED', 't:RUNNING'],
      want: ['t:FREEZING', 't:FROZEN', 't:THAWED', 't:RUNNING'],
    },
    PerContainer: {
      reason: 'repeats are per container',
      events: ['a:RUNNING', 'b:RUNNING', 'a:RUNNING', 'b:STOPPED'],
      want: ['a:RUNNING', 'b:RUNNING', 'b:STOPPED'],
    },
    RestartSameState: {
      reason: 'stop then start passes through every state again',
      events: ['a:RUNNING', 'a:STOPPING', 'a:STOPPED', 'a:STARTING', 'a:RUNNING'],
      want: ['a:RUNNING', 'a:STOPPING', 'a:STOPPED', 'a:STARTING', 'a:RUNNING'],
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const dedup = new StateDeduplicator();
      const passed = tc.events.filter((e) => {
        const [n = '', s = ''] = e.split(':');
        return dedup.admit({ name: n, state: s });
      });
      expect(passed, tc.reason).to.deep.equal(tc.want);
    });
  }

  it('ClearLetsTheNextStateThrough', () => {
    const dedup = new StateDeduplicator();
    dedup.admit({ name: 'a', state: 'RUNNING' });
    dedup.clear();
    expect(dedup.admit({ name: 'a', state: 'RUNNING' }), 'after a monitor restart nothing is known').to.equal(true);
  });
});
