import { expect } from 'chai';
import { checkDependencies, dependentsOf, findCycle } from '../../../src/reconcile/dependencies.js';
import type { Desired } from '../../../src/store/desired.js';
import type { ObjectKey } from '../../../src/store/object-key.js';
import { container } from '../../fakes/desired-objects.js';

const dep = (name: string, ...on: string[]): Desired => container(name, on.length === 0 ? {} : { dependsOn: on.map((n) => ({ kind: 'Container', name: n })) });
const world = (...objects: Desired[]) => {
  const byKey = new Map(objects.map((o) => [o.key, o]));
  return (k: ObjectKey) => byKey.get(k);
};

interface Case { reason: string; d: Desired; others: Desired[]; ready: string[]; want: { missing: string[]; notReady: string[]; cycle?: string[] } }

const cases: Record<string, Case> = {
  NoDependencies: { reason: 'nothing to check', d: dep('web'), others: [], ready: [], want: { missing: [], notReady: [] } },
  ReadyDependency: { reason: 'a Ready dependency lets it go', d: dep('web', 'db'), others: [dep('db')], ready: ['db'], want: { missing: [], notReady: [] } },
  NotReadyDependency: { reason: 'a dependency that is not Ready is waited for', d: dep('web', 'db'), others: [dep('db')], ready: [], want: { missing: [], notReady: ['Container/db'] } },
  MissingDependency: { reason: 'a reference the source does not declare is an error', d: dep('web', 'db'), others: [], ready: [], want: { missing: ['Container/db'], notReady: [] } },
  TwoCycle: { reason: 'a loop of two is found, named in order', d: dep('a', 'b'), others: [dep('b', 'a')], ready: [], want: { missing: [], notReady: ['Container/b'], cycle: ['Container/a', 'Container/b', 'Container/a'] } },
  LongCycle: { reason: 'a longer loop is found', d: dep('a', 'b'), others: [dep('b', 'c'), dep('c', 'a')], ready: [], want: { missing: [], notReady: ['Container/b'], cycle: ['Container/a', 'Container/b', 'Container/c', 'Container/a'] } },
  CycleElsewhere: { reason: 'a loop not through this object is not its error (and does not hang)', d: dep('a', 'b'), others: [dep('b', 'c'), dep('c', 'b')], ready: [], want: { missing: [], notReady: ['Container/b'] } },
  Diamond: { reason: 'shared dependencies are no cycle', d: dep('a', 'b', 'c'), others: [dep('b', 'd'), dep('c', 'd'), dep('d')], ready: ['b', 'c'], want: { missing: [], notReady: [] } },
};

describe('dependencies', () => {
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const lookup = world(tc.d, ...tc.others);
      const got = checkDependencies(tc.d, lookup, (x) => tc.ready.includes(x.object.metadata.name));
      expect(got.missing, tc.reason).to.deep.equal(tc.want.missing);
      expect(got.notReady, tc.reason).to.deep.equal(tc.want.notReady);
      expect(got.cycle, tc.reason).to.deep.equal(tc.want.cycle);
    });
  }

  it('finds no cycle in a chain', () => {
    expect(findCycle(dep('a', 'b'), world(dep('b', 'c'), dep('c')))).to.equal(undefined);
  });

  it('lists the dependents of an object, sorted, not itself', () => {
    const db = dep('db');
    expect(dependentsOf(db, [db, dep('web', 'db'), dep('api', 'db'), dep('other')])).to.deep.equal(['Container/api', 'Container/web']);
  });
});
