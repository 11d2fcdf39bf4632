import { expect } from 'chai';
import { isoTime } from '../../../src/shared/clock.js';

describe('isoTime', () => {
  // Asked in turn: each answer must be what Date gives for that millisecond, whatever was asked before.
  const cases: Record<string, { reason: string; ms: number[] }> = {
    SameMillisecond: { reason: 'the same millisecond twice', ms: [1_700_000_000_000, 1_700_000_000_000] },
    NextMillisecond: { reason: 'the next millisecond is a new string', ms: [1_700_000_000_000, 1_700_000_000_001] },
    Back: { reason: 'an earlier time after a later one (a fake clock set back)', ms: [1_700_000_000_500, 0, 1_700_000_000_500] },
    Epoch: { reason: 'zero is a time like any other', ms: [0, 0] },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      for (const ms of tc.ms) expect(isoTime(ms), tc.reason).to.equal(new Date(ms).toISOString());
    });
  }
  it('an invalid time throws as Date does', () => {
    expect(() => isoTime(Number.NaN)).to.throw(RangeError);
  });
});
