import { expect } from 'chai';
import { ObservationCache } from '../../../src/reconcile/observation-cache.js';
import type { ObservedInstance } from '../../../src/providers/provider.js';
import type { Clock } from '../../../src/shared/clock.js';

function manualClock(): Clock & { advance(ms: number): void } {
  let nowMs = 1_000;
  return { now: () => nowMs, setTimeout: () => undefined, clearTimeout: () => undefined, advance: (ms) => { nowMs += ms; } };
}

const instance = (hostName: string): ObservedInstance => ({ hostName, state: 'Running', fields: {} });

describe('ObservationCache', () => {
  const cases = {
    BatchAfterInvalidationIsKept: {
      reason: 'a batch started after the change saw it',
      invalidateAtMs: 1_000, batchStartedAtMs: 1_001, cached: true,
    },
    BatchBeforeInvalidationIsDropped: {
      reason: 'a batch started before the change may predate it: observe that instance alone',
      invalidateAtMs: 1_005, batchStartedAtMs: 1_001, cached: false,
    },
    BatchInTheSameMillisecondIsDropped: {
      reason: 'equal times cannot be ordered: the safe side is to look again',
      invalidateAtMs: 1_000, batchStartedAtMs: 1_000, cached: false,
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const clock = manualClock();
      const cache = new ObservationCache(clock);
      clock.advance(tc.invalidateAtMs - clock.now());
      cache.invalidate('web');
      cache.fill(new Map([['web', instance('web')]]), ['web', 'db'], tc.batchStartedAtMs);
      expect(cache.get('web') !== undefined, tc.reason).to.equal(tc.cached);
      expect(cache.get('db'), 'wanted but absent from the batch: cached as missing').to.deep.equal({ instance: undefined });
    });
  }
});
