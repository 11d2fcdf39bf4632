/**
 * The event stream over a real HTTP server on 127.0.0.1 and a real client (readEventStream):
 * list then changes, filters, recorded events, removals, heartbeats (an injected clock), the
 * watcher cap, and clients that go away.
 */
import { expect } from 'chai';
import type { Status } from '../../../src/api/v1alpha1/types.js';
import { EventStreamParser, type StreamMessage, readEventStream } from '../../../src/cli/event-stream.js';
import { ObjectEvents, identityOf, summarize } from '../../../src/reconcile/object-events.js';
import { HttpServer } from '../../../src/server/http-server.js';
import type { ObjectView, ObjectViews } from '../../../src/server/object-view.js';
import { WatchStream } from '../../../src/server/watch-stream.js';
import type { Desired } from '../../../src/store/desired.js';
import { Metrics } from '../../../src/telemetry/metrics.js';
import { silentLogger } from '../../../src/telemetry/logger.js';
import { toView } from '../../../src/daemon/object-views.js';
import { container, vm } from '../../fakes/desired-objects.js';
import { FakeClock } from '../../support/fake-clock.js';

const status = (phase: Status['phase']): Status => ({ phase, conditions: [] });

describe('WatchStream', () => {
  const objects = new Map<string, { d: Desired; status?: Status }>();
  const views: ObjectViews = {
    list: () => [...objects.values()].map((o) => toView(o.d, o.status, '2024-01-01T00:00:00.000Z')),
    get: (key) => { const o = objects.get(key); return o === undefined ? undefined : toView(o.d, o.status, '2024-01-01T00:00:00.000Z'); },
  };
  const events = new ObjectEvents();
  const clock = new FakeClock();
  const watch = new WatchStream({ events, views, clock, maxClients: 3, redact: (t) => t.replaceAll('s3cr3t', '<redacted>') });
  let server: HttpServer;
  let base = '';
  const web = container('web', { resources: { cpu: 2, memory: '256Mi' } });
  const db = container('db');
  const box = vm('box');

  before(async () => {
    for (const d of [web, db, box]) objects.set(d.key, { d, status: status('Running') });
    const registry = new Metrics({ processMetrics: false }).registry;
    server = new HttpServer({ host: '127.0.0.1', port: 0, registry, checks: () => [], logger: silentLogger(), watch, token: 'test-token' });
    base = `http://127.0.0.1:${(await server.listen()).port}`;
  });
  after(() => server.close());

  /** Reads messages until `until` says stop; returns them. */
  async function collect(query: string, until: (m: StreamMessage[]) => boolean, during?: () => void): Promise<StreamMessage[]> {
    const abort = new AbortController();
    const got: StreamMessage[] = [];
    for await (const m of readEventStream(`${base}/api/v1/watch${query}`, { signal: abort.signal })) {
      got.push(m);
      if (m.event === 'SYNCED') during?.();
      if (until(got)) break;
    }
    abort.abort();
    return got;
  }
  const objectOf = (m: StreamMessage): ObjectView => (JSON.parse(m.data) as { object: ObjectView }).object;

  it('lists what matches (ADDED each, then SYNCED), then pushes status writes as MODIFIED', async () => {
    const got = await collect('?kind=containers', (m) => m.some((x) => x.event === 'MODIFIED'), () => {
      objects.set(web.key, { d: web, status: status('Stopped') });
      events.publish({ type: 'status', atMs: 0, ...identityOf(box), status: summarize(box, status('Stopped')) }); // filtered out: a VM
      events.publish({ type: 'status', atMs: 0, ...identityOf(web), status: summarize(web, status('Stopped')) });
    });
    expect(got.map((m) => m.event)).to.deep.equal(['ADDED', 'ADDED', 'SYNCED', 'MODIFIED']);
    expect(got.slice(0, 2).map((m) => objectOf(m).metadata.name).sort()).to.deep.equal(['db', 'web']);
    const modified = objectOf(got[3]!);
    expect(modified).to.deep.include({ kind: 'Container', spec: { state: 'Running', resources: { cpu: 2, memory: '256Mi' } } });
    expect(modified.status?.phase).to.equal('Stopped');
    expect(got.map((m) => m.id)).to.deep.equal(['1', '2', '3', '4']);
  });

  it('sends recorded events only when asked, redacted, and DELETED when an object is let go', async () => {
    const got = await collect('?name=db&events=true', (m) => m.some((x) => x.event === 'DELETED'), () => {
      events.publish({ type: 'record', atMs: 0, ...identityOf(web), eventType: 'Warning', reason: 'StartFailed', message: 'other object' });
      const message = 'token s3cr3t refused';
      events.publish({ type: 'record', atMs: 0, ...identityOf(db), eventType: 'Warning', reason: 'StartFailed', message });
      events.publish({ type: 'removed', atMs: 0, key: db.key, source: 'dir', kind: 'Container', namespace: 'default', name: 'db' });
    });
    expect(got.map((m) => m.event)).to.deep.equal(['ADDED', 'SYNCED', 'EVENT', 'DELETED']);
    const event = (JSON.parse(got[2]!.data) as { event: { reason: string; message: string; involvedObject: { name: string } } }).event;
    expect(event).to.deep.include({ reason: 'StartFailed', message: 'token <redacted> refused' });
    expect(event.involvedObject.name).to.equal('db');
  });

  it('keeps idle streams open with a comment at each heartbeat, and stops beating when the client leaves', async () => {
    const res = await fetch(`${base}/api/v1/watch?name=none`);
    const reader = res.body!.getReader() as ReadableStreamDefaultReader<Uint8Array>;
    const parser = new EventStreamParser();
    let text = '';
    while (!text.includes('SYNCED')) text += new TextDecoder().decode((await reader.read()).value);
    expect(parser.push(text).map((m) => m.event)).to.deep.equal(['SYNCED']);
    expect(clock.pending).to.equal(1);
    await clock.advance(15_000); // the heartbeat's period
    expect(new TextDecoder().decode((await reader.read()).value)).to.equal(': keep-alive\n\n');
    await reader.cancel();
    for (let i = 0; i < 50 && watch.size > 0; i++) await new Promise((r) => setImmediate(r));
    expect(watch.size, 'the stream is closed once the client is gone').to.equal(0);
    expect(clock.pending, 'its heartbeat too').to.equal(0);
  });

  it('refuses an unknown kind (400) and watchers beyond the cap (503)', async () => {
    expect((await fetch(`${base}/api/v1/watch?kind=pods`)).status).to.equal(400);
    const open = await Promise.all([1, 2, 3].map(() => fetch(`${base}/api/v1/watch?name=none`)));
    expect(open.map((r) => r.status)).to.deep.equal([200, 200, 200]);
    const fourth = await fetch(`${base}/api/v1/watch?name=none`);
    expect(fourth.status).to.equal(503);
    for (const r of open) await r.body?.cancel();
  });
});

describe('EventStreamParser', () => {
  const cases: Record<string, { reason: string; chunks: string[]; want: { event: string; data: string; id?: string }[] }> = {
    SplitAnywhere: {
      reason: 'a message cut at any byte is whole once its blank line arrives',
      chunks: ['ev', 'ent: A\nda', 'ta: {"x":1}\n', '\n'], want: [{ event: 'A', data: '{"x":1}' }],
    },
    CommentsAndRetry: {
      reason: 'comments and retry lines carry nothing',
      chunks: ['retry: 2000\n\n: keep-alive\n\nid: 7\ndata: x\n\n'], want: [{ event: 'message', data: 'x', id: '7' }],
    },
    MultiLineDataAndCrLf: {
      reason: 'data lines join with newlines; CRLF ends lines as LF does',
      chunks: ['data: a\r\ndata: b\r\n\r\n'], want: [{ event: 'message', data: 'a\nb' }],
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const parser = new EventStreamParser();
      expect(tc.chunks.flatMap((c) => parser.push(c)), tc.reason).to.deep.equal(tc.want);
    });
  }
});
