import { expect } from 'chai';
import { KubeConfig } from '@kubernetes/client-node';
import sinon from 'sinon';
import type { Status } from '../../../src/api/v1alpha1/types.js';
import { KubeObjectTracker } from '../../../src/kube/kube-object-tracker.js';
import { KubeStatusWriter } from '../../../src/status/kube-status-writer.js';
import type { ObjectKey } from '../../../src/store/object-key.js';
import { silentLogger } from '../../../src/telemetry/logger.js';
import { FakeClock } from '../../support/fake-clock.js';
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

const ready: Status['conditions'][number] = { type: 'Ready', status: 'False', reason: 'Creating', message: 'Creating', lastTransitionTime: '2026-01-01T00:00:00.000Z' };
const scheduled = { type: 'Scheduled', status: 'True', reason: 'Scheduled', message: 'Moved from node a (cordoned) to node b', lastTransitionTime: '2026-01-01T00:00:00.000Z' };

describe('KubeStatusWriter: moves', () => {
  const d = container('web', {}, { id: 'uid-1' });
  const cases: Record<string, {
    reason: string; movingFrom?: string; seen?: object; want: { phase: string; types: string[]; moving?: object };
  }> = {
    MovingPhase: {
      reason: 'while the data comes from another node, status says phase Moving and condition Moving=True naming that node',
      movingFrom: 'node-a',
      want: {
        phase: 'Moving', types: ['Ready', 'Moving'],
        moving: { status: 'True', reason: 'DataHandover', message: 'Moving from node node-a: the instance there is stopped and its data is copied here before it starts' },
      },
    },
    NotMoving: {
      reason: 'an object that is not moving is written as computed',
      want: { phase: 'Creating', types: ['Ready'] },
    },
    ScheduledKept: {
      reason: 'the scheduler\'s Scheduled condition is its own: an agent\'s write carries it over, like status.placement',
      seen: { metadata: { uid: 'uid-1', resourceVersion: '5' }, status: { phase: 'Pending', conditions: [scheduled], placement: { nodeName: 'node-b' } } },
      want: { phase: 'Creating', types: ['Ready', 'Scheduled'] },
    },
  };
  for (const [name, c] of Object.entries(cases)) {
    it(name, async () => {
      const tracker = new KubeObjectTracker();
      if (c.seen !== undefined) tracker.observe(d.key, c.seen);
      const clock = new FakeClock(Date.parse('2026-02-02T00:00:00.000Z'));
      const writer = new KubeStatusWriter({
        kubeConfig: kubeConfig(), tracker, logger: silentLogger(), clock, movingFrom: (k: ObjectKey) => (k === d.key ? c.movingFrom : undefined),
      });
      const api = (writer as unknown as { api: Record<string, sinon.SinonStub> }).api;
      const put = sinon.stub(api, 'replaceNamespacedCustomObjectStatus').resolves({ metadata: { resourceVersion: '6' } });
      await writer.write(d, { phase: 'Creating', observedGeneration: 1, conditions: [ready] }, new AbortController().signal);
      const sent = (put.firstCall.args[0] as { body: { status: Status } }).body.status;
      expect(sent.phase, c.reason).to.equal(c.want.phase);
      expect(sent.conditions.map((x) => x.type), c.reason).to.deep.equal(c.want.types);
      if (c.want.moving !== undefined) expect(sent.conditions.find((x) => x.type === 'Moving'), c.reason).to.deep.include(c.want.moving);
    });
  }
});
