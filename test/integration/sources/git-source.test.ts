import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GitSource, type GitSourceOptions } from '../../../src/sources/git-source.js';
import { StateDb } from '../../../src/state/state-db.js';
import { DesiredStore } from '../../../src/store/desired-store.js';
import { silentLogger } from '../../../src/telemetry/logger.js';
import { StateStatusWriter } from '../../../src/status/state-status-writer.js';
import { TestRepo, containerYaml } from '../../support/git-repo.js';

/** The real GitSource against a real repository on disk; the store and state DB are in memory. */
describe('GitSource (real git, repository on disk)', function () {
  this.timeout(30_000);
  let dir: string;
  let repo: TestRepo;
  const aborts: AbortController[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hyperlet-gitsrc-'));
    repo = await TestRepo.create(join(dir, 'repo'));
  });
  afterEach(async () => {
    for (const a of aborts.splice(0)) a.abort();
    await rm(dir, { recursive: true, force: true });
  });

  function follow(options: Partial<GitSourceOptions> = {}, db = new StateDb(':memory:')) {
    const store = new DesiredStore();
    const writer = new StateStatusWriter(db, 'git', silentLogger());
    const source = new GitSource({
      id: 'git', location: repo.dir, cloneDir: join(dir, 'clone'), db, logger: silentLogger(),
      identify: (key, parts, hash) => db.identify(key, parts, hash), lastGoodOf: (f) => writer.lastGoodOf(f),
      intervalMs: 3_600_000, ...options,
    });
    const abort = new AbortController();
    aborts.push(abort);
    return { store, db, source, start: () => source.start(store, abort.signal), names: () => store.list().map((d) => d.object.metadata.name).sort() };
  }

  async function seed(n: number): Promise<string> {
    for (let i = 0; i < n; i++) await repo.write(`ct-${i}.yaml`, containerYaml(`ct-${i}`));
    return repo.commit(`${n} containers`);
  }

  it('never shows or stores the credentials of its URL, even when the fetch fails', async () => {
    const f = follow({ location: 'http://alice:hunter2-secret@127.0.0.1:1/r.git#main' });
    await f.start();
    const shown = JSON.stringify([f.source.description, f.source.summary(), f.source.problems(), f.db.listSources(), f.db.problems()]);
    expect(shown).to.not.contain('hunter2-secret');
    expect(shown).to.not.contain('alice');
    expect(f.source.description).to.equal('git:http://<redacted>@127.0.0.1:1/r.git#main');
    expect(f.source.problems()[0]?.line).to.match(/^cannot fetch http:\/\/<redacted>@127\.0\.0\.1:1\/r\.git branch main: /);
  });

  it('applies the tip, then follows a new commit, and an idle poll reads nothing', async () => {
    const first = await seed(2);
    const f = follow();
    await f.start();
    expect(f.names()).to.deep.equal(['ct-0', 'ct-1']);
    expect(f.source.current.lastApplied?.revision).to.equal(first);
    const second = await (async () => { await repo.write('more/ct-9.yaml', containerYaml('ct-9')); return repo.commit('one more'); })();
    await f.source.poll();
    expect(f.names()).to.deep.equal(['ct-0', 'ct-1', 'ct-9']);
    expect(f.store.get(f.store.keys().find((k) => k.endsWith('/ct-9'))!)?.origin?.file).to.equal('more/ct-9.yaml');
    expect(f.db.sourceState<{ lastApplied: { revision: string } }>('git')?.lastApplied.revision).to.equal(second);
    const attempts = f.source.stats.attempts;
    await f.source.poll();
    await f.source.poll();
    expect(f.source.stats.attempts, 'an unchanged tip is not evaluated again').to.equal(attempts);
  });

  it('applies nothing from a commit with one broken file and names commit, file, document and field; the fix applies', async () => {
    const good = await seed(3);
    const f = follow();
    await f.start();
    await repo.write('ct-0.yaml', containerYaml('ct-0', { resources: { memory: '128Mi' } }));
    await repo.write('ct-1.yaml', `${containerYaml('ct-1')}---\n${containerYaml('ct-new', { resources: { cpu: 0 } })}`);
    const broken = await repo.commit('broken');
    await f.source.poll();
    expect(f.names(), 'nothing of the broken commit, not even its good parts').to.deep.equal(['ct-0', 'ct-1', 'ct-2']);
    expect(f.store.list().find((d) => d.object.metadata.name === 'ct-0')?.object.spec.resources).to.equal(undefined);
    const state = f.source.current;
    expect(state.lastApplied?.revision).to.equal(good);
    expect(state.lastAttempted?.revision).to.equal(broken);
    expect(state.blocked?.reason).to.equal('InvalidManifests');
    const problem = f.db.problems()[0]?.problem;
    expect(problem).to.include({ file: 'ct-1.yaml', document: 2, path: 'spec.resources.cpu', revision: broken });
    expect(problem?.line).to.match(new RegExp(`^commit ${broken.slice(0, 12)}: ct-1.yaml#2 Container/ct-new: spec.resources.cpu: `));
    await repo.write('ct-1.yaml', `${containerYaml('ct-1')}---\n${containerYaml('ct-new', { resources: { cpu: 1 } })}`);
    const fixed = await repo.commit('fix');
    await f.source.poll();
    expect(f.names()).to.deep.equal(['ct-0', 'ct-1', 'ct-2', 'ct-new']);
    expect(f.source.current.lastApplied?.revision).to.equal(fixed);
    expect(f.source.current.blocked).to.equal(undefined);
    expect(f.db.problems()).to.deep.equal([]);
  });

  const pruneCases = {
    RemovingOneOfFourApplies: { reason: '25% is under the 50% limit', remove: 1, options: {}, want: { applied: true } },
    RemovingThreeOfFourIsHeld: { reason: '75% is over the 50% limit', remove: 3, options: {}, want: { applied: false, reason: 'PruneLimit' } },
    HalfIsAllowed: { reason: 'exactly the limit is allowed', remove: 2, options: {}, want: { applied: true } },
    LowerLimit: { reason: '--max-prune 20%', remove: 1, options: { maxPruneShare: 0.2 }, want: { applied: false, reason: 'PruneLimit' } },
    PruneOffHoldsNothing: { reason: 'with --prune=false nothing is deleted, so nothing is held', remove: 3, options: { prune: false }, want: { applied: true } },
    ConfirmedApplies: { reason: 'the user confirmed this very commit', remove: 3, options: { confirm: ['CONFIRM'] }, want: { applied: true } },
  };
  for (const [name, tc] of Object.entries(pruneCases)) {
    it(`prune limit: ${name}`, async () => {
      await seed(4);
      const f0 = follow();
      await f0.start();
      for (let i = 0; i < tc.remove; i++) await repo.remove(`ct-${i}.yaml`);
      const tip = await repo.commit('remove');
      aborts.splice(0).forEach((a) => a.abort());
      const confirm = 'confirm' in tc.options ? { confirm: [tip.slice(0, 9)] } : {};
      const f = follow({ ...tc.options, ...confirm }, f0.db);
      await f.start();
      expect(f.source.current.lastApplied?.revision === tip, tc.reason).to.equal(tc.want.applied);
      expect(f.names().length, tc.reason).to.equal(tc.want.applied ? 4 - tc.remove : 4);
      expect(f.source.current.blocked?.reason, tc.reason).to.equal('reason' in tc.want ? tc.want.reason : undefined);
      if (!tc.want.applied) expect(f.db.problems()[0]?.problem.line).to.contain(`--confirm ${tip.slice(0, 12)}`);
    });
  }

  it('an object annotated hyperlet.io/prune: disabled does not count toward the limit', async () => {
    await repo.write('keep-0.yaml', containerYaml('keep-0', {}, { 'hyperlet.io/prune': 'disabled' }));
    await repo.write('keep-1.yaml', containerYaml('keep-1', {}, { 'hyperlet.io/prune': 'disabled' }));
    await seed(2);
    const f = follow();
    await f.start();
    await repo.remove('keep-0.yaml');
    await repo.remove('keep-1.yaml');
    await repo.remove('ct-0.yaml');
    const tip = await repo.commit('remove three');
    await f.source.poll();
    expect(f.source.current.lastApplied?.revision, 'only ct-0 would be deleted: 1 of 4').to.equal(tip);
  });

  it('holds a rewritten history and deletes nothing until confirmed', async () => {
    const base = await seed(3);
    await repo.write('ct-3.yaml', containerYaml('ct-3'));
    const added = await repo.commit('add ct-3');
    const f = follow();
    await f.start();
    await repo.resetHard(base);
    await repo.write('other.yaml', containerYaml('other'));
    const rewritten = await repo.commit('rewritten');
    await f.source.poll();
    expect(f.source.current.lastApplied?.revision).to.equal(added);
    expect(f.source.current.blocked).to.include({ reason: 'HistoryRewritten', revision: rewritten });
    expect(f.names()).to.deep.equal(['ct-0', 'ct-1', 'ct-2', 'ct-3']);
    aborts.splice(0).forEach((a) => a.abort());
    const again = follow({ confirm: [rewritten.slice(0, 7)] }, f.db);
    await again.start();
    expect(again.source.current.lastApplied?.revision).to.equal(rewritten);
    expect(again.names()).to.deep.equal(['ct-0', 'ct-1', 'ct-2', 'other']);
  });

  it('a source id pointed at another repository holds its first commit and says where it pointed before', async () => {
    await seed(2);
    const f = follow();
    await f.start();
    aborts.splice(0).forEach((a) => a.abort());
    const other = await TestRepo.create(join(dir, 'other'));
    await other.write('x.yaml', containerYaml('x'));
    await other.commit('other repo');
    const moved = follow({ location: other.dir }, f.db);
    await moved.start();
    expect(moved.names(), 'the old objects stay').to.deep.equal(['ct-0', 'ct-1']);
    expect(moved.source.current.blocked?.reason).to.equal('HistoryRewritten');
    expect(moved.source.current.blocked?.message).to.contain(`(was ${repo.dir})`);
  });

  it('keeps the last applied commit when the fetch fails, and after a restart serves it from the clone without the remote', async () => {
    const tip = await seed(2);
    const f = follow();
    await f.start();
    await rm(repo.dir, { recursive: true, force: true });
    await f.source.poll();
    expect(f.names()).to.deep.equal(['ct-0', 'ct-1']);
    expect(f.source.current.blocked?.reason).to.equal('FetchFailed');
    expect(f.source.current.lastFetch?.ok).to.equal(false);
    expect(f.db.problems()[0]?.problem.line).to.contain('cannot fetch');
    aborts.splice(0).forEach((a) => a.abort());
    const restarted = follow({}, f.db);
    await restarted.start();
    expect(restarted.names(), 'served from the local clone').to.deep.equal(['ct-0', 'ct-1']);
    expect(restarted.source.current.lastApplied?.revision).to.equal(tip);
    expect(restarted.source.current.blocked?.reason).to.equal('FetchFailed');
  });

  it('follows a branch and a subdirectory, and reports a subdirectory the commit lacks', async () => {
    await repo.write('hosts/a/web.yaml', containerYaml('web'));
    await repo.write('hosts/b/db.yaml', containerYaml('db'));
    await repo.write('README.md', '# not a manifest');
    await repo.commit('layout');
    const f = follow({ location: `${repo.dir}#main//hosts/a` });
    await f.start();
    expect(f.names()).to.deep.equal(['web']);
    expect(f.store.list()[0]?.origin?.file).to.equal('hosts/a/web.yaml');
    const g = follow({ id: 'git-2', location: `${repo.dir}#main//hosts/c`, cloneDir: join(dir, 'clone-2') });
    await g.start();
    expect(g.names()).to.deep.equal([]);
    expect(g.source.current.blocked?.reason).to.equal('InvalidManifests');
    expect(g.db.problems()[0]?.problem.line).to.contain('hosts/c');
    const h = follow({ id: 'git-3', location: `${repo.dir}#nope`, cloneDir: join(dir, 'clone-3') });
    await h.start();
    expect(h.source.current.blocked?.reason).to.equal('FetchFailed');
  });

  it('keys carry the source id: two sources on one repository own separate objects', async () => {
    await seed(1);
    const db = new StateDb(':memory:');
    const a = follow({}, db);
    const b = follow({ id: 'git-2', cloneDir: join(dir, 'clone-2') }, db);
    await a.start();
    await b.start();
    expect(a.store.keys()).to.deep.equal(['git/default/Container/ct-0']);
    expect(b.store.keys()).to.deep.equal(['git-2/default/Container/ct-0']);
    expect(a.store.list()[0]?.id).to.not.equal(b.store.list()[0]?.id);
  });
});
