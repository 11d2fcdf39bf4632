/**
 * Deployable: `kubectl apply -k manifests/` against a real kube-apiserver (server-side dry run
 * first, then for real), and the agent run exactly as the DaemonSet runs it, twice:
 * - from this checkout: the DaemonSet's container from the kustomized manifests (args, env, probes,
 *   volume mounts) becomes `hyperlet` run with those args, the ServiceAccount's token, $(NODE_NAME)
 *   expanded as the kubelet does and each per-host directory mount pointed at a temp directory
 *   (the policy file from the ConfigMap the API server holds);
 * - from the image the Containerfile builds (scripts/build-agent-image.sh: no registry is reachable
 *   here, so on a stand-in base), run by podman privileged in the host's network and PID
 *   namespaces with the DaemonSet's args and volumes (its three per-host directories isolated).
 * Each time a Container CR placed on that node reaches real LXC and is deleted through the
 * finalizer; the probes answer on the port the DaemonSet probes. Needs root, lxc with the busybox
 * template, buildah, podman, runc and mmdebstrap (`make host`).
 */
import { expect } from 'chai';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { chmodSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import yaml from 'js-yaml';
import { AGENT_NAMESPACE, KubeTestEnv, REPO_ROOT, freePort } from './support/kube-testenv.js';
import { until } from '../support/until.js';

const exec = promisify(execFile);
const NS = `fleet-deploy-${process.pid}`;
const NODE = `fleet-node-${process.pid}`;

interface Probe { httpGet: { host: string; port: number; path: string } }
interface AgentContainer {
  name: string;
  args: string[];
  env: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  resources: { requests?: Record<string, string>; limits?: Record<string, string> };
  startupProbe?: Probe;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
}
interface DaemonSetDoc {
  kind: 'DaemonSet';
  metadata: { name: string; namespace: string };
  spec: { template: { spec: {
    serviceAccountName: string; hostNetwork: boolean; containers: AgentContainer[];
    volumes: { name: string; hostPath?: { path: string }; configMap?: { name: string } }[];
  } } };
}

/** The kubelet's $(VAR) expansion of args from the container's env (fieldRef spec.nodeName is the node). */
function expandArgs(c: AgentContainer, node: string): string[] {
  const vars = new Map<string, string>();
  for (const e of c.env) {
    if (e.value !== undefined) vars.set(e.name, e.value);
    else if (e.valueFrom?.fieldRef?.fieldPath === 'spec.nodeName') vars.set(e.name, node);
    else throw new Error(`the test does not know how to provide env ${e.name} of the DaemonSet`);
  }
  return c.args.map((a) => a.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, name: string) => vars.get(name) ?? m));
}

function getLocal(port: number, path: string): Promise<{ status: number; body: string } | undefined> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, timeout: 5_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', () => resolve(undefined));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

describe('deploy: kubectl apply -k manifests/ and the DaemonSet\'s agent against a real kube-apiserver and real LXC', function () {
  this.timeout(70 * 60_000);
  let env: KubeTestEnv;
  let dir: string;
  let daemonSet: DaemonSetDoc;
  let agent: ChildProcess | undefined;
  let exited: Promise<number | null> | undefined;
  let port = 0;
  let imageAgent: ChildProcess | undefined;
  let imageContainer: string | undefined;
  /** Runs a command in a one-off container of the agent image with the agent's mounts (clean-up). */
  let inImage: ((command: string[]) => Promise<unknown>) | undefined;
  /** Per-host mount paths of the DaemonSet, pointed at this test's directories. */
  const mounts = new Map<string, string>();

  const logTail = (): string => {
    try {
      return readFileSync(join(dir, 'agent.log'), 'utf8').split('\n').slice(-25).join('\n');
    } catch {
      return '(no log)';
    }
  };
  const phaseOf = async (name: string): Promise<string | undefined> => {
    const r = await env.kubectl(['get', 'ct', name, '-n', NS, '-o', 'jsonpath={.status.phase}']);
    return r.code === 0 ? r.stdout.trim() : undefined;
  };

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('the deploy e2e needs root for LXC; run make test as root');
    dir = mkdtempSync(join(tmpdir(), 'hyperlet-fleet-deploy-'));
    chmodSync(dir, 0o711); // unprivileged containers' mapped root must get through to the lxcpath
    env = await KubeTestEnv.start();
    const docs = yaml.loadAll(await env.kubectlOk(['kustomize', join(REPO_ROOT, 'manifests')])) as { kind: string }[];
    daemonSet = docs.find((d) => d.kind === 'DaemonSet') as DaemonSetDoc;
  });

  after(async () => {
    if (agent !== undefined && agent.exitCode === null) {
      agent.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 40_000))]);
      if (agent.exitCode === null) agent.kill('SIGKILL');
    }
    if (imageContainer !== undefined && imageAgent?.exitCode === null) {
      await exec('podman', ['stop', '-t', '60', imageContainer], { timeout: 90_000 }).catch(() => undefined);
    }
    const imageLxcpath = join(dir ?? '/nonexistent', 'image_var_lib_lxc');
    if (inImage !== undefined && existsSync(imageLxcpath)) {
      for (const name of readdirSync(imageLxcpath, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name)) {
        await inImage(['sh', '-c', 'lxc-stop -P /var/lib/lxc -n "$1" -k; lxc-destroy -P /var/lib/lxc -n "$1"', 'sh', name]).catch(() => undefined);
      }
    }
    const lxcpath = mounts.get('/var/lib/lxc');
    if (lxcpath !== undefined) {
      for (const name of readdirSync(lxcpath, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name)) {
        await exec('lxc-stop', ['-P', lxcpath, '-n', name, '-k'], { timeout: 30_000 }).catch(() => undefined);
        await exec('lxc-destroy', ['-P', lxcpath, '-n', name], { timeout: 60_000 }).catch(() => undefined);
      }
    }
    if (env !== undefined) {
      const names = (await env.kubectl(['get', 'ct', '-n', NS, '-o', 'name'])).stdout.trim().split('\n').filter((n) => n !== '');
      for (const n of names) await env.kubectl(['patch', n, '-n', NS, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
      await env.stop();
    }
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  const dryRun = async (): Promise<string[]> =>
    (await env.kubectlOk(['apply', '--dry-run=server', '-k', join(REPO_ROOT, 'manifests')])).trim().split('\n').sort();
  const objects = [
    'clusterrole.rbac.authorization.k8s.io/hyperlet-agent', 'clusterrolebinding.rbac.authorization.k8s.io/hyperlet-agent',
    'configmap/hyperlet-policy', 'customresourcedefinition.apiextensions.k8s.io/containers.hyperlet.io',
    'customresourcedefinition.apiextensions.k8s.io/hypervisornodes.hyperlet.io',
    'customresourcedefinition.apiextensions.k8s.io/virtualmachines.hyperlet.io', 'daemonset.apps/hyperlet-agent',
    'role.rbac.authorization.k8s.io/hyperlet-leader-election', 'rolebinding.rbac.authorization.k8s.io/hyperlet-leader-election',
    'serviceaccount/hyperlet',
  ];

  it('kubectl apply --dry-run=server -k manifests/: the API server validates every object and persists none', async () => {
    // A server-side dry run of namespaced objects needs their namespace to exist (the API server
    // answers NotFound otherwise), so the namespace alone goes first, as an admin checking would do.
    await env.kubectlOk(['apply', '-f', join(REPO_ROOT, 'manifests', '00-namespace.yaml')]);
    expect(await dryRun()).to.deep.equal(
      [...objects.map((o) => `${o} created (server dry run)`), 'namespace/hyperlet-system unchanged (server dry run)'].sort());
    expect((await env.kubectl(['get', 'daemonset', 'hyperlet-agent', '-n', AGENT_NAMESPACE])).code, 'a dry run creates nothing').to.not.equal(0);
    expect((await env.kubectl(['get', 'crd', 'containers.hyperlet.io'])).code, 'a dry run creates nothing').to.not.equal(0);
  });

  it('kubectl apply -k manifests/ installs everything; the DaemonSet has probes, requests and its host mounts', async () => {
    await env.installHyperlet(); // kubectl apply -k manifests/, waits for the CRDs, makes the ServiceAccount's token
    const ds = JSON.parse(await env.kubectlOk(['get', 'daemonset', daemonSet.metadata.name, '-n', AGENT_NAMESPACE, '-o', 'json'])) as DaemonSetDoc;
    const pod = ds.spec.template.spec;
    expect([pod.serviceAccountName, pod.hostNetwork]).to.deep.equal(['hyperlet', true]);
    const c = pod.containers[0]!;
    expect(c.resources.requests).to.have.keys('cpu', 'memory');
    expect(c.livenessProbe?.httpGet.path).to.equal('/healthz');
    expect(c.startupProbe?.httpGet.path).to.equal('/healthz');
    expect(c.readinessProbe?.httpGet.path).to.equal('/readyz');
    const hostPaths = new Map(pod.volumes.map((v) => [v.name, v.hostPath?.path ?? `configMap:${v.configMap?.name ?? '?'}`]));
    const mounted = Object.fromEntries(c.volumeMounts.map((m) => [m.mountPath, hostPaths.get(m.name)]));
    expect(mounted).to.deep.include({
      '/var/lib/lxc': '/var/lib/lxc', '/run/libvirt': '/run/libvirt', '/sys/fs/cgroup': '/sys/fs/cgroup',
      '/var/lib/hyperlet': '/var/lib/hyperlet', '/etc/hyperlet': 'configMap:hyperlet-policy',
    });
    const names = (await env.kubectlOk(['get', 'crd', '-o', 'name'])).trim().split('\n').sort();
    expect(names).to.deep.equal(['customresourcedefinition.apiextensions.k8s.io/containers.hyperlet.io',
      'customresourcedefinition.apiextensions.k8s.io/hypervisornodes.hyperlet.io',
      'customresourcedefinition.apiextensions.k8s.io/virtualmachines.hyperlet.io']);
    expect(await dryRun(), 'applying the same manifests again changes nothing')
      .to.deep.equal([...objects, 'namespace/hyperlet-system'].map((o) => `${o} unchanged (server dry run)`).sort());
  });

  it('the agent run with the DaemonSet\'s args and the ServiceAccount\'s token serves its probes and runs a Container CR on real LXC', async () => {
    const c = daemonSet.spec.template.spec.containers[0]!;
    const args = expandArgs(c, NODE);
    expect(args).to.include.members(['--node', NODE]);
    // The probes ask the port --http serves on; that port is replaced by a free one here.
    const http = args[args.indexOf('--http') + 1] ?? '';
    for (const probe of [c.startupProbe, c.livenessProbe, c.readinessProbe]) expect(`${probe?.httpGet.host}:${probe?.httpGet.port}`).to.equal(http);
    port = await freePort();
    // Each per-host directory mount becomes a directory of this test; every path argument must lie in one.
    const policyCm = JSON.parse(await env.kubectlOk(['get', 'configmap', 'hyperlet-policy', '-n', AGENT_NAMESPACE, '-o', 'json'])) as {
      data: Record<string, string>;
    };
    for (const m of c.volumeMounts) {
      if (!['/var/lib/lxc', '/var/lib/hyperlet', '/etc/hyperlet'].includes(m.mountPath)) continue;
      const local = join(dir, m.mountPath.replaceAll('/', '_'));
      mkdirSync(local, { mode: 0o711 });
      chmodSync(local, 0o711);
      mounts.set(m.mountPath, local);
    }
    for (const [file, content] of Object.entries(policyCm.data)) writeFileSync(join(mounts.get('/etc/hyperlet')!, file), content);
    const localArgs = args.map((a) => {
      if (a === http) return `127.0.0.1:${port}`;
      if (!a.startsWith('/')) return a;
      const mount = [...mounts.keys()].find((m) => a === m || a.startsWith(`${m}/`));
      if (mount === undefined) throw new Error(`the DaemonSet passes ${a}, which is in no volume this test provides`);
      return mounts.get(mount)! + a.slice(mount.length);
    });
    mkdirSync(dirname(localArgs[localArgs.indexOf('--state') + 1]!), { recursive: true });
    const log = createWriteStream(join(dir, 'agent.log'));
    // In a Pod the token comes from the in-cluster config; here from a kubeconfig holding the same
    // ServiceAccount's token (KUBECONFIG, which the same default loading reads first).
    agent = spawn(process.execPath, [join(REPO_ROOT, 'bin/hyperlet.js'), ...localArgs], {
      stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, KUBECONFIG: env.agentKubeconfigPath, NODE_NAME: NODE },
    });
    agent.stdout?.pipe(log);
    agent.stderr?.pipe(log);
    const child = agent;
    exited = new Promise((r) => child.once('exit', (code) => r(code)));

    const probe = (p: Probe | undefined) => async (): Promise<true | undefined> => {
      if (child.exitCode !== null) throw new Error(`the agent exited with ${child.exitCode}: ${logTail()}`);
      return (await getLocal(port, p?.httpGet.path ?? '?'))?.status === 200 || undefined;
    };
    await until('/healthz answers 200 (startup and liveness probes)', probe(c.livenessProbe), 60_000);
    await until('/readyz answers 200 (readiness probe)', probe(c.readinessProbe), 60_000)
      .catch((err: unknown) => { throw new Error(`${String(err)}\n${logTail()}`); });

    // The agent publishes its host's inventory as the ServiceAccount (the RBAC is enough).
    await until('the node\'s HypervisorNode Ready', async () => (await env.kubectl(['get', 'hypervisornode', NODE, '-o',
      'jsonpath={.status.conditions[?(@.type=="Ready")].status}'])).stdout.trim() === 'True' || undefined, 60_000)
      .catch((err: unknown) => { throw new Error(`${String(err)}\n${logTail()}`); });

    await env.kubectlOk(['create', 'namespace', NS]);
    const name = 'fleet-web';
    await env.kubectlOk(['apply', '-f', '-'], { input: yaml.dump({
      apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name, namespace: NS }, spec: { template: 'busybox', nodeName: NODE },
    }) });
    await until('fleet-web Running', async () => (await phaseOf(name)) === 'Running' || undefined, 120_000)
      .catch((err: unknown) => { throw new Error(`${String(err)}\n${logTail()}`); });
    const lxcpath = mounts.get('/var/lib/lxc')!;
    const { stdout } = await exec('lxc-info', ['-P', lxcpath, '-n', `${NS}.${name}`, '-sH'], { timeout: 20_000 });
    expect(stdout.trim()).to.equal('RUNNING');
    await env.kubectlOk(['delete', 'ct', name, '-n', NS, '--wait=true', '--timeout=120s'], { timeoutMs: 130_000 });
    const after = await exec('lxc-info', ['-P', lxcpath, '-n', `${NS}.${name}`, '-sH'], { timeout: 20_000 }).then(() => 'exists', () => 'gone');
    expect(after, 'the finalizer held the object until the container was destroyed').to.equal('gone');

    agent.kill('SIGTERM');
    expect(await exited, 'SIGTERM: a clean exit').to.equal(0);
  });

  it('the image built from the Containerfile runs as the DaemonSet\'s container (podman: privileged, host network and PID) and runs a Container CR on real LXC', async () => {
    // scripts/build-agent-image.sh: the Containerfile on a stand-in base (no registry here), cached by its inputs.
    const built = await exec('bash', [join(REPO_ROOT, 'scripts/build-agent-image.sh')], { timeout: 40 * 60_000, maxBuffer: 64 << 20 });
    const image = built.stdout.trim().split('\n').at(-1)!;
    const c = daemonSet.spec.template.spec.containers[0]!;
    const node = `${NODE}-image`;
    const args = expandArgs(c, node);
    const http = args[args.indexOf('--http') + 1] ?? '';
    const imagePort = await freePort();
    const imageArgs = args.map((a) => (a === http ? `127.0.0.1:${imagePort}` : a));
    // The DaemonSet's volumes as the kubelet would mount them, except the three per-host
    // directories this test isolates (its own lxcpath, state and the policy from the ConfigMap).
    const isolated = new Map<string, string>();
    for (const m of ['/var/lib/lxc', '/var/lib/hyperlet', '/etc/hyperlet']) {
      const local = join(dir, `image${m.replaceAll('/', '_')}`);
      mkdirSync(local, { mode: 0o711 });
      chmodSync(local, 0o711);
      isolated.set(m, local);
    }
    const policyCm = JSON.parse(await env.kubectlOk(['get', 'configmap', 'hyperlet-policy', '-n', AGENT_NAMESPACE, '-o', 'json'])) as {
      data: Record<string, string>;
    };
    for (const [file, content] of Object.entries(policyCm.data)) writeFileSync(join(isolated.get('/etc/hyperlet')!, file), content);
    const hostPaths = new Map(daemonSet.spec.template.spec.volumes.map((v) => [v.name, v.hostPath?.path]));
    const volumes = c.volumeMounts.flatMap((m) => {
      const source = isolated.get(m.mountPath) ?? hostPaths.get(m.name);
      if (source === undefined) throw new Error(`the test does not know how to provide volume ${m.name} of the DaemonSet`);
      if (!existsSync(source)) mkdirSync(source, { recursive: true });
      return ['-v', `${source}:${m.mountPath}${m.readOnly === true ? ':ro' : ''}`];
    });
    const hardNofile = (await exec('sh', ['-c', 'ulimit -Hn'])).stdout.trim();
    imageContainer = `hyperlet-agent-image-${process.pid}`;
    // runc, not podman's default crun: crun refuses these hosts' hybrid cgroup layout. The rlimits
    // stay within the host's hard limits (podman's defaults are above them and would be refused).
    const podmanRun = ['--runtime', 'runc', 'run', '--rm', '--privileged', '--network', 'host', '--pid', 'host',
      '--ulimit', `nofile=${hardNofile}:${hardNofile}`, '--ulimit', 'nproc=32768:32768', ...volumes,
      '-v', `${env.agentKubeconfigPath}:/etc/hyperlet-kubeconfig:ro`, '-e', 'KUBECONFIG=/etc/hyperlet-kubeconfig', '-e', `NODE_NAME=${node}`];
    inImage = (command: string[]) => exec('podman', [...podmanRun, '--entrypoint', command[0]!, image, ...command.slice(1)], { timeout: 120_000 });
    const log = createWriteStream(join(dir, 'agent-image.log'));
    const child = spawn('podman', [...podmanRun, '--name', imageContainer, image, ...imageArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
    imageAgent = child;
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    const imageExited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const imageLog = (): string => {
      try {
        return readFileSync(join(dir, 'agent-image.log'), 'utf8').split('\n').slice(-25).join('\n');
      } catch {
        return '(no log)';
      }
    };
    const ready = async (): Promise<true | undefined> => {
      if (child.exitCode !== null) throw new Error(`the agent's container exited with ${child.exitCode}: ${imageLog()}`);
      return (await getLocal(imagePort, c.readinessProbe?.httpGet.path ?? '?'))?.status === 200 || undefined;
    };
    await until('/readyz of the agent in the image answers 200', ready, 180_000)
      .catch((err: unknown) => { throw new Error(`${String(err)}\n${imageLog()}`); });
    await until('the image agent\'s HypervisorNode Ready', async () => (await env.kubectl(['get', 'hypervisornode', node, '-o',
      'jsonpath={.status.conditions[?(@.type=="Ready")].status}'])).stdout.trim() === 'True' || undefined, 60_000);

    const name = 'fleet-image';
    await env.kubectl(['create', 'namespace', NS]);
    await env.kubectlOk(['apply', '-f', '-'], { input: yaml.dump({
      apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name, namespace: NS }, spec: { template: 'busybox', nodeName: node },
    }) });
    await until('fleet-image Running', async () => (await phaseOf(name)) === 'Running' || undefined, 120_000)
      .catch((err: unknown) => { throw new Error(`${String(err)}\n${imageLog()}`); });
    // LXC's command socket is named after the lxcpath as the agent sees it: ask from inside the image.
    const info = await exec('podman', ['exec', imageContainer, 'lxc-info', '-P', '/var/lib/lxc', '-n', `${NS}.${name}`, '-sH'], { timeout: 30_000 });
    expect(info.stdout.trim()).to.equal('RUNNING');
    expect(readdirSync(isolated.get('/var/lib/lxc')!), 'the container lives in the mounted host directory').to.include(`${NS}.${name}`);
    await env.kubectlOk(['delete', 'ct', name, '-n', NS, '--wait=true', '--timeout=120s'], { timeoutMs: 130_000 });
    expect(readdirSync(isolated.get('/var/lib/lxc')!), 'the finalizer held the object until the container was destroyed')
      .to.not.include(`${NS}.${name}`);

    // The kubelet stops a container with SIGTERM to its first process: the agent itself.
    await exec('podman', ['stop', '-t', '60', imageContainer], { timeout: 90_000 });
    expect(await imageExited, 'SIGTERM: a clean exit').to.equal(0);
  });
});
