import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync, unlinkSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DirSource } from '../../../src/sources/dir-source.js';
import { DesiredStore } from '../../../src/store/desired-store.js';
import { silentLogger } from '../../../src/telemetry/logger.js';
import { container } from '../../fakes/desired-objects.js';

const ct = (name: string, cpu = 1) => `apiVersion: hyperlet.io/v1alpha1\nkind: Container\nmetadata:\n  name: ${name}\nspec:\n  template: busybox\n  resources: {cpu: ${cpu}}\n`;

async function until(cond: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

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
  afterEach(() => { abort.abort(); rmSync(dir, { recursive: true, force: true }); });

  it('lists every object at start, keyed by kind/namespace/name', async () => {
    writeFileSync(join(dir, 'a.yaml'), `${ct('a')}---\n${ct('b')}`);
    await source.start(store, abort.signal);
    expect([...store.keys()].sort()).to.deep.equal(['dir/default/Container/a', 'dir/default/Container/b']);
  });

  it('a broken file keeps the objects it declared before; its fix applies', async () => {
    writeFileSync(join(dir, 'a.yaml'), ct('a'));
    await source.start(store, abort.signal);
    writeFileSync(join(dir, 'a.yaml'), 'kind: [oops\n');
    await until(() => source.problems().length === 1);
    expect(store.keys()).to.deep.equal(['dir/default/Container/a']);
    writeFileSync(join(dir, 'a.yaml'), ct('a', 2));
    await until(() => source.problems().length === 0 && (store.get('dir/default/Container/a' as never)?.object.spec as { resources: { cpu: number } }).resources.cpu === 2);
  });

  it('an invalid document keeps that object\'s last good spec and lets the others through', async () => {
    writeFileSync(join(dir, 'a.yaml'), `${ct('a')}---\n${ct('b')}`);
    await source.start(store, abort.signal);
    writeFileSync(join(dir, 'a.yaml'), `${ct('a', 500)}---\n${ct('b', 3)}`);
    await until(() => source.problems().length === 1);
    await until(() => (store.get('dir/default/Container/b' as never)?.object.spec as { resources: { cpu: number } }).resources.cpu === 3);
    expect((store.get('dir/default/Container/a' as never)?.object.spec as { resources: { cpu: number } }).resources.cpu).to.equal(1);
    expect(source.problems()[0]?.line).to.match(/^a\.yaml#1 Container\/a: spec\.resources\.cpu: must be <= 128/);
  });

  it('moving an object to another file changes nothing, even as two separate writes', async () => {
    writeFileSync(join(dir, 'a.yaml'), `${ct('a')}---\n${ct('b')}`);
    await source.start(store, abort.signal);
    changes.length = 0;
    writeFileSync(join(dir, 'a.yaml'), ct('a')); // b leaves a.yaml…
    await new Promise((r) => setTimeout(r, 300)); // …and is read as gone (debounce 50 ms)…
    writeFileSync(join(dir, 'b.yaml.tmp'), ct('b'));
    renameSync(join(dir, 'b.yaml.tmp'), join(dir, 'b.yaml')); // …before it arrives in b.yaml, within the grace period
    await new Promise((r) => setTimeout(r, 1_500));
    expect(changes).to.deep.equal([]);
    expect([...store.keys()].sort()).to.deep.equal(['dir/default/Container/a', 'dir/default/Container/b']);
  });

  it('removing a file removes its objects', async () => {
    writeFileSync(join(dir, 'a.yaml'), ct('a'));
    writeFileSync(join(dir, 'b.yaml'), ct('b'));
    await source.start(store, abort.signal);
    unlinkSync(join(dir, 'b.yaml'));
    await until(() => store.keys().length === 1);
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
});
