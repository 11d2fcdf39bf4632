/**
 * Placement against a real kube-apiserver with real LXC: two per-node agents (`hyperlet run
 * --source kube --node N --leader-elect --scheduler`, the DaemonSet's mode), each with its own
 * lxcpath, as the hyperlet ServiceAccount. Containers without spec.nodeName are placed by the
 * elected agent's scheduler (status.placement.nodeName, never spec), spread over both nodes and
 * run there; a nodeSelector that matches no HypervisorNode gives Scheduled=False Unschedulable
 * and is placed once a node gets the label; when the leading agent stops, the other one's
 * scheduler places new objects. Needs root and lxc with the busybox template (`make host`).
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import yaml from 'js-yaml';
import { AGENT_NAMESPACE, KubeTestEnv } from './support/kube-testenv.js';
import { until } from '../support/until.js';
import { destroyContainersIn } from './support/crash-daemon.js';
import { type KubeAgent, makeKubeAgents, startKubeAgent, stopKubeAgent } from './support/kube-agents.js';

const exec = promisify(execFile);
const NS = `placement-e2e-${process.pid}`;
const CLUSTER_LEASE = 'hyperlet-cluster';

type Agent = KubeAgent;

interface PlacedObject {
  spec: { nodeName?: string };
  status?: {
    phase?: string; node?: string; placement?: { nodeName?: string };
    conditions?: { type: string; status: string; reason: string; message: string; lastTransitionTime?: string }[];
  };
}

describe('placement: the elected agent\'s scheduler against a real kube-apiserver and real LXC', function () {
  this.timeout(30 * 60_000);
  let env: KubeTestEnv;
  let root: string;
  const agents: Agent[] = [];

  const logOf = (a: Agent): string => {
    try {
      return readFileSync(join(a.dir, 'agent.log'), 'utf8').split('\n').slice(-30).join('\n');
    } catch {
      return '(no log)';
    }
  };
  const logs = (): string => agents.map((a) => `--- ${a.node}\n${logOf(a)}`).join('\n');
  const holder = async (): Promise<string> => {
    const r = await env.kubectl(['get', 'lease', CLUSTER_LEASE, '-n', AGENT_NAMESPACE, '-o', 'jsonpath={.spec.holderIdentity}']);
    return r.code === 0 ? r.stdout.trim() : '';
  };
  const objectOf = async (name: string): Promise<PlacedObject | undefined> => {
    const r = await env.kubectl(['get', 'ct', name, '-n', NS, '-o', 'json']);
    return r.code === 0 ? JSON.parse(r.stdout) as PlacedObject : undefined;
  };
  const apply = (name: string, spec: Record<string, unknown>): Promise<string> => env.kubectlOk(['apply', '-f', '-'], {
    input: yaml.dump({ apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name, namespace: NS }, spec: { template: 'busybox', ...spec } }),
  });
  const lxcState = async (a: Agent, name: string): Promise<string> =>
    (await exec('lxc-info', ['-P', a.lxcpath, '-n', `${NS}.${name}`, '-sH'], { timeout: 20_000 }).catch(() => ({ stdout: 'absent' }))).stdout.trim();

  function start(a: Agent): void {
    startKubeAgent(a, ['--leader-elect', '--scheduler',
      '--kubeconfig', env.agentKubeconfigPath, '--namespace', NS, '--kinds', 'Container',
      '--http', 'off', '--log-level', 'debug', '--heartbeat', '1s']);
  }

  const stop = stopKubeAgent;

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('the placement e2e needs root for LXC; run make test as root');
    root = mkdtempSync(join(tmpdir(), 'hyperlet-placement-'));
    chmodSync(root, 0o711);
    env = await KubeTestEnv.start();
    await env.installHyperlet();
    await env.kubectlOk(['create', 'namespace', NS]);
    agents.push(...makeKubeAgents(root, ['placement-a', 'placement-b']));
  });

  after(async () => {
    for (const a of agents) await stop(a);
    for (const a of agents) await destroyContainersIn(a.lxcpath);
    if (env !== undefined) await env.stopReleasing(NS);
    if (root !== undefined) rmSync(root, { recursive: true, force: true });
  });

  it('objects without spec.nodeName are spread over both agents, run there, and keep spec untouched', async () => {
    const [a, b] = agents as [Agent, Agent];
    start(a);
    await until('placement-a leads', async () => (await holder()).startsWith(`${a.node}_`) || undefined, 60_000)
      .catch((err: unknown) => { throw new Error(`${String(err)}\n${logs()}`); });
    start(b);
    for (const x of agents) {
      await until(`${x.node} Ready`, async () => {
        const r = await env.kubectl(['get', 'hypervisornode', x.node, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']);
        return r.stdout.trim() === 'True' || undefined;
      }, 60_000).catch((err: unknown) => { throw new Error(`${String(err)}\n${logs()}`); });
    }
    const names = ['placement-web-1', 'placement-web-2', 'placement-web-3', 'placement-web-4'];
    const t0 = Date.now();
    for (const name of names) await apply(name, {});
    const placed = new Map<string, string>();
    for (const name of names) {
      await until(`${name} Running`, async () => {
        const o = await objectOf(name);
        if (o?.status?.phase !== 'Running' || o.status.placement?.nodeName === undefined) return undefined;
        placed.set(name, o.status.placement.nodeName);
        expect(o.spec.nodeName, 'the scheduler never writes spec').to.equal(undefined);
        expect(o.status.node, 'the placed node\'s agent reports it').to.equal(o.status.placement.nodeName);
        return true;
      }, 180_000).catch((err: unknown) => { throw new Error(`${String(err)}\n${logs()}`); });
    }
    process.stdout.write(`      4 containers placed and Running in ${Date.now() - t0} ms: ${JSON.stringify(Object.fromEntries(placed))}\n`);
    const perNode = (n: string): number => [...placed.values()].filter((v) => v === n).length;
    expect([perNode(a.node), perNode(b.node)], 'least allocated first: two on each node').to.deep.equal([2, 2]);
    for (const [name, node] of placed) {
      const [on, off] = node === a.node ? [a, b] : [b, a];
      expect(await lxcState(on, name), `${name} runs on ${node}`).to.equal('RUNNING');
      expect(await lxcState(off, name), `${name} is not on the other node`).to.equal('absent');
    }
    // The agents' status writes kept the placement; the Node column shows spec, Placed the scheduler's choice.
    const table = await env.kubectlOk(['get', 'ct', '-n', NS]);
    expect(table.split('\n')[0]?.split(/\s+/).slice(0, 4)).to.deep.equal(['NAME', 'PHASE', 'NODE', 'PLACED']);
    process.stdout.write(`${table.trim().split('\n').map((l) => `      ${l}`).join('\n')}\n`);
  });

  it('a nodeSelector that matches no node gives Unschedulable, and the object is placed once a node gets the label', async () => {
    const [, b] = agents as [Agent, Agent];
    await apply('placement-picky', { nodeSelector: { 'placement.example/zone': 'z9' } });
    let condition: { status: string; reason: string; message: string; lastTransitionTime?: string } | undefined;
    await until('placement-picky Unschedulable', async () => {
      condition = (await objectOf('placement-picky'))?.status?.conditions?.find((c) => c.type === 'Scheduled');
      return condition?.reason === 'Unschedulable' || undefined;
    }, 30_000).catch((err: unknown) => { throw new Error(`${String(err)}\n${logs()}`); });
    expect(condition).to.deep.include({ status: 'False', reason: 'Unschedulable', message: '0/2 nodes: 2 did not match nodeSelector' });
    const conditionTime = condition?.lastTransitionTime;
    const o = await objectOf('placement-picky');
    expect(o?.status?.placement, 'not placed').to.equal(undefined);
    for (const a of agents) expect(await lxcState(a, 'placement-picky')).to.equal('absent');

    // No hot loop: with nothing changing, the next two passes wait out the backoff (1 s, then 2 s).
    const [leader] = agents as [Agent, Agent];
    const passes = (): number => readFileSync(join(leader.dir, 'agent.log'), 'utf8').split('\n').filter((l) => l.includes('"scheduler pass"')).length;
    const before = passes();
    const since = Date.now();
    await until('two more scheduler passes', async () => passes() >= before + 2 || undefined, 30_000);
    const retryMs = Date.now() - since;
    process.stdout.write(`      passes so far ${before}; two more took ${retryMs} ms\n`);
    expect(retryMs, 'retries of an unschedulable object back off').to.be.at.least(1_000);
    const still = (await objectOf('placement-picky'))?.status?.conditions?.find((c) => c.type === 'Scheduled');
    expect(still?.lastTransitionTime, 'an unchanged message is not written again').to.equal(conditionTime);

    // A change of the HypervisorNodes brings the scheduler back (no waiting out its backoff).
    const labelled = Date.now();
    await env.kubectlOk(['label', 'hypervisornode', b.node, 'placement.example/zone=z9']);
    await until('placement-picky Running on placement-b', async () => {
      const p = await objectOf('placement-picky');
      return (p?.status?.placement?.nodeName === b.node && p.status.phase === 'Running') || undefined;
    }, 120_000).catch((err: unknown) => { throw new Error(`${String(err)}\n${logs()}`); });
    process.stdout.write(`      labelled node to Running: ${Date.now() - labelled} ms\n`);
    expect(await lxcState(b, 'placement-picky')).to.equal('RUNNING');
  });

  it('when the leading agent stops, the other agent\'s scheduler places new objects', async () => {
    const [a, b] = agents as [Agent, Agent];
    expect((await holder()).startsWith(`${a.node}_`)).to.equal(true);
    expect(await stop(a), 'SIGTERM exits 0').to.equal(0);
    await until('placement-b leads', async () => (await holder()).startsWith(`${b.node}_`) || undefined, 30_000)
      .catch((err: unknown) => { throw new Error(`${String(err)}\n${logs()}`); });
    await apply('placement-after', { nodeSelector: { 'kubernetes.io/hostname': b.node } });
    await until('placement-after Running on placement-b', async () => {
      const p = await objectOf('placement-after');
      return (p?.status?.placement?.nodeName === b.node && p.status.phase === 'Running') || undefined;
    }, 120_000).catch((err: unknown) => { throw new Error(`${String(err)}\n${logs()}`); });
    expect(readFileSync(join(b.dir, 'agent.log'), 'utf8')).to.include('scheduler pass');
    expect(await lxcState(b, 'placement-after')).to.equal('RUNNING');
  });
});
