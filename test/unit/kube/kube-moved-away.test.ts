import { expect } from 'chai';
import { KubeConfig } from '@kubernetes/client-node';
import sinon from 'sinon';
import { KubeObjectTracker } from '../../../src/kube/kube-object-tracker.js';
import { KubeMovedAway } from '../../../src/sources/kube-moved-away.js';
import { KubeFinalizerGate } from '../../../src/status/kube-finalizer-gate.js';
import { KubeStatusWriter } from '../../../src/status/kube-status-writer.js';
import type { ObjectKey } from '../../../src/store/object-key.js';
import { silentLogger } from '../../../src/telemetry/logger.js';
import { container } from '../../fakes/desired-objects.js';

/** A client configuration that is never contacted: every API call below is stubbed. */
function kubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: 'https://127.0.0.1:6443', skipTLSVerify: true }], users: [{ name: 'u', token: 't' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }], currentContext: 'x',
  });
  return kc;
}

describe('KubeMovedAway', () => {
  const moved = container('moved', { nodeName: 'node-a' });
  const other = container('other', { nodeName: 'node-a' });

  it('tombstones an object that left the node until it is forgotten or comes back', () => {
    const records = new KubeMovedAway();
    records.add(moved);
    expect([records.keys(), records.has(moved.key), records.lastApplied(moved.key)]).to.deep.equal([[moved.key], true, moved]);
    expect(records.lastApplied(other.key), 'objects on this node are no tombstones').to.equal(undefined);
    records.remember();
    expect(records.keys(), 'remember keeps nothing: finalizers hold objects on this node').to.deep.equal([moved.key]);
    records.back(moved.key);
    expect([records.keys(), records.has(moved.key)]).to.deep.equal([[], false]);
    records.add(moved);
    records.forget(moved.key);
    expect(records.lastApplied(moved.key), 'forgotten once its instance is gone').to.equal(undefined);
  });

  const cases = {
    MovedAway: { reason: 'the object belongs to its new node: nothing is sent from here', key: 'moved', calls: 0 },
    StillHere: { reason: 'an object of this node is written as before', key: 'other', calls: 1 },
  } as const;
  for (const [name, c] of Object.entries(cases)) {
    it(`status writer and finalizer gate: ${name}`, async () => {
      const records = new KubeMovedAway();
      records.add(moved);
      const options = { kubeConfig: kubeConfig(), tracker: new KubeObjectTracker(), logger: silentLogger(), leaveAlone: (k: ObjectKey) => records.has(k) };
      const writer = new KubeStatusWriter(options);
      const gate = new KubeFinalizerGate(options);
      const api = (o: object): Record<string, sinon.SinonStub> => (o as unknown as { api: Record<string, sinon.SinonStub> }).api;
      const put = sinon.stub(api(writer), 'replaceNamespacedCustomObjectStatus').resolves({ metadata: { resourceVersion: '2' } });
      const patch = sinon.stub(api(gate), 'patchNamespacedCustomObject').resolves({ metadata: { resourceVersion: '2' } });
      const d = c.key === 'moved' ? moved : other;
      const withFinalizer = { ...d, object: { ...d.object, metadata: { ...d.object.metadata, finalizers: ['hyperlet.io/cleanup'] } } };
      const signal = new AbortController().signal;
      await writer.write(d, { phase: 'Deleting', observedGeneration: 1, conditions: [] }, signal);
      await gate.release(withFinalizer, signal);
      expect([put.callCount, patch.callCount], c.reason).to.deep.equal([c.calls, c.calls]);
    });
  }
});
