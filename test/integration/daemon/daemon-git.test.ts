/**
 * The whole daemon following a real git repository on disk, with a FakeProvider at the provider
 * boundary: prune, the prune limit, pause, dependsOn and drift policy as decisions on instances.
 */
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Status } from '../../../src/api/v1alpha1/types.js';
import { Daemon, type DaemonConfig } from '../../../src/daemon/daemon.js';
import type { GitSource } from '../../../src/sources/git-source.js';
import { StateDb } from '../../../src/state/state-db.js';
import { silentLogger } from '../../../src/telemetry/logger.js';
import { FakeProvider } from '../../fakes/fake-provider.js';
import { TestRepo, containerYaml, git } from '../../support/git-repo.js';
import { PassCounter } from '../../support/pass-counter.js';
import { until } from '../../support/until.js';
import type { ObjectKey } from '../../../src/store/object-key.js';
import { DEFAULT_HOST_POLICY, type HostPolicy } from '../../../src/policy/host-policy.js';

describe('Daemon following a git repository (FakeProvider)', function () {
  this.timeout(30_000);
  let dir: string;
  let repo: TestRepo;
  let provider: FakeProvider<'Container'>;
  const daemons: Daemon[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hyperlet-daemon-git-'));
    repo = await TestRepo.create(join(dir, 'repo'));
    provider = new FakeProvider('Container');
  });
  afterEach(async () => {
    for (const d of daemons.splice(0)) await d.stop();
    await rm(dir, { recursive: true, force: true });
  });

  async function run(extra: Partial<DaemonConfig> = {}) {
    const config: DaemonConfig = {
      sources: [{ type: 'git', location: repo.dir }], statePath: join(dir, 'state', 'state.db'), lxcpath: '', libvirtUri: '',
      kinds: ['Container'], node: 'node-a', nodeFilter: false, resyncMs: 3_600_000, concurrency: 4, qps: 1_000, burst: 1_000,
      shutdownTimeoutMs: 5_000, providers: new Map([['Container', provider]]), git: { intervalMs: 3_600_000 }, ...extra,
    };
    const daemon = new Daemon(config, silentLogger());
    daemons.push(daemon);
    await daemon.start();
    const source = daemon.sources[0] as GitSource;
    const status = (name: string): Status | undefined => {
      const db = new StateDb(config.statePath, { readonly: true });
      try { return db.listObjects().find((r) => r.name === name)?.status; } finally { db.close(); }
    };
    const audit = (name: string) => {
      const db = new StateDb(config.statePath, { readonly: true });
      try { return db.auditFor(`git/default/Container/${name}`, 50).map((a) => a.action); } finally { db.close(); }
    };
    return { daemon, source, status, audit, stop: async () => { daemons.splice(daemons.indexOf(daemon), 1); await daemon.stop(); } };
  }

  const key = (name: string): ObjectKey => `git/default/Container/${name}` as ObjectKey;
  /** Two more whole passes of each named object (each after a resync): what would happen has happened. */
  const twoMorePasses = async (daemon: Daemon, names: readonly string[]): Promise<void> => {
    const controller = daemon.controllers.get('Container')!;
    const passes = new PassCounter(controller.queue);
    await passes.more(names.map(key), 2, () => controller.resync());
    passes.close();
  };
  const running = (name: string) => (): boolean => provider.instances.get(name)?.state === 'Running';
  const cond = (s: Status | undefined, type: string) => s?.conditions.find((c) => c.type === type);
  const externalStop = (name: string): void => {
    provider.instances.set(name, { ...provider.instances.get(name)!, state: 'Stopped' });
    provider.emitChange(name);
  };

  it('follows commits onto instances and prunes a removed file', async () => {
    for (const n of ['a', 'b', 'c']) await repo.write(`${n}.yaml`, containerYaml(n));
    await repo.commit('three');
    const { source } = await run();
    await until('a, b and c Running', () => ['a', 'b', 'c'].every((n) => running(n)()), 10_000, 20);
    await repo.write('d.yaml', containerYaml('d'));
    await repo.remove('a.yaml');
    await repo.commit('add d, remove a');
    await source.poll();
    await until('d Running and a deleted', () => running('d')() && !provider.instances.has('a'), 10_000, 20);
    expect(provider.count('delete')).to.equal(1);
  });

  it('holds back a commit removing most files: nothing is deleted until confirmed', async () => {
    for (const n of ['a', 'b', 'c', 'd']) await repo.write(`${n}.yaml`, containerYaml(n));
    await repo.commit('four');
    const first = await run();
    await until('all four Running', () => ['a', 'b', 'c', 'd'].every((n) => running(n)()), 10_000, 20);
    for (const n of ['a', 'b', 'c']) await repo.remove(`${n}.yaml`);
    const tip = await repo.commit('oops, emptied the directory');
    await first.source.poll();
    await twoMorePasses(first.daemon, ['a', 'b', 'c']);
    expect(first.source.current.blocked?.reason).to.equal('PruneLimit');
    expect(provider.count('delete')).to.equal(0);
    await first.stop();
    await run({ git: { intervalMs: 3_600_000, confirm: [tip.slice(0, 8)] } });
    await until('only d left', () => provider.instances.size === 1, 10_000, 20);
    expect([...provider.instances.keys()]).to.deep.equal(['d']);
  });

  it('the prune annotation leaves instances behind, so the default host policy refuses it', async () => {
    await repo.write('a.yaml', containerYaml('a', {}, { 'hyperlet.io/prune': 'disabled' }));
    await repo.commit('one');
    const r = await run();
    await until('a PolicyDenied', () => cond(r.status('a'), 'Ready')?.reason === 'PolicyDenied', 10_000, 20);
    expect(cond(r.status('a'), 'Ready')?.message).to.include('metadata.annotations["hyperlet.io/prune"]: "disabled" is not allowed for source git, namespace default');
    expect(provider.calls, 'nothing observed or made for it').to.deep.equal(['probe', 'observeAll']);
  });

  it('--prune=false and the prune annotation keep instances of removed objects', async () => {
    await repo.write('a.yaml', containerYaml('a', {}, { 'hyperlet.io/prune': 'disabled' }));
    for (const n of ['b', 'c', 'd']) await repo.write(`${n}.yaml`, containerYaml(n));
    await repo.commit('four');
    // The annotation is an author's way to orphan: this host's policy allows it.
    const orphans: HostPolicy = { ...DEFAULT_HOST_POLICY, defaults: { ...DEFAULT_HOST_POLICY.defaults, orphan: true } };
    const r = await run({ hostPolicy: orphans });
    await until('all four Running', () => ['a', 'b', 'c', 'd'].every((n) => running(n)()), 10_000, 20);
    await repo.remove('a.yaml');
    await repo.commit('remove a');
    await r.source.poll();
    await until('a PruneSkipped', () => r.audit('a').includes('PruneSkipped'), 10_000, 20);
    expect(provider.instances.has('a')).to.equal(true);
    await r.stop();
    const off = await run({ policy: { prune: false, paused: false }, hostPolicy: orphans });
    await repo.remove('b.yaml');
    await repo.commit('remove b');
    await off.source.poll();
    await until('b PruneSkipped', () => off.audit('b').includes('PruneSkipped'), 10_000, 20);
    expect(provider.instances.has('b')).to.equal(true);
    expect(provider.count('delete')).to.equal(0);
  });

  it('a paused object is left alone while its drift is reported; a paused source changes nothing', async () => {
    await repo.write('p.yaml', containerYaml('p'));
    await repo.write('q.yaml', containerYaml('q'));
    await repo.commit('two');
    const r = await run();
    await until('p and q Running', () => running('p')() && running('q')(), 10_000, 20);
    await repo.write('p.yaml', containerYaml('p', { resources: { memory: '256Mi' } }, { 'hyperlet.io/paused': 'true' }));
    await repo.commit('pause p, and change it');
    await r.source.poll();
    await until('p Paused', () => cond(r.status('p'), 'Paused')?.status === 'True', 10_000, 20);
    externalStop('p');
    // Drifted is already True for the memory change: wait for the external stop to be in it too.
    await until('p Drifted by the stop', () => cond(r.status('p'), 'Drifted')?.message?.includes('state is Stopped'), 10_000, 20);
    await twoMorePasses(r.daemon, ['p']);
    expect(provider.instances.get('p')?.state).to.equal('Stopped');
    expect(provider.count('update')).to.equal(0);
    expect(cond(r.status('p'), 'Drifted')?.message).to.contain('state is Stopped, declared Running').and.to.contain('resources.memory');
    await r.stop();
    const paused = await run({ policy: { prune: true, paused: true } });
    await repo.write('new.yaml', containerYaml('new'));
    await repo.commit('new object while paused');
    await paused.source.poll();
    await until('new Paused', () => cond(paused.status('new'), 'Paused')?.status === 'True', 10_000, 20);
    expect(provider.instances.has('new')).to.equal(false);
  });

  it('dependsOn: creates and starts dependencies first, deletes dependents first; a cycle is a status error', async () => {
    await repo.write('db.yaml', containerYaml('db'));
    await repo.write('app.yaml', containerYaml('app', { dependsOn: [{ kind: 'Container', name: 'db' }] }));
    await repo.write('x.yaml', containerYaml('x'));
    await repo.write('y.yaml', containerYaml('y'));
    await repo.commit('app on db');
    const r = await run();
    await until('app and db Running', () => running('app')() && running('db')(), 10_000, 20);
    const calls = provider.calls;
    expect(calls.indexOf('setState:db:Running'), 'db is started before app is created').to.be.lessThan(calls.indexOf('create:app'));
    await repo.remove('db.yaml');
    await repo.remove('app.yaml');
    await repo.write('c1.yaml', containerYaml('c1', { dependsOn: [{ kind: 'Container', name: 'c2' }] }));
    await repo.write('c2.yaml', containerYaml('c2', { dependsOn: [{ kind: 'Container', name: 'c1' }] }));
    await repo.commit('remove both; add a cycle');
    await r.source.poll();
    await until('app and db deleted', () => !provider.instances.has('db') && !provider.instances.has('app'), 10_000, 20);
    expect(calls.indexOf('delete:app'), 'app is deleted before db').to.be.lessThan(calls.indexOf('delete:db'));
    await until('c1 DependencyCycle', () => cond(r.status('c1'), 'Synced')?.reason === 'DependencyCycle', 10_000, 20);
    expect(cond(r.status('c1'), 'Synced')?.message).to.contain('Container/c1 -> Container/c2 -> Container/c1');
    expect(provider.instances.has('c1')).to.equal(false);
  });

  it('driftPolicy Report shows an external stop but does not fix it; Correct fixes it', async () => {
    await repo.write('rep.yaml', containerYaml('rep', { driftPolicy: 'Report' }));
    await repo.write('fix.yaml', containerYaml('fix'));
    await repo.commit('two policies');
    const r = await run();
    await until('rep and fix Running', () => running('rep')() && running('fix')() && r.status('rep')?.convergedGeneration === 1, 10_000, 20);
    externalStop('rep');
    externalStop('fix');
    await until('rep Drifted and fix Running again', () => cond(r.status('rep'), 'Drifted')?.status === 'True' && running('fix')(), 10_000, 20);
    await twoMorePasses(r.daemon, ['rep']);
    expect(provider.instances.get('rep')?.state).to.equal('Stopped');
    expect(r.audit('rep')).to.include('Drifted');
  });

  it('a force-pushed rewrite deletes nothing until confirmed, then only what the new history drops', async () => {
    for (const n of ['a', 'b', 'c']) await repo.write(`${n}.yaml`, containerYaml(n));
    const base = await repo.commit('three');
    await repo.write('d.yaml', containerYaml('d'));
    await repo.commit('add d');
    const r = await run();
    await until('all four Running', () => ['a', 'b', 'c', 'd'].every((n) => running(n)()), 10_000, 20);
    await repo.resetHard(base);
    await repo.write('e.yaml', containerYaml('e'));
    const rewritten = await repo.commit('rewritten: e instead of d');
    await r.source.poll();
    await twoMorePasses(r.daemon, ['a', 'b', 'c', 'd']);
    expect(r.source.current.blocked?.reason).to.equal('HistoryRewritten');
    expect(provider.count('delete')).to.equal(0);
    expect(provider.instances.has('e')).to.equal(false);
    await r.stop();
    await run({ git: { intervalMs: 3_600_000, confirm: [rewritten] } });
    await until('e Running and d deleted', () => running('e')() && !provider.instances.has('d'), 10_000, 20);
    expect(['a', 'b', 'c'].every((n) => running(n)())).to.equal(true);
    expect(provider.count('delete')).to.equal(1);
  });

  it('after a restart, a last applied commit git cannot read serves what the state DB remembers: nothing is deleted', async () => {
    for (const n of ['a', 'b']) await repo.write(`${n}.yaml`, containerYaml(n));
    await repo.commit('two');
    const first = await run();
    await until('a and b Running', () => running('a')() && running('b')(), 10_000, 20);
    await first.stop();
    // Damage the clone: the commit is there, its tree is not (fetched objects this few are loose).
    const tree = await git(repo.dir, 'rev-parse', 'HEAD^{tree}');
    const loose = join(dir, 'state', 'git', 'git', 'objects', tree.slice(0, 2), tree.slice(2));
    await rm(loose);
    const second = await run();
    await twoMorePasses(second.daemon, ['a', 'b']);
    expect(provider.count('delete'), 'nothing deleted').to.equal(0);
    expect(running('a')() && running('b')()).to.equal(true);
  });
});
