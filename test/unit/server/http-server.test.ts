import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';
import { HttpServer, type ReadinessCheck, bearerMatches } from '../../../src/server/http-server.js';
import { StateDb } from '../../../src/state/state-db.js';
import { Metrics } from '../../../src/telemetry/metrics.js';
import { silentLogger } from '../../../src/telemetry/logger.js';
import { container } from '../../fakes/desired-objects.js';

describe('HttpServer', () => {
  let dir: string;
  let db: StateDb;
  let server: HttpServer;
  let base: string;
  let checks: ReadinessCheck[];
  const metrics = new Metrics({ processMetrics: false });
  const refreshed: string[] = [];
  const token = 'tok_0123456789abcdefghijklmnopqrstuvwxyzABCD';
  const auth = { authorization: `Bearer ${token}` };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'hyperlet-http-'));
    db = new StateDb(join(dir, 'state.db'));
    for (let i = 0; i < 5; i++) {
      const d = container(`c${i}`);
      const labeled = { ...d, object: { ...d.object, metadata: { ...d.object.metadata, labels: { tier: i % 2 === 0 ? 'web' : 'db' } } } };
      db.identify(d.key, { source: 'dir', kind: 'Container', namespace: 'default', name: `c${i}` }, d.specHash);
      db.writeStatus(labeled, { phase: i < 3 ? 'Running' : 'Stopped', conditions: [] });
    }
    metrics.forQueue('Container').added();
    checks = [{ name: 'source:dir', required: true, check: () => ({ ok: true }) }];
    db.setSourceState('git', 'git:/srv/repo', { lastApplied: { revision: 'abc' } });
    db.setProblems('git', [{ line: 'commit abc: a.yaml: broken', message: 'broken' }]);
    server = new HttpServer({
      host: '127.0.0.1', port: 0, registry: metrics.registry, checks: () => checks, db, logger: silentLogger(),
      refresh: (id) => { refreshed.push(id); return id === 'git' ? 1 : 0; },
      token, headersTimeoutMs: 300, redact: (t) => t.replaceAll('s3cret-value', '<redacted>'),
    });
    const address = await server.listen();
    base = `http://127.0.0.1:${address.port}`;
  });
  after(async () => { await server.close(); db.close(); rmSync(dir, { recursive: true, force: true }); });

  it('answers /healthz', async () => {
    const res = await fetch(`${base}/healthz`);
    expect(res.status).to.equal(200);
  });

  it('/readyz fails on a required check, not on an informational one', async () => {
    checks = [{ name: 'source:dir', required: true, check: () => ({ ok: true }) }, { name: 'provider:libvirt', required: false, check: () => ({ ok: false, detail: 'socket missing' }) }];
    let res = await fetch(`${base}/readyz`);
    expect(res.status).to.equal(200);
    const body = await res.json() as { checks: { name: string; ok: boolean; detail?: string }[] };
    expect(body.checks[1]).to.include({ name: 'provider:libvirt', ok: false, detail: 'socket missing' });
    checks = [{ name: 'source:dir', required: true, check: () => ({ ok: false }) }];
    res = await fetch(`${base}/readyz`);
    expect(res.status).to.equal(503);
  });

  it('refreshes a source on POST /sources/ID/refresh, 404 for an unknown one, and lists sources', async () => {
    expect((await fetch(`${base}/sources/git/refresh`, { method: 'POST', headers: auth })).status).to.equal(202);
    expect((await fetch(`${base}/sources/nope/refresh`, { method: 'POST', headers: auth })).status).to.equal(404);
    expect((await fetch(`${base}/sources/git/refresh`)).status, 'GET changes nothing').to.equal(405);
    expect(refreshed).to.deep.equal(['git', 'nope']);
    const list = await (await fetch(`${base}/sources`)).json() as { items: { id: string; state: unknown; problems: string[] }[] };
    expect(list.items).to.have.length(1);
    expect(list.items[0]).to.deep.include({ id: 'git', state: { lastApplied: { revision: 'abc' } }, problems: ['commit abc: a.yaml: broken'] });
  });

  it('serves metrics under controller-runtime names', async () => {
    const text = await (await fetch(`${base}/metrics`)).text();
    for (const name of ['workqueue_depth', 'workqueue_adds_total', 'workqueue_retries_total', 'workqueue_queue_duration_seconds', 'workqueue_work_duration_seconds', 'hyperlet_reconcile_total', 'hyperlet_reconcile_time_seconds']) {
      expect(text).to.contain(`# TYPE ${name}`);
    }
    expect(text).to.contain('workqueue_adds_total{name="Container",controller="Container"} 1');
  });

  it('lists with filters and pages through with continue tokens', async () => {
    const page1 = await (await fetch(`${base}/apis/hyperlet.io/v1alpha1/containers?limit=2`)).json() as { items: { metadata: { name: string } }[]; metadata: { continue?: string } };
    expect(page1.items.map((i) => i.metadata.name)).to.deep.equal(['c0', 'c1']);
    const page2 = await (await fetch(`${base}/apis/hyperlet.io/v1alpha1/containers?limit=2&continue=${page1.metadata.continue ?? ''}`)).json() as typeof page1;
    expect(page2.items.map((i) => i.metadata.name)).to.deep.equal(['c2', 'c3']);
    const running = await (await fetch(`${base}/apis/hyperlet.io/v1alpha1/containers?phase=Running&labelSelector=tier%3Dweb`)).json() as typeof page1;
    expect(running.items.map((i) => i.metadata.name)).to.deep.equal(['c0', 'c2']);
    const one = await fetch(`${base}/apis/hyperlet.io/v1alpha1/namespaces/default/containers/c4`);
    expect(((await one.json()) as { status: { phase: string } }).status.phase).to.equal('Stopped');
    expect((await fetch(`${base}/apis/hyperlet.io/v1alpha1/containers?continue=garbage`)).status).to.equal(400);
    expect((await fetch(`${base}/apis/hyperlet.io/v1alpha1/pods`)).status).to.equal(404);
  });

  /** One raw HTTP/1.1 request, so Host and the request line can be anything. */
  const raw = (text: string): Promise<string> => new Promise((resolve, reject) => {
    const socket = connect(Number(new URL(base).port), '127.0.0.1');
    let answer = '';
    socket.on('data', (c: Buffer) => { answer += c.toString(); });
    socket.on('close', () => resolve(answer));
    socket.on('error', reject);
    socket.end(text);
  });
  const statusOf = (answer: string): number => Number(/^HTTP\/1\.1 ([0-9]{3})/.exec(answer)?.[1] ?? 0);

  const guarded: Record<string, { reason: string; request: string; want: number; touches?: boolean }> = {
    ForeignHost: { reason: 'DNS rebinding: a page named attacker.example is refused before any route', request: 'GET /apis/hyperlet.io/v1alpha1/containers HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n', want: 421 },
    ForeignHostWithToken: { reason: 'the token does not make a foreign Host acceptable', request: `POST /sources/git/refresh HTTP/1.1\r\nHost: attacker.example:80\r\nAuthorization: Bearer ${token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`, want: 421 },
    NoHost: { reason: 'HTTP/1.0 without Host is refused', request: 'GET /healthz HTTP/1.0\r\n\r\n', want: 421 },
    PostWithoutToken: { reason: 'a mutating route needs the token', request: 'POST /sources/git/refresh HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n', want: 401 },
    PostWrongToken: { reason: 'a wrong token of the same length is refused', request: `POST /sources/git/refresh HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token.replace('t', 'T')}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`, want: 401 },
    PostUnknownRouteWithoutToken: { reason: 'any POST needs the token, known route or not', request: 'POST /anything HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n', want: 401 },
    PostWithToken: { reason: 'the token works', request: `POST /sources/git/refresh HTTP/1.1\r\nHost: localhost:1\r\nAuthorization: Bearer ${token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`, want: 202, touches: true },
    BadPercent: { reason: 'a malformed path is a 400, not a 500', request: `POST /sources/%E0%A4%A/refresh HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`, want: 400 },
    BadPercentGet: { reason: 'the same for reads', request: 'GET /apis/hyperlet.io/v1alpha1/namespaces/%zz/containers HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', want: 400 },
    AbsoluteTarget: { reason: 'a proxy-style target is refused', request: 'GET http://localhost/healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', want: 400 },
    HugeBody: { reason: 'a body over the limit is refused without reading it', request: `POST /sources/git/refresh HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\nContent-Length: 99999999\r\nConnection: close\r\n\r\n`, want: 413 },
    ChunkedBody: { reason: 'no route takes a chunked body', request: `POST /sources/git/refresh HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n`, want: 413 },
    HugeHeader: { reason: 'headers over 16 KiB are a 4xx from the parser, nothing routed', request: `GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: ${'a'.repeat(20_000)}\r\nConnection: close\r\n\r\n`, want: 431 },
  };
  for (const [name, tc] of Object.entries(guarded)) {
    it(`refuses or serves: ${name}`, async () => {
      const before = refreshed.length;
      const status = statusOf(await raw(tc.request));
      // Node's parser answers an oversized header itself (431, or 400 through clientError).
      expect(status, tc.reason).to.be.oneOf(tc.want === 431 ? [400, 431] : [tc.want]);
      expect(refreshed.length - before, `${tc.reason}: refresh called`).to.equal(tc.touches === true ? 1 : 0);
    });
  }

  it('closes a connection whose headers never finish (slowloris)', async () => {
    const socket = connect(Number(new URL(base).port), '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ');
    const answer = await new Promise<string>((resolve) => {
      let text = '';
      socket.on('data', (c: Buffer) => { text += c.toString(); });
      socket.once('close', () => resolve(text));
    });
    expect(statusOf(answer), 'closed with a 408 or a 400, not left open').to.be.oneOf([0, 400, 408]);
  });

  it('shows environment keys and references, never values', async () => {
    const d = container('envy', { environment: { PLAIN: 'plain-value-1' }, environmentFrom: { DB: { file: 'db' } } });
    db.identify(d.key, { source: 'dir', kind: 'Container', namespace: 'default', name: 'envy' }, d.specHash);
    db.writeStatus(d, { phase: 'Running', conditions: [] });
    for (const path of ['/apis/hyperlet.io/v1alpha1/containers', '/apis/hyperlet.io/v1alpha1/namespaces/default/containers/envy']) {
      const text = await (await fetch(`${base}${path}`)).text();
      expect(text, path).to.not.contain('plain-value-1');
      expect(text, path).to.contain('"PLAIN":"<redacted>"').and.contain('"environmentFrom":{"DB":{"file":"db"}}');
    }
  });

  it('passes every body through redact', async () => {
    db.setSourceState('git-2', 'git:https://h/r', { lastFetch: { ok: false, error: 'env leaked s3cret-value' } });
    const text = await (await fetch(`${base}/sources`)).text();
    expect(text).to.not.contain('s3cret-value');
    expect(text).to.contain('env leaked <redacted>');
  });

  it('refuses to exist on a non-loopback address without TLS', () => {
    expect(() => new HttpServer({ host: '0.0.0.0', port: 0, registry: metrics.registry, checks: () => [], logger: silentLogger(), token }))
      .to.throw(/cannot serve HTTP on 0.0.0.0.*without TLS/);
  });
});

describe('bearerMatches', () => {
  const token = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG';
  const cases: Record<string, { reason: string; header: string | undefined; token?: string; want: boolean }> = {
    Exact: { reason: 'the right token', header: `Bearer ${token}`, want: true },
    Missing: { reason: 'no header', header: undefined, want: false },
    OtherScheme: { reason: 'Basic is not Bearer', header: `Basic ${token}`, want: false },
    Prefix: { reason: 'a prefix of the token is not the token', header: `Bearer ${token.slice(0, 10)}`, want: false },
    Longer: { reason: 'the token plus more is not the token', header: `Bearer ${token}x`, want: false },
    TwoSpaces: { reason: 'exact syntax only', header: `Bearer  ${token}`, want: false },
    EmptyServerToken: { reason: 'a server without a token accepts nothing', header: 'Bearer x', token: '', want: false },
  };
  for (const [name, tc] of Object.entries(cases)) it(name, () => expect(bearerMatches(tc.header, tc.token ?? token), tc.reason).to.equal(tc.want));
});
