import { expect } from 'chai';
import { assignedNode } from '../../../src/sources/kube-source.js';
import { placementOf } from '../../../src/kube/kube-object-tracker.js';
import type { KubeObject } from '../../../src/kube/desired-from-kube.js';

const obj = (spec: Record<string, unknown>, status?: unknown): KubeObject =>
  ({ apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name: 'c', namespace: 'ns' }, spec, ...(status === undefined ? {} : { status }) });

describe('assignedNode: which agent an object belongs to', () => {
  const cases: Record<string, { reason: string; obj: KubeObject; want: string | undefined }> = {
    SpecOnly: { reason: 'a hand-placed object goes to its spec.nodeName', obj: obj({ nodeName: 'n1' }), want: 'n1' },
    PlacementOnly: {
      reason: 'without spec.nodeName the scheduler\'s status.placement.nodeName decides',
      obj: obj({}, { placement: { nodeName: 'n2', time: '2026-12-01T00:00:00Z' } }), want: 'n2',
    },
    SpecWins: {
      reason: 'spec.nodeName set after placement wins over the scheduler\'s choice',
      obj: obj({ nodeName: 'n1' }, { placement: { nodeName: 'n2' } }), want: 'n1',
    },
    EmptySpec: {
      reason: 'an empty spec.nodeName counts as unset',
      obj: obj({ nodeName: '' }, { placement: { nodeName: 'n2' } }), want: 'n2',
    },
    Unplaced: { reason: 'neither: nobody runs it yet', obj: obj({}, { observedGeneration: 0 }), want: undefined },
    MalformedPlacement: { reason: 'a placement without a string node assigns nothing', obj: obj({}, { placement: { nodeName: 7 } }), want: undefined },
  };
  for (const [name, c] of Object.entries(cases)) {
    it(`${name}: ${c.reason}`, () => {
      expect(assignedNode(c.obj)).to.equal(c.want);
    });
  }

  it('placementOf keeps the node and time and nothing else', () => {
    expect(placementOf({ placement: { nodeName: 'n', time: 't', extra: 1 } })).to.deep.equal({ nodeName: 'n', time: 't' });
    expect(placementOf(undefined)).to.equal(undefined);
  });
});
