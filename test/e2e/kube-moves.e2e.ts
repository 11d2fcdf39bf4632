/**
 * Moves against a real kube-apiserver with real LXC: two per-node agents (`hyperlet run --source
 * kube --node N --peer-listen ...`, each with its own lxcpath) and the scheduler-only process
 * (`hyperlet scheduler`, as its own ServiceAccount: the Deployment's RBAC is enough).
 * - Editing spec.nodeName moves a container with its data (a file written inside survives); the
 *   new agent is killed right after it fetched the data (failpoint handover.fetched): the old
 *   instance is still there, status says Moving, and the restarted agent finishes the move.
 * - `hyperlet drain` moves what the scheduler placed (with its data) and lists what stays.
 * - An agent that stops renewing its heartbeat Lease: its objects get NodeLost; the one with
 *   spec.evictionPolicy Recreate is recreated on the other node, the others wait.
 * Needs root and lxc with the busybox template (`make host`).
 */
import { expect } from 'chai';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import yaml from 'js-yaml';
import { KubeTestEnv, REPO_ROOT } from './support/kube-testenv.js';
import { until } from '../support/until.js';
import { destroyContainersIn } from './support/crash-daemon.js';

const exec = promisify(execFile);
const NS = `moves-e2e-${process.pid}`;

interface Proc {
  readonly name: string;
  readonly dir: string;
  child?: ChildProcess;
  exited?: Promise<number | null>;
}

interface Agent extends Proc {
  readonly lxcpath: string;
  readonly port: number;
}

interface MovedObject {
  spec: { nodeName?: string };
  status?: {
    phase?: string; node?: string; placement?: { nodeName?: string };
    conditions?: { type: string; status: string; reason: string; message: string }[];
  };
}

const freePort = (): Promise<number> => new Promise((resolve, reject) => {
  const server = createServer();
  server.once('error', reject);
  server.listen(0, '127.0.0.1', () => {
    const port = (server.address() as { port: number }).port;
    server.close(() => resolve(port));
  });
});

describe('moves: data handover between agents, drain and lost nodes against a real kube-apiserver and real LXC', function () {
  this.timeout(30 * 60_000);
  let env: KubeTestEnv;
  let root: string;
  let tokenFile: string;
  let schedulerKubeconfig: string;
  const agents: Agent[] = [];
  let scheduler: Proc;

  const logOf = (p: Proc): string => {
    try {
      return readFileSync(join(p.dir, 'process.log'), 'utf8').split('\n').slice(-40).join('\n');
    } catch {
      return '(no log)';
    }
  };
  const logs = (): string => [...agents, scheduler].map((p) => `--- ${p.name}\n${logOf(p)}`).join('\n');
  const explain = (err: unknown): never => {
    throw new Error(`${String(err)}\n${logs()}`);
  };
  const objectOf = async (name: string): Promise<MovedObject | undefined> => {
    const r = await env.kubectl(['get', 'ct', name, '-n', NS, '-o', 'json']);
    return r.code === 0 ? JSON.parse(r.stdout) as MovedObject : undefined;
  };
  const condition = (o: MovedObject | undefined, type: string): { status: string; reason: string; message: string } | undefined =>
    o?.status?.conditions?.find((c) => c.type === type);
  const apply = (name: string, spec: Record<string, unknown>): Promise<string> => env.kubectlOk(['apply', '-f', '-'], {
    input: yaml.dump({
      apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name, namespace: NS },
      spec: { template: 'busybox', gracefulStopSeconds: 0, ...spec },
    }),
  });
  const lxcState = async (a: Agent, name: string): Promise<string> =>
    (await exec('lxc-info', ['-P', a.lxcpath, '-n', `${NS}.${name}`, '-sH'], { timeout: 20_000 }).catch(() => ({ stdout: 'absent' }))).stdout.trim();
  const inside = async (a: Agent, name: string, script: string): Promise<string> =>
    (await exec('lxc-attach', ['-P', a.lxcpath, '-n', `${NS}.${name}`, '--clear-env', '--', '/bin/sh', '-c', script], { timeout: 30_000 })).stdout;
  const agentOf = (node: string | undefined): Agent => {
    const a = agents.find((x) => x.name === node);
    if (a === undefined) throw new Error(`no agent ${String(node)}`);
    return a;
  };
  const otherThan = (a: Agent): Agent => agents.find((x) => x !== a) as Agent;

  function spawnLogged(p: Proc, args: readonly string[], extraEnv: Record<string, string> = {}): void {
    const log = createWriteStream(join(p.dir, 'process.log'), { flags: 'a' });
    p.child = spawn(process.execPath, [join(REPO_ROOT, 'bin/hyperlet.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...extraEnv } });
    p.child.stdout?.pipe(log);
    p.child.stderr?.pipe(log);
    const child = p.child;
    p.exited = new Promise((r) => child.once('exit', (code) => r(code)));
  }

  function startAgent(a: Agent, failpoints?: string): void {
    spawnLogged(a, ['run', '--source', 'kube', '--kubeconfig', env.agentKubeconfigPath, '--namespace', NS, '--node', a.name,
      '--kinds', 'Container', '--lxcpath', a.lxcpath, '--state', join(a.dir, 'state', 'state.db'), '--http', 'off',
      '--log-level', 'debug', '--heartbeat', '1s',
      '--peer-listen', `127.0.0.1:${a.port}`, '--peer-url', `http://127.0.0.1:${a.port}`, '--peer-token-file', tokenFile],
    failpoints === undefined ? {} : { HYPERLET_FAILPOINTS: failpoints });
  }

  async function stop(p: Proc): Promise<number | null | undefined> {
    if (p.child === undefined || p.child.exitCode !== null || p.child.signalCode !== null) return p.child?.exitCode;
    p.child.kill('SIGTERM');
    const code = await Promise.race([p.exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 40_000))]);
    if (code === 'hung') {
      p.child.kill('SIGKILL');
      return undefined;
    }
    return code;
  }

  const waitReady = async (a: Agent): Promise<void> => {
    await until(`${a.name} Ready`, async () => {
      const r = await env.kubectl(['get', 'hypervisornode', a.name, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']);
      return r.stdout.trim() === 'True' || undefined;
    }, 60_000).catch(explain);
  };

  const runningOn = async (name: string, node: string, timeoutMs = 120_000): Promise<MovedObject> => {
    let seen: MovedObject | undefined;
    await until(`${name} Running on ${node}`, async () => {
      seen = await objectOf(name);
      return (seen?.status?.phase === 'Running' && seen.status.node === node) || undefined;
    }, timeoutMs).catch(explain);
    return seen as MovedObject;
  };

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('the moves e2e needs root for LXC; run make test as root');
    root = mkdtempSync(join(tmpdir(), 'hyperlet-moves-'));
    chmodSync(root, 0o711);
    tokenFile = join(root, 'peer-token');
    writeFileSync(tokenFile, randomBytes(32).toString('hex'), { mode: 0o600 });
    env = await KubeTestEnv.start();
    await env.installHyperlet();
    schedulerKubeconfig = await env.serviceAccountKubeconfig('hyperlet-scheduler');
    await env.kubectlOk(['create', 'namespace', NS]);
    for (const name of ['moves-a', 'moves-b']) {
      const dir = join(root, name);
      mkdirSync(join(dir, 'lxc'), { recursive: true, mode: 0o711 });
      chmodSync(dir, 0o711);
      agents.push({ name, dir, lxcpath: join(dir, 'lxc'), port: await freePort() });
    }
    const dir = join(root, 'scheduler');
    mkdirSync(dir, { mode: 0o700 });
    scheduler = { name: 'scheduler', dir };
    // The scheduler Deployment's command, as its ServiceAccount; short leases keep the file fast.
    spawnLogged(scheduler, ['scheduler', '--kubeconfig', schedulerKubeconfig, '--namespace', NS, '--node-check', '1s',
      '--lease-duration', '4s', '--health-listen', 'off', '--log-level', 'debug']);
    for (const a of agents) startAgent(a);
    for (const a of agents) await waitReady(a);
  });

  after(async () => {
    for (const p of [scheduler, ...agents]) if (p !== undefined) await stop(p);
    for (const a of agents) await destroyContainersIn(a.lxcpath);
    if (env !== undefined) await env.stopReleasing(NS);
    if (root !== undefined) rmSync(root, { recursive: true, force: true });
  });

  it('editing spec.nodeName moves a container with its data; the new agent killed after fetching it finishes after a restart', async () => {
    const [a, b] = agents as [Agent, Agent];
    await apply('moves-data', { nodeName: a.name });
    await runningOn('moves-data', a.name);
    const payload = `payload-${randomBytes(6).toString('hex')}`;
    await inside(a, 'moves-data', `echo ${payload} > /moved.txt && sync`);
    // b dies right after the data is on its disk, before it creates anything.
    await stop(b);
    startAgent(b, 'handover.fetched');
    await waitReady(b);
    const t0 = Date.now();
    await env.kubectlOk(['patch', 'ct', 'moves-data', '-n', NS, '--type=merge', '-p', JSON.stringify({ spec: { nodeName: b.name } })]);
    await until('moves-b killed at handover.fetched', async () => (b.child?.exitCode !== null || b.child.signalCode !== null) || undefined, 120_000)
      .catch(explain);
    expect(readFileSync(join(b.dir, 'process.log'), 'utf8')).to.include('failpoint handover.fetched: killing the process');
    const crashed = Date.now() - t0;
    // Nothing is lost: the old instance is still there (stopped for the copy), status says Moving.
    expect(await lxcState(a, 'moves-data'), 'the old instance stays until the new node has imported the data').to.equal('STOPPED');
    expect(await lxcState(b, 'moves-data'), 'nothing was created on the new node yet').to.equal('absent');
    const moving = await objectOf('moves-data');
    expect(moving?.status?.phase).to.equal('Moving');
    expect(condition(moving, 'Moving')).to.deep.include({ status: 'True', reason: 'DataHandover' });
    expect(condition(moving, 'Moving')?.message).to.include(`Moving from node ${a.name}`);
    startAgent(b);
    const moved = await runningOn('moves-data', b.name);
    process.stdout.write(`      nodeName edit to the kill after the fetch: ${crashed} ms; restart to Running on ${b.name}: ${Date.now() - t0 - crashed} ms\n`);
    expect(condition(moved, 'Moving'), 'the Moving condition is gone once it runs').to.equal(undefined);
    expect((await inside(b, 'moves-data', 'cat /moved.txt')).trim(), 'the file written inside survives the move').to.equal(payload);
    await until('the old instance is removed after the release', async () => (await lxcState(a, 'moves-data')) === 'absent' || undefined, 60_000)
      .catch(explain);
    expect(readFileSync(join(a.dir, 'process.log'), 'utf8')).to.include('the new node has the data: removing the instance here');
    // The handover server hands nothing to a caller without the token, and never what is still its own.
    const uid = (await env.kubectlOk(['get', 'ct', 'moves-data', '-n', NS, '-o', 'jsonpath={.metadata.uid}'])).trim();
    const path = `/v1/handover/${NS}/Container/moves-data?uid=${uid}`;
    expect((await fetch(`http://127.0.0.1:${b.port}${path}`)).status, 'no token').to.equal(401);
    const wrong = await fetch(`http://127.0.0.1:${b.port}${path}`, { headers: { authorization: 'Bearer not-the-token-at-all' } });
    expect(wrong.status, 'a wrong token').to.equal(401);
    const own = await fetch(`http://127.0.0.1:${b.port}${path}`, { headers: { authorization: `Bearer ${readFileSync(tokenFile, 'utf8')}` } });
    expect([own.status, ((await own.json()) as { reason?: string }).reason], 'still assigned to b').to.deep.equal([409, 'StillAssigned']);
    expect(await lxcState(b, 'moves-data'), 'asking does not stop it').to.equal('RUNNING');
  });

  it('the old agent killed while it hands over: nothing is lost, the move waits and finishes once that agent is back', async () => {
    const [a, b] = agents as [Agent, Agent];
    await apply('moves-back', { nodeName: b.name });
    await runningOn('moves-back', b.name);
    const payload = `back-${randomBytes(6).toString('hex')}`;
    await inside(b, 'moves-back', `echo ${payload} > /back.txt && sync`);
    await stop(b);
    startAgent(b, 'handover.exporting');
    await waitReady(b);
    await env.kubectlOk(['patch', 'ct', 'moves-back', '-n', NS, '--type=merge', '-p', JSON.stringify({ spec: { nodeName: a.name } })]);
    await until('moves-b killed at handover.exporting', async () => (b.child?.exitCode !== null || b.child.signalCode !== null) || undefined, 120_000)
      .catch(explain);
    expect(readFileSync(join(b.dir, 'process.log'), 'utf8')).to.include('failpoint handover.exporting: killing the process');
    // a cannot fetch: it says so and keeps trying; nothing was created there, the instance on b is kept.
    let waiting: MovedObject | undefined;
    await until('moves-back Moving with a failed fetch', async () => {
      waiting = await objectOf('moves-back');
      return (waiting?.status?.phase === 'Moving' && condition(waiting, 'Synced')?.status === 'False') || undefined;
    }, 60_000).catch(explain);
    process.stdout.write(`      while the old agent is down: ${condition(waiting, 'Synced')?.message ?? ''}\n`);
    expect(await lxcState(a, 'moves-back')).to.equal('absent');
    expect(await lxcState(b, 'moves-back'), 'stopped for the move, kept').to.equal('STOPPED');
    // b restarts without any memory of what it held: it serves and releases from the API's view.
    const t0 = Date.now();
    startAgent(b);
    await runningOn('moves-back', a.name);
    process.stdout.write(`      old agent back to Running on ${a.name}: ${Date.now() - t0} ms\n`);
    expect((await inside(a, 'moves-back', 'cat /back.txt')).trim()).to.equal(payload);
    await until('the instance on b removed after the release', async () => (await lxcState(b, 'moves-back')) === 'absent' || undefined, 60_000)
      .catch(explain);
    await waitReady(b);
    // Deleted through its finalizer on its new node, so the next test starts with one object per node.
    await env.kubectlOk(['delete', 'ct', 'moves-back', '-n', NS, '--timeout=60s']);
    expect(await lxcState(a, 'moves-back')).to.equal('absent');
  });

  it('hyperlet drain moves what the scheduler placed, one at a time, with its data, and lists what stays; uncordon clears the mark', async () => {
    const placedOn: string[] = [];
    for (const name of ['moves-drained', 'moves-drained-2']) {
      await apply(name, {});
      await until(`${name} placed and Running`, async () => {
        const o = await objectOf(name);
        const placed = o?.status?.placement?.nodeName;
        if (o?.status?.phase !== 'Running' || o.status.node !== placed || placed === undefined) return undefined;
        placedOn.push(placed);
        return true;
      }, 120_000).catch(explain);
    }
    // moves-data runs on b, so both go to a (least allocated, then by name).
    expect(placedOn[0], 'both placed on the same node').to.equal(placedOn[1]);
    const from = agentOf(placedOn[0]);
    const to = otherThan(from);
    await apply('moves-pinned', { nodeName: from.name });
    await runningOn('moves-pinned', from.name);
    const payload = `drained-${randomBytes(6).toString('hex')}`;
    await inside(from, 'moves-drained', `echo ${payload} > /drained.txt && sync`);
    const t0 = Date.now();
    const { stdout } = await exec(process.execPath, [join(REPO_ROOT, 'bin/hyperlet.js'), 'drain', from.name, '--kubeconfig', env.adminKubeconfigPath]);
    process.stdout.write(stdout.trim().split('\n').map((l) => `      ${l}`).join('\n') + '\n');
    expect(stdout).to.include(`hypervisornode/${from.name} cordoned`);
    expect(stdout).to.match(/container\/moves-drained -n \S+: moves/);
    expect(stdout).to.match(/container\/moves-pinned -n \S+: stays \(spec.nodeName/);
    // One at a time: never both placed on the new node while neither runs there yet.
    let mostInFlight = 0;
    await until('both drained objects Running on the other node', async () => {
      const list = JSON.parse(await env.kubectlOk(['get', 'ct', '-n', NS, '-o', 'json'])) as { items: (MovedObject & { metadata: { name: string } })[] };
      const drained = list.items.filter((o) => o.metadata.name.startsWith('moves-drained'));
      const inFlight = drained.filter((o) => o.status?.placement?.nodeName === to.name && !(o.status.phase === 'Running' && o.status.node === to.name));
      mostInFlight = Math.max(mostInFlight, inFlight.length);
      return drained.every((o) => o.status?.phase === 'Running' && o.status.node === to.name) || undefined;
    }, 180_000).catch(explain);
    expect(mostInFlight, 'a drain moves one object of a node at a time').to.equal(1);
    const moved = await runningOn('moves-drained', to.name);
    process.stdout.write(`      drain to Running on ${to.name}: ${Date.now() - t0} ms\n`);
    expect(moved.spec.nodeName, 'never writes spec').to.equal(undefined);
    expect(moved.status?.placement?.nodeName).to.equal(to.name);
    expect(condition(moved, 'Scheduled')?.message).to.include(`Moved from node ${from.name} (cordoned)`);
    expect((await inside(to, 'moves-drained', 'cat /drained.txt')).trim()).to.equal(payload);
    await until('moves-drained gone from the drained node', async () => (await lxcState(from, 'moves-drained')) === 'absent' || undefined, 60_000)
      .catch(explain);
    const pinned = await objectOf('moves-pinned');
    expect([pinned?.status?.node, await lxcState(from, 'moves-pinned')], 'hand-placed objects stay').to.deep.equal([from.name, 'RUNNING']);
    // A cordoned node takes nothing new.
    await apply('moves-new', {});
    await runningOn('moves-new', to.name);
    await exec(process.execPath, [join(REPO_ROOT, 'bin/hyperlet.js'), 'uncordon', from.name, '--kubeconfig', env.adminKubeconfigPath]);
    const unschedulable = await env.kubectlOk(['get', 'hypervisornode', from.name, '-o', 'jsonpath={.spec.unschedulable}']);
    expect(unschedulable.trim()).to.equal('');
  });

  it('an agent whose heartbeat Lease expires: NodeLost on its objects; spec.evictionPolicy Recreate is recreated on the other node', async () => {
    const [a, b] = agents as [Agent, Agent];
    // On b: moves-data (spec.nodeName) and moves-drained/moves-new (placed); add a Recreate one placed on b.
    await exec(process.execPath, [join(REPO_ROOT, 'bin/hyperlet.js'), 'drain', a.name, '--kubeconfig', env.adminKubeconfigPath]);
    await apply('moves-recreate', { evictionPolicy: 'Recreate' });
    await runningOn('moves-recreate', b.name);
    await exec(process.execPath, [join(REPO_ROOT, 'bin/hyperlet.js'), 'uncordon', a.name, '--kubeconfig', env.adminKubeconfigPath]);
    const onB: string[] = [];
    for (const name of ['moves-data', 'moves-drained', 'moves-new']) if ((await objectOf(name))?.status?.node === b.name) onB.push(name);
    expect(onB, 'moves-data (spec.nodeName) runs on b').to.include('moves-data');
    const t0 = Date.now();
    expect(await stop(b), 'SIGTERM exits 0').to.equal(0);
    const recreated = await runningOn('moves-recreate', a.name);
    process.stdout.write(`      agent stopped to Recreate object Running on ${a.name}: ${Date.now() - t0} ms\n`);
    expect(condition(recreated, 'Scheduled')?.message).to.include(`Moved from node ${b.name} (lost)`);
    expect(await lxcState(a, 'moves-recreate')).to.equal('RUNNING');
    for (const name of onB) {
      let o: MovedObject | undefined;
      await until(`${name} NodeLost`, async () => {
        o = await objectOf(name);
        return condition(o, 'NodeLost')?.status === 'True' || undefined;
      }, 60_000).catch(explain);
      expect(condition(o, 'NodeLost')?.message).to.include(`Node ${b.name} stopped renewing its heartbeat; the object waits for it`);
      expect(o?.status?.node, `${name} waits for its node`).to.equal(b.name);
      expect(await lxcState(a, name), `${name} is not recreated elsewhere`).to.equal('absent');
    }
    const ready = await env.kubectlOk(['get', 'hypervisornode', b.name, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].reason}']);
    expect(ready.trim()).to.equal('HeartbeatExpired');
  });
});
