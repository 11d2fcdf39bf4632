/**
 * A fleet of per-node agents on one host: two `hyperlet run --source kube --node N --leader-elect`
 * processes (the DaemonSet's mode), each with its own lxcpath, as the hyperlet ServiceAccount,
 * against a real kube-apiserver with real LXC. Both do their own node's work while exactly one
 * holds the once-per-cluster Lease; a leader stopped with SIGTERM releases it and the other
 * takes over at once. Each agent publishes its HypervisorNode and beats its Lease; the elected
 * one marks a node whose agent was killed Ready=Unknown. Needs root and lxc with the busybox template (`make host`).
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import yaml from 'js-yaml';
import { AGENT_NAMESPACE, KubeTestEnv, REPO_ROOT } from './support/kube-testenv.js';
import { until } from '../support/until.js';
import { destroyContainersIn } from './support/crash-daemon.js';
import { type KubeAgent, makeKubeAgents, startKubeAgent, stopKubeAgent } from './support/kube-agents.js';

const exec = promisify(execFile);
const NS = `fleet-e2e-${process.pid}`;
const CLUSTER_LEASE = 'hyperlet-cluster';
const POOL = `hyperlet-fleet-${process.pid}`;
const VM = 'vm1';
const DOMAIN = `${NS}.${VM}`;

async function virsh(...args: string[]): Promise<string> {
  return (await exec('virsh', ['-c', 'qemu:///system', ...args], { timeout: 60_000 })).stdout;
}

type Agent = KubeAgent;

describe('fleet: per-node agents with --leader-elect against a real kube-apiserver and real LXC', function () {
  this.timeout(70 * 60_000);
  let env: KubeTestEnv;
  let root: string;
  const agents: Agent[] = [];

  const logOf = (a: Agent): string => {
    try {
      return readFileSync(join(a.dir, 'agent.log'), 'utf8').split('\n').slice(-20).join('\n');
    } catch {
      return '(no log)';
    }
  };
  const holder = async (): Promise<string> => {
    const r = await env.kubectl(['get', 'lease', CLUSTER_LEASE, '-n', AGENT_NAMESPACE, '-o', 'jsonpath={.spec.holderIdentity}']);
    return r.code === 0 ? r.stdout.trim() : '';
  };
  const phaseOf = async (name: string): Promise<string> =>
    (await env.kubectl(['get', 'ct', name, '-n', NS, '-o', 'jsonpath={.status.phase}'])).stdout.trim();

  function start(a: Agent): void {
    startKubeAgent(a, ['--leader-elect',
      '--kubeconfig', env.agentKubeconfigPath, '--namespace', NS, '--kinds', 'Container,VirtualMachine',
      '--http', 'off', '--log-level', 'debug', '--heartbeat', '1s']);
  }

  const stop = stopKubeAgent;

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('the fleet e2e needs root for LXC; run make test as root');
    root = mkdtempSync(join(tmpdir(), 'hyperlet-fleet-'));
    chmodSync(root, 0o711);
    env = await KubeTestEnv.start();
    await env.installHyperlet();
    await env.kubectlOk(['create', 'namespace', NS]);
    agents.push(...makeKubeAgents(root, ['fleet-a', 'fleet-b']));
  });

  after(async () => {
    for (const a of agents) await stop(a);
    await virsh('destroy', DOMAIN).catch(() => undefined);
    await virsh('undefine', DOMAIN).catch(() => undefined);
    await virsh('pool-destroy', POOL).catch(() => undefined);
    await virsh('pool-undefine', POOL).catch(() => undefined);
    rmSync(join('/var/lib/hyperlet/pools', POOL), { recursive: true, force: true });
    rmSync(join('/var/log/hyperlet/console', `${DOMAIN}.log`), { force: true });
    for (const a of agents) await destroyContainersIn(a.lxcpath);
    if (env !== undefined) await env.stopReleasing(NS);
    if (root !== undefined) rmSync(root, { recursive: true, force: true });
  });

  it('both agents run their own node\'s containers; exactly one leads; SIGTERM hands the lead over at once', async () => {
    const [a, b] = agents as [Agent, Agent];
    start(a);
    await until('fleet-a leads', async () => (await holder()).startsWith(`${a.node}_`) || undefined, 60_000)
      .catch((err: unknown) => { throw new Error(`${String(err)}\n${logOf(a)}`); });
    start(b);
    for (const x of agents) {
      await env.kubectlOk(['apply', '-f', '-'], { input: yaml.dump({
        apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name: `web-${x.node}`, namespace: NS },
        spec: { template: 'busybox', nodeName: x.node },
      }) });
    }
    for (const x of agents) {
      await until(`web-${x.node} Running`, async () => (await phaseOf(`web-${x.node}`)) === 'Running' || undefined, 120_000)
        .catch((err: unknown) => { throw new Error(`${String(err)}\n${logOf(x)}`); });
      const { stdout } = await exec('lxc-info', ['-P', x.lxcpath, '-n', `${NS}.web-${x.node}`, '-sH'], { timeout: 20_000 });
      expect(stdout.trim(), 'the standby still does its own node\'s work').to.equal('RUNNING');
    }
    const first = await holder();
    expect(first.startsWith(`${a.node}_`), `holder ${first}`).to.equal(true);
    expect(readFileSync(join(b.dir, 'agent.log'), 'utf8')).to.not.include('starting the once-per-cluster tasks');

    const stoppedAt = Date.now();
    expect(await stop(a), 'a leader stopped by SIGTERM exits 0').to.equal(0);
    await until('fleet-b leads', async () => (await holder()).startsWith(`${b.node}_`) || undefined, 30_000)
      .catch((err: unknown) => { throw new Error(`${String(err)}\n${logOf(b)}`); });
    const handoverMs = Date.now() - stoppedAt;
    // client-go's default lease duration is 15 s: a released Lease is taken well before that.
    expect(handoverMs, 'the released Lease is taken without waiting for it to expire').to.be.below(15_000);
    process.stdout.write(`      handover after SIGTERM: ${handoverMs} ms\n`);
    const transitions = Number(await env.kubectlOk(['get', 'lease', CLUSTER_LEASE, '-n', AGENT_NAMESPACE, '-o', 'jsonpath={.spec.leaseTransitions}']));
    expect(transitions).to.equal(1);
    start(a); // back as a standby for what follows
  });

  interface NodeObject {
    metadata: { labels: Record<string, string> };
    status: {
      capacity: { cpu: number; memory: string; disk: string }; allocatable: { cpu: number; memory: string };
      allocated: { cpu: number; memory: string; objects: number }; hypervisors: string[]; kinds: string[];
      conditions: { type: string; status: string; reason: string }[];
    };
  }
  const nodeObject = async (node: string): Promise<NodeObject | undefined> => {
    const r = await env.kubectl(['get', 'hypervisornode', node, '-o', 'json']);
    return r.code === 0 ? JSON.parse(r.stdout) as NodeObject : undefined;
  };
  const readyOf = (o: NodeObject | undefined): string | undefined => o?.status?.conditions?.find((c) => c.type === 'Ready')?.status;

  it('each agent publishes its HypervisorNode (capacity, allocatable, allocated, kinds, labels, Ready) and beats its Lease', async () => {
    const [a] = agents as [Agent, Agent];
    for (const x of agents) {
      await until(`${x.node} published with its container`, async () => {
        const o = await nodeObject(x.node);
        return readyOf(o) === 'True' && o?.status.allocated.objects === 1 ? true : undefined;
      }, 60_000).catch((err: unknown) => { throw new Error(`${String(err)}\n${logOf(x)}`); });
    }
    const o = (await nodeObject(a.node))!;
    const kvm = existsSync('/dev/kvm');
    expect(o.status.capacity).to.deep.include({ cpu: availableParallelism(), memory: `${Math.floor(totalmem() / 2 ** 20)}Mi` });
    expect(o.status.capacity.disk).to.match(/^[1-9][0-9]*Gi$/);
    expect(o.status.allocatable.cpu).to.equal(availableParallelism());
    // A busybox container without a memory limit counts the policy's default (512Mi), no cpu.
    expect(o.status.allocated).to.deep.equal({ cpu: 0, memory: '512Mi', objects: 1 });
    expect(o.status.kinds).to.deep.equal(['Container', 'VirtualMachine']);
    expect(o.status.hypervisors).to.deep.equal(['lxc', 'qemu', ...(kvm ? ['kvm'] : [])]);
    expect(o.metadata.labels).to.deep.include({ 'kubernetes.io/hostname': a.node, 'kubernetes.io/os': 'linux', 'hyperlet.io/kvm': String(kvm) });

    const table = await env.kubectlOk(['get', 'hypervisornodes']);
    const [header, ...rows] = table.trim().split('\n');
    expect(header?.split(/\s+/)).to.deep.equal(['NAME', 'READY', 'CPU', 'CPU-USED', 'MEMORY', 'MEMORY-USED', 'DISK', 'OBJECTS', 'AGE']);
    const row = rows.find((r) => r.startsWith(`${a.node} `))?.split(/\s+/);
    expect(row?.slice(0, 8)).to.deep.equal([a.node, 'True', String(o.status.capacity.cpu), '0', o.status.capacity.memory, '512Mi',
      o.status.capacity.disk, '1']);
    process.stdout.write(`      ${header}\n${rows.map((r) => `      ${r}`).join('\n')}\n`);

    const lease = async (): Promise<{ renewTime: string; leaseDurationSeconds: number; holderIdentity: string }> =>
      (JSON.parse(await env.kubectlOk(['get', 'lease', `hyperlet-node-${a.node}`, '-n', AGENT_NAMESPACE, '-o', 'json'])) as {
        spec: { renewTime: string; leaseDurationSeconds: number; holderIdentity: string };
      }).spec;
    const first = await lease();
    expect([first.holderIdentity, first.leaseDurationSeconds]).to.deep.equal([a.node, 4]);
    await until('the heartbeat Lease renewed', async () => (await lease()).renewTime !== first.renewTime || undefined, 10_000);

    // A quiet host writes nothing: several heartbeats pass without a status write.
    const writes = (): Promise<number> => env.requestCount({ verb: 'PATCH', resource: 'hypervisornodes', subresource: 'status' });
    const before = await writes();
    await new Promise((r) => setTimeout(r, 4_000));
    expect(await writes() - before, 'status writes while nothing changed').to.equal(0);
  });

  it('a new object on a node updates its allocated resources', async () => {
    const [a] = agents as [Agent, Agent];
    await env.kubectlOk(['apply', '-f', '-'], { input: yaml.dump({
      apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name: 'sized', namespace: NS },
      spec: { template: 'busybox', nodeName: a.node, resources: { cpu: 1, memory: '256Mi' } },
    }) });
    await until('allocated counts the new container', async () => {
      const o = await nodeObject(a.node);
      return o?.status.allocated.objects === 2 ? o.status.allocated : undefined;
    }, 30_000).then((allocated) => expect(allocated).to.deep.equal({ cpu: 1, memory: '768Mi', objects: 2 }));
  });

  it('an agent killed without warning: the elected agent marks its node Ready=Unknown (HeartbeatExpired); back, it is Ready again', async () => {
    const [a, b] = agents as [Agent, Agent];
    expect((await holder()).startsWith(`${b.node}_`), 'fleet-b leads since the hand-over').to.equal(true);
    a.child?.kill('SIGKILL');
    await a.exited;
    const killedAt = Date.now();
    await until('fleet-a Ready=Unknown', async () => {
      const o = await nodeObject(a.node);
      return readyOf(o) === 'Unknown' ? o : undefined;
    }, 60_000).then((o) => expect(o.status.conditions.find((c) => c.type === 'Ready')?.reason).to.equal('HeartbeatExpired'))
      .catch((err: unknown) => { throw new Error(`${String(err)}\n${logOf(b)}`); });
    const detectedMs = Date.now() - killedAt;
    process.stdout.write(`      heartbeat expiry noticed after ${detectedMs} ms (Lease 4 s, checks every 1 s)\n`);
    expect(detectedMs, 'not before the Lease (4 s) expired').to.be.at.least(2_000);
    expect(readyOf(await nodeObject(b.node)), 'the living node stays Ready').to.equal('True');
    start(a);
    await until('fleet-a Ready again', async () => readyOf(await nodeObject(a.node)) === 'True' || undefined, 60_000)
      .catch((err: unknown) => { throw new Error(`${String(err)}\n${logOf(a)}`); });
  });

  it('a VirtualMachine CR on real libvirt: Running, counted in allocated, live memory change, deleted through the finalizer', async () => {
    const [a] = agents as [Agent, Agent];
    const guestDir = (await exec('bash', [join(REPO_ROOT, 'scripts/build-test-guest.sh')], { timeout: 600_000 })).stdout.trim().split('\n').pop() ?? '';
    const vm = (memory: string): string => yaml.dump({
      apiVersion: 'hyperlet.io/v1alpha1', kind: 'VirtualMachine', metadata: { name: VM, namespace: NS },
      spec: {
        nodeName: a.node, hypervisor: 'qemu', resources: { cpu: 1, memory, maxMemory: '256Mi' },
        boot: { kernel: `${guestDir}/vmlinuz`, initrd: `${guestDir}/initrd.img`, cmdline: 'console=ttyS0 quiet' },
        disks: [{ name: 'data', size: '100Mi', pool: POOL }], gracefulStopSeconds: 10,
      },
    });
    const vmStatus = async (): Promise<{ phase?: string; observedGeneration?: number; ready?: string }> => {
      const r = await env.kubectl(['get', 'vm', VM, '-n', NS, '-o', 'json']);
      if (r.code !== 0) return {};
      const o = JSON.parse(r.stdout) as { status?: { phase?: string; observedGeneration?: number; conditions?: { type: string; status: string }[] } };
      return { phase: o.status?.phase, observedGeneration: o.status?.observedGeneration, ready: o.status?.conditions?.find((c) => c.type === 'Ready')?.status };
    };
    const appliedAt = Date.now();
    await env.kubectlOk(['apply', '-f', '-'], { input: vm('128Mi') });
    await until('vm1 Running and Ready', async () => {
      const s = await vmStatus();
      return s.phase === 'Running' && s.ready === 'True' ? true : undefined;
    }, 180_000).catch((err: unknown) => { throw new Error(`${String(err)}\n${logOf(a)}`); });
    process.stdout.write(`      VirtualMachine apply to Ready: ${Date.now() - appliedAt} ms\n`);
    expect((await virsh('domstate', DOMAIN)).trim()).to.equal('running');
    expect(readdirSync(join('/var/lib/hyperlet/pools', POOL)).filter((f) => f.startsWith(`${DOMAIN}-data-`))).to.have.length(1);
    await until('allocated counts the VM', async () => {
      const o = await nodeObject(a.node);
      return o?.status.allocated.objects === 3 ? o.status.allocated : undefined;
    }, 30_000).then((allocated) => expect(allocated).to.deep.equal({ cpu: 2, memory: '896Mi', objects: 3 }));

    // A live memory change (within maxMemory): the running domain balloons to it, no restart.
    await env.kubectlOk(['apply', '-f', '-'], { input: vm('192Mi') });
    await until('currentMemory 192 MiB', async () => (await virsh('dumpxml', DOMAIN)).includes('<currentMemory unit=\'KiB\'>196608</currentMemory>'), 120_000)
      .catch((err: unknown) => { throw new Error(`${String(err)}\n${logOf(a)}`); });
    await until('vm1 observed generation 2, Ready', async () => {
      const s = await vmStatus();
      return s.observedGeneration === 2 && s.ready === 'True' && s.phase === 'Running' ? true : undefined;
    }, 120_000);
    expect((await virsh('domstate', DOMAIN)).trim(), 'no restart').to.equal('running');

    await env.kubectlOk(['delete', 'vm', VM, '-n', NS, '--wait=true', '--timeout=120s'], { timeoutMs: 130_000 });
    expect(await virsh('dominfo', DOMAIN).then(() => 'exists', () => 'gone'), 'the finalizer held the object until the domain was gone').to.equal('gone');
    expect(readdirSync(join('/var/lib/hyperlet/pools', POOL)).filter((f) => f.startsWith(`${DOMAIN}-data-`)), 'its volume too').to.have.length(0);
  });

  it('an edited spec.nodeName leaves no instance on the old node: the new node runs it and owns its status and finalizer', async () => {
    const [a, b] = agents as [Agent, Agent];
    const name = 'mover';
    const hostName = `${NS}.${name}`;
    const lxcState = (x: Agent): Promise<string> =>
      exec('lxc-info', ['-P', x.lxcpath, '-n', hostName, '-sH'], { timeout: 20_000 }).then((r) => r.stdout.trim(), () => 'gone');
    const object = async (): Promise<{ metadata: { finalizers?: string[] }; status?: { phase?: string; node?: string } }> =>
      JSON.parse(await env.kubectlOk(['get', 'ct', name, '-n', NS, '-o', 'json'])) as never;
    await env.kubectlOk(['apply', '-f', '-'], { input: yaml.dump({
      apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name, namespace: NS }, spec: { template: 'busybox', nodeName: a.node },
    }) });
    await until('mover Running on fleet-a', async () => {
      const o = await object();
      return o.status?.phase === 'Running' && o.status.node === a.node ? true : undefined;
    }, 120_000).catch((err: unknown) => { throw new Error(`${String(err)}\n${logOf(a)}`); });
    expect(await lxcState(a)).to.equal('RUNNING');

    const movedAt = Date.now();
    await env.kubectlOk(['patch', 'ct', name, '-n', NS, '--type=merge', '-p', JSON.stringify({ spec: { nodeName: b.node } })]);
    await until('gone from fleet-a and Running on fleet-b', async () =>
      (await lxcState(a)) === 'gone' && (await lxcState(b)) === 'RUNNING' || undefined, 120_000)
      .catch((err: unknown) => { throw new Error(`${String(err)}\n${logOf(a)}\n${logOf(b)}`); });
    await until('status from fleet-b', async () => {
      const o = await object();
      return o.status?.phase === 'Running' && o.status.node === b.node ? true : undefined;
    }, 60_000);
    process.stdout.write(`      nodeName edit to: old instance gone, new one running, status from the new node: ${Date.now() - movedAt} ms\n`);
    // The old agent deleted its instance (its Event says so) but released no finalizer and wrote no
    // status after the move: the object stays held for the new node, whose status stays.
    const events = JSON.parse(await env.kubectlOk(['get', 'events', '-n', NS, '--field-selector', `involvedObject.name=${name}`, '-o', 'json'])) as {
      items: { reason: string; source: { host?: string } }[];
    };
    expect(events.items.filter((e) => e.reason === 'Deleted').map((e) => e.source.host)).to.deep.equal([a.node]);
    await new Promise((r) => setTimeout(r, 2_000));
    const o = await object();
    expect(o.metadata.finalizers).to.deep.equal(['hyperlet.io/cleanup']);
    expect([o.status?.phase, o.status?.node]).to.deep.equal(['Running', b.node]);

    await env.kubectlOk(['delete', 'ct', name, '-n', NS, '--wait=true', '--timeout=120s'], { timeoutMs: 130_000 });
    expect([await lxcState(a), await lxcState(b)]).to.deep.equal(['gone', 'gone']);
  });
});
