import { expect } from 'chai';
import sinon from 'sinon';
import pino from 'pino';
import { type LeaseClient, LeaderElector } from '../../../src/kube/leader-election.js';
import { FakeLeaseClient } from '../../fakes/fake-lease-client.js';

const timing = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 };

interface Candidate {
  readonly elector: LeaderElector;
  readonly abort: AbortController;
  readonly log: string[];
  done: Promise<void>;
}

function candidate(lease: LeaseClient, identity: string, releaseOnCancel = true): Candidate {
  const elector = new LeaderElector({ lease, identity, logger: pino({ level: 'silent' }), ...timing, releaseOnCancel });
  const abort = new AbortController();
  const log: string[] = [];
  const done = elector.run({
    onStartedLeading: () => log.push('started'),
    onStoppedLeading: () => log.push('stopped'),
  }, abort.signal);
  return { elector, abort, log, done };
}

describe('LeaderElector', () => {
  let clock: sinon.SinonFakeTimers;
  beforeEach(() => { clock = sinon.useFakeTimers({ now: Date.UTC(2026, 0, 1), toFake: ['setTimeout', 'clearTimeout', 'Date'] }); });
  afterEach(() => clock.restore());

  it('the first candidate creates the Lease and leads; the second waits while it renews', async () => {
    const lease = new FakeLeaseClient();
    const a = candidate(lease, 'a');
    await clock.tickAsync(1);
    const b = candidate(lease, 'b');
    await clock.tickAsync(60_000);
    expect(a.elector.isLeader).to.equal(true);
    expect(b.elector.isLeader).to.equal(false);
    expect(lease.record).to.deep.include({ holderIdentity: 'a', leaseTransitions: 0, leaseDurationSeconds: 15 });
    expect(lease.record!.renewTimeMs).to.be.at.least(Date.now() - timing.retryPeriodMs);
    a.abort.abort(); b.abort.abort();
    await clock.tickAsync(1); await Promise.all([a.done, b.done]);
  });

  const takeovers = {
    ReleasedOnCancel: {
      reason: 'a leader that stops releases the Lease, so the next one takes it at its next attempt',
      release: true, notBeforeMs: 0, byMs: 2 * timing.retryPeriodMs * 1.2 + 10,
    },
    CrashedLeader: {
      reason: 'a leader that vanishes without release is replaced only after leaseDuration on the successor\'s clock',
      release: false, notBeforeMs: timing.leaseDurationMs - timing.retryPeriodMs, byMs: timing.leaseDurationMs + 2 * timing.retryPeriodMs * 1.2 + 10,
    },
  };
  for (const [name, tc] of Object.entries(takeovers)) {
    it(name, async () => {
      const lease = new FakeLeaseClient();
      const a = candidate(lease, 'a', tc.release);
      await clock.tickAsync(1);
      const b = candidate(lease, 'b');
      await clock.tickAsync(10_000);
      a.abort.abort();
      await clock.tickAsync(1);
      await a.done;
      expect(a.log).to.deep.equal(['started', 'stopped']);
      if (tc.notBeforeMs > 0) {
        await clock.tickAsync(tc.notBeforeMs);
        expect(b.elector.isLeader, `${tc.reason} (too early)`).to.equal(false);
        await clock.tickAsync(tc.byMs - tc.notBeforeMs);
      } else {
        await clock.tickAsync(tc.byMs);
      }
      expect(b.elector.isLeader, tc.reason).to.equal(true);
      expect(lease.record).to.deep.include({ holderIdentity: 'b', leaseTransitions: 1 });
      b.abort.abort();
      await clock.tickAsync(1); await b.done;
      expect(lease.record!.holderIdentity).to.equal('');
    });
  }

  it('a leader that cannot renew gives up after renewDeadline, before the Lease expires for others', async () => {
    const lease = new FakeLeaseClient();
    const a = candidate(lease, 'a');
    await clock.tickAsync(3_000);
    expect(a.elector.isLeader).to.equal(true);
    const lastRenew = lease.record!.renewTimeMs!;
    lease.down = true;
    await clock.tickAsync(timing.renewDeadlineMs - timing.retryPeriodMs - 1 - (Date.now() - lastRenew));
    expect(a.elector.isLeader).to.equal(true);
    await clock.tickAsync(2 * timing.retryPeriodMs + 1);
    await a.done;
    expect(a.log).to.deep.equal(['started', 'stopped']);
    expect(Date.now() - lastRenew).to.be.below(timing.leaseDurationMs);
  });

  it('refuses a renew deadline that is not shorter than the lease', () => {
    expect(() => new LeaderElector({ lease: new FakeLeaseClient(), identity: 'x', logger: pino({ level: 'silent' }), leaseDurationMs: 5_000, renewDeadlineMs: 5_000 }))
      .to.throw(TypeError);
  });
});
