import { expect } from 'chai';
import { EnvironmentError } from '../../../src/api/v1alpha1/environment.js';
import { specFields } from '../../../src/api/v1alpha1/fields.js';
import { nextStep, requeueAfter } from '../../../src/reconcile/result.js';
import { REDACTED, Redactor } from '../../../src/shared/redact.js';
import { container, observedAs } from '../../fakes/desired-objects.js';
import { FakeEnvironmentResolver } from '../../fakes/fake-environment-resolver.js';
import { harness } from '../../fakes/harness.js';

const signal = new AbortController().signal;
const SECRET = 'pa55-w0rd-value';
const withRef = () => container('web', { environment: { PLAIN: 'x' }, environmentFrom: { DB_PASSWORD: { file: 'db' } } });

describe('Reconciler with environmentFrom references', () => {
  it('gives the instance the values read, and keeps only the reference everywhere else', async () => {
    const redactor = new Redactor();
    const h = harness('Container', { redactor });
    const resolver = new FakeEnvironmentResolver();
    resolver.values = { DB_PASSWORD: SECRET };
    h.backend.environment = resolver;
    const d = withRef();
    h.store.upsert(d);
    expect(await h.reconciler.reconcile(d.key, signal)).to.deep.equal(nextStep());
    expect(h.provider.calls.slice(-1)).to.deep.equal(['create:web']);
    expect(JSON.parse(String(h.provider.instances.get('web')?.fields.environment))).to.deep.equal({ DB_PASSWORD: SECRET, PLAIN: 'x' });
    expect(JSON.stringify(h.backend.remembered.get(d.key)), 'records keep the reference').to.not.contain(SECRET);
    expect(JSON.stringify([...h.backend.statuses.values(), h.backend.events])).to.not.contain(SECRET);
    expect(redactor.text(`x ${SECRET} y`), 'the redactor learned the value').to.equal(`x ${REDACTED} y`);
    expect(resolver.asked).to.deep.equal(['web:DB_PASSWORD']);
  });

  it('converges: the values read equal what the instance has, so nothing changes', async () => {
    const h = harness('Container');
    const resolver = new FakeEnvironmentResolver();
    resolver.values = { DB_PASSWORD: SECRET };
    h.backend.environment = resolver;
    const d = withRef();
    h.store.upsert(d);
    const applied = container('web', { environment: { PLAIN: 'x', DB_PASSWORD: SECRET } });
    h.provider.instances.set('web', { ...observedAs(applied), ownerId: d.id });
    await h.reconciler.reconcile(d.key, signal);
    expect(h.provider.calls.filter((c) => c.startsWith('update'))).to.deep.equal([]);
    resolver.values = { DB_PASSWORD: 'rotated-secret' };
    await h.reconciler.reconcile(d.key, signal);
    expect(h.backend.statuses.get(d.key)?.pendingChanges, 'a rotated secret is a restart-class change').to.deep.equal([{ field: 'environment', apply: 'restart' }]);
  });

  const failures: Record<string, { reason: string; error: Error | undefined; resolver: boolean; want: string }> = {
    Missing: { reason: 'the file is not there yet', error: new EnvironmentError('SecretNotFound', 'spec.environmentFrom.DB_PASSWORD: no such file'), resolver: true, want: 'SecretNotFound' },
    Denied: { reason: 'a path outside the secrets directory', error: new EnvironmentError('PolicyDenied', 'spec.environmentFrom.DB_PASSWORD: leads out'), resolver: true, want: 'PolicyDenied' },
    Broken: { reason: 'an unexpected failure is still a failure of this field, not a crash', error: new Error('EIO'), resolver: true, want: 'SecretUnavailable' },
    NoResolver: { reason: 'a source that cannot resolve references refuses them', error: undefined, resolver: false, want: 'PolicyDenied' },
  };
  for (const [name, tc] of Object.entries(failures)) {
    it(`creates nothing and says why when a reference cannot be read: ${name}`, async () => {
      const h = harness('Container');
      if (tc.resolver) {
        const resolver = new FakeEnvironmentResolver();
        resolver.failure = tc.error;
        h.backend.environment = resolver;
      }
      const d = withRef();
      h.store.upsert(d);
      expect(await h.reconciler.reconcile(d.key, signal), tc.reason).to.deep.equal(requeueAfter(10_000));
      expect(h.provider.calls, tc.reason).to.deep.equal(['probe', 'observe:web']);
      const ready = h.backend.statuses.get(d.key)?.conditions.find((c) => c.type === 'Ready');
      expect(ready, tc.reason).to.include({ status: 'False', reason: tc.want });
      expect(ready?.message, tc.reason).to.contain('spec.environmentFrom');
      expect(h.backend.events.map((e) => e.reason), tc.reason).to.deep.equal([tc.want]);
      expect(h.backend.remembered.has(d.key), 'nothing acted on, nothing remembered').to.equal(false);
    });
  }

  it('leaves a running instance alone while its secret is missing', async () => {
    const h = harness('Container');
    const resolver = new FakeEnvironmentResolver();
    resolver.failure = new EnvironmentError('SecretNotFound', 'spec.environmentFrom.DB_PASSWORD: no such file');
    h.backend.environment = resolver;
    const d = withRef();
    h.store.upsert(d);
    const old = container('web', { environment: { DB_PASSWORD: 'old', PLAIN: 'x' } });
    h.provider.instances.set('web', { hostName: 'web', state: 'Running', fields: specFields(old.object.kind, old.object.spec), ownerId: d.id });
    await h.reconciler.reconcile(d.key, signal);
    expect(h.provider.calls).to.deep.equal(['probe', 'observe:web']);
    expect(h.backend.statuses.get(d.key)?.phase, 'the observed state is still reported').to.equal('Running');
  });

  it('deletes a removed object without reading its references', async () => {
    const h = harness('Container');
    const resolver = new FakeEnvironmentResolver();
    h.backend.environment = resolver;
    const d = withRef();
    h.backend.remember(d);
    h.provider.instances.set('web', observedAs(container('web'), 'Stopped', { ownerId: d.id }));
    await h.reconciler.reconcile(d.key, signal);
    expect(h.provider.calls.slice(-1)).to.deep.equal(['delete:web']);
    expect(resolver.asked).to.deep.equal([]);
  });

  it('scrubs a known secret from event and condition messages', async () => {
    const redactor = new Redactor();
    redactor.add(SECRET);
    const h = harness('Container', { redactor });
    const d = container('web');
    h.store.upsert(d);
    h.provider.failures.set('create', new Error(`lxc-create: bad config line lxc.environment = DB=${SECRET}`));
    await h.reconciler.reconcile(d.key, signal).catch(() => undefined);
    const text = JSON.stringify([...h.backend.statuses.values(), h.backend.events]);
    expect(text).to.not.contain(SECRET);
    expect(text).to.contain(`DB=${REDACTED}`);
  });
});
