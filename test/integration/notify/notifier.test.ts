/**
 * Notifier with the real state DB (a file, read back by a second connection as a restarted
 * daemon would) and a scripted receiver at the transport boundary: the outbox row commits with
 * the status write that caused it, environment values never leave, and a new Notifier on the
 * same DB delivers what the first could not.
 */
import { expect } from 'chai';
import { ConstantBackoff } from 'cockatiel';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sinon from 'sinon';
import type { Status } from '../../../src/api/v1alpha1/types.js';
import { Notifier } from '../../../src/notify/notifier.js';
import type { WebhookRequest } from '../../../src/notify/webhook-sink.js';
import { ObjectEvents, withObjectEvents } from '../../../src/reconcile/object-events.js';
import { systemClock } from '../../../src/shared/clock.js';
import { StateDb } from '../../../src/state/state-db.js';
import { StateStatusWriter } from '../../../src/status/state-status-writer.js';
import { silentLogger } from '../../../src/telemetry/logger.js';
import { container } from '../../fakes/desired-objects.js';
import type { SourceBackend } from '../../../src/reconcile/backend.js';

const status = (phase: Status['phase'], message = 'The instance is running as declared'): Status => ({
  phase, conditions: [{ type: 'Ready', status: 'True', reason: phase, message, lastTransitionTime: '2024-01-01T00:00:00.000Z' }],
});

/** Answers every request with `answer`, recording the bodies. */
class FakeWebhookReceiver {
  readonly bodies: { id: string; type: string; subject: string; data: Record<string, unknown> }[] = [];
  constructor(public answer: number | 'refused') {}
  readonly transport = (request: WebhookRequest): Promise<number> => {
    if (this.answer === 'refused') return Promise.reject(new TypeError('fetch failed'));
    this.bodies.push(JSON.parse(request.body) as FakeWebhookReceiver['bodies'][number]);
    return Promise.resolve(this.answer);
  };
}

describe('Notifier', () => {
  let dir: string;
  let clock: sinon.SinonFakeTimers;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'hyperlet-notifier-'));
    clock = sinon.useFakeTimers({ now: Date.parse('2024-05-01T12:00:00Z') });
  });
  afterEach(() => {
    clock.restore();
    rmSync(dir, { recursive: true, force: true });
  });

  function wire(db: StateDb, receiver: FakeWebhookReceiver): { notifier: Notifier; backend: SourceBackend } {
    const events = new ObjectEvents({ clock: systemClock });
    const writer = new StateStatusWriter(db, 'dir', silentLogger());
    const source = { id: 'dir', description: 'dir' };
    const backend = withObjectEvents({ source, statusWriter: writer, recorder: writer, records: writer }, events, 'queued');
    const notifier = new Notifier({
      urls: ['http://127.0.0.1:9/hook'], db, events, node: 'n1', logger: silentLogger(), clock: systemClock,
      sink: { transport: receiver.transport, backoff: new ConstantBackoff(100), halfOpenAfter: new ConstantBackoff(100) },
    });
    notifier.start();
    return { notifier, backend };
  }

  it('commits the outbox row in the same transaction as the status write that caused it', async () => {
    const path = join(dir, 'state.db');
    const db = new StateDb(path);
    const { notifier, backend } = wire(db, new FakeWebhookReceiver('refused'));
    const web = container('web');
    db.identify(web.key, { source: 'dir', kind: 'Container', namespace: 'default', name: 'web' }, web.specHash);
    db.flush();
    const reader = new StateDb(path, { readonly: true });
    const count = (): { outbox: number; status: boolean } => ({
      outbox: reader.outboxAfter(0, 100).length, status: reader.listObjects().some((r) => r.status !== undefined),
    });
    void backend.statusWriter.write(web, status('Running'), new AbortController().signal);
    expect(count(), 'both queued behind, neither on disk').to.deep.equal({ outbox: 0, status: false });
    await clock.tickAsync(10); // the state DB's write-behind flush
    expect(count(), 'both on disk').to.deep.equal({ outbox: 1, status: true });
    reader.close();
    await notifier.stop();
    db.close();
  });

  it('sends phase changes and failures with identity only: environment values are redacted', async () => {
    const db = new StateDb(join(dir, 'state.db'));
    const receiver = new FakeWebhookReceiver(200);
    const { notifier, backend } = wire(db, receiver);
    const web = container('web', { environment: { API_TOKEN: 'tok-12345-secret' } });
    const signal = new AbortController().signal;
    await backend.statusWriter.write(web, status('Creating'), signal);
    await backend.statusWriter.write(web, status('Running'), signal);
    await backend.statusWriter.write(web, status('Running', 'Still running'), signal); // same phase: not sent
    backend.recorder.record(web, 'Warning', 'StartFailed', 'cannot start: lxc.environment = API_TOKEN=tok-12345-secret rejected');
    backend.recorder.record(web, 'Normal', 'Started', 'Started container web'); // not sent
    await clock.tickAsync(50);
    expect(receiver.bodies.map((b) => b.type)).to.deep.equal([
      'io.hyperlet.object.phase.changed', 'io.hyperlet.object.phase.changed', 'io.hyperlet.object.failed',
    ]);
    expect(receiver.bodies.map((b) => [b.data.previousPhase, b.data.phase]))
      .to.deep.equal([[undefined, 'Creating'], ['Creating', 'Running'], [undefined, undefined]]);
    expect(receiver.bodies[2]?.data.message).to.equal('cannot start: lxc.environment = API_TOKEN=*** rejected');
    expect(JSON.stringify(receiver.bodies)).to.not.include('tok-12345-secret');
    expect(receiver.bodies[0]).to.include({ subject: 'Container/default/web', source: 'hyperlet://n1/dir' });
    expect(new Set(receiver.bodies.map((b) => b.id)).size).to.equal(3);
    await notifier.stop();
    db.close();
  });

  it('a new Notifier on the same DB delivers what the first one could not', async () => {
    const path = join(dir, 'state.db');
    let db = new StateDb(path);
    const down = new FakeWebhookReceiver('refused');
    const first = wire(db, down);
    const web = container('web');
    await first.backend.statusWriter.write(web, status('Running'), new AbortController().signal);
    await clock.tickAsync(500);
    expect(first.notifier.states()[0]).to.include({ pending: 1, delivered: 0 });
    await first.notifier.stop();
    db.close();

    db = new StateDb(path);
    const up = new FakeWebhookReceiver(200);
    const second = wire(db, up);
    await clock.tickAsync(10);
    expect(up.bodies.map((b) => b.data.phase)).to.deep.equal(['Running']);
    expect(second.notifier.states()[0]).to.include({ pending: 0, delivered: 1 });
    await second.notifier.stop();
    db.close();
  });
});
