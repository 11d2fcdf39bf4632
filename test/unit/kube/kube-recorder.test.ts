import { expect } from 'chai';
import type { CoreV1Event } from '@kubernetes/client-node';
import pino from 'pino';
import { type EventSink, KubeRecorder } from '../../../src/status/kube-recorder.js';
import type { Desired } from '../../../src/store/desired.js';
import type { ObjectKey } from '../../../src/store/object-key.js';
import { FakeClock } from '../../support/fake-clock.js';

/** Records what reaches the API, like sample-controller's action lists; `expired` names answer 404. */
class FakeEventSink implements EventSink {
  readonly actions: string[] = [];
  readonly events = new Map<string, CoreV1Event>();
  readonly expired = new Set<string>();
  /** Calls that fail as if the API server were down (no HTTP status). */
  downCalls = 0;
  async create(event: CoreV1Event): Promise<void> {
    await Promise.resolve();
    if (this.downCalls > 0) {
      this.downCalls--;
      this.actions.push('create failed');
      throw new Error('connect ECONNREFUSED 127.0.0.1:6443');
    }
    this.actions.push(`create ${event.reason ?? ''} ${event.message ?? ''}`);
    this.events.set(event.metadata.name!, { ...event });
  }
  async update(_namespace: string, name: string, count: number, lastTimestamp: Date): Promise<void> {
    await Promise.resolve();
    if (this.expired.has(name) || !this.events.has(name)) throw Object.assign(new Error('not found'), { code: 404 });
    this.actions.push(`update ${name} count=${count}`);
    this.events.set(name, { ...this.events.get(name)!, count, lastTimestamp });
  }
}

const desired = (name: string, id = `uid-${name}`): Desired => ({
  key: `kube/default/Container/${name}` as ObjectKey, source: 'kube', id, generation: 1, specHash: 'x', hostName: name,
  object: {
    apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container',
    metadata: { name, namespace: 'default', uid: id, resourceVersion: '7' },
    spec: { template: 'busybox', state: 'Running', autostart: false, gracefulStopSeconds: 30, updatePolicy: 'Live', deletionPolicy: 'Delete' },
  },
});

type Rec = readonly [string, 'Normal' | 'Warning', string, string];

describe('KubeRecorder', () => {
  const cases: Record<string, { reason: string; records: readonly Rec[]; expire?: boolean; want: { creates: number; counts: number[] } }> = {
    RepeatIsCounted: {
      reason: 'the same reason and message on the same object patches the count instead of creating',
      records: [['a', 'Normal', 'Started', 'started'], ['a', 'Normal', 'Started', 'started'], ['a', 'Normal', 'Started', 'started']],
      want: { creates: 1, counts: [3] },
    },
    OtherMessageIsNewEvent: {
      reason: 'a different message is a different event (no aggregation)',
      records: [['a', 'Warning', 'Failed', 'cannot start: x'], ['a', 'Warning', 'Failed', 'cannot start: y'], ['a', 'Warning', 'Failed', 'cannot start: x']],
      want: { creates: 2, counts: [2, 1] },
    },
    OtherObjectIsNewEvent: {
      reason: 'events are per involved object',
      records: [['a', 'Normal', 'Created', 'created'], ['b', 'Normal', 'Created', 'created']],
      want: { creates: 2, counts: [1, 1] },
    },
    ExpiredEventIsCreatedAgain: {
      reason: 'a 404 on the patch means the Event expired: it is created anew with count 1',
      records: [['a', 'Normal', 'Stopped', 'stopped'], ['a', 'Normal', 'Stopped', 'stopped']],
      expire: true,
      want: { creates: 2, counts: [1, 1] },
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, async () => {
      const sink = new FakeEventSink();
      const rec = new KubeRecorder({ sink, logger: pino({ level: 'silent' }), clock: new FakeClock(), host: 'node-a' });
      for (const [obj, type, reason, message] of tc.records) {
        rec.record(desired(obj), type, reason, message);
        await rec.flush();
        if (tc.expire === true) for (const n of sink.events.keys()) sink.expired.add(n);
      }
      expect(sink.actions.filter((a) => a.startsWith('create')).length, tc.reason).to.equal(tc.want.creates);
      const live = [...sink.events.entries()].filter(([n]) => !sink.expired.has(n) || tc.expire === true).map(([, e]) => e);
      expect(live.map((e) => e.count), tc.reason).to.deep.equal(tc.want.counts);
    });
  }

  it('fills the Event like client-go: involved object, source, timestamps, name NAME.<hex>', async () => {
    const sink = new FakeEventSink();
    const clock = new FakeClock();
    const rec = new KubeRecorder({ sink, logger: pino({ level: 'silent' }), clock, host: 'node-a' });
    rec.record(desired('web'), 'Warning', 'Failed', 'cannot create: lxc-create failed');
    await rec.flush();
    const [name, e] = [...sink.events.entries()][0]!;
    expect(name).to.match(/^web\.[0-9a-f]+$/);
    expect(e.involvedObject).to.deep.equal({ apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', name: 'web', namespace: 'default', uid: 'uid-web', resourceVersion: '7' });
    expect(e).to.deep.include({ type: 'Warning', reason: 'Failed', count: 1, source: { component: 'hyperlet', host: 'node-a' } });
    expect(e.firstTimestamp?.getTime()).to.equal(clock.ms);
  });

  it('retries while the API server is down, and a retry is not counted as a repeat', async () => {
    const sink = new FakeEventSink();
    const clock = new FakeClock();
    const rec = new KubeRecorder({ sink, logger: pino({ level: 'silent' }), clock, retryDelayMs: 10_000 });
    sink.downCalls = 2;
    rec.record(desired('a'), 'Normal', 'Created', 'created');
    for (let i = 0; i < 3; i++) await clock.advance(10_000);
    await rec.flush();
    expect(sink.actions).to.deep.equal(['create failed', 'create failed', 'create Created created']);
    expect([...sink.events.values()].map((e) => e.count)).to.deep.equal([1]);
  });

  it('gives up after maxTries', async () => {
    const sink = new FakeEventSink();
    const clock = new FakeClock();
    const rec = new KubeRecorder({ sink, logger: pino({ level: 'silent' }), clock, retryDelayMs: 10, maxTries: 3 });
    sink.downCalls = 5;
    rec.record(desired('a'), 'Normal', 'Created', 'created');
    for (let i = 0; i < 5; i++) await clock.advance(10);
    await rec.flush();
    expect(sink.actions).to.deep.equal(['create failed', 'create failed', 'create failed']);
  });

  it('drops events beyond the burst of the spam filter and refills one per period', async () => {
    const sink = new FakeEventSink();
    const clock = new FakeClock();
    const rec = new KubeRecorder({ sink, logger: pino({ level: 'silent' }), clock, burst: 3, refillMs: 60_000 });
    for (let i = 0; i < 5; i++) rec.record(desired('a'), 'Normal', 'Reconciled', `pass ${i}`);
    await rec.flush();
    expect(sink.actions.length).to.equal(3);
    clock.ms += 60_000;
    rec.record(desired('a'), 'Normal', 'Reconciled', 'pass 5');
    rec.record(desired('a'), 'Normal', 'Reconciled', 'pass 6');
    await rec.flush();
    expect(sink.actions).to.deep.equal(['create Reconciled pass 0', 'create Reconciled pass 1', 'create Reconciled pass 2', 'create Reconciled pass 5']);
  });
});
