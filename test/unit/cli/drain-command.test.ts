import { expect } from 'chai';
import type { Kind } from '../../../src/api/v1alpha1/group.js';
import { drainPlan } from '../../../src/cli/drain-command.js';
import type { KubeObject } from '../../../src/kube/desired-from-kube.js';

const ct = (name: string, spec: Record<string, unknown>, status?: Record<string, unknown>, deleting = false): { kind: Kind; obj: KubeObject } => ({
  kind: 'Container',
  obj: {
    metadata: { name, namespace: 'ns', ...(deleting ? { deletionTimestamp: new Date(0) } : {}) },
    spec, ...(status === undefined ? {} : { status }),
  },
});

describe('drainPlan', () => {
  const cases: Record<string, { reason: string; objects: { kind: Kind; obj: KubeObject }[]; want: { name: string; moves: boolean }[] }> = {
    PlacedMoves: {
      reason: 'an object the scheduler placed on the node is placed again elsewhere',
      objects: [ct('web', {}, { placement: { nodeName: 'n1' } })], want: [{ name: 'web', moves: true }],
    },
    PinnedStays: {
      reason: 'spec.nodeName is the author\'s: hyperlet never writes spec, so it stays and is listed',
      objects: [ct('db', { nodeName: 'n1' })], want: [{ name: 'db', moves: false }],
    },
    SpecWinsOverPlacement: {
      reason: 'spec.nodeName decides where an object is, even with an old placement elsewhere',
      objects: [ct('a', { nodeName: 'n2' }, { placement: { nodeName: 'n1' } }), ct('b', { nodeName: 'n1' }, { placement: { nodeName: 'n2' } })],
      want: [{ name: 'b', moves: false }],
    },
    OtherNodesAndDeletingLeftOut: {
      reason: 'objects on other nodes, unplaced ones and those being deleted are not this drain\'s business',
      objects: [ct('x', {}, { placement: { nodeName: 'n2' } }), ct('y', {}), ct('z', {}, { placement: { nodeName: 'n1' } }, true)], want: [],
    },
  };
  for (const [name, c] of Object.entries(cases)) {
    it(name, () => {
      expect(drainPlan('n1', c.objects).map((i) => ({ name: i.name, moves: i.moves })), c.reason).to.deep.equal(c.want);
    });
  }
});
