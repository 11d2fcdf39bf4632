import { expect } from 'chai';
import pino from 'pino';
import { ClusterLeadership, type ClusterTask } from '../../../src/kube/cluster-leadership.js';
import { LeaderElector } from '../../../src/kube/leader-election.js';
import { FakeLeaseClient } from '../../fakes/fake-lease-client.js';
import { FakeClock } from '../../support/fake-clock.js';

const timing = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 };

/** A task that records when it runs and ends; `failFirst` makes its first run throw. */
function recordingTask(name: string, failFirst = false): ClusterTask & { log: string[]; active: boolean } {
  let runs = 0;
  const task = {
    name, log: [] as string[], active: false,
    run(signal: AbortSignal): Promise<void> {
      runs++;
      task.log.push(`start ${runs}`);
      if (failFirst && runs === 1) return Promise.reject(new Error('cannot reach the API server'));
      task.active = true;
      return new Promise((resolve) => signal.addEventListener('abort', () => {
        task.active = false;
        task.log.push(`stop ${runs}`);
        resolve();
      }, { once: true }));
    },
  };
  return task;
}

function agent(lease: FakeLeaseClient, identity: string, clock: FakeClock, tasks: ClusterTask[]) {
  const logger = pino({ level: 'silent' });
  const leadership = new ClusterLeadership({
    elector: new LeaderElector({ lease, identity, logger, clock, ...timing }), logger, tasks, clock, restartMs: 1_000,
  });
  const abort = new AbortController();
  const done = leadership.run(abort.signal);
  return { leadership, abort, done };
}

describe('ClusterLeadership', () => {
  it('runs the tasks on the leader only; a stopped leader hands them over to the other agent', async () => {
    const clock = new FakeClock();
    const lease = new FakeLeaseClient();
    const ta = recordingTask('lifecycle');
    const tb = recordingTask('lifecycle');
    const a = agent(lease, 'node-a', clock, [ta]);
    await clock.advance(1);
    const b = agent(lease, 'node-b', clock, [tb]);
    await clock.advance(60_000);
    expect([a.leadership.isLeader, b.leadership.isLeader, ta.active, tb.active]).to.deep.equal([true, false, true, false]);
    a.abort.abort();
    await a.done;
    expect(ta.log).to.deep.equal(['start 1', 'stop 1']);
    await clock.advance(3 * timing.retryPeriodMs);
    expect([b.leadership.isLeader, tb.active, b.leadership.termsLed]).to.deep.equal([true, true, 1]);
    b.abort.abort();
    await b.done;
    expect(tb.active).to.equal(false);
  });

  it('a task that throws is restarted while leadership lasts', async () => {
    const clock = new FakeClock();
    const t = recordingTask('flaky', true);
    const a = agent(new FakeLeaseClient(), 'node-a', clock, [t]);
    await clock.advance(1);
    expect(t.log).to.deep.equal(['start 1']);
    await clock.advance(1_000);
    expect([t.log, t.active]).to.deep.equal([['start 1', 'start 2'], true]);
    a.abort.abort();
    await a.done;
  });

  it('leadership lost (the API server unreachable past the renew deadline) stops the tasks and campaigns again', async () => {
    const clock = new FakeClock();
    const lease = new FakeLeaseClient();
    const t = recordingTask('lifecycle');
    const a = agent(lease, 'node-a', clock, [t]);
    await clock.advance(1);
    expect(t.active).to.equal(true);
    lease.down = true;
    await clock.advance(timing.renewDeadlineMs + timing.retryPeriodMs);
    expect([a.leadership.isLeader, t.active]).to.deep.equal([false, false]);
    lease.down = false;
    await clock.advance(timing.leaseDurationMs + 3 * timing.retryPeriodMs);
    expect([a.leadership.isLeader, t.active, a.leadership.termsLed]).to.deep.equal([true, true, 2]);
    expect(t.log).to.deep.equal(['start 1', 'stop 1', 'start 2']);
    a.abort.abort();
    await a.done;
  });
});
