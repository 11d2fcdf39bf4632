/** DirSource against real files and a real chokidar watcher. */
import { expect } from 'chai';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, unlinkSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DirSource } from '../../../src/sources/dir-source.js';
import { DesiredStore } from '../../../src/store/desired-store.js';
import { silentLogger } from '../../../src/telemetry/logger.js';
import { container } from '../../fakes/desired-objects.js';
import { until } from '../../support/until.js';

const ct = (name: string, cpu = 1) => `apiVersion: hyperlet.io/v1alpha1\nkind: Container\nmetadata:\n  name: ${name}\nspec:\n  template: busybox\n  resources: {cpu: ${cpu}}\n`;

describe('DirSource (real files, chokidar)', function () {
  this.timeout(15_000);
  let dir: string;
  let abort: AbortController;
  let store: DesiredStore;
  let changes: string[];
  let source: DirSource;
  let ids: Map<string, number>;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'hyperlet-dir-'));
    abort = new AbortController();
    store = new DesiredStore();
    changes = [];
    store.onChange((k) => changes.push(k));
    ids = new Map();
    source = new DirSource({
      path: dir, logger: silentLogger(), debounceMs: 50,
      identify: (key, _p, hash) => { const g = (ids.get(`${key}`) ?? 0) + (ids.has(`${key}:${hash}`) ? 0 : 1); ids.set(`${key}:${hash}`, 1); ids.set(key, g); return { id: `id-${key}`, generation: g }; },
    });
  });
  afterEach(() => {
    abort.abort();
    rmSync(dir, { recursive: true, force: true });
    rmSync(`${dir}.away`, { recursive: true, force: true });
  });

  it('lists every object at start, keyed by kind/namespace/name', async () => {
    writeFileSync(join(dir, 'a.yaml'), `${ct('a')}---\n${ct('b')}`);
    await source.start(store, abort.signal);
    expect([...store.keys()].sort()).to.deep.equal(['dir/default/Container/a', 'dir/default/Container/b']);
  });

  it('a broken file keeps the objects it declared before; its fix applies', async () => {
    writeFileSync(join(dir, 'a.yaml'), ct('a'));
    await source.start(store, abort.signal);
    writeFileSync(join(dir, 'a.yaml'), 'kind: [oops\n');
    await until('the broken file reported', () => source.problems().length === 1, 5_000);
    expect(store.keys()).to.deep.equal(['dir/default/Container/a']);
    writeFileSync(join(dir, 'a.yaml'), ct('a', 2));
    await until('the fix applied', () => source.problems().length === 0 && (store.get('dir/default/Container/a' as never)?.object.spec as { resources: { cpu: number } }).resources.cpu === 2, 5_000);
  });

  it('an invalid document keeps that object\'s last good spec and lets the others through', async () => {
    writeFileSync(join(dir, 'a.yaml'), `${ct('a')}---\n${ct('b')}`);
    await source.start(store, abort.signal);
    writeFileSync(join(dir, 'a.yaml'), `${ct('a', 500)}---\n${ct('b', 3)}`);
    await until('the invalid document reported', () => source.problems().length === 1, 5_000);
    await until('b at cpu 3', () => (store.get('dir/default/Container/b' as never)?.object.spec as { resources: { cpu: number } }).resources.cpu === 3, 5_000);
    expect((store.get('dir/default/Container/a' as never)?.object.spec as { resources: { cpu: number } }).resources.cpu).to.equal(1);
    expect(source.problems()[0]?.line).to.match(/^a\.yaml#1 Container\/a: spec\.resources\.cpu: must be <= 128/);
  });

  it('moving an object to another file changes nothing, even as two separate writes', async () => {
    writeFileSync(join(dir, 'a.yaml'), `${ct('a')}---\n${ct('b')}`);
    await source.start(store, abort.signal);
    changes.length = 0;
    const listings = source.stats.listings;
    writeFileSync(join(dir, 'a.yaml'), ct('a')); // b leaves a.yaml…
    await until('a.yaml read again', () => source.stats.listings > listings, 5_000, 10); // …and is read as gone…
    writeFileSync(join(dir, 'b.yaml.tmp'), ct('b'));
    renameSync(join(dir, 'b.yaml.tmp'), join(dir, 'b.yaml')); // …before it arrives in b.yaml, within the grace period
    await until('the grace period checked', () => source.stats.graceChecks >= 1, 5_000, 10);
    expect(changes).to.deep.equal([]);
    expect([...store.keys()].sort()).to.deep.equal(['dir/default/Container/a', 'dir/default/Container/b']);
  });

  it('removing a file removes its objects', async () => {
    writeFileSync(join(dir, 'a.yaml'), ct('a'));
    writeFileSync(join(dir, 'b.yaml'), ct('b'));
    await source.start(store, abort.signal);
    unlinkSync(join(dir, 'b.yaml'));
    await until('b removed', () => store.keys().length === 1, 5_000);
    expect(store.keys()).to.deep.equal(['dir/default/Container/a']);
  });

  it('reports the same object declared in two files and keeps the first', async () => {
    writeFileSync(join(dir, 'a.yaml'), ct('a'));
    writeFileSync(join(dir, 'b.yaml'), ct('a', 4));
    await source.start(store, abort.signal);
    expect(store.keys()).to.deep.equal(['dir/default/Container/a']);
    expect(source.problems().map((p) => p.line)).to.deep.equal(['b.yaml#1 Container/a: metadata.name: also declared in a.yaml; this one is ignored']);
  });

  it('restarts with a broken file from the fallback, not as a deletion', async () => {
    writeFileSync(join(dir, 'a.yaml'), 'kind: [oops\n');
    const fallbackSource = new DirSource({
      path: dir, logger: silentLogger(), debounceMs: 50, identify: () => ({ id: 'x', generation: 1 }),
      fallback: (file) => (file === 'a.yaml' ? [container('a')] : []),
    });
    await fallbackSource.start(store, abort.signal);
    expect(store.keys()).to.deep.equal(['dir/default/Container/a']);
  });

  describe('a listing that fails changes nothing', () => {
    const keys = ['dir/default/Container/a', 'dir/default/Container/b'];
    const listFailure = () => source.problems().find((p) => p.rule === 'list');
    const fast = () => new DirSource({
      path: dir, logger: silentLogger(), debounceMs: 20, removalGraceMs: 200, listRetryMs: { min: 50, max: 100 },
      identify: () => ({ id: 'x', generation: 1 }),
    });

    it('the watched directory replaced by a file: every object stays, not ready, the path and reason said; back, it serves again', async () => {
      writeFileSync(join(dir, 'a.yaml'), ct('a'));
      writeFileSync(join(dir, 'b.yaml'), ct('b'));
      source = fast();
      await source.start(store, abort.signal);
      changes.length = 0;
      renameSync(dir, `${dir}.away`);
      writeFileSync(dir, 'not a directory');
      await until('the failed listing reported', () => listFailure(), 5_000, 10);
      expect(source.ready()).to.equal(false);
      expect(listFailure()?.file).to.equal(dir);
      expect(listFailure()?.line).to.match(/cannot list .*ENOTDIR|cannot list .*not a directory/);
      // Listings keep failing for longer than the grace period (4 × at least 50 ms > 200 ms): still nothing removed.
      const failed = source.stats.failedListings;
      await until('four more failed listings', () => source.stats.failedListings >= failed + 4, 5_000, 10);
      expect(changes, 'no object changed or removed').to.deep.equal([]);
      expect([...store.keys()].sort()).to.deep.equal(keys);

      rmSync(dir);
      renameSync(`${dir}.away`, dir);
      writeFileSync(join(dir, 'c.yaml'), ct('c'));
      await until('c listed once the directory is back', () => store.get('dir/default/Container/c' as never), 5_000, 10);
      expect(source.ready()).to.equal(true);
      expect(listFailure()).to.equal(undefined);
      writeFileSync(join(dir, 'd.yaml'), ct('d'));
      await until('a new file seen by the new watch', () => store.get('dir/default/Container/d' as never), 5_000, 10);
      expect(changes.filter((k) => keys.includes(k)), 'a and b were never touched').to.deep.equal([]);
    });

    it('the watched directory gone: nothing removed until it is back', async () => {
      mkdirSync(join(dir, 'sub'));
      writeFileSync(join(dir, 'a.yaml'), ct('a'));
      writeFileSync(join(dir, 'sub', 'b.yaml'), ct('b'));
      source = fast();
      await source.start(store, abort.signal);
      changes.length = 0;
      renameSync(dir, `${dir}.away`);
      await until('the failed listing reported', () => listFailure(), 5_000, 10);
      expect(listFailure()?.line).to.match(/ENOENT/);
      const failed = source.stats.failedListings;
      await until('four more failed listings', () => source.stats.failedListings >= failed + 4, 5_000, 10);
      expect(changes).to.deep.equal([]);
      renameSync(`${dir}.away`, dir);
      await until('ready again', () => source.ready(), 5_000, 10);
      await source.rescanAll(); // flushes run one at a time: this one ends after the recovery's
      expect([...store.keys()].sort()).to.deep.equal(keys);
      expect(changes).to.deep.equal([]);
    });

    it('a directory that does not exist yet: start waits for a listing that works, and says why meanwhile', async () => {
      rmSync(dir, { recursive: true });
      source = fast();
      let started = false;
      const starting = source.start(store, abort.signal).then(() => { started = true; });
      await until('the failed listing reported', () => listFailure(), 5_000, 10);
      const failed = source.stats.failedListings;
      await until('two more failed listings', () => source.stats.failedListings >= failed + 2, 5_000, 10);
      expect(started, 'start has not resolved: nothing was listed').to.equal(false);
      expect(store.keys()).to.deep.equal([]);
      mkdirSync(dir);
      writeFileSync(join(dir, 'a.yaml'), ct('a'));
      await starting;
      expect(store.keys()).to.deep.equal(['dir/default/Container/a']);
      expect(source.ready()).to.equal(true);
      writeFileSync(join(dir, 'b.yaml'), ct('b'));
      await until('b seen by the watch made once the directory existed', () => store.get('dir/default/Container/b' as never), 5_000, 10);
    });
  });
});
