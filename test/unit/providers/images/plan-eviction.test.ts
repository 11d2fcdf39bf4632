import { expect } from 'chai';
import { type CacheEntry, planEviction } from '../../../../src/providers/images/plan-eviction.js';

const MIN = 60_000;
const NOW = 1_000 * MIN;
const e = (path: string, bytes: number, usedMinutesAgo: number, inUse = false): CacheEntry => ({ path, bytes, lastUsedMs: NOW - usedMinutesAgo * MIN, inUse });

describe('planEviction (LRU under a size cap)', () => {
  const cases: Record<string, { reason: string; entries: CacheEntry[]; maxBytes: number; want: string[] }> = {
    UnderCap: { reason: 'nothing goes while the cache fits', entries: [e('a', 50, 100), e('b', 50, 200)], maxBytes: 100, want: [] },
    OldestFirst: { reason: 'the least recently used goes first, only as many as needed', entries: [e('new', 60, 20), e('old', 60, 300), e('mid', 60, 100)], maxBytes: 120, want: ['old'] },
    SeveralNeeded: { reason: 'oldest to newest until it fits', entries: [e('new', 60, 20), e('old', 60, 300), e('mid', 60, 100)], maxBytes: 60, want: ['old', 'mid'] },
    InUseStays: {
      reason: 'an image a container uses is never evicted, even when it is the oldest',
      entries: [e('used', 100, 900, true), e('free', 100, 50)], maxBytes: 100, want: ['free'],
    },
    GraceStays: {
      reason: 'an image used in the grace period stays (a container being made may not reference it yet)',
      entries: [e('just', 100, 2), e('old', 100, 60)], maxBytes: 50, want: ['old'],
    },
    CannotFit: {
      reason: 'when what may go is not enough, it all goes and the rest stays over the cap',
      entries: [e('used', 500, 900, true), e('free', 10, 60)], maxBytes: 100, want: ['free'],
    },
    TieByPath: { reason: 'equal last use: by path, so the plan is stable', entries: [e('b', 10, 60), e('a', 10, 60)], maxBytes: 10, want: ['a'] },
    ZeroCap: { reason: 'a cap of 0 empties what may go', entries: [e('x', 1, 60), e('y', 1, 70), e('z', 1, 1)], maxBytes: 0, want: ['y', 'x'] },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      expect(planEviction(tc.entries, { maxBytes: tc.maxBytes, nowMs: NOW, graceMs: 10 * MIN }).map((x) => x.path), tc.reason).to.deep.equal(tc.want);
    });
  }
});
