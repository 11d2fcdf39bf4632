import { expect } from 'chai';
import sinon from 'sinon';
import { StepPendingError, TerminalError } from '../../../src/shared/errors.js';
import { RateLimiter } from '../../../src/queue/rate-limiter.js';
import { awaitChange, comesBack, nextStep, requeue, requeueAfter } from '../../../src/reconcile/result.js';
import { RETRIES_BEFORE_STALLED } from '../../../src/reconcile/stalled-reasons.js';
import type { ObservedInstance } from '../../../src/providers/provider.js';
import { container, observedAs } from '../../fakes/desired-objects.js';
import { harness } from '../../fakes/harness.js';

const signal = new AbortController().signal;
const condition = (s: { conditions: { type: string; status: string; reason: string }[] } | undefined, type: string) =>
  s?.conditions.find((c) => c.type === type);

describe('Reconciler', () => {
  it('creates, then starts, then reports Ready, one step per pass', async () => {
    const h = harness('Container');
    const d = container('web');
    h.store.upsert(d);
    expect(await h.reconciler.reconcile(d.key, signal)).to.deep.equal(nextStep());
    expect(h.provider.calls).to.deep.equal(['probe', 'observe:web', 'create:web']);
    expect(h.backend.statuses.get(d.key)?.phase).to.equal('Creating');
    expect(h.backend.finalized.has(d.key), 'finalizer before anything is created').to.equal(true);
    expect(h.backend.remembered.has(d.key), 'remembered before acting').to.equal(true);
    expect(await h.reconciler.reconcile(d.key, signal)).to.deep.equal(nextStep());
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
    while (comesBack(await h.reconciler.reconcile(d.key, signal))) { /* next step */ }
    expect(h.backend.writes).to.equal(2);
    expect(h.backend.statuses.get(d.key)?.phase).to.equal('Running');
  });

  it('waits for a step whose effect is in progress instead of running it every pass', async () => {
    // A guest ballooning: every pass observes another memory size, none of them the declared one.
    const h = harness('Container');
    const d = container('web', { resources: { memory: '256Mi' } });
    h.store.upsert(d);
    let observedMiB = 128;
    const moving = (): ObservedInstance => observedAs(container('web', { resources: { memory: `${++observedMiB}Mi` } }));
    h.provider.instances.set('web', moving());
    const observe = h.provider.observe.bind(h.provider);
    h.provider.observe = async (...args) => { h.provider.instances.set('web', moving()); return observe(...args); };
    const results = [];
    for (let i = 0; i < 6; i++) results.push(await h.reconciler.reconcile(d.key, signal));
    expect(results, 'run, wait, run again, wait…: the queue backoff spaces the runs').to.deep.equal([
      nextStep(), requeue(), requeue(), requeue(), requeue(), requeue(),
    ]);
    expect(h.provider.count('update'), 'one run per two passes').to.equal(3);
  });

  it('reports an instance stopped behind its back (phase Stopped) before starting it again', async () => {
    const h = harness('Container');
    const d = container('web');
    h.store.upsert(d);
    while (comesBack(await h.reconciler.reconcile(d.key, signal))) { /* converge */ }
    const phases: string[] = [];
    const write = h.backend.write.bind(h.backend);
    h.backend.write = (desired, status) => { phases.push(status.phase); return write(desired, status); };
    h.provider.instances.set('web', { ...h.provider.instances.get('web')!, state: 'Stopped' });
    while (comesBack(await h.reconciler.reconcile(d.key, signal))) { /* repair */ }
    expect(phases, 'Stopped is written before the start, Running after').to.deep.equal(['Stopped', 'Running']);
    expect(h.provider.calls.filter((c) => c.startsWith('setState'))).to.deep.equal(['setState:web:Running', 'setState:web:Running']);
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
    expect(await h.reconciler.reconcile(d.key, signal)).to.deep.equal(nextStep());
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

  it('takes a requested snapshot once the instance is steady, once per name, recorded as SnapshotTaken', async () => {
    const h = harness('Container');
    const plain = container('web');
    const d = container('web', {}, { annotations: { 'hyperlet.io/snapshot-request': 'before-upgrade' } });
    h.provider.instances.set('web', observedAs(plain, 'Stopped'));
    h.store.upsert(d);
    expect(await h.reconciler.reconcile(d.key, signal)).to.deep.equal(nextStep());
    expect(h.provider.calls.slice(-1), 'started first: the snapshot holds the declared state').to.deep.equal(['setState:web:Running']);
    expect(await h.reconciler.reconcile(d.key, signal)).to.deep.equal(nextStep());
    expect(h.provider.calls.slice(-1)).to.deep.equal(['snapshot:web/before-upgrade']);
    expect(h.provider.snapshots.get('web')?.map((s) => [s.name, s.origin])).to.deep.equal([['before-upgrade', 'request']]);
    const taken = h.backend.events.find((e) => e.reason === 'SnapshotTaken');
    expect(taken?.message).to.equal('Took snapshot before-upgrade of web (request)');
    expect(await h.reconciler.reconcile(d.key, signal)).to.deep.equal(awaitChange());
    expect(await h.reconciler.reconcile(d.key, signal)).to.deep.equal(awaitChange());
    expect(h.provider.count('snapshot'), 'once per name').to.equal(1);

    // A new name takes another; a name the instance has already (a restart) takes none.
    h.store.upsert(container('web', {}, { annotations: { 'hyperlet.io/snapshot-request': 'second' } }));
    await h.reconciler.reconcile(d.key, signal);
    expect(h.provider.snapshots.get('web')?.map((s) => s.name)).to.deep.equal(['before-upgrade', 'second']);
    const restarted = harness('Container');
    restarted.provider.instances.set('web', observedAs(plain));
    restarted.provider.snapshots.set('web', [...(h.provider.snapshots.get('web') ?? [])]);
    restarted.store.upsert(container('web', {}, { annotations: { 'hyperlet.io/snapshot-request': 'second' } }));
    expect(await restarted.reconciler.reconcile(d.key, signal)).to.deep.equal(awaitChange());
    expect(restarted.provider.count('snapshot'), 'the instance has it already').to.equal(0);

    // A re-created instance (its snapshots went with the old one) gets the requested snapshot again.
    h.provider.instances.delete('web');
    h.provider.snapshots.delete('web');
    while (comesBack(await h.reconciler.reconcile(d.key, signal))) { /* create, start, snapshot */ }
    expect(h.provider.snapshots.get('web')?.map((s) => s.name)).to.deep.equal(['second']);
  });

  it('a requested snapshot that fails is a Warning SnapshotFailed and is retried', async () => {
    const h = harness('Container');
    const d = container('web', {}, { annotations: { 'hyperlet.io/snapshot-request': 's1' } });
    h.provider.instances.set('web', observedAs(container('web')));
    h.store.upsert(d);
    h.provider.failures.set('snapshot', new Error('cannot freeze web: no space left on device'));
    let thrown: unknown;
    try { await h.reconciler.reconcile(d.key, signal); } catch (err) { thrown = err; }
    expect((thrown as Error).message).to.contain('no space left');
    expect(h.backend.events.map((e) => [e.type, e.reason])).to.deep.equal([['Warning', 'SnapshotFailed']]);
    expect(h.provider.snapshots.get('web') ?? [], 'nothing listed').to.deep.equal([]);
    h.provider.failures.delete('snapshot');
    expect(await h.reconciler.reconcile(d.key, signal)).to.deep.equal(nextStep());
    expect(h.provider.snapshots.get('web')?.map((s) => s.name)).to.deep.equal(['s1']);
  });

  it('a snapshot or restore request naming no valid snapshot name stalls at once, nothing done', async () => {
    for (const [annotation, value] of [['hyperlet.io/snapshot-request', '../etc'], ['hyperlet.io/restore-request', 'Bad_Name@1']] as const) {
      const h = harness('Container');
      const d = container('web', { state: 'Stopped' }, { annotations: { [annotation]: value } });
      h.provider.instances.set('web', observedAs(container('web', { state: 'Stopped' }), 'Stopped'));
      h.store.upsert(d);
      let thrown: unknown;
      try { await h.reconciler.reconcile(d.key, signal); } catch (err) { thrown = err; }
      expect(thrown, annotation).to.be.instanceOf(TerminalError);
      const status = h.backend.statuses.get(d.key);
      expect(condition(status, 'Stalled'), annotation).to.include({ status: 'True', reason: 'InvalidSnapshotName' });
      expect(status?.conditions.find((c) => c.type === 'Stalled')?.message).to.contain(`metadata.annotations["${annotation}"]`);
      expect(h.provider.count('snapshot') + h.provider.calls.filter((c) => c.startsWith('setState')).length, 'nothing done').to.equal(0);
    }
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

describe('Reconciler: kstatus conditions', () => {
  const pass = async (h: ReturnType<typeof harness>, key: Parameters<typeof h.reconciler.reconcile>[0]): Promise<unknown> => {
    try { await h.reconciler.reconcile(key, signal); return undefined; } catch (err) { return err; }
  };

  it(`a step failing the same way ${RETRIES_BEFORE_STALLED} times in a row is Stalled RetriesExhausted; success clears it`, async () => {
    const h = harness('Container');
    const d = container('web');
    h.store.upsert(d);
    h.provider.instances.set('web', observedAs(d, 'Stopped'));
    h.provider.failures.set('setState', new Error('lxc-start: bridge br-missing does not exist'));
    const seen: string[] = [];
    for (let i = 1; i <= RETRIES_BEFORE_STALLED; i++) {
      expect(await pass(h, d.key)).to.be.instanceOf(Error);
      const s = h.backend.statuses.get(d.key);
      seen.push(`${condition(s, 'Reconciling')?.status}/${condition(s, 'Stalled')?.status}:${condition(s, 'Stalled')?.reason}`);
    }
    const retrying = 'True/False:Progressing';
    expect(seen).to.deep.equal([...Array<string>(RETRIES_BEFORE_STALLED - 1).fill(retrying), 'False/True:RetriesExhausted']);
    expect(condition(h.backend.statuses.get(d.key), 'Ready')).to.include({ status: 'False', reason: 'StartFailed' });
    h.provider.failures.delete('setState');
    while (comesBack(await h.reconciler.reconcile(d.key, signal))) { /* next step */ }
    const s = h.backend.statuses.get(d.key);
    expect([condition(s, 'Reconciling')?.status, condition(s, 'Stalled')?.status, condition(s, 'Ready')?.status]).to.deep.equal(['False', 'False', 'True']);
  });

  it('counts again from one after a new generation or a different failure', async () => {
    const h = harness('Container');
    const d = container('web');
    h.store.upsert(d);
    h.provider.instances.set('web', observedAs(d, 'Stopped'));
    h.provider.failures.set('setState', new Error('boom'));
    for (let i = 1; i < RETRIES_BEFORE_STALLED; i++) await pass(h, d.key);
    h.store.upsert(container('web', { autostart: true }, { generation: 2 }));
    h.provider.instances.set('web', observedAs(container('web', { autostart: true }), 'Stopped'));
    await pass(h, d.key);
    expect(condition(h.backend.statuses.get(d.key), 'Stalled')?.status, 'a new generation is a new attempt').to.equal('False');
    for (let i = 1; i < RETRIES_BEFORE_STALLED - 1; i++) await pass(h, d.key);
    h.provider.failures.delete('setState');
    h.provider.failures.set('observe', new Error('lxc-info hangs'));
    await pass(h, d.key);
    expect(condition(h.backend.statuses.get(d.key), 'Stalled')?.status, 'another failure starts its own count').to.equal('False');
  });

  it('a terminal error is Stalled at the first pass, with its own reason', async () => {
    const h = harness('Container');
    const d = container('web', { template: 'nosuch' });
    h.store.upsert(d);
    h.provider.failures.set('create', new TerminalError('TemplateNotFound', 'cannot create container web: LXC template nosuch is not installed'));
    expect(await pass(h, d.key)).to.be.instanceOf(TerminalError);
    const s = h.backend.statuses.get(d.key);
    expect(condition(s, 'Stalled')).to.include({ status: 'True', reason: 'TemplateNotFound' });
    expect(condition(s, 'Reconciling')).to.include({ status: 'False', reason: 'Stalled' });
    expect(s?.observedGeneration).to.equal(1);
  });

  const stalledRetries = {
    TerminalRetriedByResync: {
      reason: 'a resync retries a create that failed for good: status stays Stalled, nothing is written',
      setUp: (h: ReturnType<typeof harness>) => h.provider.failures.set('create', new TerminalError('TemplateNotFound', 'no template')),
      passes: 2,
    },
    ExhaustedRetriedByBackoff: {
      reason: 'each backoff retry of an exhausted step keeps Stalled, never a flap to Reconciling',
      setUp: (h: ReturnType<typeof harness>) => {
        h.provider.instances.set('web', observedAs(container('web'), 'Stopped'));
        h.provider.failures.set('setState', new Error('boom'));
      },
      passes: RETRIES_BEFORE_STALLED + 3,
    },
  };
  for (const [name, tc] of Object.entries(stalledRetries)) {
    it(name, async () => {
      const h = harness('Container');
      const d = container('web');
      h.store.upsert(d);
      tc.setUp(h);
      const written: string[] = [];
      const write = h.backend.write.bind(h.backend);
      h.backend.write = (obj, status) => {
        written.push(`${condition(status, 'Reconciling')?.status}/${condition(status, 'Stalled')?.status}`);
        return write(obj, status);
      };
      for (let i = 0; i < tc.passes; i++) await pass(h, d.key);
      const firstStalled = written.indexOf('False/True');
      expect(firstStalled, tc.reason).to.be.greaterThan(-1);
      expect(written.slice(firstStalled), tc.reason).to.deep.equal(['False/True']);
    });
  }

  it('says Reconciling before correcting drift, so a step under way is never reported as converged', async () => {
    const h = harness('Container');
    const d = container('web');
    h.store.upsert(d);
    h.provider.instances.set('web', observedAs(d));
    await h.reconciler.reconcile(d.key, signal);
    expect(condition(h.backend.statuses.get(d.key), 'Reconciling')?.status).to.equal('False');
    h.provider.instances.set('web', observedAs(d, 'Stopped'));
    const seen: string[] = [];
    const original = h.provider.setState.bind(h.provider);
    h.provider.setState = (...args) => {
      const r = condition(h.backend.statuses.get(d.key), 'Reconciling');
      seen.push(`${r?.status}:${r?.reason}`);
      return original(...args);
    };
    await h.reconciler.reconcile(d.key, signal);
    expect(seen).to.deep.equal(['True:Starting']);
  });

  it('a dependency that is not declared stalls the dependent at once', async () => {
    const h = harness('Container');
    const d = container('app', { dependsOn: [{ kind: 'Container', name: 'nope' }] });
    h.store.upsert(d);
    await h.reconciler.reconcile(d.key, signal);
    expect(condition(h.backend.statuses.get(d.key), 'Stalled')).to.include({ status: 'True', reason: 'DependencyNotFound' });
  });
});

describe('Reconciler: GitOps rules', () => {
  const runUntilIdle = async (h: ReturnType<typeof harness>, key: Parameters<typeof h.reconciler.reconcile>[0]) => {
    for (let i = 0; i < 10; i++) {
      const r = await h.reconciler.reconcile(key, signal);
      if (r.kind !== 'nextStep') return r;
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
  // Fake time: the queue's delays and the cache's timestamps move only when the test ticks.
  let clock: sinon.SinonFakeTimers;
  beforeEach(() => { clock = sinon.useFakeTimers({ now: 1_000_000, toFake: ['Date', 'setTimeout', 'clearTimeout'] }); });
  afterEach(() => clock.restore());

  /** Moves fake time 5 ms at a time until `cond` holds, at most `timeoutMs` of it. */
  const waitFor = async (cond: () => boolean, timeoutMs = 5_000): Promise<void> => {
    for (let waited = 0; !cond(); waited += 5) {
      if (waited > timeoutMs) throw new Error('condition not met in time');
      await clock.tickAsync(5);
    }
  };

  it('drives many objects to Ready through the queue', async () => {
    const h = harness('Container');
    for (let i = 0; i < 20; i++) h.store.upsert(container(`c${i}`));
    await h.controller.start();
    await waitFor(() => [...h.backend.statuses.values()].filter((s) => s.phase === 'Running').length === 20);
    expect(h.provider.count('create')).to.equal(20);
    await h.controller.stop();
  });

  it('resyncs unchanged objects with one batch call, no actions and no writes', async () => {
    const h = harness('Container');
    for (let i = 0; i < 10; i++) h.store.upsert(container(`c${i}`));
    await h.controller.start();
    await waitFor(() => [...h.backend.statuses.values()].filter((s) => s.phase === 'Running').length === 10);
    await h.controller.queue.onIdle();
    // The cache treats an action in the same millisecond as a batch's start as newer than the batch
    // (conservative): let the (fake) clock move past the last step before resyncing.
    await clock.tickAsync(5);
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
    await waitFor(() => h.provider.instances.get('web')?.state === 'Running');
    await h.controller.queue.onIdle();
    h.provider.instances.set('web', { ...h.provider.instances.get('web')!, state: 'Stopped' });
    h.provider.emitChange('web');
    await waitFor(() => h.provider.instances.get('web')?.state === 'Running');
    await h.controller.stop();
  });

  it('a namespace whose starts hang never holds every worker: another namespace converges meanwhile', async () => {
    const h = harness('Container', { concurrency: 3 });
    let release: () => void = () => undefined;
    const hung = new Promise<void>((resolve) => { release = resolve; });
    const setState = h.provider.setState.bind(h.provider);
    let hanging = 0;
    h.provider.setState = async (d, to) => {
      if (d.hostName.startsWith('slow.')) {
        hanging++;
        await hung;
      }
      return setState(d, to);
    };
    for (let i = 0; i < 6; i++) h.store.upsert(container(`s${i}`, {}, { namespace: 'slow' }));
    await h.controller.start();
    await waitFor(() => hanging === 2);
    for (let i = 0; i < 3; i++) h.store.upsert(container(`f${i}`, {}, { namespace: 'fast' }));
    await waitFor(() => [0, 1, 2].every((i) => h.provider.instances.get(`fast.f${i}`)?.state === 'Running'));
    expect(hanging, 'the slow namespace kept its share (2 of 3 workers), no more').to.equal(2);
    release();
    await waitFor(() => [0, 1, 2, 3, 4, 5].every((i) => h.provider.instances.get(`slow.s${i}`)?.state === 'Running'));
    await h.controller.stop();
  });

  it('waits with backoff for a live change to take effect while a guest boots (no hot loop)', async () => {
    // The daemon's limiter (1 s doubling), fake time: the guest's balloon reaches the declared
    // memory 8 s after the start, and until then every observation reports another size.
    const h = harness('Container', { rateLimiter: new RateLimiter({ jitter: 0 }) });
    const d = container('web', { resources: { memory: '128Mi' } });
    let startedAtMs: number | undefined;
    let observations = 0;
    const observe = h.provider.observe.bind(h.provider);
    h.provider.observe = async (...args) => {
      const instance = await observe(...args);
      if (instance?.state !== 'Running') return instance;
      startedAtMs ??= Date.now();
      const ballooned = Date.now() - startedAtMs >= 8_000;
      const memory = ballooned ? 128 * 2 ** 20 : 256 * 2 ** 20 - ++observations * 4096;
      return { ...instance, fields: { ...instance.fields, 'resources.memory': memory } };
    };
    const update = h.provider.update.bind(h.provider);
    h.provider.update = async (...args) => {
      // Stops a hot loop the test would otherwise spin in forever (fake time never moves then).
      if (h.provider.count('update') >= 50) throw new TerminalError('HotLoop', 'cannot update: ran 50 times');
      return update(...args);
    };
    h.store.upsert(d);
    await h.controller.start();
    await clock.tickAsync(20_000);
    const status = h.backend.statuses.get(d.key);
    expect(h.provider.count('update'), 'runs at 0, 1 and 7 s while the balloon moves').to.be.at.most(4);
    expect(condition(status, 'Ready'), 'seen converged once the balloon settled').to.include({ status: 'True' });
    await h.controller.stop();
  });

  it('a change event of a failing object waits for its backoff instead of retrying it at once', async () => {
    const h = harness('Container', { concurrency: 1, rateLimiter: new RateLimiter({ baseDelayMs: 60_000, maxDelayMs: 60_000, jitter: 0 }) });
    const bad = container('bad');
    const good = container('good');
    h.store.upsert(bad);
    h.store.upsert(good);
    h.provider.instances.set('bad', observedAs(bad, 'Stopped'));
    h.provider.instances.set('good', observedAs(good));
    h.provider.failures.set('setState', new Error('lxc-start: bridge br-missing does not exist'));
    await h.controller.start();
    await waitFor(() => h.controller.queue.retries(bad.key) === 1);
    const goodObserves = (): number => h.provider.calls.filter((c) => c === 'observe:good').length;
    const before = goodObserves();
    h.provider.emitChange('bad'); // what lxc-monitor reports after a failed start
    h.provider.emitChange('good'); // handled after it: once good is observed again, bad's event was handled too
    await waitFor(() => goodObserves() > before);
    expect(h.provider.count('setState'), 'no retry before the backoff ends').to.equal(1);
    await h.controller.stop(0);
  });

  it('retries failures with backoff and stops retrying on a terminal error', async () => {
    const h = harness('Container');
    const d = container('web');
    h.store.upsert(d);
    h.provider.failures.set('create', new TerminalError('PoolNotFound', 'cannot create: no pool'));
    await h.controller.start();
    await waitFor(() => h.provider.count('create') >= 1);
    await clock.tickAsync(1_000);
    expect(h.provider.count('create'), 'a terminal error waits for the object to change').to.equal(1);
    expect(h.controller.queue.retries(d.key)).to.equal(0);
    h.provider.failures.set('create', new Error('transient'));
    h.store.upsert(container('web', { autostart: true }));
    await waitFor(() => h.provider.count('create') >= 3);
    h.provider.failures.delete('create');
    await waitFor(() => h.provider.instances.get('web')?.state === 'Running');
    await h.controller.stop();
  });
});

describe('Reconciler: a step that has begun but not finished (StepPendingError)', () => {
  const cases = {
    DownloadShowsProgress: {
      reason: 'an image still downloading: Reconciling and Ready say so with the bytes, phase Creating, come back after the hint',
      retryAfterMs: 500,
    },
    SlowerPolls: { reason: 'the provider\'s hint is the delay, never a hot loop or the backoff', retryAfterMs: 5_000 },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, async () => {
      const h = harness('Container');
      const d = container('web');
      h.store.upsert(d);
      const message = 'Downloading image http://127.0.0.1:1/r.tar: 1024 of 4096 bytes';
      h.provider.failures.set('create', new StepPendingError('DownloadingImage', message, tc.retryAfterMs));
      const result = await h.reconciler.reconcile(d.key, signal);
      expect(result, tc.reason).to.deep.equal(requeueAfter(tc.retryAfterMs));
      const s = h.backend.statuses.get(d.key);
      expect(s?.phase, tc.reason).to.equal('Creating');
      expect(condition(s, 'Reconciling'), tc.reason).to.include({ status: 'True', reason: 'DownloadingImage', message });
      expect(condition(s, 'Ready'), tc.reason).to.include({ status: 'False', reason: 'DownloadingImage', message });
      expect(condition(s, 'Stalled'), tc.reason).to.include({ status: 'False' });
      // The next pass may ask again at once (the guard's token came back) and is no failure in a row.
      for (let i = 0; i < RETRIES_BEFORE_STALLED + 1; i++) {
        expect(await h.reconciler.reconcile(d.key, signal), tc.reason).to.deep.equal(requeueAfter(tc.retryAfterMs));
      }
      expect(condition(h.backend.statuses.get(d.key), 'Stalled'), tc.reason).to.include({ status: 'False' });
      h.provider.failures.delete('create');
      expect(await h.reconciler.reconcile(d.key, signal), 'done downloading: the create goes through').to.deep.equal(nextStep());
    });
  }
});
