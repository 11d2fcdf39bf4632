import { expect } from 'chai';
import { isNewerResourceVersion } from '../../../src/kube/kube-client.js';
import { KubeObjectTracker } from '../../../src/kube/kube-object-tracker.js';
import type { ObjectKey } from '../../../src/store/object-key.js';

const key = 'kube/default/Container/a' as ObjectKey;
const obj = (uid: string, rv: string, phase: string) => ({ metadata: { uid, resourceVersion: rv, finalizers: ['f'] }, status: { phase, conditions: [] } });

describe('KubeObjectTracker', () => {
  const cases = {
    NewerWins: { reason: 'a newer copy replaces an older one', seen: [obj('u1', '5', 'Creating'), obj('u1', '6', 'Running')], want: { rv: '6', phase: 'Running' } },
    OlderIgnored: {
      reason: 'a watch event that lags behind our own write does not bring the old status back',
      seen: [obj('u1', '9', 'Running'), obj('u1', '8', 'Creating')], want: { rv: '9', phase: 'Running' },
    },
    NewObjectOfSameName: { reason: 'another uid is another object, whatever its version', seen: [obj('u1', '9', 'Running'), obj('u2', '3', 'Pending')], want: { rv: '3', phase: 'Pending' } },
    PlaceholderIsNoStatus: {
      reason: 'the CRD\'s default status (observedGeneration 0, no conditions) is not a status an agent wrote',
      seen: [{ metadata: { uid: 'u1', resourceVersion: '2', finalizers: [] }, status: { observedGeneration: 0 } }], want: { rv: '2', phase: undefined },
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const t = new KubeObjectTracker();
      for (const o of tc.seen) t.observe(key, o);
      expect({ rv: t.get(key)?.resourceVersion, phase: t.get(key)?.status?.phase }, tc.reason).to.deep.equal(tc.want);
    });
  }

  it('forgets deleted objects', () => {
    const t = new KubeObjectTracker();
    t.observe(key, obj('u1', '1', 'Running'));
    t.forget(key);
    expect(t.get(key)).to.equal(undefined);
  });
});

describe('isNewerResourceVersion', () => {
  const cases = {
    Numeric: { reason: 'etcd revisions compare as integers, not strings', a: '10', b: '9', want: true },
    NumericOlder: { reason: 'older is not newer', a: '9', b: '10', want: false },
    Equal: { reason: 'the same version is not newer', a: '10', b: '10', want: false },
    NothingKnown: { reason: 'anything beats nothing', a: '1', b: undefined, want: true },
    Opaque: { reason: 'non-numeric versions: a different one is taken as newer', a: 'abc', b: 'abd', want: true },
  };
  for (const [name, tc] of Object.entries(cases)) it(name, () => expect(isNewerResourceVersion(tc.a, tc.b), tc.reason).to.equal(tc.want));
});
