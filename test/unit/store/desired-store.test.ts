import { expect } from 'chai';
import { DesiredStore } from '../../../src/store/desired-store.js';
import { container } from '../../fakes/desired-objects.js';

describe('DesiredStore.list', () => {
  // list() hands out one array until an object is set or removed, so readers may keep figures by it.
  const cases: Record<string, { reason: string; change: (s: DesiredStore) => void; sameList: boolean; names: string[] }> = {
    NothingChanged: { reason: 'no write: the same array', change: () => {}, sameList: true, names: ['a', 'b'] },
    Added: { reason: 'a new object: a new array with it', change: (s) => s.upsert(container('c')), sameList: false, names: ['a', 'b', 'c'] },
    Removed: {
      reason: 'a removed object: a new array without it', change: (s) => s.remove(container('a').key), sameList: false, names: ['b'],
    },
    RemovedUnknown: {
      reason: 'removing a key it does not hold changes nothing', change: (s) => s.remove(container('x').key), sameList: true, names: ['a', 'b'],
    },
    ReplacedSilently: {
      reason: 'an upsert that notifies nobody (same fingerprint) still replaces the object in the list',
      change: (s) => s.upsert({ ...container('a'), origin: { file: 'moved.yaml', document: 0 } }), sameList: false, names: ['a', 'b'],
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const store = new DesiredStore();
      store.upsert(container('a'));
      store.upsert(container('b'));
      const before = store.list();
      expect(store.list(), 'two reads without a write').to.equal(before);
      tc.change(store);
      const after = store.list();
      expect(after === before, tc.reason).to.equal(tc.sameList);
      expect(after.map((d) => d.object.metadata.name), tc.reason).to.deep.equal(tc.names);
      if (name === 'ReplacedSilently') expect(after[0]?.origin?.file, tc.reason).to.equal('moved.yaml');
      expect(Object.isFrozen(after), 'nobody may change the list others read').to.equal(true);
    });
  }
});

describe('DesiredStore.revision', () => {
  // A revision names one state of one store: what a reconcile reads changes, the revision does.
  // (Tests that hand revisions to admission themselves use numbers from 1e9 up, which no store reaches.)
  const cases: Record<string, { reason: string; change: (s: DesiredStore) => void; changes: boolean }> = {
    Added: { reason: 'a new object', change: (s) => s.upsert(container('c')), changes: true },
    Removed: { reason: 'a removed object', change: (s) => s.remove(container('a').key), changes: true },
    SpecChanged: { reason: 'a changed spec', change: (s) => s.upsert(container('a', { state: 'Stopped' })), changes: true },
    EqualReplacement: {
      reason: 'an equal object (only where it was declared differs)', change: (s) => s.upsert({ ...container('a'), origin: { file: 'x.yaml', document: 0 } }),
      changes: false,
    },
    RemovedUnknown: { reason: 'removing a key it does not hold', change: (s) => s.remove(container('x').key), changes: false },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const store = new DesiredStore();
      store.upsert(container('a'));
      const before = store.revision;
      tc.change(store);
      expect(store.revision !== before, tc.reason).to.equal(tc.changes);
    });
  }
  it('two stores never share a revision, so a figure kept by revision cannot leak between them', () => {
    const one = new DesiredStore();
    const two = new DesiredStore();
    expect(one.revision).to.not.equal(two.revision);
    one.upsert(container('a'));
    two.upsert(container('a'));
    expect(one.revision).to.not.equal(two.revision);
  });
});
