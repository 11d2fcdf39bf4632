import { expect } from 'chai';
import { HttpServer, type ReadinessCheck } from '../../../src/server/http-server.js';
import { StateDb } from '../../../src/state/state-db.js';
import { Metrics } from '../../../src/telemetry/metrics.js';
import { silentLogger } from '../../../src/telemetry/logger.js';
import { container } from '../../fakes/desired-objects.js';

describe('HttpServer', () => {
  let db: StateDb;
  let server: HttpServer;
  let base: string;
  let checks: ReadinessCheck[];
  const metrics = new Metrics({ processMetrics: false });
  const refreshed: string[] = [];

  before(async () => {
    db = new StateDb(':memory:');
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
    });
    const address = await server.listen();
    base = `http://127.0.0.1:${address.port}`;
  });
  after(async () => { await server.close(); db.close(); });

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
    expect((await fetch(`${base}/sources/git/refresh`, { method: 'POST' })).status).to.equal(202);
    expect((await fetch(`${base}/sources/nope/refresh`, { method: 'POST' })).status).to.equal(404);
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
});
