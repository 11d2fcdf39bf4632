/**
 * The dashboard's server side over a real HTTP server on 127.0.0.1: its files (weight, ETag, gzip,
 * CSP), the routes it reads (a FakeDashboardApi behind them), the token check for actions, and
 * the bounded event log.
 */
import { expect } from 'chai';
import { gunzipSync } from 'node:zlib';
import { ObjectEvents, identityOf } from '../../../src/reconcile/object-events.js';
import { type ActionResult, type DashboardApi, EventLog, type HostInfo, type ObjectDetail } from '../../../src/server/dashboard-api.js';
import { DashboardAssets } from '../../../src/server/dashboard-assets.js';
import { HttpServer } from '../../../src/server/http-server.js';
import type { WatchEvent } from '../../../src/server/watch-stream.js';
import { Metrics } from '../../../src/telemetry/metrics.js';
import { silentLogger } from '../../../src/telemetry/logger.js';
import { container } from '../../fakes/desired-objects.js';

const event = (name: string, reason: string): WatchEvent => ({
  time: '2024-01-01T00:00:00.000Z', type: 'Normal', reason, message: reason,
  involvedObject: { kind: 'Container', namespace: 'default', name, uid: 'u' },
});

/** Scripted answers, recording what was asked. */
class FakeDashboardApi implements DashboardApi {
  readonly asked: string[] = [];
  host(): HostInfo {
    return {
      node: 'n1', startedAt: 't', capacity: { cpus: 2, memoryBytes: 1 }, allocated: { objects: 0, running: 0, cpus: 0, memoryBytes: 0 },
      providers: [], sources: [],
    };
  }
  recentEvents(limit: number): readonly WatchEvent[] {
    this.asked.push(`events:${limit}`);
    return [event('web', 'Started')];
  }
  object(kind: string, namespace: string, name: string): Promise<ObjectDetail | undefined> {
    this.asked.push(`object:${kind}/${namespace}/${name}`);
    return Promise.resolve(undefined);
  }
  act(kind: string, namespace: string, name: string, action: string): ActionResult {
    this.asked.push(`act:${action}:${kind}/${namespace}/${name}`);
    if (action !== 'reboot') return { ok: false, status: 409, error: 'not offered' };
    return { ok: true, annotation: 'hyperlet.io/reboot-request', value: 'v1' };
  }
}

describe('dashboard (server side)', () => {
  const assets = new DashboardAssets();
  const api = new FakeDashboardApi();
  let server: HttpServer;
  let base = '';
  before(async () => {
    server = new HttpServer({
      host: '127.0.0.1', port: 0, registry: new Metrics({ processMetrics: false }).registry, checks: () => [], logger: silentLogger(),
      token: 'the-token', dashboard: { assets, api },
    });
    base = `http://127.0.0.1:${(await server.listen()).port}`;
  });
  after(() => server.close());

  it('the whole page weighs under 200 KB and loads nothing from elsewhere', async () => {
    expect(assets.weight.bytes).to.be.below(200 * 1024);
    const res = await fetch(`${base}/`);
    expect(res.status).to.equal(200);
    const html = await res.text();
    expect(html, 'no file from another origin').to.not.match(/(?:src|href)=["']https?:/);
    expect(res.headers.get('content-security-policy')).to.include("default-src 'none'");
    expect(res.headers.get('x-frame-options')).to.equal('DENY');
  });

  it('answers 304 to a client that has the file, and gzip to one that accepts it', async () => {
    const first = await fetch(`${base}/ui/dashboard.js`, { headers: { 'accept-encoding': 'identity' } });
    const etag = first.headers.get('etag') ?? '';
    const body = Buffer.from(await first.arrayBuffer());
    expect((await fetch(`${base}/ui/dashboard.js`, { headers: { 'if-none-match': etag } })).status).to.equal(304);
    const raw = await new Promise<{ encoding: string | undefined; bytes: Buffer }>((resolve, reject) => {
      import('node:http').then(({ get }) => get(`${base}/ui/dashboard.js`, { headers: { 'accept-encoding': 'gzip' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ encoding: res.headers['content-encoding'], bytes: Buffer.concat(chunks) }));
      }).on('error', reject), reject);
    });
    expect(raw.encoding).to.equal('gzip');
    expect(gunzipSync(raw.bytes).equals(body)).to.equal(true);
  });

  it('serves the host, recent events (bounded limit) and objects to the page', async () => {
    expect(((await (await fetch(`${base}/api/v1/host`)).json()) as HostInfo).node).to.equal('n1');
    expect((await fetch(`${base}/api/v1/events?limit=5`)).status).to.equal(200);
    expect((await fetch(`${base}/api/v1/events?limit=0`)).status).to.equal(400);
    expect((await fetch(`${base}/api/v1/objects/Container/default/nope`)).status).to.equal(404);
    expect(api.asked).to.deep.equal(['events:5', 'object:Container/default/nope']);
  });

  it('acts only with the token, through the API, and says why it cannot', async () => {
    const url = `${base}/api/v1/objects/VirtualMachine/default/vm1/reboot`;
    expect((await fetch(url, { method: 'POST' })).status, 'no token').to.equal(401);
    const asked = api.asked.length;
    const done = await fetch(url, { method: 'POST', headers: { authorization: 'Bearer the-token' } });
    expect(done.status).to.equal(202);
    expect(await done.json()).to.deep.equal({ requested: 'hyperlet.io/reboot-request', value: 'v1' });
    const refused = await fetch(`${base}/api/v1/objects/Container/default/c1/start`, {
      method: 'POST', headers: { authorization: 'Bearer the-token' },
    });
    expect(refused.status).to.equal(409);
    expect(api.asked.slice(asked)).to.deep.equal(['act:reboot:VirtualMachine/default/vm1', 'act:start:Container/default/c1']);
  });

  it('accepts the session check only with the token', async () => {
    expect((await fetch(`${base}/api/v1/session`, { method: 'POST' })).status).to.equal(401);
    expect((await fetch(`${base}/api/v1/session`, { method: 'POST', headers: { authorization: 'Bearer wrong' } })).status).to.equal(401);
    const withToken = await fetch(`${base}/api/v1/session`, { method: 'POST', headers: { authorization: 'Bearer the-token' } });
    expect(withToken.status).to.equal(200);
  });
});

describe('EventLog', () => {
  it('keeps the seed, then every recorded event, within its capacity, oldest first', () => {
    const events = new ObjectEvents();
    const log = new EventLog(3);
    log.follow(events, [event('a', 'Created'), event('b', 'Created')]);
    const web = container('web');
    events.publish({ type: 'record', atMs: 0, ...identityOf(web), eventType: 'Warning', reason: 'StartFailed', message: 'no' });
    events.publish({ type: 'status', atMs: 0, ...identityOf(web), status: { phase: 'Running', conditions: [] } });
    events.publish({ type: 'record', atMs: 0, ...identityOf(web), eventType: 'Normal', reason: 'Started', message: 'ok' });
    expect(log.recent(10).map((e) => `${e.involvedObject.name}:${e.reason}`))
      .to.deep.equal(['b:Created', 'web:StartFailed', 'web:Started']);
    expect(log.recent(10, 'Container/default/web').map((e) => e.reason)).to.deep.equal(['StartFailed', 'Started']);
    expect(log.recent(1).map((e) => e.reason)).to.deep.equal(['Started']);
  });
});
