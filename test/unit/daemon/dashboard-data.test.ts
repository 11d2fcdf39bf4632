/**
 * DaemonDashboard with a real desired store, an in-memory backend and FakeProviders: which actions
 * are offered for which kind, the request each one lays over the object (through a recording
 * request function), and the answers for a missing object, an action not offered, bad parameters.
 */
import { expect } from 'chai';
import type { Kind } from '../../../src/api/v1alpha1/group.js';
import { DaemonDashboard } from '../../../src/daemon/dashboard-data.js';
import { DaemonObjectViews } from '../../../src/daemon/object-views.js';
import type { Provider } from '../../../src/providers/provider.js';
import { EventLog } from '../../../src/server/dashboard-api.js';
import { systemClock } from '../../../src/shared/clock.js';
import { DesiredStore } from '../../../src/store/desired-store.js';
import { container, vm } from '../../fakes/desired-objects.js';
import { FakeProvider } from '../../fakes/fake-provider.js';
import { MemoryBackend } from '../../fakes/memory-backend.js';

describe('DaemonDashboard', () => {
  const store = new DesiredStore();
  const backend = new MemoryBackend('dir');
  const web = container('web', { resources: { cpu: 2, memory: '256Mi' } });
  const box = vm('box', { resources: { cpu: 1, memory: '128Mi' } });
  store.upsert(web);
  store.upsert(box);
  const ctProvider = new FakeProvider('Container');
  const vmProvider = new FakeProvider('VirtualMachine') as FakeProvider<'VirtualMachine'> & { rebootPending?: Provider['rebootPending'] };
  vmProvider.rebootPending = () => false;
  const requests: string[] = [];
  const dashboard = new DaemonDashboard({
    node: 'n1', startedAt: 't', store, backends: () => [backend], synced: () => true, healths: new Map(),
    providers: new Map<Kind, Provider>([['Container', ctProvider], ['VirtualMachine', vmProvider]]),
    views: new DaemonObjectViews(store, () => new Map([['dir', backend]]), undefined, systemClock), eventLog: new EventLog(),
    redact: (t) => t, clock: systemClock, request: (key, annotation, value) => { requests.push(`${key} ${annotation}=${value}`); return true; },
  });

  interface Case { reason: string; kind: string; name: string; action: string; params?: string; want: object; request?: RegExp }
  const cases: Record<string, Case> = {
    RebootAVm: {
      reason: 'VMs act on reboot requests: the request is the annotation, valued with the time',
      kind: 'VirtualMachine', name: 'box', action: 'reboot', want: { ok: true, annotation: 'hyperlet.io/reboot-request' },
      request: /^dir\/default\/VirtualMachine\/box hyperlet\.io\/reboot-request=\d{4}-\d\d-\d\dT/,
    },
    RestoreWithAToken: {
      reason: 'a restore names the snapshot and a fresh token, so the same snapshot can be restored again',
      kind: 'Container', name: 'web', action: 'restore', params: 'snapshot=auto-1',
      want: { ok: true, annotation: 'hyperlet.io/restore-request' },
      request: /^dir\/default\/Container\/web hyperlet\.io\/restore-request=auto-1@\d{17}$/,
    },
    RebootNotOfferedForContainers: {
      reason: 'LXC does not act on reboot requests: 409, with what is offered',
      kind: 'Container', name: 'web', action: 'reboot',
      want: { ok: false, status: 409, error: 'reboot is not offered for containers (offered: restore, snapshot)' },
    },
    StartIsNotAnAction: {
      reason: 'start and stop are the declared state, not actions', kind: 'VirtualMachine', name: 'box', action: 'start',
      want: { ok: false, status: 409, error: 'start is not offered for virtualmachines (offered: reboot, restore, snapshot)' },
    },
    RestoreNeedsASnapshotName: {
      reason: 'a snapshot name reaches paths: only DNS labels', kind: 'Container', name: 'web', action: 'restore', params: 'snapshot=../x',
      want: { ok: false, status: 400, error: 'restore needs ?snapshot=NAME (a DNS-1123 label)' },
    },
    SnapshotWithAName: {
      reason: 'a one-off snapshot under the name asked for: the annotation names it, no token (it is taken once per name)',
      kind: 'VirtualMachine', name: 'box', action: 'snapshot', params: 'snapshot=before-upgrade',
      want: { ok: true, annotation: 'hyperlet.io/snapshot-request', value: 'before-upgrade' },
      request: /^dir\/default\/VirtualMachine\/box hyperlet\.io\/snapshot-request=before-upgrade$/,
    },
    SnapshotNamedAfterTheTime: {
      reason: 'without a name the snapshot is named snap- and the UTC time, a DNS label',
      kind: 'Container', name: 'web', action: 'snapshot', want: { ok: true, annotation: 'hyperlet.io/snapshot-request' },
      request: /^dir\/default\/Container\/web hyperlet\.io\/snapshot-request=snap-\d{8}t\d{6}z$/,
    },
    SnapshotNameMustBeALabel: {
      reason: 'a snapshot name reaches paths and XML: only DNS labels', kind: 'Container', name: 'web', action: 'snapshot',
      params: 'snapshot=Bad_Name', want: { ok: false, status: 400, error: 'snapshot takes ?snapshot=NAME (a DNS-1123 label), or none for snap-TIME' },
    },
    MissingObject: {
      reason: 'an object no source declares', kind: 'Container', name: 'nope', action: 'restore', params: 'snapshot=a',
      want: { ok: false, status: 404, error: 'Container default/nope not found' },
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      requests.length = 0;
      const result = dashboard.act(tc.kind, 'default', tc.name, tc.action, new URLSearchParams(tc.params ?? ''));
      expect(result, tc.reason).to.deep.include(tc.want);
      if (tc.request === undefined) expect(requests, 'no request made').to.deep.equal([]);
      else expect(requests[0]).to.match(tc.request);
    });
  }

  it('counts what the declared objects ask for against the host', () => {
    const host = dashboard.host();
    expect(host.allocated).to.deep.equal({ objects: 2, running: 2, cpus: 3, memoryBytes: 384 * 2 ** 20 });
    expect(host.capacity.cpus).to.be.greaterThan(0);
  });

  it('offers on the object page what the provider acts on', async () => {
    expect((await dashboard.object('VirtualMachine', 'default', 'box'))?.actions).to.deep.equal(['reboot', 'restore', 'snapshot']);
    expect((await dashboard.object('Container', 'default', 'web'))?.actions).to.deep.equal(['restore', 'snapshot']);
    expect(await dashboard.object('Container', 'default', 'nope')).to.equal(undefined);
  });
});
