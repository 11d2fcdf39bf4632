import { expect } from 'chai';
import { desiredFromKube, type KubeObject } from '../../../src/kube/desired-from-kube.js';
import { specHashOf } from '../../../src/store/desired.js';

const serverObject = (over: Partial<Record<string, unknown>> = {}, spec: Record<string, unknown> = { template: 'busybox', nodeName: 'node-a' }): KubeObject => ({
  apiVersion: 'hyperlet.io/v1alpha1',
  kind: 'Container',
  metadata: {
    name: 'web', namespace: 'team-a', uid: 'uid-1', generation: 3, resourceVersion: '42',
    creationTimestamp: '2026-01-01T00:00:00Z' as unknown as Date,
    managedFields: [{ manager: 'kubectl', operation: 'Update' }],
    annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}' },
    ...over,
  },
  spec,
  status: { phase: 'Running' },
});

describe('desiredFromKube', () => {
  const cases = {
    ValidObject: {
      reason: 'server metadata is stripped for validation, defaults applied, uid/generation/resourceVersion kept',
      obj: serverObject(),
      want: {
        key: 'kube/team-a/Container/web', id: 'uid-1', generation: 3, deleting: undefined, hostName: 'team-a.web',
        meta: { uid: 'uid-1', generation: 3, resourceVersion: '42', finalizers: undefined, deletionTimestamp: undefined },
      },
    },
    Deleting: {
      reason: 'a deletionTimestamp marks the Desired deleting and stays on the object with the finalizers',
      obj: serverObject({ deletionTimestamp: '2026-01-02T00:00:00Z', finalizers: ['hyperlet.io/cleanup'] }),
      want: {
        key: 'kube/team-a/Container/web', id: 'uid-1', generation: 3, deleting: true, hostName: 'team-a.web',
        meta: { uid: 'uid-1', generation: 3, resourceVersion: '42', finalizers: ['hyperlet.io/cleanup'], deletionTimestamp: '2026-01-02T00:00:00Z' },
      },
    },
    DefaultNamespace: {
      reason: 'objects in namespace default keep their bare name on the host',
      obj: serverObject({ namespace: 'default' }),
      want: {
        key: 'kube/default/Container/web', id: 'uid-1', generation: 3, deleting: undefined, hostName: 'web',
        meta: { uid: 'uid-1', generation: 3, resourceVersion: '42', finalizers: undefined, deletionTimestamp: undefined },
      },
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const got = desiredFromKube('kube', 'Container', tc.obj);
      if (!got.ok) throw new Error(`${tc.reason}: ${JSON.stringify(got.issues)}`);
      const d = got.desired;
      expect({ key: d.key, id: d.id, generation: d.generation, deleting: d.deleting, hostName: d.hostName }, tc.reason)
        .to.deep.equal({ key: tc.want.key, id: tc.want.id, generation: tc.want.generation, deleting: tc.want.deleting, hostName: tc.want.hostName });
      const m = d.object.metadata;
      expect({ uid: m.uid, generation: m.generation, resourceVersion: m.resourceVersion, finalizers: m.finalizers, deletionTimestamp: m.deletionTimestamp })
        .to.deep.equal(tc.want.meta);
      expect(m).not.to.have.property('managedFields');
      expect(d.object).not.to.have.property('status');
      expect(d.object.spec).to.deep.include({ state: 'Running', updatePolicy: 'Live', deletionPolicy: 'Delete', autostart: false });
      expect(d.specHash).to.equal(specHashOf(d.object.spec));
      expect(d.source).to.equal('kube');
    });
  }

  it('dependsOn may name its own namespace explicitly', () => {
    const got = desiredFromKube('kube', 'Container', serverObject({}, { template: 'busybox', dependsOn: [{ kind: 'Container', name: 'db', namespace: 'team-a' }] }));
    expect(got.ok).to.equal(true);
  });

  it('the spec hash ignores metadata: a label change keeps it, a spec change moves it', () => {
    const a = desiredFromKube('kube', 'Container', serverObject());
    const b = desiredFromKube('kube', 'Container', serverObject({ labels: { tier: 'web' }, resourceVersion: '43' }));
    const c = desiredFromKube('kube', 'Container', serverObject({}, { template: 'busybox', nodeName: 'node-a', autostart: true }));
    if (!a.ok || !b.ok || !c.ok) throw new Error('all three are valid');
    expect(b.desired.specHash).to.equal(a.desired.specHash);
    expect(c.desired.specHash).not.to.equal(a.desired.specHash);
  });

  const invalid = {
    BothSources: { reason: 'the cross-field rule of validate.ts applies', spec: { template: 'busybox', rootfs: '/srv/root' }, path: 'spec', rule: 'one-of' },
    UnknownField: { reason: 'an object the CRD would prune still fails the strict validator', spec: { template: 'busybox', bogus: 1 }, path: 'spec.bogus', rule: 'unknown-field' },
    MemoryOutOfRange: { reason: 'x-quantity-range is checked', spec: { template: 'busybox', resources: { memory: '1Ki' } }, path: 'spec.resources.memory', rule: 'x-quantity-range' },
    DependsOnOtherNamespace: {
      reason: 'a namespace is a trust boundary: its objects may not wait on another namespace\'s',
      spec: { template: 'busybox', dependsOn: [{ kind: 'Container', name: 'db' }, { kind: 'Container', name: 'db', namespace: 'team-b' }] },
      path: 'spec.dependsOn[1].namespace', rule: 'same-namespace',
    },
  };
  for (const [name, tc] of Object.entries(invalid)) {
    it(`refuses ${name}`, () => {
      const got = desiredFromKube('kube', 'Container', serverObject({}, tc.spec));
      if (got.ok) throw new Error(`${tc.reason}: accepted`);
      expect(got.issues.map((i) => [i.path, i.rule]), tc.reason).to.deep.include([tc.path, tc.rule]);
    });
  }
});
