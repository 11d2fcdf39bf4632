/**
 * WebhookSink against a scripted receiver (FakeWebhookReceiver, the transport boundary) and a
 * real in-memory state DB, with time faked by sinon: exact retry delays, the circuit breaker
 * opening, probing and closing, refusals, timeouts, order and cursors.
 */
import { expect } from 'chai';
import { ConstantBackoff, ExponentialBackoff, noJitterGenerator } from 'cockatiel';
import sinon from 'sinon';
import { SIGNATURE_HEADER, verifySignature } from '../../../src/notify/cloud-event.js';
import { WebhookSink, type WebhookRequest, type WebhookSinkOptions, jitteredBackoff } from '../../../src/notify/webhook-sink.js';
import { systemClock } from '../../../src/shared/clock.js';
import { StateDb } from '../../../src/state/state-db.js';
import { Metrics } from '../../../src/telemetry/metrics.js';
import { silentLogger } from '../../../src/telemetry/logger.js';

type Answer = number | 'hang' | 'refused';

/** Records every request with the fake time it arrived; answers from a script (last answer repeats). */
class FakeWebhookReceiver {
  readonly calls: { atMs: number; id: string; body: string; headers: Readonly<Record<string, string>> }[] = [];
  constructor(public answers: Answer[]) {}
  readonly transport = (request: WebhookRequest): Promise<number> => {
    const answer = this.answers.length > 1 ? this.answers.shift()! : this.answers[0] ?? 200;
    const { id } = JSON.parse(request.body) as { id: string };
    this.calls.push({ atMs: Date.now(), id, body: request.body, headers: request.headers });
    if (answer === 'refused') return Promise.reject(new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } }));
    if (answer === 'hang') {
      return new Promise((_, reject) => request.signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true }));
    }
    return Promise.resolve(answer);
  };
  get times(): number[] {
    return this.calls.map((c) => c.atMs);
  }
}

function append(db: StateDb, ids: string[]): void {
  db.appendOutbox(ids.map((id) => ({
    id, key: `dir/default/Container/${id}`, type: 'io.hyperlet.object.phase.changed', at: new Date(Date.now()).toISOString(),
    body: JSON.stringify({ specversion: '1.0', id, type: 'io.hyperlet.object.phase.changed' }),
  })));
  db.flush();
}

describe('WebhookSink', () => {
  let clock: sinon.SinonFakeTimers;
  let db: StateDb;
  let abort: AbortController;
  let running: Promise<void> | undefined;

  beforeEach(() => {
    clock = sinon.useFakeTimers({ now: 0 });
    db = new StateDb(':memory:');
    abort = new AbortController();
  });
  afterEach(async () => {
    abort.abort();
    await running;
    db.close();
    clock.restore();
  });

  const start = (receiver: FakeWebhookReceiver, options: Partial<WebhookSinkOptions> = {}): WebhookSink => {
    const sink = new WebhookSink({
      url: 'http://user:pw@127.0.0.1:9/hook?token=x', db, logger: silentLogger(), clock: systemClock, transport: receiver.transport,
      backoff: new ExponentialBackoff({ generator: noJitterGenerator, initialDelay: 100, maxDelay: 800 }),
      halfOpenAfter: new ConstantBackoff(1_000), breakAfter: 100, ...options,
    });
    running = sink.run(abort.signal);
    return sink;
  };

  it('labels the sink without credentials or query', () => {
    const sink = start(new FakeWebhookReceiver([200]));
    expect(sink.label).to.equal('http://127.0.0.1:9/hook');
  });

  it('a new sink starts after the newest entry, then sends each new one once, in order, signed', async () => {
    append(db, ['old']);
    const secret = Buffer.from('s3cret');
    const receiver = new FakeWebhookReceiver([200]);
    const sink = start(receiver, { secret });
    append(db, ['a', 'b', 'c']);
    sink.wake();
    await clock.tickAsync(10);
    expect(receiver.calls.map((c) => c.id)).to.deep.equal(['a', 'b', 'c']);
    const sequences = receiver.calls.map((c) => (JSON.parse(c.body) as { sequence: string }).sequence);
    expect(sequences).to.deep.equal(['00000000000000000002', '00000000000000000003', '00000000000000000004']);
    for (const c of receiver.calls) {
      expect(c.headers['content-type']).to.equal('application/cloudevents+json; charset=utf-8');
      expect(verifySignature(secret, c.body, c.headers[SIGNATURE_HEADER]), 'signature').to.equal(true);
      expect(verifySignature(Buffer.from('other'), c.body, c.headers[SIGNATURE_HEADER]), 'wrong key').to.equal(false);
    }
    expect(db.outboxCursor(sink.label)).to.equal(4);
    expect(sink.state()).to.include({ pending: 0, circuit: 'closed', delivered: 3 });
  });

  it('retries a failing receiver with exponential delays (100, 200, 400, 800, 800 ms) and the same id', async () => {
    const receiver = new FakeWebhookReceiver([500, 503, 'refused', 429, 502, 200]);
    const sink = start(receiver);
    append(db, ['a']);
    sink.wake();
    await clock.tickAsync(5_000);
    expect(receiver.times).to.deep.equal([0, 100, 300, 700, 1500, 2300]);
    expect(new Set(receiver.calls.map((c) => c.id))).to.deep.equal(new Set(['a']));
    expect(db.outboxCursor(sink.label)).to.equal(1);
  });

  it('opens the circuit after consecutive failures, sends nothing while open, probes once, and closes on success', async () => {
    const receiver = new FakeWebhookReceiver([500, 500, 500, 200]);
    const sink = start(receiver, { breakAfter: 3, backoff: new ConstantBackoff(100), halfOpenAfter: new ConstantBackoff(1_000) });
    append(db, ['a', 'b']);
    sink.wake();
    await clock.tickAsync(250);
    expect(receiver.times, 'three failures, 100 ms apart').to.deep.equal([0, 100, 200]);
    expect(sink.state().circuit).to.equal('open');
    await clock.tickAsync(900);
    expect(receiver.calls, 'nothing sent while open').to.have.length(3);
    await clock.tickAsync(200);
    expect(receiver.times, 'one probe once 1 s passed since it opened, then the next entry at once')
      .to.deep.equal([0, 100, 200, 1200, 1200]);
    expect(receiver.calls.map((c) => c.id)).to.deep.equal(['a', 'a', 'a', 'a', 'b']);
    expect(sink.state().circuit).to.equal('closed');
  });

  it('a failed probe opens the circuit again for the next half-open delay', async () => {
    const receiver = new FakeWebhookReceiver([500, 500, 500, 200]);
    const sink = start(receiver, {
      breakAfter: 2, backoff: new ConstantBackoff(100),
      halfOpenAfter: new ExponentialBackoff({ generator: noJitterGenerator, initialDelay: 1_000, maxDelay: 10_000 }),
    });
    append(db, ['a']);
    sink.wake();
    await clock.tickAsync(5_000);
    // Opens at 100 (second failure); probe at 1100 fails, reopens for 2 s; probe at 3100 succeeds.
    expect(receiver.times).to.deep.equal([0, 100, 1100, 3100]);
    expect(sink.state().circuit).to.equal('closed');
  });

  it('a receiver that answers too slowly times out and is retried', async () => {
    const receiver = new FakeWebhookReceiver(['hang', 200]);
    const sink = start(receiver, { timeoutMs: 50, backoff: new ConstantBackoff(10) });
    append(db, ['a']);
    sink.wake();
    await clock.tickAsync(59);
    expect(receiver.times).to.deep.equal([0]);
    await clock.tickAsync(10);
    expect(receiver.times).to.deep.equal([0, 60]);
    expect(sink.state().pending).to.equal(0);
  });

  it('a refusal (400) is not retried: the entry is skipped and counted, the next one goes', async () => {
    const metrics = new Metrics({ processMetrics: false });
    const receiver = new FakeWebhookReceiver([400, 200]);
    const sink = start(receiver, { metrics });
    append(db, ['bad', 'good']);
    sink.wake();
    await clock.tickAsync(10);
    expect(receiver.calls.map((c) => c.id)).to.deep.equal(['bad', 'good']);
    const text = await metrics.registry.metrics();
    expect(text).to.include('hyperlet_notify_deliveries_total{sink="http://127.0.0.1:9/hook",result="rejected"} 1');
    expect(text).to.include('hyperlet_notify_deliveries_total{sink="http://127.0.0.1:9/hook",result="delivered"} 1');
    expect(sink.state().circuit).to.equal('closed');
  });

  it('resumes after its saved cursor (a restart sends nothing twice that was taken)', async () => {
    append(db, ['a', 'b', 'c']);
    db.setOutboxCursor('http://127.0.0.1:9/hook', 1);
    const receiver = new FakeWebhookReceiver([200]);
    start(receiver);
    await clock.tickAsync(10);
    expect(receiver.calls.map((c) => c.id)).to.deep.equal(['b', 'c']);
  });

  it('the default backoff doubles within the upper half of each step, and stays jittered at its cap', async () => {
    const receiver = new FakeWebhookReceiver([500]);
    const sink = start(receiver, { backoff: jitteredBackoff(500, 4_000) });
    append(db, ['a']);
    sink.wake();
    await clock.tickAsync(60_000);
    const gaps = receiver.times.slice(1).map((t, i) => t - (receiver.times[i] ?? 0));
    const steps = [500, 1_000, 2_000, 4_000];
    gaps.forEach((g, i) => {
      const step = steps[Math.min(i, steps.length - 1)] ?? 4_000;
      expect(g, `gap ${i}`).to.be.within(step / 2, step);
    });
    expect(gaps.length).to.be.greaterThan(15);
    expect(new Set(gaps.slice(4)).size, 'capped delays still vary').to.be.greaterThan(5);
  });
});
