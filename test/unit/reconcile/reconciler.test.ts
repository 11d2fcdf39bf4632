import { expect } from 'chai';
import { TerminalError } from '../../../src/shared/errors.js';
import { requeueAfter, awaitChange } from '../../../src/reconcile/result.js';
import { container, observedAs } from '../../fakes/desired-objects.js';
import { harness } from '../../fakes/harness.js';
import { until } from '../../support/until.js';

const signal = new AbortController().signal;
const condition = (s: { conditions: { type: string; status: string; reason: string }[] } | undefined, type: string) =>
  s?.conditions.find((c) => c.type === type);

describe('Reconciler', () => {
  it('creates, then starts, then reports Ready, one step per pass', async () => {
    const h = harness('Container');
    const d = container('web');
    h.store.upsert(d);
    expect(await h.reconciler.reconcile(d.key, signal)).to.deep.equal(requeueAfter(0));
    expect(h.provider.calls).to.deep.equal(['probe', 'observe:web', 'create:web']);
    expect(h.backend.statuses.get(d.key)?.phase).to.equal('Creating');
    expect(h.backend.finalized.has(d.key), 'finalizer before anything is created').to.equal(true);
    expect(h.backend.remembered.has(d.key), 'remembered before acting').to.equal(true);
    expect(await h.reconciler.reconcile(d.key, signal)).to.deep.equal(requeueAfter(0));
    expect(h.provider.calls.slice(-1)).to.deep.equal(['setState:web:Running']);
    expect(await h.reconciler.reconcile(d.key, signal)).to.deep.equal(awaitChange());
    const status = h.backend.statuses.get(d.key);
    expect(status?.phase).to.equal('Running');
    expect(condition(status, 'Ready')).to.include({ status: 'True', reason: 'Running' });
    expect(condition(status, 'Synced')).to.include({ status: 'True' });
    expect(status).to.include({ id: d.id, hostName: 'web', node: 'node-a', observedGeneration: 1 });
    expect(h.backend.events.map((e) => e.reason)).to.deep.equal(['Created', 'Started']);
  });

  it('converges a new object with two status writes: Creating, then Running', async () => {
    const h = harness('Container');
    const d = container('web');
    h.store.upsert(d);
    while ((await h.reconciler.reconcile(d.key, signal)).requeueAfterMs !== undefined) { /* next step */ }
    expect(h.backend.writes).to.equal(2);
    expect(h.backend.statuses.get(d.key)?.phase).to.equal('Running');
  });

  it('slows down a step that keeps having no effect instead of hot-looping', async () => {
    const h = harness('Container');
    const d = container('web', { resources: { memory: '256Mi' } });
    h.store.upsert(d);
    h.provider.instances.set('web', observedAs(container('web', { resources: { memory: '128Mi' } })));
    const original = h.provider.update.bind(h.provider);
    h.provider.update = async (...args) => { await original(...args); h.provider.instances.set('web', observedAs(container('web', { resources: { memory: '128Mi' } }))); };
    const delays: (number | undefined)[] = [];
    for (let i = 0; i < 6; i++) delays.push((await h.reconciler.reconcile(d.key, signal)).requeueAfterMs);
    expect(delays).to.deep.equal([0, 0, 500, 1_000, 2_000, 4_000]);
  });

  it('a deliberately stopped object is Ready', async () => {
    const h = harness('Container');
    const d = container('web', { state: 'Stopped' });
    h.store.upsert(d);
    h.provider.instances.set('web', observedAs(d, 'Stopped'));
    await h.reconciler.reconcile(d.key, signal);
    expect(condition(h.backend.statuses.get(d.key), 'Ready')).to.include({ status: 'True', reason: 'Stopped' });
  });

  it('writes no status when nothing changed', async () => {
    const h = harness('Container');
    const d = container('web');
    h.store.upsert(d);
    h.provider.instances.set('web', observedAs(d));
    await h.reconciler.reconcile(d.key, signal);
    const writes = h.backend.writes;
    await h.reconciler.reconcile(d.key, signal);
    await h.reconciler.reconcile(d.key, signal);
    expect(h.backend.writes).to.equal(writes);
  });

  it('never touches an instance it does not own and says Conflict', async () => {
    const h = harness('Container');
    const d = container('web');
    h.store.upsert(d);
    h.provider.instances.set('web', observedAs(d, 'Stopped', { ownerId: undefined }));
    expect(await h.reconciler.reconcile(d.key, signal)).to.deep.equal(awaitChange());
    expect(h.provider.calls).to.deep.equal(['probe', 'observe:web']);
    expect(condition(h.backend.statuses.get(d.key), 'Ready')).to.include({ status: 'False', reason: 'Conflict' });
  });

  it('deletes the instance of an object that left its source, then forgets it', async () => {
    const h = harness('Container');
    const d = container('web');
    h.backend.remember(d);
    h.provider.instances.set('web', observedAs(d));
    expect(await h.reconciler.reconcile(d.key, signal)).to.deep.equal(requeueAfter(0));
    expect(h.provider.calls.slice(-1)).to.deep.equal(['delete:web']);
    expect(await h.reconciler.reconcile(d.key, signal)).to.deep.equal(awaitChange());
    expect(h.backend.remembered.has(d.key)).to.equal(false);
  });

  it('keeps the instance of a deleted object with deletionPolicy Orphan', async () => {
    const h = harness('Container');
    const d = container('web', { deletionPolicy: 'Orphan' });
    h.backend.remember(d);
    h.provider.instances.set('web', observedAs(d));
    await h.reconciler.reconcile(d.key, signal);
    expect(h.provider.count('delete')).to.equal(0);
    expect(h.provider.instances.has('web')).to.equal(true);
    expect(h.backend.remembered.has(d.key)).to.equal(false);
  });

  it('reports a failed step with the tool message, once per distinct message, and rethrows', async () => {
    const h = harness('Container');
    const d = container('web');
    h.store.upsert(d);
    h.provider.failures.set('create', new Error('lxc-create: template busybox failed'));
    for (let i = 0; i < 3; i++) {
      let thrown: unknown;
      try { await h.reconciler.reconcile(d.key, signal); } catch (err) { thrown = err; }
      expect(thrown).to.be.instanceOf(Error);
    }
    const status = h.backend.statuses.get(d.key);
    expect(status?.phase).to.equal('Failed');
    expect(condition(status, 'Synced')).to.include({ status: 'False', reason: 'CreateFailed' });
    expect(status?.conditions.find((c) => c.type === 'Synced')?.message).to.contain('template busybox failed');
    expect(h.backend.events.filter((e) => e.type === 'Warning')).to.have.length(1);
  });

  it('says ProviderUnavailable and comes back later when the provider is missing', async () => {
    const h = harness('Container');
    const d = container('web');
    h.store.upsert(d);
    h.provider.unavailable = 'lxc-ls not found';
    expect(await h.reconciler.reconcile(d.key, signal)).to.deep.equal(requeueAfter(30_000));
    expect(condition(h.backend.statuses.get(d.key), 'Ready')).to.include({ status: 'False', reason: 'ProviderUnavailable' });
    expect(h.provider.count('create')).to.equal(0);
  });

  it('shows changes held back by the update policy as RestartRequired', async () => {
    const h = harness('Container');
    const d = container('web', { environment: { MODE: 'prod' } });
    h.store.upsert(d);
    h.provider.instances.set('web', observedAs(container('web')));
    await h.reconciler.reconcile(d.key, signal);
    const status = h.backend.statuses.get(d.key);
    expect(condition(status, 'RestartRequired')).to.include({ status: 'True', reason: 'UpdatePolicy' });
    expect(status?.pendingChanges).to.deep.equal([{ field: 'environment', apply: 'restart' }]);
    expect(h.provider.count('update')).to.equal(0);
  });
});

describe('Reconciler: GitOps rules', () => {
  const runUntilIdle = async (h: ReturnType<typeof harness>, key: Parameters<typeof h.reconciler.reconcile>[0]) => {
    for (let i = 0; i < 10; i++) {
      const r = await h.reconciler.reconcile(key, signal);
      if (r.requeueAfterMs !== 0) return r;
    }
    throw new Error('did not settle');
  };

  it('a paused object is observed and reported, never changed', async () => {
    const h = harness('Container');
    const d = container('web', {}, { annotations: { 'hyperlet.io/paused': 'true' } });
    h.store.upsert(d);
    h.provider.instances.set('web', observedAs(d, 'Stopped'));
    expect(await h.reconciler.reconcile(d.key, signal)).to.deep.equal(awaitChange());
    expect(h.provider.calls).to.deep.equal(['probe', 'observe:web']);
    const status = h.backend.statuses.get(d.key);
    expect(condition(status, 'Paused')).to.include({ status: 'True', reason: 'Paused' });
    expect(condition(status, 'Drifted')).to.include({ status: 'True', reason: 'DriftDetected' });
    expect(condition(status, 'Ready')).to.include({ status: 'False', reason: 'Paused' });
    expect(status?.phase).to.equal('Stopped');
  });

  it('a paused source keeps the instance of a removed object', async () => {
    const h = harness('Container');
    h.backend.policy = { prune: true, paused: true };
    const d = container('web');
    h.backend.remember(d);
    h.provider.instances.set('web', observedAs(d));
    expect(await h.reconciler.reconcile(d.key, signal)).to.deep.equal(awaitChange());
    expect(h.provider.count('delete')).to.equal(0);
    expect(h.backend.remembered.has(d.key), 'still remembered: deleted once unpaused').to.equal(true);
  });

  const pruneCases = {
    SourcePruneOff: { reason: '--prune=false keeps every removed object', policy: { prune: false, paused: false }, annotations: undefined },
    AnnotationPruneDisabled: { reason: 'hyperlet.io/prune: disabled keeps this one', policy: undefined, annotations: { 'hyperlet.io/prune': 'disabled' } },
  };
  for (const [name, tc] of Object.entries(pruneCases)) {
    it(name, async () => {
      const h = harness('Container');
      h.backend.policy = tc.policy;
      const d = container('web', {}, tc.annotations === undefined ? {} : { annotations: tc.annotations });
      h.backend.remember(d);
      h.provider.instances.set('web', observedAs(d));
      expect(await h.reconciler.reconcile(d.key, signal), tc.reason).to.deep.equal(awaitChange());
      expect(h.provider.count('delete'), tc.reason).to.equal(0);
      expect(h.provider.instances.has('web'), tc.reason).to.equal(true);
      expect(h.backend.remembered.has(d.key), 'let go of').to.equal(false);
      expect(h.backend.events.map((e) => e.reason)).to.deep.equal(['PruneSkipped']);
    });
  }

  it('driftPolicy Report shows an external stop and does not fix it; a new generation is applied', async () => {
    const h = harness('Container');
    const d = container('web', { driftPolicy: 'Report' });
    h.store.upsert(d);
    await runUntilIdle(h, d.key);
    expect(h.backend.statuses.get(d.key)?.convergedGeneration).to.equal(1);
    expect(condition(h.backend.statuses.get(d.key), 'Drifted')).to.include({ status: 'False', reason: 'InSync' });
    h.provider.instances.set('web', { ...h.provider.instances.get('web')!, state: 'Stopped' });
    h.cache.invalidate('web');
    expect(await h.reconciler.reconcile(d.key, signal)).to.deep.equal(awaitChange());
    expect(h.provider.instances.get('web')?.state).to.equal('Stopped');
    const status = h.backend.statuses.get(d.key);
    expect(condition(status, 'Drifted')).to.include({ status: 'True', reason: 'DriftDetected' });
    expect(status?.conditions.find((c) => c.type === 'Drifted')?.message).to.contain('state is Stopped, declared Running');
    expect(condition(status, 'Ready')).to.include({ status: 'False', reason: 'Drifted' });
    expect(h.backend.events.filter((e) => e.reason === 'Drifted')).to.have.length(1);
    const next = container('web', { driftPolicy: 'Report', autostart: true }, { generation: 2 });
    h.store.upsert(next);
    await runUntilIdle(h, d.key);
    expect(h.provider.instances.get('web')?.state, 'the new generation is applied whole').to.equal('Running');
    expect(h.backend.statuses.get(d.key)?.convergedGeneration).to.equal(2);
  });

  it('dependsOn: creates only once the dependency is Ready, deletes the dependent first', async () => {
    const h = harness('Container');
    const db = container('db');
    const app = container('app', { dependsOn: [{ kind: 'Container', name: 'db' }] });
    h.store.upsert(db);
    h.store.upsert(app);
    expect(await h.reconciler.reconcile(app.key, signal)).to.deep.equal(requeueAfter(2_000));
    expect(h.provider.count('create')).to.equal(0);
    expect(condition(h.backend.statuses.get(app.key), 'Ready')).to.include({ status: 'False', reason: 'WaitingForDependencies' });
    await runUntilIdle(h, db.key);
    await runUntilIdle(h, app.key);
    expect(h.provider.calls.filter((c) => c.startsWith('create'))).to.deep.equal(['create:db', 'create:app']);
    h.store.remove(db.key);
    h.store.remove(app.key);
    expect(await h.reconciler.reconcile(db.key, signal)).to.deep.equal(requeueAfter(2_000));
    expect(h.provider.instances.has('db'), 'db waits for app').to.equal(true);
    expect(condition(h.backend.statuses.get(db.key), 'Ready')).to.include({ status: 'False', reason: 'WaitingForDependents' });
    await runUntilIdle(h, app.key);
    await runUntilIdle(h, db.key);
    expect(h.provider.calls.filter((c) => c.startsWith('delete'))).to.deep.equal(['delete:app', 'delete:db']);
  });

  const depErrors = {
    Cycle: { reason: 'a loop is an error in status', objects: [container('a', { dependsOn: [{ kind: 'Container', name: 'b' }] }), container('b', { dependsOn: [{ kind: 'Container', name: 'a' }] })], want: 'DependencyCycle' },
    Missing: { reason: 'a missing target is an error in status', objects: [container('a', { dependsOn: [{ kind: 'Container', name: 'nope' }] })], want: 'DependencyNotFound' },
  };
  for (const [name, tc] of Object.entries(depErrors)) {
    it(`dependsOn ${name}`, async () => {
      const h = harness('Container');
      for (const o of tc.objects) h.store.upsert(o);
      const a = tc.objects[0]!;
      expect(await h.reconciler.reconcile(a.key, signal), tc.reason).to.deep.equal(requeueAfter(2_000));
      expect(h.provider.count('create')).to.equal(0);
      expect(condition(h.backend.statuses.get(a.key), 'Synced')).to.include({ status: 'False', reason: tc.want });
    });
  }
});

describe('Controller', () => {
  it('drives many objects to Ready through the queue', async () => {
    const h = harness('Container');
    for (let i = 0; i < 20; i++) h.store.upsert(container(`c${i}`));
    await h.controller.start();
    await until('20 objects Running', () => [...h.backend.statuses.values()].filter((s) => s.phase === 'Running').length === 20, 5_000, 5);
    expect(h.provider.count('create')).to.equal(20);
    await h.controller.stop();
  });

  it('resyncs unchanged objects with one batch call, no actions and no writes', async () => {
    const h = harness('Container');
    for (let i = 0; i < 10; i++) h.store.upsert(container(`c${i}`));
    await h.controller.start();
    await until('10 objects Running', () => [...h.backend.statuses.values()].filter((s) => s.phase === 'Running').length === 10, 5_000, 5);
    await h.controller.queue.onIdle();
    const calls = h.provider.calls.length;
    const writes = h.backend.writes;
    await h.controller.resync();
    await h.controller.queue.onIdle();
    expect(h.provider.calls.slice(calls)).to.deep.equal(['observeAll']);
    expect(h.backend.writes).to.equal(writes);
    await h.controller.stop();
  });

  it('corrects drift as soon as the provider reports a change', async () => {
    const h = harness('Container');
    const d = container('web');
    h.store.upsert(d);
    await h.controller.start();
    await until('web Running', () => h.provider.instances.get('web')?.state === 'Running', 5_000, 5);
    await h.controller.queue.onIdle();
    h.provider.instances.set('web', { ...h.provider.instances.get('web')!, state: 'Stopped' });
    h.provider.emitChange('web');
    await until('web Running again', () => h.provider.instances.get('web')?.state === 'Running', 5_000, 5);
    await h.controller.stop();
  });

  it('retries failures with backoff and stops retrying on a terminal error', async () => {
    const h = harness('Container');
    const d = container('web');
    h.store.upsert(d);
    h.provider.failures.set('create', new TerminalError('PoolNotFound', 'cannot create: no pool'));
    await h.controller.start();
    await until('a first create', () => h.provider.count('create') >= 1, 5_000, 5);
    await h.controller.queue.onIdle();
    // Nothing brings a key back after a terminal error: not waiting, not scheduled, no backoff.
    expect(h.controller.queue.has(d.key), 'no retry queued or scheduled').to.equal(false);
    expect(h.provider.count('create')).to.equal(1);
    expect(h.controller.queue.retries(d.key)).to.equal(0);
    h.provider.failures.set('create', new Error('transient'));
    h.store.upsert(container('web', { autostart: true }));
    await until('two more creates', () => h.provider.count('create') >= 3, 5_000, 5);
    h.provider.failures.delete('create');
    await until('web Running', () => h.provider.instances.get('web')?.state === 'Running', 5_000, 5);
    await h.controller.stop();
  });
});
