import { expect } from 'chai';
import { environmentReferences, isEnvironmentError, referenceField, withEnvironmentValues } from '../../../src/api/v1alpha1/environment.js';
import type { VirtualMachineSpec } from '../../../src/api/v1alpha1/types.js';
import type { SecretKeyValue, SecretReader } from '../../../src/kube/kube-secret-reader.js';
import { KubeEnvironmentResolver } from '../../../src/sources/kube-environment-resolver.js';
import { container, vm } from '../../fakes/desired-objects.js';

/** Secrets by "namespace/name", each a map of key to bytes; `error` is thrown from every read. */
class FakeSecretReader implements SecretReader {
  readonly reads: string[] = [];
  constructor(private readonly secrets: Record<string, Record<string, Buffer>>, private readonly error?: Error & { code?: number }) {}
  readKey(namespace: string, name: string, key: string): Promise<SecretKeyValue> {
    this.reads.push(`${namespace}/${name}/${key}`);
    if (this.error !== undefined) return Promise.reject(this.error);
    const secret = this.secrets[`${namespace}/${name}`];
    if (secret === undefined) return Promise.resolve({ found: false, missing: 'secret' });
    const bytes = secret[key];
    return Promise.resolve(bytes === undefined ? { found: false, missing: 'key' } : { found: true, bytes });
  }
}

const signal = new AbortController().signal;
const forbidden = Object.assign(new Error('forbidden'), { code: 403 });

describe('KubeEnvironmentResolver', () => {
  const cases: Record<string, { reason: string; env: Record<string, unknown>; namespace?: string; reader: FakeSecretReader; want: Record<string, string> | string }> = {
    Found: {
      reason: 'a key of a Secret in the object\'s namespace; one trailing new line dropped',
      env: { DB: { secretKeyRef: { name: 'db', key: 'password' } } }, namespace: 'team-a',
      reader: new FakeSecretReader({ 'team-a/db': { password: Buffer.from('pw-123\n') } }), want: { DB: 'pw-123' },
    },
    OtherNamespace: {
      reason: 'only the object\'s own namespace is read, whatever exists elsewhere',
      env: { DB: { secretKeyRef: { name: 'db', key: 'password' } } }, namespace: 'team-b',
      reader: new FakeSecretReader({ 'team-a/db': { password: Buffer.from('pw-123') } }), want: 'SecretNotFound',
    },
    MissingKey: { reason: 'the Secret lacks the key', env: { DB: { secretKeyRef: { name: 'db', key: 'nope' } } }, reader: new FakeSecretReader({ 'default/db': {} }), want: 'SecretNotFound' },
    Forbidden: { reason: 'RBAC refused the read', env: { DB: { secretKeyRef: { name: 'db', key: 'k' } } }, reader: new FakeSecretReader({}, forbidden), want: 'SecretUnavailable' },
    FileRef: { reason: 'host files are not a namespace\'s to read', env: { DB: { file: '/etc/shadow' } }, reader: new FakeSecretReader({}), want: 'PolicyDenied' },
    Binary: { reason: 'text only', env: { DB: { secretKeyRef: { name: 'db', key: 'k' } } }, reader: new FakeSecretReader({ 'default/db': { k: Buffer.from([0xff, 0xfe]) } }), want: 'PolicyDenied' },
    MultiLine: {
      reason: 'a second line would become a new LXC config key',
      env: { DB: { secretKeyRef: { name: 'db', key: 'k' } } }, reader: new FakeSecretReader({ 'default/db': { k: Buffer.from('a\nlxc.hook.mount=x') } }), want: 'PolicyDenied',
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, async () => {
      const d = container('web', { environmentFrom: tc.env }, { namespace: tc.namespace ?? 'default' });
      const refs = Object.entries(tc.env).map(([n, v]) => ({ name: n, source: v as Record<string, unknown> }));
      const resolver = new KubeEnvironmentResolver(tc.reader);
      if (typeof tc.want !== 'string') {
        expect(await resolver.resolve(d, refs, signal), tc.reason).to.deep.equal(tc.want);
        return;
      }
      let caught: unknown;
      try { await resolver.resolve(d, refs, signal); } catch (err) { caught = err; }
      expect(isEnvironmentError(caught) && caught.reason, `${tc.reason}: ${String(caught)}`).to.equal(tc.want);
      expect((caught as Error).message).to.contain('spec.environmentFrom.DB').and.not.contain('lxc.hook');
    });
  }
});

describe('cloud-init userDataFrom read like environmentFrom (kube: secretKeyRef)', () => {
  const userData = '#cloud-config\nruncmd:\n  - echo hi\n';
  const cases: { name: string; reason: string; data: Buffer; want: string }[] = [
    { name: 'document', reason: 'user-data keeps its new lines and trailing new line', data: Buffer.from(userData), want: userData },
    { name: 'too big', reason: 'the seed limit holds for a Secret too', data: Buffer.alloc(70_000, 0x61), want: 'PolicyDenied' },
  ];
  for (const tc of cases) {
    it(`${tc.name}: ${tc.reason}`, async () => {
      const d = vm('vm', { cloudInit: { userDataFrom: { secretKeyRef: { name: 'ud', key: 'user-data' } } } });
      const refs = environmentReferences(d.object);
      expect(refs.map((r) => referenceField(r))).to.deep.equal(['spec.cloudInit.userDataFrom']);
      const resolver = new KubeEnvironmentResolver(new FakeSecretReader({ 'default/ud': { 'user-data': tc.data } }));
      if (tc.want !== 'PolicyDenied') {
        const values = await resolver.resolve(d, refs, signal);
        const filled = withEnvironmentValues(d.object, values).spec as VirtualMachineSpec;
        expect(filled.cloudInit, tc.reason).to.deep.equal({ userData: tc.want });
        return;
      }
      let caught: unknown;
      try { await resolver.resolve(d, refs, signal); } catch (err) { caught = err; }
      expect(isEnvironmentError(caught) && caught.reason, tc.reason).to.equal('PolicyDenied');
      expect((caught as Error).message).to.contain('spec.cloudInit.userDataFrom').and.not.contain('aaaa');
    });
  }
});
