/** The whole daemon on a real directory (chokidar) and a real state DB file, with a FakeProvider at the provider boundary. */
import { expect } from 'chai';
import { mkdirSync, mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Daemon, type DaemonConfig } from '../../../src/daemon/daemon.js';
import type { DirSource } from '../../../src/sources/dir-source.js';
import { StateDb } from '../../../src/state/state-db.js';
import type { ObjectKey } from '../../../src/store/object-key.js';
import { silentLogger } from '../../../src/telemetry/logger.js';
import { FakeProvider } from '../../fakes/fake-provider.js';
import { PassCounter } from '../../support/pass-counter.js';
import { until } from '../../support/until.js';

const ct = (name: string) => `apiVersion: hyperlet.io/v1alpha1\nkind: Container\nmetadata: {name: ${name}}\nspec: {template: busybox}\n`;

describe('Daemon (dir source, state DB, fake provider)', function () {
  this.timeout(20_000);
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'hyperlet-daemon-'));
    mkdirSync(join(dir, 'manifests'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const config = (provider: FakeProvider<'Container'>, extra: Partial<DaemonConfig> = {}): DaemonConfig => ({
    sources: [{ type: 'dir', location: join(dir, 'manifests') }], statePath: join(dir, 'state.db'), lxcpath: '/nonexistent',
    libvirtUri: 'test:///default', kinds: ['Container'], node: 'node-a', nodeFilter: false, resyncMs: 60_000,
    concurrency: 2, qps: 100, burst: 100, shutdownTimeoutMs: 5_000, providers: new Map([['Container', provider]]), ...extra,
  });

  it('on stop, lets the step in flight finish and flushes its status before returning', async () => {
    writeFileSync(join(dir, 'manifests', 'a.yaml'), ct('slow'));
    const provider = new FakeProvider('Container');
    provider.latencyMs = 400;
    const daemon = new Daemon(config(provider), silentLogger());
    await daemon.start();
    await until('a create in flight', () => provider.calls.some((c) => c.startsWith('create:')), 10_000, 10);
    await daemon.stop();
    expect(provider.instances.has('slow'), 'the create in flight finished').to.equal(true);
    const db = new StateDb(join(dir, 'state.db'), { readonly: true });
    const row = db.listObjects().find((r) => r.name === 'slow');
    db.close();
    expect(row?.status?.phase, 'its status reached the DB').to.equal('Creating');
    expect(row?.applied?.id, 'remembered before acting').to.equal(row?.id);
  });

  it('after a restart, deletes the instance of an object removed while it was down', async () => {
    writeFileSync(join(dir, 'manifests', 'a.yaml'), ct('gone'));
    const provider = new FakeProvider('Container');
    let daemon = new Daemon(config(provider), silentLogger());
    await daemon.start();
    await until('gone Running', () => provider.instances.get('gone')?.state === 'Running', 10_000, 10);
    await daemon.stop();
    unlinkSync(join(dir, 'manifests', 'a.yaml'));
    daemon = new Daemon(config(provider), silentLogger());
    await daemon.start();
    const controller = daemon.controllers.get('Container')!;
    const key = 'dir/default/Container/gone' as ObjectKey;
    await until('gone deleted', () => !provider.instances.has('gone'), 10_000, 10);
    // The pass after the delete sees it gone and forgets the key.
    await new PassCounter(controller.queue).more([key], 1, () => controller.enqueue(key));
    await daemon.stop();
    const db = new StateDb(join(dir, 'state.db'), { readonly: true });
    expect(db.listObjects(), 'forgotten once deleted').to.deep.equal([]);
    db.close();
  });

  it('a directory that cannot be listed deletes nothing and makes /readyz fail naming the path; back, ready again', async () => {
    const manifests = join(dir, 'manifests');
    writeFileSync(join(manifests, 'a.yaml'), ct('kept'));
    const provider = new FakeProvider('Container');
    const daemon = new Daemon(config(provider, { http: { host: '127.0.0.1', port: 0 } }), silentLogger());
    await daemon.start();
    try {
      await until('kept Running', () => provider.instances.get('kept')?.state === 'Running', 10_000, 10);
      const readyz = async (): Promise<{ status: number; body: { checks: { name: string; ok: boolean; detail?: string }[] } }> => {
        const res = await fetch(`http://127.0.0.1:${daemon.httpAddress?.port}/readyz`);
        return { status: res.status, body: await res.json() as { checks: { name: string; ok: boolean; detail?: string }[] } };
      };
      expect((await readyz()).status).to.equal(200);
      renameSync(manifests, `${manifests}.away`);
      writeFileSync(manifests, 'a file where the directory was');
      const failing = await until('/readyz to fail', async () => { const r = await readyz(); return r.status === 503 ? r : undefined; }, 10_000);
      const check = failing.body.checks.find((c) => c.name === 'source:dir');
      expect(check?.ok).to.equal(false);
      expect(check?.detail).to.contain(`cannot list ${manifests}`);
      const controller = daemon.controllers.get('Container')!;
      const source = daemon.sources[0] as DirSource;
      const failed = source.stats.failedListings;
      // Two more failed listings and two more passes of the object: a removal would have shown by now.
      await until('two more failed listings', () => source.stats.failedListings >= failed + 2, 10_000);
      await new PassCounter(controller.queue).more(['dir/default/Container/kept' as ObjectKey], 2, () => controller.resync());
      expect(provider.count('delete')).to.equal(0);
      expect(provider.instances.get('kept')?.state).to.equal('Running');
      rmSync(manifests);
      renameSync(`${manifests}.away`, manifests);
      await until('/readyz to pass again', async () => (await readyz()).status === 200 || undefined, 10_000);
      expect(provider.count('delete')).to.equal(0);
    } finally {
      await daemon.stop();
    }
  });

  it('writes the kstatus conditions into the state DB for a dir source: converged, and stalled on a missing dependency', async () => {
    writeFileSync(join(dir, 'manifests', 'a.yaml'), ct('ok'));
    writeFileSync(join(dir, 'manifests', 'b.yaml'),
      'apiVersion: hyperlet.io/v1alpha1\nkind: Container\nmetadata: {name: app}\nspec: {template: busybox, dependsOn: [{kind: Container, name: nope}]}\n');
    const provider = new FakeProvider('Container');
    const daemon = new Daemon(config(provider), silentLogger());
    await daemon.start();
    const conditionsOf = (name: string): Record<string, string> | undefined => {
      const db = new StateDb(join(dir, 'state.db'), { readonly: true });
      try {
        const row = db.listObjects().find((r) => r.name === name);
        return row?.status === undefined ? undefined : Object.fromEntries(row.status.conditions.map((c) => [c.type, `${c.status}:${c.reason}`]));
      } finally {
        db.close();
      }
    };
    await until('ok Ready and app Stalled', () => conditionsOf('ok')?.Ready === 'True:Running' && conditionsOf('app')?.Stalled !== undefined, 10_000, 10);
    await daemon.stop();
    expect(conditionsOf('ok')).to.include({ Ready: 'True:Running', Reconciling: 'False:Converged', Stalled: 'False:Converged' });
    expect(conditionsOf('app')).to.include({ Reconciling: 'False:Stalled', Stalled: 'True:DependencyNotFound' });
  });
});
