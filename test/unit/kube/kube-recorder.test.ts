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

  describe('queue', () => {
    /** A sink whose calls wait until released, so the test sees what is in flight. */
    class GatedSink extends FakeEventSink {
      readonly open: (() => void)[] = [];
      inFlight = 0;
      maxInFlight = 0;
      private async gate(): Promise<void> {
        this.inFlight++;
        this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
        await new Promise<void>((r) => this.open.push(r));
        this.inFlight--;
      }
      override async create(event: CoreV1Event): Promise<void> {
        await this.gate();
        await super.create(event);
      }
      override async update(namespace: string, name: string, count: number, lastTimestamp: Date): Promise<void> {
        await this.gate();
        await super.update(namespace, name, count, lastTimestamp);
      }
      /** Releases every waiting call until none is left and the recorder is idle. */
      async drain(rec: KubeRecorder): Promise<void> {
        let done = false;
        void rec.flush().then(() => { done = true; });
        while (!done) {
          for (const r of this.open.splice(0)) r();
          await new Promise((r) => setImmediate(r));
        }
      }
    }
    const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

    const cases: Record<string, {
      reason: string; maxInFlight: number; maxQueued?: number; records: readonly Rec[];
      want: { maxInFlight: number; actions: readonly string[]; counts: readonly number[] };
    }> = {
      BoundedInFlight: {
        reason: 'a burst of events for many objects is sent at most maxInFlight at a time, in the order recorded',
        maxInFlight: 2,
        records: [['a', 'Normal', 'Created', 'created'], ['b', 'Normal', 'Created', 'created'], ['c', 'Normal', 'Created', 'created'],
          ['d', 'Normal', 'Created', 'created']],
        want: { maxInFlight: 2, actions: ['create Created created', 'create Created created', 'create Created created', 'create Created created'],
          counts: [1, 1, 1, 1] },
      },
      RepeatsWhileQueuedAreFolded: {
        reason: 'repeats of an event still waiting in the queue raise its count instead of adding writes',
        maxInFlight: 1,
        records: [['a', 'Normal', 'Created', 'created'], ['b', 'Warning', 'Failed', 'cannot start'], ['b', 'Warning', 'Failed', 'cannot start'],
          ['b', 'Warning', 'Failed', 'cannot start']],
        want: { maxInFlight: 1, actions: ['create Created created', 'create Failed cannot start'], counts: [1, 3] },
      },
      OneWritePerEventAtATime: {
        reason: 'a repeat recorded while its event is being created waits for that write, then patches the count',
        maxInFlight: 4,
        records: [['a', 'Warning', 'Failed', 'x'], ['a', 'Warning', 'Failed', 'x']],
        want: { maxInFlight: 1, actions: ['create Failed x', 'update'], counts: [2] },
      },
      DropBeyondMaxQueued: {
        reason: 'beyond maxQueued waiting events new ones are dropped (client-go maxQueuedEvents)',
        maxInFlight: 1, maxQueued: 2,
        records: [['a', 'Normal', 'Created', 'created'], ['b', 'Normal', 'Created', 'created'], ['c', 'Normal', 'Created', 'created'],
          ['d', 'Normal', 'Created', 'created']],
        want: { maxInFlight: 1, actions: ['create Created created', 'create Created created', 'create Created created'], counts: [1, 1, 1] },
      },
    };
    for (const [name, tc] of Object.entries(cases)) {
      it(name, async () => {
        const sink = new GatedSink();
        const rec = new KubeRecorder({
          sink, logger: pino({ level: 'silent' }), clock: new FakeClock(), maxInFlight: tc.maxInFlight,
          ...(tc.maxQueued !== undefined ? { maxQueued: tc.maxQueued } : {}),
        });
        for (const [obj, type, reason, message] of tc.records) rec.record(desired(obj), type, reason, message);
        await settle();
        await sink.drain(rec);
        expect(sink.maxInFlight, tc.reason).to.equal(tc.want.maxInFlight);
        expect(sink.actions.map((a) => a.replace(/^update .*/, 'update')), tc.reason).to.deep.equal(tc.want.actions);
        expect([...sink.events.values()].map((e) => e.count), tc.reason).to.deep.equal(tc.want.counts);
      });
    }

    it('a write waiting to be retried leaves its place to other events', async () => {
      const sink = new FakeEventSink();
      const clock = new FakeClock();
      const rec = new KubeRecorder({ sink, logger: pino({ level: 'silent' }), clock, retryDelayMs: 10_000, maxInFlight: 1 });
      sink.downCalls = 1;
      rec.record(desired('a'), 'Normal', 'Created', 'created');
      rec.record(desired('b'), 'Normal', 'Created', 'created');
      await settle();
      await settle();
      expect(sink.actions, 'b is sent while a waits for its retry').to.deep.equal(['create failed', 'create Created created']);
      await clock.advance(10_000);
      await rec.flush();
      expect(sink.actions).to.deep.equal(['create failed', 'create Created created', 'create Created created']);
      expect(rec.queued).to.equal(0);
    });
  });
});
