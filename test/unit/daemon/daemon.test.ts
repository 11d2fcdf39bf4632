import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Daemon, type DaemonConfig } from '../../../src/daemon/daemon.js';
import { StateDb } from '../../../src/state/state-db.js';
import { silentLogger } from '../../../src/telemetry/logger.js';
import { FakeProvider } from '../../fakes/fake-provider.js';

const ct = (name: string) => `apiVersion: hyperlet.io/v1alpha1\nkind: Container\nmetadata: {name: ${name}}\nspec: {template: busybox}\n`;

describe('Daemon (dir source, state DB, fake provider)', function () {
  this.timeout(20_000);
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'hyperlet-daemon-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const config = (provider: FakeProvider<'Container'>): DaemonConfig => ({
    sources: [{ type: 'dir', location: join(dir, 'manifests') }], statePath: join(dir, 'state.db'), lxcpath: '/nonexistent',
    libvirtUri: 'test:///default', kinds: ['Container'], node: 'node-a', nodeFilter: false, resyncMs: 60_000,
    concurrency: 2, qps: 100, burst: 100, shutdownTimeoutMs: 5_000, providers: new Map([['Container', provider]]),
  });

  it('on stop, lets the step in flight finish and flushes its status before returning', async () => {
    const { mkdirSync } = await import('node:fs');
    mkdirSync(join(dir, 'manifests'));
    writeFileSync(join(dir, 'manifests', 'a.yaml'), ct('slow'));
    const provider = new FakeProvider('Container');
    provider.latencyMs = 400;
    const daemon = new Daemon(config(provider), silentLogger());
    await daemon.start();
    while (!provider.calls.some((c) => c.startsWith('create:'))) await new Promise((r) => setTimeout(r, 10));
    await daemon.stop();
    expect(provider.instances.has('slow'), 'the create in flight finished').to.equal(true);
    const db = new StateDb(join(dir, 'state.db'), { readonly: true });
    const row = db.listObjects().find((r) => r.name === 'slow');
    db.close();
    expect(row?.status?.phase, 'its status reached the DB').to.equal('Creating');
    expect(row?.applied?.id, 'remembered before acting').to.equal(row?.id);
  });

  it('after a restart, deletes the instance of an object removed while it was down', async () => {
    const { mkdirSync, unlinkSync } = await import('node:fs');
    mkdirSync(join(dir, 'manifests'));
    writeFileSync(join(dir, 'manifests', 'a.yaml'), ct('gone'));
    const provider = new FakeProvider('Container');
    let daemon = new Daemon(config(provider), silentLogger());
    await daemon.start();
    while (provider.instances.get('gone')?.state !== 'Running') await new Promise((r) => setTimeout(r, 10));
    await daemon.stop();
    unlinkSync(join(dir, 'manifests', 'a.yaml'));
    daemon = new Daemon(config(provider), silentLogger());
    await daemon.start();
    while (provider.instances.has('gone')) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 50)); // the pass after the delete sees it gone and forgets the key
    await daemon.controllers.get('Container')!.queue.onIdle();
    await daemon.stop();
    const db = new StateDb(join(dir, 'state.db'), { readonly: true });
    expect(db.listObjects(), 'forgotten once deleted').to.deep.equal([]);
    db.close();
  });
  it('writes the kstatus conditions into the state DB for a dir source: converged, and stalled on a missing dependency', async () => {
    const { mkdirSync } = await import('node:fs');
    mkdirSync(join(dir, 'manifests'));
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
    for (;;) {
      const ok = conditionsOf('ok');
      if (ok?.Ready === 'True:Running' && conditionsOf('app')?.Stalled !== undefined) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    await daemon.stop();
    expect(conditionsOf('ok')).to.include({ Ready: 'True:Running', Reconciling: 'False:Converged', Stalled: 'False:Converged' });
    expect(conditionsOf('app')).to.include({ Reconciling: 'False:Stalled', Stalled: 'True:DependencyNotFound' });
  });
});
