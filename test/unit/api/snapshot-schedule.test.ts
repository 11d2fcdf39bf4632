import { expect } from 'chai';
import { nextRunAfter, parseSchedule } from '../../../src/api/v1alpha1/snapshot-schedule.js';

const at = (iso: string): number => Date.parse(iso);

describe('snapshot schedule', () => {
  const next: Record<string, { reason: string; schedule: string; after: string; want: string }> = {
    EveryAddsThePeriod: { reason: '@every counts from the last run', schedule: '@every 1h30m', after: '2026-11-30T10:17:05Z', want: '2026-11-30T11:47:05.000Z' },
    EveryFiveMinutes: { reason: 'a step in the minute field', schedule: '*/5 * * * *', after: '2026-11-30T10:17:05Z', want: '2026-11-30T10:20:00.000Z' },
    StrictlyAfter: { reason: 'a run exactly at a match is not due again', schedule: '*/5 * * * *', after: '2026-11-30T10:20:00Z', want: '2026-11-30T10:25:00.000Z' },
    DailyAtTwoThirty: { reason: 'past today\'s time: tomorrow', schedule: '30 2 * * *', after: '2026-11-30T10:00:00Z', want: '2026-12-01T02:30:00.000Z' },
    MonthRollsOverYear: { reason: '@monthly in December goes to next year', schedule: '@monthly', after: '2026-12-15T00:00:00Z', want: '2027-01-01T00:00:00.000Z' },
    WeekdaySundayAsSeven: { reason: 'day of week 7 is Sunday', schedule: '0 3 * * 7', after: '2026-11-30T00:00:00Z', want: '2026-12-06T03:00:00.000Z' },
    WeekdayRange: { reason: 'Mon-Fri at 18:00 from a Friday evening: Monday', schedule: '0 18 * * 1-5', after: '2026-12-04T19:00:00Z', want: '2026-12-07T18:00:00.000Z' },
    DayOrWeekday: { reason: 'both day fields restricted: either matches (the 1st, or a Monday)', schedule: '0 0 1 * 1', after: '2026-12-01T00:00:00Z', want: '2026-12-07T00:00:00.000Z' },
    ListsAndRanges: { reason: 'comma lists and ranges with steps', schedule: '0,30 8-18/5 * * *', after: '2026-11-30T08:31:00Z', want: '2026-11-30T13:00:00.000Z' },
    LeapDay: { reason: 'Feb 29 waits for a leap year', schedule: '0 0 29 2 *', after: '2026-03-01T00:00:00Z', want: '2028-02-29T00:00:00.000Z' },
  };
  for (const [name, tc] of Object.entries(next)) {
    it(name, () => {
      expect(new Date(nextRunAfter(parseSchedule(tc.schedule), at(tc.after))).toISOString(), tc.reason).to.equal(tc.want);
    });
  }

  const bad: Record<string, { reason: string; schedule: string; want: RegExp }> = {
    FourFields: { reason: 'cron needs five fields', schedule: '* * * *', want: /cron needs 5 fields .* got 4/ },
    MinuteOutOfRange: { reason: 'minute 60 does not exist', schedule: '60 * * * *', want: /minute field "60" is outside 0-59/ },
    Garbage: { reason: 'names are not supported', schedule: '0 0 * * MON', want: /day of week field "MON" is not N/ },
    EveryTooShort: { reason: 'at least a minute', schedule: '@every 30s', want: /at least 1m/ },
    EveryNoUnit: { reason: 'a duration needs units', schedule: '@every 5', want: /@every takes a duration/ },
    UnknownMacro: { reason: 'only the known macros', schedule: '@sometimes', want: /unknown macro/ },
    ZeroStep: { reason: 'a step of 0 would never advance', schedule: '*/0 * * * *', want: /step below 1/ },
  };
  for (const [name, tc] of Object.entries(bad)) {
    it(`refuses ${name}`, () => {
      expect(() => parseSchedule(tc.schedule), tc.reason).to.throw(/^cannot parse schedule/);
      expect(() => parseSchedule(tc.schedule), tc.reason).to.throw(tc.want);
    });
  }

  it('a schedule that never matches says so instead of looping', () => {
    expect(() => nextRunAfter(parseSchedule('0 0 30 2 *'), at('2026-01-01T00:00:00Z'))).to.throw(/matches no date/);
  });
});
