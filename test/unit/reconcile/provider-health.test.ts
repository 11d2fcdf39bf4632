import { expect } from 'chai';
import { ProviderHealth } from '../../../src/reconcile/provider-health.js';
import { ProviderUnavailableError } from '../../../src/providers/provider.js';
import type { Clock } from '../../../src/shared/clock.js';
import { silentLogger } from '../../../src/telemetry/logger.js';
import { FakeProvider } from '../../fakes/fake-provider.js';

/** A clock the test moves by hand; health reads now() only. */
function manualClock(): Clock & { advance(ms: number): void } {
  let nowMs = 0;
  return { now: () => nowMs, setTimeout: () => undefined, clearTimeout: () => undefined, advance: (ms) => { nowMs += ms; } };
}

const signal = new AbortController().signal;

describe('ProviderHealth', () => {
  type Check = { readonly afterMs: number; readonly unavailable?: string; readonly want: boolean };
  const cases: Record<string, { reason: string; checks: Check[]; probes: number }> = {
    HealthyIsProbedOnce: {
      reason: 'a working provider is probed at the first check only',
      checks: [{ afterMs: 0, want: true }, { afterMs: 60_000, want: true }], probes: 1,
    },
    FailingIsNotProbedBeforeRetry: {
      reason: 'within retryMs of a failed probe the cached failure answers',
      checks: [{ afterMs: 0, unavailable: 'lxc-ls not found', want: false }, { afterMs: 4_999, want: false }], probes: 1,
    },
    FailingIsProbedAgainAfterRetry: {
      reason: 'once retryMs of clock time passed, the next check probes and sees it back',
      checks: [{ afterMs: 0, unavailable: 'libvirtd down', want: false }, { afterMs: 5_000, want: true }], probes: 2,
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, async () => {
      const clock = manualClock();
      const provider = new FakeProvider('Container');
      const health = new ProviderHealth(provider, silentLogger(), { retryMs: 5_000, clock });
      for (const check of tc.checks) {
        clock.advance(check.afterMs);
        provider.unavailable = check.unavailable;
        expect((await health.check(signal)).ok, tc.reason).to.equal(check.want);
      }
      expect(provider.count('probe'), tc.reason).to.equal(tc.probes);
    });
  }

  it('markUnavailable holds for retryMs of clock time', async () => {
    const clock = manualClock();
    const provider = new FakeProvider('Container');
    const health = new ProviderHealth(provider, silentLogger(), { retryMs: 1_000, clock });
    expect((await health.check(signal)).ok).to.equal(true);
    health.markUnavailable(new ProviderUnavailableError('socket closed'));
    clock.advance(999);
    expect(await health.check(signal)).to.deep.equal({ ok: false, reason: 'socket closed' });
    clock.advance(1);
    expect((await health.check(signal)).ok).to.equal(true);
  });
});
