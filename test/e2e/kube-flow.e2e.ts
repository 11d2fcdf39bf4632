/**
 * The whole kube flow with the real reconcile core and the real API server (a FakeProvider
 * stands in for LXC): kubectl apply → Running in `kubectl get ct`; a spec change is followed by
 * observedGeneration; kubectl delete removes the instance before the object goes; Orphan keeps
 * it where the host policy allows it; a refused object gets PolicyDenied and nothing else;
 * dependsOn across namespaces is refused; two agents with different --node values each reconcile only their own objects; a resync
 * or a restart of unchanged objects writes nothing; a kube-apiserver restart in the middle
 * creates nothing twice.
 */
import { expect } from 'chai';
import yaml from 'js-yaml';
import { FINALIZER } from '../../src/api/v1alpha1/crd.js';
import type { Status } from '../../src/api/v1alpha1/types.js';
import { DEFAULT_HOST_POLICY, type HostPolicy } from '../../src/policy/host-policy.js';
import { FakeProvider } from '../fakes/fake-provider.js';
import { type KubeAgent, startKubeAgent } from './support/kube-agent.js';
import { KubeTestEnv } from './support/kube-testenv.js';
import { waitFor } from './support/kube-wait.js';

const NS = `flow-e2e-${process.pid}`;
/** This host lets the test namespace orphan instances (deletionPolicy Orphan); nothing else is loosened. */
const POLICY: HostPolicy = { ...DEFAULT_HOST_POLICY, scopes: [{ source: 'kube', namespace: NS, rules: { orphan: true } }] };
const ct = (name: string, spec: Record<string, unknown>) => ({ apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name, namespace: NS }, spec: { template: 'busybox', nodeName: 'node-a', ...spec } });

interface ServerCt { metadata: { generation: number; finalizers?: string[]; deletionTimestamp?: string }; status?: Status }

describe('kube flow: kubectl, the reconcile core and a real kube-apiserver', function () {
  this.timeout(70 * 60_000);
  let env: KubeTestEnv;
  let agentA: KubeAgent | undefined;
  let agentB: KubeAgent | undefined;
  const providerA = new FakeProvider('Container');
  const providerB = new FakeProvider('Container');

  const apply = (doc: object): Promise<string> => env.kubectlOk(['apply', '-f', '-'], { input: yaml.dump(doc) });
  const get = async (name: string): Promise<ServerCt | undefined> => {
    const r = await env.kubectl(['get', 'ct', name, '-n', NS, '-o', 'json']);
    return r.code === 0 ? JSON.parse(r.stdout) as ServerCt : undefined;
  };
  const ready = (s: Status | undefined): string | undefined => s?.conditions.find((c) => c.type === 'Ready')?.status;
  const writes = async (): Promise<number> => {
    let n = 0;
    for (const verb of ['PUT', 'PATCH', 'POST', 'DELETE', 'APPLY']) {
      n += await env.requestCount({ verb, resource: 'containers' });
      n += await env.requestCount({ verb, resource: 'events' });
    }
    return n;
  };

  before(async () => {
    env = await KubeTestEnv.start();
    await env.installHyperlet();
    await env.kubectlOk(['create', 'namespace', NS]);
    agentA = await startKubeAgent({ kubeConfig: env.agent(), node: 'node-a', provider: providerA, policy: POLICY });
    agentB = await startKubeAgent({ kubeConfig: env.agent(), node: 'node-b', provider: providerB, policy: POLICY });
  });

  after(async () => {
    await agentA?.stop();
    await agentB?.stop();
    if (env !== undefined) {
      const names = (await env.kubectl(['get', 'ct', '-n', NS, '-o', 'name'])).stdout.trim().split('\n').filter((n) => n !== '');
      for (const n of names) await env.kubectl(['patch', n, '-n', NS, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
      await env.stop();
    }
  });

  it('kubectl apply: the instance is created and started, and kubectl get ct shows it Running', async () => {
    await apply(ct('web', {}));
    const obj = await waitFor('web Running', async () => { const o = await get('web'); return o?.status?.phase === 'Running' ? o : undefined; });
    expect(obj.metadata.finalizers).to.deep.equal([FINALIZER]);
    expect(obj.status).to.deep.include({ observedGeneration: 1, node: 'node-a', hostName: `${NS}.web` });
    expect(ready(obj.status)).to.equal('True');
    expect(providerA.instances.get(`${NS}.web`)?.state).to.equal('Running');
    expect(providerB.count('create')).to.equal(0);
    const table = await env.kubectlOk(['get', 'ct', 'web', '-n', NS, '--no-headers']);
    expect(table.split(/\s+/).slice(0, 3)).to.deep.equal(['web', 'Running', 'node-a']);
    await agentA!.backend.recorder.flush();
    const reasons = (await env.kubectlOk(['get', 'events', '-n', NS, '--field-selector', 'involvedObject.name=web', '-o', 'jsonpath={.items[*].reason}'])).split(' ');
    expect(reasons).to.include.members(['Created', 'Started']);
  });

  it('a spec change is applied and observedGeneration follows; a deliberately stopped instance is Ready', async () => {
    await apply(ct('web', { state: 'Stopped' }));
    const obj = await waitFor('web Stopped at generation 2', async () => {
      const o = await get('web');
      return o?.status?.phase === 'Stopped' && o.status.observedGeneration === 2 ? o : undefined;
    });
    expect(obj.metadata.generation).to.equal(2);
    expect(ready(obj.status), 'Ready means "as declared"').to.equal('True');
    expect(providerA.instances.get(`${NS}.web`)?.state).to.equal('Stopped');
  });

  it('kubectl delete: the instance is removed first, then the finalizer is released', async () => {
    providerA.failures.set('delete', new Error('cannot delete: busy'));
    await env.kubectlOk(['delete', 'ct', 'web', '-n', NS, '--wait=false']);
    const held = await waitFor('delete attempted', async () => (providerA.count('delete') > 0 ? get('web') : undefined));
    expect(held.metadata.deletionTimestamp, 'the object stays while its instance cannot be removed').to.be.a('string');
    expect(held.metadata.finalizers).to.deep.equal([FINALIZER]);
    expect(providerA.instances.has(`${NS}.web`)).to.equal(true);
    providerA.failures.delete('delete');
    await waitFor('web gone from the API', async () => (await get('web')) === undefined || undefined, 90_000);
    expect(providerA.instances.has(`${NS}.web`)).to.equal(false);
  });

  it('deletionPolicy Orphan keeps the instance when the object goes', async () => {
    await apply(ct('keep', { deletionPolicy: 'Orphan' }));
    await waitFor('keep Running', async () => (await get('keep'))?.status?.phase === 'Running' || undefined);
    const deletesBefore = providerA.count('delete');
    await env.kubectlOk(['delete', 'ct', 'keep', '-n', NS, '--timeout=60s']);
    expect(providerA.instances.get(`${NS}.keep`)?.state).to.equal('Running');
    expect(providerA.count('delete')).to.equal(deletesBefore);
  });

  it('the host policy refuses a privileged container: Ready=False PolicyDenied, one Warning, no finalizer, nothing created', async () => {
    await apply(ct('priv', { privileged: true }));
    const obj = await waitFor('priv refused', async () => {
      const o = await get('priv');
      return o?.status?.conditions.find((c) => c.type === 'Ready')?.reason === 'PolicyDenied' ? o : undefined;
    });
    const condition = obj.status?.conditions.find((c) => c.type === 'Ready');
    expect(condition?.status).to.equal('False');
    expect(condition?.message).to.equal(`spec.privileged: true is not allowed for source kube, namespace ${NS}: containers run in a user namespace (policy: allow.privileged)`);
    expect(obj.metadata.finalizers ?? [], 'nothing was created, so nothing holds the object').to.deep.equal([]);
    expect(providerA.calls.filter((c) => c.includes(`${NS}.priv`)), 'never observed, never touched').to.deep.equal([]);
    await agentA!.controller.resync();
    await agentA!.controller.queue.onIdle();
    await agentA!.backend.recorder.flush();
    const events = JSON.parse(await env.kubectlOk(['get', 'events', '-n', NS, '--field-selector', 'involvedObject.name=priv', '-o', 'json'])) as { items: { type: string; reason: string; count?: number }[] };
    expect(events.items.map((e) => [e.type, e.reason]), 'one Warning, recorded once').to.deep.equal([['Warning', 'PolicyDenied']]);
    await env.kubectlOk(['delete', 'ct', 'priv', '-n', NS, '--timeout=60s']);
  });

  it('dependsOn naming another namespace is refused by the agent, with the field and the rule', async () => {
    await apply(ct('reach', { dependsOn: [{ kind: 'Container', name: 'db', namespace: 'kube-system' }] }));
    const problem = await waitFor('the problem reported', async () => agentA!.backend.source.problems().find((p) => p.name === 'reach'));
    expect(problem.line).to.include('spec.dependsOn[0].namespace: must be');
    expect(problem.rule).to.equal('same-namespace');
    expect(agentA!.store.keys().some((k) => k.endsWith('/Container/reach')), 'never reaches the store').to.equal(false);
    expect(providerA.calls.filter((c) => c.includes(`${NS}.reach`))).to.deep.equal([]);
    await env.kubectlOk(['delete', 'ct', 'reach', '-n', NS, '--timeout=60s']);
  });

  it('two agents with different --node values each reconcile only their own objects', async () => {
    await apply(ct('on-a', { nodeName: 'node-a' }));
    await apply(ct('on-b', { nodeName: 'node-b' }));
    const a = await waitFor('on-a Running', async () => { const o = await get('on-a'); return o?.status?.phase === 'Running' ? o : undefined; });
    const b = await waitFor('on-b Running', async () => { const o = await get('on-b'); return o?.status?.phase === 'Running' ? o : undefined; });
    expect([a.status?.node, b.status?.node]).to.deep.equal(['node-a', 'node-b']);
    expect(providerA.instances.has(`${NS}.on-a`) && !providerA.instances.has(`${NS}.on-b`)).to.equal(true);
    expect(providerB.instances.has(`${NS}.on-b`) && !providerB.instances.has(`${NS}.on-a`)).to.equal(true);
  });

  it('a resync, and a restart of the agent, of unchanged objects make zero write requests', async () => {
    await agentA!.backend.recorder.flush();
    await new Promise((r) => setTimeout(r, 1_000)); // let the last watch events settle
    const before = await writes();
    await agentA!.controller.resync();
    await agentA!.controller.queue.onIdle();
    await agentA!.stop();
    agentA = await startKubeAgent({ kubeConfig: env.agent(), node: 'node-a', provider: providerA, policy: POLICY });
    await agentA.controller.queue.onIdle();
    await agentA.backend.recorder.flush();
    expect(await writes() - before).to.equal(0);
  });

  it('survives a kube-apiserver restart in the middle without creating anything twice', async () => {
    const names = ['r1', 'r2', 'r3', 'r4', 'r5'];
    for (const n of names) await apply(ct(n, {}));
    await env.restartApiServer(2_000);
    for (const n of names) await waitFor(`${n} Running`, async () => (await get(n))?.status?.phase === 'Running' || undefined, 120_000);
    for (const n of names) expect(providerA.calls.filter((c) => c === `create:${NS}.${n}`).length, n).to.equal(1);
  });
});
