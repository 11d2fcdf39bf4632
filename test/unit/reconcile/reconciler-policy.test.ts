import { expect } from 'chai';
import { PolicyGate } from '../../../src/policy/admission.js';
import { DEFAULT_HOST_POLICY, type HostPolicy } from '../../../src/policy/host-policy.js';
import { requeueAfter } from '../../../src/reconcile/result.js';
import type { Desired } from '../../../src/store/desired.js';
import { container, observedAs, vm } from '../../fakes/desired-objects.js';
import { FakePolicyFs } from '../../fakes/fake-policy-fs.js';
import { harness } from '../../fakes/harness.js';

const signal = new AbortController().signal;
const GiB = 2 ** 30;
const fs = new FakePolicyFs({ '/dev/sda': { kind: 'block-device' }, '/etc/shadow': { kind: 'file' } });
const gate = (policy: HostPolicy = DEFAULT_HOST_POLICY) => new PolicyGate({ policy, fs, hostMemoryBytes: 8 * GiB });
const ready = (s: { conditions: { type: string; status: string; reason: string; message: string }[] } | undefined) => s?.conditions.find((c) => c.type === 'Ready');

describe('Reconciler with a host policy', () => {
  const refused: Record<string, { reason: string; d: Desired; kind: 'Container' | 'VirtualMachine'; want: { reason: string; message: string } }> = {
    VmDiskOnHostDisk: {
      reason: 'a VM disk backed by the host disk', kind: 'VirtualMachine', d: vm('evil', { disks: [{ name: 'a', image: '/dev/sda' }] }),
      want: { reason: 'PolicyDenied', message: 'spec.disks[0].image: /dev/sda is not a regular file under an allowed image directory' },
    },
    KernelShadow: {
      reason: 'booting /etc/shadow as a kernel', kind: 'VirtualMachine', d: vm('evil', { boot: { kernel: '/etc/shadow' } }),
      want: { reason: 'PolicyDenied', message: 'spec.boot.kernel: /etc/shadow is not a regular file' },
    },
    RootfsEtc: {
      reason: 'copying /etc into a container', kind: 'Container', d: container('evil', { template: undefined, rootfs: '/etc' }),
      want: { reason: 'PolicyDenied', message: 'spec.rootfs: /etc is not a directory under an allowed rootfs directory' },
    },
    Privileged: {
      reason: 'a privileged container', kind: 'Container', d: container('evil', { privileged: true }),
      want: { reason: 'PolicyDenied', message: 'spec.privileged: true is not allowed for source dir, namespace default' },
    },
    TooBig: {
      reason: 'a VM bigger than the host', kind: 'VirtualMachine', d: vm('big', { resources: { memory: '16Gi' } }),
      want: { reason: 'QuotaExceeded', message: 'spec.resources.memory: 16Gi is more than this host\'s memory' },
    },
  };
  for (const [name, tc] of Object.entries(refused)) {
    it(`refuses ${name}: no provider call at all, Ready=False, one Warning however often it is looked at`, async () => {
      const h = harness(tc.kind, { policy: gate() });
      h.store.upsert(tc.d);
      const results = [];
      for (let i = 0; i < 3; i++) results.push(await h.reconciler.reconcile(tc.d.key, signal));
      expect(results, tc.reason).to.deep.equal([requeueAfter(60_000), requeueAfter(60_000), requeueAfter(60_000)]);
      expect(h.provider.calls, `${tc.reason}: nothing observed or acted on`).to.deep.equal([]);
      const status = h.backend.statuses.get(tc.d.key);
      expect(ready(status), tc.reason).to.include({ status: 'False', reason: tc.want.reason });
      expect(ready(status)?.message, tc.reason).to.include(tc.want.message);
      expect(h.backend.events.map((e) => [e.type, e.reason]), tc.reason).to.deep.equal([['Warning', tc.want.reason]]);
      expect(h.backend.remembered.has(tc.d.key), 'never remembered: nothing to undo').to.equal(false);
      expect(h.backend.finalized.has(tc.d.key), 'no finalizer: nothing was created').to.equal(false);
    });
  }

  it('leaves an unowned instance alone when adoption is not allowed', async () => {
    const h = harness('Container', { policy: gate() });
    const d = container('theirs', {}, { annotations: { 'hyperlet.io/adopt': 'true' } });
    h.store.upsert(d);
    h.provider.instances.set('theirs', observedAs(d, 'Running', { ownerId: undefined }));
    await h.reconciler.reconcile(d.key, signal);
    expect(h.provider.calls).to.deep.equal([]);
    expect(ready(h.backend.statuses.get(d.key))?.message).to.include('metadata.annotations["hyperlet.io/adopt"]');
    expect(h.provider.instances.get('theirs')?.ownerId).to.equal(undefined);
  });

  it('adopts once a policy allows it for the object\'s scope', async () => {
    const h = harness('Container', { policy: gate({ ...DEFAULT_HOST_POLICY, scopes: [{ source: 'dir', namespace: 'default', rules: { adoption: true } }] }) });
    const d = container('theirs', { resources: { memory: '64Mi' } }, { annotations: { 'hyperlet.io/adopt': 'true' } });
    h.store.upsert(d);
    h.provider.instances.set('theirs', observedAs(d, 'Running', { ownerId: undefined }));
    await h.reconciler.reconcile(d.key, signal);
    expect(h.provider.calls.slice(-1)).to.deep.equal(['adopt:theirs']);
  });

  it('creates a container without memory with the policy\'s default limit, never unlimited', async () => {
    const h = harness('Container', { policy: gate() });
    const d = container('web');
    h.store.upsert(d);
    await h.reconciler.reconcile(d.key, signal);
    expect(h.provider.calls).to.deep.equal(['probe', 'observe:web', 'create:web']);
    expect(h.provider.instances.get('web')?.fields['resources.memory']).to.equal(512 * 2 ** 20);
  });

  it('an object refused after it was created keeps its instance as it is', async () => {
    const h = harness('Container', { policy: gate() });
    const d = container('web', { resources: { memory: '64Mi' } });
    h.store.upsert(d);
    h.provider.instances.set('web', observedAs(d, 'Running'));
    const changed = container('web', { resources: { memory: '64Mi' }, privileged: true }, { generation: 2 });
    h.store.upsert(changed);
    await h.reconciler.reconcile(d.key, signal);
    expect(h.provider.calls).to.deep.equal([]);
    expect(h.provider.instances.get('web')?.state).to.equal('Running');
  });

  it('deletes the instance of a removed object even if the object would now be refused', async () => {
    const h = harness('Container', { policy: gate() });
    const d = container('web', { resources: { memory: '64Mi' } });
    h.store.upsert(d);
    while ((await h.reconciler.reconcile(d.key, signal)).kind === 'nextStep') { /* create, start */ }
    h.backend.remembered.set(d.key, container('web', { template: 'oci', resources: { memory: '64Mi' } }));
    h.store.remove(d.key);
    await h.reconciler.reconcile(d.key, signal);
    expect(h.provider.calls.slice(-1)).to.deep.equal(['delete:web']);
  });
});
