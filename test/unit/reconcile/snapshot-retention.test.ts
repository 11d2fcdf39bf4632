import { expect } from 'chai';
import { type RetainRules, snapshotsToKeep } from '../../../src/reconcile/snapshot-retention.js';

const snaps = (...isos: string[]) => isos.map((iso, i) => ({ name: `s${i}`, createdAtMs: Date.parse(iso) }));

/** Hourly snapshots at :00 from 2026-11-28T00 to 2026-11-30T23 (72), named s0 (oldest) .. s71. */
const hourly = snaps(...Array.from({ length: 72 }, (_, i) => new Date(Date.parse('2026-11-28T00:00:00Z') + i * 3_600_000).toISOString()));

describe('snapshot retention (Proxmox prune rules)', () => {
  const cases: Record<string, { reason: string; snapshots: { name: string; createdAtMs: number }[]; rules: RetainRules; want: string[] }> = {
    NoRulesKeepsAll: {
      reason: 'with no rule at all nothing is pruned', snapshots: snaps('2026-11-30T01:00:00Z', '2026-11-30T02:00:00Z'), rules: {}, want: ['s0', 's1'],
    },
    LastKeepsNewest: {
      reason: 'last: 2 keeps the two newest', snapshots: snaps('2026-11-30T01:00:00Z', '2026-11-30T02:00:00Z', '2026-11-30T03:00:00Z'),
      rules: { last: 2 }, want: ['s1', 's2'],
    },
    DailyKeepsNewestOfEachDay: {
      reason: 'daily: 2 keeps the newest snapshot of each of the two newest days',
      snapshots: snaps('2026-11-28T10:00:00Z', '2026-11-29T08:00:00Z', '2026-11-29T20:00:00Z', '2026-11-30T01:00:00Z', '2026-11-30T05:00:00Z'),
      rules: { daily: 2 }, want: ['s2', 's4'],
    },
    DailySkipsDaysLastCovered: {
      reason: 'a day where last already kept one does not count for daily; its older snapshots are not kept by daily either',
      snapshots: snaps('2026-11-28T10:00:00Z', '2026-11-29T08:00:00Z', '2026-11-29T20:00:00Z', '2026-11-30T01:00:00Z', '2026-11-30T05:00:00Z'),
      rules: { last: 1, daily: 2 }, want: ['s0', 's2', 's4'],
    },
    HourlyMarksOlderInSameHourRemoved: {
      reason: 'two in one hour: hourly keeps the newer and marks the older removed, so daily cannot keep it',
      snapshots: snaps('2026-11-29T23:10:00Z', '2026-11-29T23:40:00Z', '2026-11-30T01:00:00Z'),
      rules: { hourly: 2, daily: 5 }, want: ['s1', 's2'],
    },
    WeeklyIsoWeeks: {
      reason: 'Sunday 2026-11-29 and Monday 2026-11-30 are in different ISO weeks; 2026-11-23 is the same week as the 29th',
      snapshots: snaps('2026-11-23T12:00:00Z', '2026-11-29T12:00:00Z', '2026-11-30T12:00:00Z'),
      rules: { weekly: 2 }, want: ['s1', 's2'],
    },
    MonthlyAcrossYear: {
      reason: 'monthly: 3 over December, January and February keeps the newest of each',
      snapshots: snaps('2026-12-01T00:00:00Z', '2026-12-31T00:00:00Z', '2027-01-15T00:00:00Z', '2027-02-01T00:00:00Z', '2027-02-02T00:00:00Z'),
      rules: { monthly: 3 }, want: ['s1', 's2', 's4'],
    },
    Combined72Hourly: {
      reason: 'three days of hourly snapshots, last 3, hourly 6, daily 3: 9 newest hours; the 30th is covered, so daily keeps 23:00 of the 29th and the 28th',
      snapshots: hourly, rules: { last: 3, hourly: 6, daily: 3 },
      want: ['s23', 's47', 's63', 's64', 's65', 's66', 's67', 's68', 's69', 's70', 's71'],
    },
    FewerThanRules: {
      reason: 'rules asking for more than there is keep everything there is',
      snapshots: snaps('2026-11-30T01:00:00Z'), rules: { last: 5, monthly: 12 }, want: ['s0'],
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      expect([...snapshotsToKeep(tc.snapshots, tc.rules)].sort((a, b) => Number(a.slice(1)) - Number(b.slice(1))), tc.reason).to.deep.equal(tc.want);
    });
  }
});
