/**
 * The end-to-end flow with the real daemon and real LXC: two `hyperlet run --source kube
 * --kubeconfig … --node …` processes (as the hyperlet ServiceAccount), each with its own isolated
 * lxcpath, against a real kube-apiserver. kubectl apply → containers Running on the host and in
 * `kubectl get ct`; a spec change → observedGeneration follows; kubectl delete → the container
 * is gone before the object; each agent touches only its node's objects; a kube-apiserver
 * restart in the middle creates nothing twice; resyncs of unchanged objects write nothing.
 * Needs root and the lxc, lxc-templates and busybox-static packages (`make host`).
 */
import { expect } from 'chai';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import yaml from 'js-yaml';
import type { Status } from '../../src/api/v1alpha1/types.js';
import { KubeTestEnv, REPO_ROOT } from './support/kube-testenv.js';
import { morePassesInLog } from '../support/pass-log.js';
import { until } from '../support/until.js';

const run = promisify(execFile);
const NS = `daemon-e2e-${process.pid}`;
const ct = (name: string, spec: Record<string, unknown>) => ({
  apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name, namespace: NS }, spec: { template: 'busybox', ...spec },
});

interface Agent { readonly node: string; readonly lxcpath: string; readonly dir: string; child?: ChildProcess; exited?: Promise<void> }

async function lxcState(lxcpath: string, name: string): Promise<string | undefined> {
  try {
    const { stdout } = await run('lxc-info', ['-P', lxcpath, '-n', name, '-sH'], { timeout: 20_000 });
    return stdout.trim();
  } catch {
    return undefined;
  }
}

async function destroyAll(lxcpath: string): Promise<void> {
  for (const name of readdirSync(lxcpath, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name)) {
    await run('lxc-stop', ['-P', lxcpath, '-n', name, '-k'], { timeout: 30_000 }).catch(() => undefined);
    await run('lxc-destroy', ['-P', lxcpath, '-n', name], { timeout: 60_000 }).catch(() => undefined);
  }
  rmSync(lxcpath, { recursive: true, force: true });
}

describe('kube end to end: hyperlet run --source kube with real LXC and a real kube-apiserver', function () {
  this.timeout(70 * 60_000);
  let env: KubeTestEnv;
  const agents: Agent[] = [];

  const apply = (doc: object): Promise<string> => env.kubectlOk(['apply', '-f', '-'], { input: yaml.dump(doc) });
  const get = async (name: string): Promise<{ metadata: { generation: number }; status?: Status } | undefined> => {
    const r = await env.kubectl(['get', 'ct', name, '-n', NS, '-o', 'json']);
    return r.code === 0 ? JSON.parse(r.stdout) as never : undefined;
  };
  const phaseIs = (name: string, phase: string, generation?: number) => async (): Promise<true | undefined> => {
    const o = await get(name);
    return o?.status?.phase === phase && (generation === undefined || o.status.observedGeneration === generation) ? true : undefined;
  };

  function startAgent(a: Agent): void {
    const log = createWriteStream(join(a.dir, 'hyperlet.log'), { flags: 'a' });
    a.child = spawn(process.execPath, [join(REPO_ROOT, 'bin/hyperlet.js'), 'run',
      '--source', 'kube', '--kubeconfig', env.agentKubeconfigPath, '--namespace', NS, '--node', a.node,
      '--lxcpath', a.lxcpath, '--state', join(a.dir, 'state.db'), '--kinds', 'Container', '--http', 'off',
      '--resync', '5s', '--log-level', 'debug'], { stdio: ['ignore', 'pipe', 'pipe'] });
    a.child.stdout?.pipe(log);
    a.child.stderr?.pipe(log);
    const child = a.child;
    a.exited = new Promise((r) => child.once('exit', () => r()));
  }

  async function stopAgent(a: Agent): Promise<void> {
    if (a.child === undefined || a.child.exitCode !== null) return;
    a.child.kill('SIGTERM');
    await Promise.race([a.exited, new Promise((r) => setTimeout(r, 40_000))]);
    if (a.child.exitCode === null) a.child.kill('SIGKILL');
  }

  const logOf = (a: Agent): string => readFileSync(join(a.dir, 'hyperlet.log'), 'utf8').split('\n').slice(-20).join('\n');

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('the kube end-to-end test needs root for LXC; run make test as root');
    await access('/usr/share/lxc/templates/lxc-busybox').catch(() => {
      throw new Error('the kube end-to-end test needs lxc and the busybox template: run make host (lxc, lxc-templates, busybox-static)');
    });
    env = await KubeTestEnv.start();
    await env.installHyperlet();
    await env.kubectlOk(['create', 'namespace', NS]);
    for (const node of ['node-a', 'node-b']) {
      const dir = mkdtempSync(join(tmpdir(), `hyperlet-kube-daemon-${node}-`));
      agents.push({ node, dir, lxcpath: mkdtempSync(join(tmpdir(), `hyperlet-kube-lxc-${node}-`)) });
    }
    for (const a of agents) startAgent(a);
  });

  after(async () => {
    for (const a of agents) await stopAgent(a);
    for (const a of agents) {
      await destroyAll(a.lxcpath);
      rmSync(a.dir, { recursive: true, force: true });
    }
    if (env !== undefined) {
      const names = (await env.kubectl(['get', 'ct', '-n', NS, '-o', 'name'])).stdout.trim().split('\n').filter((n) => n !== '');
      for (const n of names) await env.kubectl(['patch', n, '-n', NS, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
      await env.stop();
    }
  });

  it('kubectl apply: each agent runs the containers of its node, and kubectl get ct shows them Running', async () => {
    const [a, b] = agents as [Agent, Agent];
    await apply(ct('web', { nodeName: 'node-a' }));
    await apply(ct('db', { nodeName: 'node-b' }));
    await until('web Running', phaseIs('web', 'Running', 1), 120_000).catch((err: unknown) => { throw new Error(`${String(err)}\n${logOf(a)}`); });
    await until('db Running', phaseIs('db', 'Running', 1), 120_000).catch((err: unknown) => { throw new Error(`${String(err)}\n${logOf(b)}`); });
    expect(await lxcState(a.lxcpath, `${NS}.web`)).to.equal('RUNNING');
    expect(await lxcState(b.lxcpath, `${NS}.db`)).to.equal('RUNNING');
    expect(await lxcState(a.lxcpath, `${NS}.db`), 'node-a never touches node-b\'s object').to.equal(undefined);
    expect(await lxcState(b.lxcpath, `${NS}.web`)).to.equal(undefined);
    const rows = (await env.kubectlOk(['get', 'ct', '-n', NS, '--no-headers'])).trim().split('\n').map((l) => l.split(/\s+/).slice(0, 3));
    expect(rows).to.deep.equal([['db', 'Running', 'node-b'], ['web', 'Running', 'node-a']]);
    expect((await get('web'))?.status?.node).to.equal('node-a');
  });

  it('a spec change is applied and observedGeneration follows', async () => {
    await apply(ct('web', { nodeName: 'node-a', state: 'Stopped' }));
    await until('web Stopped at generation 2', phaseIs('web', 'Stopped', 2), 120_000);
    expect(await lxcState(agents[0]!.lxcpath, `${NS}.web`)).to.equal('STOPPED');
    expect((await get('web'))?.status?.conditions.find((c) => c.type === 'Ready')?.status, 'stopped as declared is Ready').to.equal('True');
  });

  it('a resync of unchanged objects makes zero write requests', async () => {
    // Each agent's object: one whole pass first (whatever the last test left is written by then),
    // then two more, each from a --resync 5s, counted in the agents' debug logs.
    const passes = (n: number): Promise<unknown> => Promise.all([
      morePassesInLog(join(agents[0]!.dir, 'hyperlet.log'), [`kube/${NS}/Container/web`], n),
      morePassesInLog(join(agents[1]!.dir, 'hyperlet.log'), [`kube/${NS}/Container/db`], n),
    ]);
    const writes = async (): Promise<number> => {
      let n = 0;
      for (const verb of ['PUT', 'PATCH', 'POST', 'DELETE']) n += await env.requestCount({ verb, resource: 'containers' }) + await env.requestCount({ verb, resource: 'events' });
      return n;
    };
    await passes(1);
    const before = await writes();
    await passes(2);
    expect(await writes() - before).to.equal(0);
  });

  it('kubectl delete: the container is removed from the host before the object goes', async () => {
    await env.kubectlOk(['delete', 'ct', 'web', '-n', NS, '--timeout=120s']);
    expect(await lxcState(agents[0]!.lxcpath, `${NS}.web`)).to.equal(undefined);
    expect(readdirSync(agents[0]!.lxcpath)).not.to.include(`${NS}.web`);
  });

  it('recovers from a kube-apiserver restart in the middle without creating anything twice', async () => {
    const a = agents[0]!;
    await apply(ct('r1', { nodeName: 'node-a' }));
    await apply(ct('r2', { nodeName: 'node-a' }));
    await env.restartApiServer(2_000);
    await apply(ct('r3', { nodeName: 'node-a' }));
    for (const n of ['r1', 'r2', 'r3']) {
      await until(`${n} Running`, phaseIs(n, 'Running'), 180_000).catch((err: unknown) => { throw new Error(`${String(err)}\n${logOf(a)}`); });
      expect(await lxcState(a.lxcpath, `${NS}.${n}`)).to.equal('RUNNING');
    }
    // Nothing was created twice: no Created event counts more than one creation. Events are best
    // effort (as client-go's recorder, ours drops an event after its retries), so one written
    // during the outage may be missing; r3's, written after it, must arrive.
    const createdCounts = async (): Promise<[string, number][]> => {
      const created = await env.kubectlOk(['get', 'events', '-n', NS, '--field-selector', 'reason=Created', '-o', 'json']);
      return (JSON.parse(created) as { items: { involvedObject: { name: string }; count: number }[] }).items
        .filter((e) => ['r1', 'r2', 'r3'].includes(e.involvedObject.name)).map((e): [string, number] => [e.involvedObject.name, e.count]).sort();
    };
    const counts = await until('the Created event of r3', async () => {
      const c = await createdCounts();
      return c.some(([name]) => name === 'r3') ? c : undefined;
    }, 60_000, 1_000);
    expect(counts.every(([, count]) => count === 1), JSON.stringify(counts)).to.equal(true);
    expect(new Set(counts.map(([name]) => name)).size, JSON.stringify(counts)).to.equal(counts.length);
  });
});
