/**
 * kill -9 of a Kubernetes-mode agent: the real `hyperlet run --source kube --node …` (real LXC in
 * an isolated lxcpath, a real kube-apiserver + etcd) is killed with SIGKILL at random instants
 * while it converges four Containers and again while it deletes them. Then: every container
 * Running once, and after deletion no container left and every object gone, its finalizer
 * released exactly once (counted in the API server's audit log: one successful merge patch
 * dropping hyperlet.io/cleanup per object), never before its container was gone.
 * The seed is printed; HYPERLET_SOAK_SEED=N replays one run. Needs root and `make host`.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import yaml from 'js-yaml';
import { FINALIZER } from '../../src/api/v1alpha1/crd.js';
import { readMarker } from '../../src/providers/lxc/ownership-marker.js';
import { DaemonProcess, leftoverProcesses, randomBetween, seededRandom } from './support/crash-daemon.js';
import { KubeTestEnv } from './support/kube-testenv.js';
import { until } from './support/until.js';

const run = promisify(execFile);
const NS = `crash-${randomBytes(2).toString('hex')}`;
const NODE = 'crash-node';
const NAMES = ['c0', 'c1', 'c2', 'c3'];
const KILLS_PER_PHASE = 12;

const AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Request
    verbs: [patch, update]
    resources: [{group: hyperlet.io, resources: [containers]}]
  - level: None
`;

interface AuditEvent {
  readonly verb: string;
  readonly objectRef?: { resource?: string; subresource?: string; namespace?: string; name?: string };
  readonly responseStatus?: { code?: number };
  readonly requestObject?: { metadata?: { finalizers?: string[] | null } };
}

describe('crash soak: kill -9 of a Kubernetes-mode agent during convergence and deletion', function () {
  this.timeout(900_000);
  const seed = Number(process.env.HYPERLET_SOAK_SEED ?? randomBytes(4).readUInt32LE(0));
  const random = seededRandom(seed);
  let env: KubeTestEnv | undefined;
  let tmp = '';
  let lxcpath = '';
  let auditLog = '';
  let agent: DaemonProcess | undefined;
  let starts = 0;

  const hostName = (name: string): string => `${NS}.${name}`;
  const lxcState = async (name: string): Promise<string | undefined> =>
    run('lxc-info', ['-P', lxcpath, '-n', name, '-sH'], { timeout: 30_000 }).then(({ stdout }) => stdout.trim(), () => undefined);
  const objects = async (): Promise<{ name: string; phase?: string; finalizers: string[] }[]> => {
    const out = await env!.kubectlOk(['get', 'ct', '-n', NS, '-o', 'json']);
    return (JSON.parse(out) as { items: { metadata: { name: string; finalizers?: string[] }; status?: { phase?: string } }[] }).items
      .map((i) => ({ name: i.metadata.name, ...(i.status?.phase === undefined ? {} : { phase: i.status.phase }), finalizers: i.metadata.finalizers ?? [] }));
  };

  function start(): DaemonProcess {
    starts += 1;
    return DaemonProcess.start([
      '--source', 'kube', '--kubeconfig', env!.agentKubeconfigPath, '--namespace', NS, '--node', NODE,
      '--lxcpath', lxcpath, '--state', join(tmp, 'state.db'), '--kinds', 'Container', '--http', 'off',
      '--resync', '5s', '--log-level', 'info',
    ], join(tmp, `agent-${starts % 3}.log`));
  }

  /** Starts and kills the agent `kills` times, 0.5 to 2.5 s apart (it needs ~0.5 s to list and watch before it acts). */
  async function killRepeatedly(kills: number): Promise<number> {
    const started = Date.now();
    for (let i = 0; i < kills; i++) {
      agent = start();
      await new Promise((r) => setTimeout(r, randomBetween(random, 500, 2_500)));
      await agent.kill('SIGKILL');
    }
    return Date.now() - started;
  }

  /** Problems with "every container Running once, complete, and its object Running": empty when converged. */
  async function convergenceProblems(): Promise<string[]> {
    const out: string[] = [];
    const want = NAMES.map(hostName).sort();
    const entries = (await readdir(lxcpath)).sort();
    if (JSON.stringify(entries) !== JSON.stringify(want)) out.push(`lxcpath holds ${entries.join(' ')}`);
    for (const name of NAMES) {
      if ((await lxcState(hostName(name))) !== 'RUNNING') out.push(`${name} not RUNNING`);
      const marker = await readMarker(join(lxcpath, hostName(name), 'hyperlet.json')).catch(() => undefined);
      if (marker?.complete !== true) out.push(`${name}: marker ${JSON.stringify(marker)}`);
    }
    for (const o of await objects()) {
      if (o.phase !== 'Running') out.push(`${o.name} status ${o.phase ?? 'none'}`);
      if (!o.finalizers.includes(FINALIZER)) out.push(`${o.name} has no finalizer while its container exists`);
    }
    return out;
  }

  const waitFor = async (what: string, problems: () => Promise<string[]>, timeoutMs: number): Promise<number> => {
    const started = Date.now();
    let last: string[] = [];
    await until(what, async () => {
      last = await problems().catch((err: unknown) => [String(err)]);
      return last.length === 0 ? true : undefined;
    }, timeoutMs, 250).catch(async (err: unknown) => {
      throw new Error(`${String(err)}:\n  ${last.join('\n  ')}\n${await agent?.tail() ?? ''}`);
    });
    return Date.now() - started;
  };

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('the kube crash test needs root for LXC; run make test as root');
    await access('/usr/share/lxc/templates/lxc-busybox').catch(() => {
      throw new Error('the kube crash test needs lxc and the busybox template: run make host (lxc, lxc-templates, busybox-static)');
    });
    tmp = await mkdtemp(join(tmpdir(), 'hyperlet-kube-crash-'));
    // Unprivileged containers' mapped root must pass through the directories above their lxcpath (as /var/lib is).
    await chmod(tmp, 0o711);
    lxcpath = join(tmp, 'lxc');
    auditLog = join(tmp, 'audit.log');
    await writeFile(join(tmp, 'audit-policy.yaml'), AUDIT_POLICY);
    await run('mkdir', ['-p', lxcpath]);
    env = await KubeTestEnv.start({ apiServerFlags: [`--audit-policy-file=${join(tmp, 'audit-policy.yaml')}`, `--audit-log-path=${auditLog}`] });
    await env.installHyperlet();
    await env.kubectlOk(['create', 'namespace', NS]);
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') console.error(`seed ${seed} (HYPERLET_SOAK_SEED replays it)\n${await agent?.tail() ?? ''}`);
  });

  after(async () => {
    await agent?.kill();
    if (env !== undefined) {
      for (const o of await objects().catch(() => [])) {
        await env.kubectl(['patch', 'ct', o.name, '-n', NS, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
      }
      await env.stop();
    }
    if (tmp === '') return;
    for (const pid of await leftoverProcesses(lxcpath)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    for (const name of await readdir(lxcpath).catch(() => [] as string[])) {
      await run('lxc-stop', ['-P', lxcpath, '-n', name, '-k'], { timeout: 30_000 }).catch(() => undefined);
      await run('lxc-destroy', ['-P', lxcpath, '-n', name], { timeout: 60_000 }).catch(() => undefined);
    }
    await rm(tmp, { recursive: true, force: true });
  });

  it(`converges once after ${KILLS_PER_PHASE} kills while creating`, async () => {
    const docs = NAMES.map((name) => ({
      apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name, namespace: NS },
      spec: { template: 'busybox', nodeName: NODE, gracefulStopSeconds: 0, network: [{ type: 'none' }], resources: { cpu: 1, memory: '128Mi' } },
    }));
    await env!.kubectlOk(['apply', '-f', '-'], { input: docs.map((d) => yaml.dump(d)).join('---\n') });
    const soakMs = await killRepeatedly(KILLS_PER_PHASE);
    agent = start();
    const convergedMs = await waitFor('every container Running once', convergenceProblems, 180_000);
    console.log(`      kube convergence: seed ${seed}, ${KILLS_PER_PHASE} kills in ${(soakMs / 1000).toFixed(1)} s; converged ${(convergedMs / 1000).toFixed(1)} s after the last restart`);
  });

  it(`deletes everything and releases each finalizer exactly once after ${KILLS_PER_PHASE} kills while deleting`, async () => {
    await agent?.kill();
    await env!.kubectlOk(['delete', 'ct', '--all', '-n', NS, '--wait=false']);
    const soakMs = await killRepeatedly(KILLS_PER_PHASE);
    agent = start();
    const deletedMs = await waitFor('every object gone', async () => (await objects()).map((o) => `${o.name} still there (finalizers ${o.finalizers.join(',')})`), 180_000);
    expect(await readdir(lxcpath), 'no container left').to.deep.equal([]);
    expect((await run('lxc-ls', ['-P', lxcpath, '-1'], { timeout: 30_000 })).stdout.trim(), 'LXC knows no container there').to.equal('');
    // Let the audit backend write its last lines.
    await new Promise((r) => setTimeout(r, 1_000));
    const events = (await readFile(auditLog, 'utf8')).split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as AuditEvent);
    const releases = events.filter((e) => e.verb === 'patch' && e.objectRef?.resource === 'containers' && e.objectRef.subresource === undefined
      && e.objectRef.namespace === NS && Array.isArray(e.requestObject?.metadata?.finalizers) && !e.requestObject.metadata.finalizers.includes(FINALIZER));
    const succeeded = NAMES.map((name) => releases.filter((e) => e.objectRef?.name === name && e.responseStatus?.code === 200).length);
    console.log(`      kube deletion: ${KILLS_PER_PHASE} kills in ${(soakMs / 1000).toFixed(1)} s; all gone ${(deletedMs / 1000).toFixed(1)} s after the last restart; `
      + `finalizer releases per object ${succeeded.join(', ')} (attempts in all: ${releases.length})`);
    expect(succeeded, 'one successful finalizer release per object').to.deep.equal(NAMES.map(() => 1));
  });
});
