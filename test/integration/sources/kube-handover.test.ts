import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import type { KubeObject } from '../../../src/kube/desired-from-kube.js';
import { KubeHandover } from '../../../src/sources/kube-handover.js';
import type { ObjectKey } from '../../../src/store/object-key.js';
import { silentLogger } from '../../../src/telemetry/logger.js';
import { container } from '../../fakes/desired-objects.js';

/** A client configuration that is never contacted: these cases make no API call. */
function kubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: 'https://127.0.0.1:6443', skipTLSVerify: true }], users: [{ name: 'u', token: 't' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }], currentContext: 'x',
  });
  return kc;
}

const obj = (status: Record<string, unknown> | undefined, spec: Record<string, unknown> = {}, deleting = false): KubeObject => ({
  metadata: { name: 'web', namespace: 'default', uid: 'uid-1', ...(deleting ? { deletionTimestamp: new Date(0) } : {}) },
  spec: { template: 'busybox', ...spec }, ...(status === undefined ? {} : { status }),
});

describe('KubeHandover: move records', () => {
  let dir: string;
  const key = 'kube/default/Container/web' as ObjectKey;
  const handover = (): KubeHandover => new KubeHandover({ kubeConfig: kubeConfig(), node: 'node-b', sourceId: 'kube', dir, token: 'x'.repeat(32), logger: silentLogger() });
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'hyperlet-handover-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const cases: Record<string, { reason: string; object: KubeObject; want: string | undefined }> = {
    FromAnotherNode: { reason: 'status.node names the node that ran it: its data is there', object: obj({ node: 'node-a', phase: 'Running' }), want: 'node-a' },
    NeverRan: { reason: 'no status.node: a new object, created afresh', object: obj({ placement: { nodeName: 'node-b' } }), want: undefined },
    SameNode: { reason: 'reported by this very node (an agent restart): nothing moves', object: obj({ node: 'node-b' }), want: undefined },
    Recreate: { reason: 'spec.evictionPolicy Recreate carries no data', object: obj({ node: 'node-a' }, { evictionPolicy: 'Recreate' }), want: undefined },
    Deleting: { reason: 'an object on its way out is not moved in', object: obj({ node: 'node-a' }, {}, true), want: undefined },
  };
  for (const [name, c] of Object.entries(cases)) {
    it(name, () => {
      const h = handover();
      h.arrived(key, c.object);
      expect(h.movingFrom(key), c.reason).to.equal(c.want);
      expect(handover().movingFrom(key), `${c.reason} (and a restarted agent reads the same from disk)`).to.equal(c.want);
    });
  }

  it('holds what leaves unless it is Recreate, and lets go of what comes back', () => {
    const h = handover();
    const moved = container('web', { nodeName: 'node-c' });
    expect(h.hold(moved)).to.equal(true);
    expect(h.isHeld(moved.key)).to.equal(true);
    h.arrived(moved.key, obj({ node: 'node-b' }));
    expect(h.isHeld(moved.key), 'back on this node: reconciled as declared').to.equal(false);
    expect(h.hold(container('web', { nodeName: 'node-c', evictionPolicy: 'Recreate' })), 'Recreate: deleted at once').to.equal(false);
  });
});
