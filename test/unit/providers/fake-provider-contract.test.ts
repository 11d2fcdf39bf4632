/** The provider contract (test/conformance/provider-contract.ts) against the FakeProvider the reconciler's unit tests stand on. */
import { specFields } from '../../../src/api/v1alpha1/fields.js';
import type { Desired } from '../../../src/store/desired.js';
import { describeProviderContract } from '../../conformance/provider-contract.js';
import { container } from '../../fakes/desired-objects.js';
import { FakeProvider } from '../../fakes/fake-provider.js';

let ids = 0;
const makeDesired = (label: string): Desired<'Container'> =>
  container(`fake-${label}`, {}, { id: `id-${label}-${++ids}` }) as Desired<'Container'>;

describeProviderContract('FakeProvider', () => new FakeProvider('Container'), makeDesired, {
  holdState: 'Frozen',
  createUnowned: async (provider, d) => {
    provider.instances.set(d.hostName, { hostName: d.hostName, state: 'Stopped', fields: specFields('Container', d.object.spec) });
  },
  removeUnowned: async (provider, d) => {
    provider.instances.delete(d.hostName);
  },
  fingerprint: async (provider, d) => structuredClone(provider.instances.get(d.hostName)),
  killedCreates: {
    'a create that stopped halfway': {
      seen: 'partial',
      leave: async (provider, d) => {
        provider.cutShort = new Error('killed halfway');
        await provider.create(d).catch(() => undefined);
      },
    },
  },
  leftovers: async (provider, d) => (provider.instances.has(d.hostName) ? [d.hostName] : []),
  stopBehindBack: async (provider, d) => {
    const current = provider.instances.get(d.hostName);
    if (current === undefined) throw new Error(`cannot stop ${d.hostName}: no such instance`);
    provider.instances.set(d.hostName, { ...current, state: 'Stopped' });
    provider.emitChange(d.hostName);
  },
  changeWithinMs: 1_000,
});
