/**
 * The kube backend against a real kube-apiserver, as the hyperlet ServiceAccount (so the RBAC in
 * manifests/ is proven enough): the informer source lists, watches, filters by node and survives
 * a kube-apiserver restart; the status writer writes only changes and only through /status, and
 * turns 409 into ConflictError; the finalizer holds a deleted object until it is released;
 * Events are deduplicated.
 */
import { expect } from 'chai';
import yaml from 'js-yaml';
import { FINALIZER } from '../../src/api/v1alpha1/crd.js';
import type { Status } from '../../src/api/v1alpha1/types.js';
import { type KubeBackend, createKubeBackend } from '../../src/daemon/kube-backend.js';
import { KubeObjectTracker } from '../../src/kube/kube-object-tracker.js';
import { isConflictError } from '../../src/shared/errors.js';
import { KubeStatusWriter } from '../../src/status/kube-status-writer.js';
import { DesiredStore } from '../../src/store/desired-store.js';
import { objectKey, type ObjectKey } from '../../src/store/object-key.js';
import { silentLogger } from '../../src/telemetry/logger.js';
import { KubeTestEnv } from './support/kube-testenv.js';
import { until } from '../support/until.js';

const NS = `src-e2e-${process.pid}`;
const key = (kind: 'Container' | 'VirtualMachine', name: string): ObjectKey => objectKey('kube', NS, kind, name);
const ct = (name: string, spec: Record<string, unknown>) => ({ apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name, namespace: NS }, spec: { template: 'busybox', ...spec } });
const vm = (name: string, spec: Record<string, unknown>) => ({ apiVersion: 'hyperlet.io/v1alpha1', kind: 'VirtualMachine', metadata: { name, namespace: NS }, spec });

const status = (phase: Status['phase'], generation: number): Status => ({
  phase,
  observedGeneration: generation,
  node: 'node-a',
  hostName: 'x',
  conditions: [
    { type: 'Ready', status: phase === 'Running' ? 'True' : 'False', reason: phase, message: `The instance is ${phase.toLowerCase()}`, lastTransitionTime: '2026-01-01T00:00:00Z', observedGeneration: generation },
    { type: 'Synced', status: 'True', reason: 'Synced', message: 'Up to date', lastTransitionTime: '2026-01-01T00:00:00Z', observedGeneration: generation },
  ],
});

describe('kube source, status writer, finalizer and events against a real kube-apiserver', function () {
  this.timeout(70 * 60_000);
  let env: KubeTestEnv;
  let backend: KubeBackend;
  let store: DesiredStore;
  const abort = new AbortController();
  const removed: ObjectKey[] = [];

  const apply = (doc: object): Promise<string> => env.kubectlOk(['apply', '-f', '-'], { input: yaml.dump(doc) });
  const serverObject = async (kind: string, name: string): Promise<{ metadata: { finalizers?: string[]; resourceVersion: string; deletionTimestamp?: string }; status?: Status } | undefined> => {
    const r = await env.kubectl(['get', kind, name, '-n', NS, '-o', 'json']);
    return r.code === 0 ? JSON.parse(r.stdout) as never : undefined;
  };

  before(async () => {
    env = await KubeTestEnv.start();
    await env.installHyperlet();
    await env.kubectlOk(['create', 'namespace', NS]);
    await apply(ct('c1', { nodeName: 'node-a' }));
    await apply(ct('c2', { nodeName: 'node-b' }));
    await apply(ct('c3', {}));
    await apply(vm('v1', { nodeName: 'node-a' }));
    store = new DesiredStore();
    const realRemove = store.remove.bind(store);
    store.remove = (k: ObjectKey): void => { removed.push(k); realRemove(k); };
    backend = createKubeBackend({ kubeConfig: env.agent(), namespace: NS, node: 'node-a', logger: silentLogger() });
    await backend.source.start(store, abort.signal);
  });

  after(async () => {
    abort.abort();
    if (env !== undefined) {
      // Drop finalizers first so deletion does not wait for an agent that is gone.
      for (const kind of ['containers', 'virtualmachines']) {
        const names = (await env.kubectl(['get', kind, '-n', NS, '-o', 'name'])).stdout.trim().split('\n').filter((n) => n !== '');
        for (const n of names) await env.kubectl(['patch', n, '-n', NS, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
      }
      await env.stop();
    }
  });

  it('start resolves with exactly the objects of its node and namespace in the store', () => {
    expect([...store.keys()].sort()).to.deep.equal([key('Container', 'c1'), key('VirtualMachine', 'v1')].sort());
    const d = store.get(key('Container', 'c1'))!;
    expect(d.id).to.match(/^[0-9a-f-]{36}$/);
    expect(d.generation).to.equal(1);
    expect(d.object.spec).to.deep.include({ template: 'busybox', state: 'Running', nodeName: 'node-a' });
    expect(backend.source.problems()).to.deep.equal([]);
  });

  it('follows adds, spec changes, moves between nodes and deletes', async () => {
    await apply(ct('c4', { nodeName: 'node-a' }));
    await until('c4 in the store', () => store.get(key('Container', 'c4')));
    await apply(ct('c4', { nodeName: 'node-a', state: 'Stopped' }));
    const changed = await until('c4 generation 2', () => (store.get(key('Container', 'c4'))?.generation === 2 ? store.get(key('Container', 'c4')) : undefined));
    expect(changed.object.spec.state).to.equal('Stopped');
    await apply(ct('c2', { nodeName: 'node-a' }));
    await until('c2 moved onto node-a', () => store.get(key('Container', 'c2')));
    await apply(ct('c2', { nodeName: 'node-b' }));
    await until('c2 moved away', () => store.get(key('Container', 'c2')) === undefined || undefined);
    await env.kubectlOk(['delete', 'ct', 'c4', '-n', NS]);
    await until('c4 gone', () => store.get(key('Container', 'c4')) === undefined || undefined);
  });

  it('recovers from a kube-apiserver restart without losing or duplicating anything', async () => {
    removed.length = 0;
    await env.stopApiServer();
    await until('the outage reported as a source problem', () => backend.source.problems().length > 0 || undefined, 60_000);
    await env.startApiServerAgain();
    await apply(ct('c5', { nodeName: 'node-a' }));
    await env.kubectlOk(['delete', 'vm', 'v1', '-n', NS]);
    await until('c5 added and v1 removed after the restart', () =>
      (store.get(key('Container', 'c5')) !== undefined && store.get(key('VirtualMachine', 'v1')) === undefined) || undefined, 90_000);
    await until('the problem cleared', () => backend.source.problems().length === 0 || undefined, 60_000);
    expect([...store.keys()].sort()).to.deep.equal([key('Container', 'c1'), key('Container', 'c5')].sort());
    expect(removed, 'only the deleted object was removed').to.deep.equal([key('VirtualMachine', 'v1')]);
  });

  it('writes status through /status only when it changed', async () => {
    const puts = (): Promise<number> => env.requestCount({ verb: 'PUT', resource: 'containers', subresource: 'status' });
    const d = store.get(key('Container', 'c1'))!;
    const before = await puts();
    await backend.statusWriter.write(d, status('Creating', 1), abort.signal);
    expect(await puts() - before).to.equal(1);
    await backend.statusWriter.write(d, status('Creating', 1), abort.signal);
    expect(await puts() - before, 'the same status again sends nothing').to.equal(1);
    // Once the watch event of our own write arrived, the store's copy is older than our write: still nothing to send.
    await until('our write seen by the informer', async () => (await serverObject('ct', 'c1'))?.status?.phase === 'Creating' || undefined);
    await backend.statusWriter.write(store.get(key('Container', 'c1'))!, status('Creating', 1), abort.signal);
    expect(await puts() - before).to.equal(1);
    await backend.statusWriter.write(d, status('Running', 1), abort.signal);
    expect(await puts() - before, 'a stale Desired still writes with the freshest resourceVersion').to.equal(2);
    expect(backend.statusWriter.lastWritten(d.key)?.phase).to.equal('Running');
    const onServer = await serverObject('ct', 'c1');
    expect(onServer?.status).to.deep.equal(status('Running', 1));
    expect(await env.requestCount({ verb: 'PUT', resource: 'containers', subresource: '' }), 'never the main resource').to.equal(0);
  });

  it('turns a write on a stale resourceVersion into ConflictError and changes nothing', async () => {
    const d = store.get(key('Container', 'c5'))!;
    await env.kubectlOk(['label', 'ct', 'c5', '-n', NS, 'moved=on']);
    const fresh = new KubeStatusWriter({ kubeConfig: env.agent(), tracker: new KubeObjectTracker(), logger: silentLogger() });
    let caught: unknown;
    try {
      await fresh.write(d, status('Running', 1), abort.signal);
    } catch (err) {
      caught = err;
    }
    expect(isConflictError(caught), String(caught)).to.equal(true);
    expect((await serverObject('ct', 'c5'))?.status, 'still the CRD\'s placeholder: nothing written').to.deep.equal({ observedGeneration: 0 });
  });

  it('adds the finalizer once, and a deleted object stays until the finalizer is released', async () => {
    const patches = (): Promise<number> => env.requestCount({ verb: 'PATCH', resource: 'containers', subresource: '' });
    const before = await patches();
    await backend.finalizers.ensure(store.get(key('Container', 'c5'))!, abort.signal);
    expect((await serverObject('ct', 'c5'))?.metadata.finalizers).to.deep.equal([FINALIZER]);
    await backend.finalizers.ensure(store.get(key('Container', 'c5'))!, abort.signal);
    expect(await patches() - before, 'ensure is idempotent without a request').to.equal(1);
    await env.kubectlOk(['delete', 'ct', 'c5', '-n', NS, '--wait=false']);
    const deleting = await until('c5 deleting in the store', () => (store.get(key('Container', 'c5'))?.deleting === true ? store.get(key('Container', 'c5')) : undefined));
    expect((await serverObject('ct', 'c5'))?.metadata.deletionTimestamp).to.be.a('string');
    await backend.finalizers.ensure(deleting, abort.signal);
    expect(await patches() - before, 'no finalizer is added to a deleting object').to.equal(1);
    await backend.finalizers.release(deleting, abort.signal);
    await until('c5 gone from the API', async () => (await serverObject('ct', 'c5')) === undefined || undefined);
    await until('c5 gone from the store', () => store.get(key('Container', 'c5')) === undefined || undefined);
    await backend.finalizers.release(deleting, abort.signal); // idempotent on a vanished object
  });

  it('records Events, counting repeats instead of duplicating them', async () => {
    const d = store.get(key('Container', 'c1'))!;
    for (let i = 0; i < 3; i++) backend.recorder.record(d, 'Normal', 'Started', 'Set container c1 to Running');
    backend.recorder.record(d, 'Warning', 'StartFailed', 'cannot start container c1: lxc-start failed');
    await backend.recorder.flush();
    const list = JSON.parse(await env.kubectlOk(['get', 'events', '-n', NS, '--field-selector', 'involvedObject.name=c1', '-o', 'json'])) as {
      items: { reason: string; count: number; type: string; source: { component: string; host?: string }; involvedObject: { uid: string; kind: string } }[];
    };
    const byReason = Object.fromEntries(list.items.map((e) => [e.reason, e]));
    expect(list.items.length).to.equal(2);
    expect(byReason.Started).to.deep.include({ count: 3, type: 'Normal', source: { component: 'hyperlet', host: 'node-a' } });
    expect(byReason.Started!.involvedObject).to.deep.include({ uid: d.id, kind: 'Container' });
    expect(byReason.StartFailed).to.deep.include({ count: 1, type: 'Warning' });
    const described = await env.kubectlOk(['describe', 'ct', 'c1', '-n', NS]);
    expect(described).to.match(/Normal\s+Started\s+.*hyperlet.*Set container c1 to Running/);
  });

  it('the ServiceAccount may do what the agent does and nothing more', async () => {
    const can = async (...args: string[]): Promise<string> =>
      (await env.kubectl(['auth', 'can-i', ...args], { kubeconfig: env.agentKubeconfigPath })).stdout.trim();
    expect(await can('watch', 'containers.hyperlet.io', '-A')).to.equal('yes');
    expect(await can('update', 'containers.hyperlet.io', '--subresource=status', '-n', NS)).to.equal('yes');
    expect(await can('update', 'containers.hyperlet.io', '-n', NS)).to.equal('no');
    expect(await can('delete', 'containers.hyperlet.io', '-n', NS)).to.equal('no');
    expect(await can('create', 'containers.hyperlet.io', '-n', NS)).to.equal('no');
    // environment valueFrom.secretKeyRef reads one Secret when it reconciles; never a list or watch.
    expect(await can('get', 'secrets', '-n', NS)).to.equal('yes');
    expect(await can('list', 'secrets', '-n', NS)).to.equal('no');
    expect(await can('watch', 'secrets', '-A')).to.equal('no');
    expect(await can('update', 'leases.coordination.k8s.io', '-n', 'hyperlet-system')).to.equal('yes');
    expect(await can('list', 'leases.coordination.k8s.io', '-n', 'hyperlet-system')).to.equal('yes');
    expect(await can('delete', 'leases.coordination.k8s.io', '-n', 'hyperlet-system')).to.equal('no');
    expect(await can('watch', 'leases.coordination.k8s.io', '-n', 'hyperlet-system')).to.equal('no');
    expect(await can('update', 'leases.coordination.k8s.io', '-n', 'kube-system')).to.equal('no');
    // HypervisorNodes: an agent creates, reads and labels its own and patches its status; the elected
    // agent lists them and its scheduler watches them. Never a whole update or a delete.
    for (const verb of ['get', 'list', 'watch', 'create', 'patch']) expect(await can(verb, 'hypervisornodes.hyperlet.io'), verb).to.equal('yes');
    for (const verb of ['update', 'delete', 'deletecollection']) expect(await can(verb, 'hypervisornodes.hyperlet.io'), verb).to.equal('no');
    // The scheduler merge-patches status.placement; status stays the only part of an object written whole.
    expect(await can('patch', 'containers.hyperlet.io', '-n', NS, '--subresource=status')).to.equal('yes');
    expect(await can('update', 'containers.hyperlet.io', '-n', NS, '--subresource=status')).to.equal('yes');
    expect(await can('patch', 'hypervisornodes.hyperlet.io', '--subresource=status')).to.equal('yes');
    expect(await can('update', 'hypervisornodes.hyperlet.io', '--subresource=status')).to.equal('no');
    // Exactly the rules of manifests/20-rbac.yaml, nothing more (a new permission must be added here too).
    // get on Containers and VirtualMachines: the handover server reads the object it is asked to release.
    const rules = JSON.parse(await env.kubectlOk(['get', 'clusterrole', 'hyperlet-agent', '-o', 'json'])) as {
      rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[];
    };
    expect(rules.rules.map((r) => `${r.apiGroups.join(',')}|${r.resources.join(',')}|${r.verbs.join(',')}`)).to.deep.equal([
      'hyperlet.io|containers,virtualmachines|get,list,watch,patch',
      'hyperlet.io|containers/status,virtualmachines/status|update,patch',
      'hyperlet.io|hypervisornodes|get,list,watch,create,patch',
      'hyperlet.io|hypervisornodes/status|patch',
      '|events|create,patch',
      '|secrets|get',
    ]);
  });
});
