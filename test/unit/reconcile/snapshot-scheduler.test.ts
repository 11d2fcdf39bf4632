import { expect } from 'chai';
import pino from 'pino';
import { SnapshotScheduler, scheduledSnapshotName } from '../../../src/reconcile/snapshot-scheduler.js';
import type { Clock } from '../../../src/shared/clock.js';
import { DesiredStore } from '../../../src/store/desired-store.js';
import type { Desired } from '../../../src/store/desired.js';
import { container, observedAs } from '../../fakes/desired-objects.js';
import { FakeProvider } from '../../fakes/fake-provider.js';

const HOUR = 3_600_000;
const T0 = Date.parse('2026-11-30T00:00:00Z');

interface Setup { provider: FakeProvider<'Container'>; store: DesiredStore; clock: Clock & { t: number }; records: string[]; scheduler: SnapshotScheduler }

function setup(...objects: Desired[]): Setup {
  const provider = new FakeProvider('Container');
  const store = new DesiredStore();
  for (const d of objects) {
    store.upsert(d);
    provider.instances.set(d.hostName, observedAs(d));
  }
  const clock = { t: T0, now(): number { return this.t; }, setTimeout: (): unknown => undefined, clearTimeout: (): void => undefined };
  provider.now = () => clock.t;
  const records: string[] = [];
  const scheduler = new SnapshotScheduler({
    store, provider, clock, logger: pino({ level: 'silent' }), record: (d, type, reason) => records.push(`${d.hostName} ${type} ${reason}`),
  });
  return { provider, store, clock, records, scheduler };
}

const names = (s: Setup, host: string): string[] => (s.provider.snapshots.get(host) ?? []).map((x) => x.name);
const signal = new AbortController().signal;

describe('SnapshotScheduler (clock injected)', () => {
  it('names scheduled snapshots after their UTC time, as DNS labels', () => {
    expect(scheduledSnapshotName(Date.parse('2026-11-30T22:11:48.123Z'))).to.equal('auto-20261130t221148z');
  });

  const timelines: Record<string, { reason: string; schedule: string; retain?: Record<string, number>; at: number[]; want: string[] }> = {
    EveryHour: {
      reason: 'first seen at T0: nothing; due at T0+1h, not again half an hour later; due again an hour after the last',
      schedule: '@every 1h', at: [0, HOUR, 1.5 * HOUR, 2 * HOUR],
      want: [scheduledSnapshotName(T0 + HOUR), scheduledSnapshotName(T0 + 2 * HOUR)],
    },
    CronAtMinuteFive: {
      reason: 'a cron run is due once its minute has passed',
      schedule: '5 * * * *', at: [0, 4 * 60_000, 5 * 60_000, 30 * 60_000, HOUR + 6 * 60_000],
      want: [scheduledSnapshotName(T0 + 5 * 60_000), scheduledSnapshotName(T0 + HOUR + 6 * 60_000)],
    },
    RetainLastTwo: {
      reason: 'retain last 2: the third and fourth runs prune the oldest',
      schedule: '@every 1h', retain: { last: 2 }, at: [0, HOUR, 2 * HOUR, 3 * HOUR, 4 * HOUR],
      want: [scheduledSnapshotName(T0 + 3 * HOUR), scheduledSnapshotName(T0 + 4 * HOUR)],
    },
  };
  for (const [name, tc] of Object.entries(timelines)) {
    it(name, async () => {
      const d = container('web', { snapshots: { schedule: tc.schedule, ...(tc.retain === undefined ? {} : { retain: tc.retain }) } });
      const s = setup(d);
      for (const offset of tc.at) {
        s.clock.t = T0 + offset;
        await s.scheduler.runOnce(signal);
      }
      expect(names(s, d.hostName), tc.reason).to.deep.equal(tc.want);
      expect(s.scheduler.snapshotsOf(d.key)?.map((x) => [x.name, x.origin]), 'what status.snapshots lists').to.deep.equal(tc.want.map((n) => [n, 'schedule']));
    });
  }

  it('makes up for runs missed while down with one snapshot, never a burst', async () => {
    const d = container('web', { snapshots: { schedule: '@every 1h' } });
    const s = setup(d);
    s.provider.snapshots.set(d.hostName, [{ name: 'auto-old', createdAt: new Date(T0).toISOString(), origin: 'schedule', memory: false }]);
    s.clock.t = T0 + 10 * HOUR; // a daemon down for ten periods starts
    await s.scheduler.runOnce(signal);
    await s.scheduler.runOnce(signal);
    s.clock.t += 30 * 60_000;
    await s.scheduler.runOnce(signal);
    expect(names(s, d.hostName)).to.deep.equal(['auto-old', scheduledSnapshotName(T0 + 10 * HOUR)]);
  });

  it('sweeps what a crash left once per object after start, before listing (never again while running)', async () => {
    const d = container('web', { snapshots: { schedule: '@every 1h' } });
    const s = setup(d, container('plain'));
    await s.scheduler.runOnce(signal);
    await s.scheduler.runOnce(signal);
    expect(s.provider.calls.filter((c) => c.startsWith('sweepSnapshots')), 'only objects with a schedule, once').to.deep.equal(['sweepSnapshots:web']);
  });

  it('never prunes snapshots taken on request, and leaves objects without a schedule alone', async () => {
    const d = container('web', { snapshots: { schedule: '@every 1h', retain: { last: 1 } } });
    const other = container('other');
    const s = setup(d, other);
    s.provider.snapshots.set(d.hostName, [{ name: 'manual', createdAt: new Date(T0 - HOUR).toISOString(), origin: 'request', memory: false }]);
    for (const h of [0, 1, 2, 3]) {
      s.clock.t = T0 + h * HOUR;
      await s.scheduler.runOnce(signal);
    }
    expect(names(s, d.hostName)).to.deep.equal(['manual', scheduledSnapshotName(T0 + 3 * HOUR)]);
    expect(s.provider.count('snapshot'), 'three runs, none for the object without a schedule').to.equal(3);
    expect(s.records.filter((r) => r.endsWith('SnapshotPruned'))).to.have.length(2);
  });

  it('records a failure as a Warning and goes on with the other objects', async () => {
    const a = container('a', { snapshots: { schedule: '@every 1h' } });
    const b = container('b', { snapshots: { schedule: '@every 1h' } });
    const s = setup(a, b);
    await s.scheduler.runOnce(signal);
    s.provider.instances.delete(a.hostName); // a's instance vanished
    s.clock.t = T0 + HOUR;
    await s.scheduler.runOnce(signal);
    expect(s.records).to.deep.equal(['a Warning SnapshotFailed', 'b Normal SnapshotTaken']);
    expect(names(s, b.hostName)).to.have.length(1);
  });
});
