/**
 * hyperlet's status as the GitOps tools read it: the real kstatus library (sigs.k8s.io/cli-utils,
 * built by scripts/kstatus/build-kstatus.sh) judges real objects served by a real kube-apiserver,
 * written by a real agent (the daemon with the kube source) driving real LXC and libvirt.
 * Converging objects are InProgress; Running, Stopped and Frozen containers and a Paused VM are
 * Current; each stalled reason (missing template, name taken by an unowned container, missing
 * dependency, retries exhausted) is Failed, at the first status that reports the failure; an
 * object just changed is InProgress until the agent has seen the new generation. Also the real
 * `kubectl explain` shows a description for every kind, object and field.
 *
 * One API server and one agent serve the whole file. Needs root, lxc with the busybox template,
 * libvirtd (`make host`), Go and the Go module proxy for the first build.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type KubernetesObject, Watch } from '@kubernetes/client-node';
import yaml from 'js-yaml';
import pino from 'pino';
import type { Status } from '../../src/api/v1alpha1/types.js';
import { Daemon } from '../../src/daemon/daemon.js';
import { markerPath } from '../../src/providers/lxc/container-paths.js';
import { RETRIES_BEFORE_STALLED } from '../../src/reconcile/stalled-reasons.js';
import { KubeTestEnv, REPO_ROOT, run as runTool } from './support/kube-testenv.js';
import { until } from './support/until.js';

const exec = promisify(execFile);
const NS = `kstatus-e2e-${process.pid}`;
const NODE = 'kstatus-node';
/** A bridge that does not exist: lxc-start fails the same way on every try. */
const MISSING_BRIDGE = `kstnobr${process.pid % 100_000}`;
const GROUP_PATH = '/apis/hyperlet.io/v1alpha1';

type Obj = KubernetesObject & { metadata: { name: string; generation?: number }; status?: Status };
type Versioned = Obj & { metadata: { resourceVersion?: string } };
interface KstatusResult {
  readonly name: string;
  readonly status: string;
  readonly message: string;
  readonly conditions: { type: string; reason?: string }[];
}

const ct = (name: string, spec: Record<string, unknown>) => ({
  apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name, namespace: NS },
  spec: { template: 'busybox', nodeName: NODE, network: [{ type: 'none' }], ...spec },
});
const vm = (name: string, spec: Record<string, unknown>) => ({
  apiVersion: 'hyperlet.io/v1alpha1', kind: 'VirtualMachine', metadata: { name, namespace: NS },
  spec: { hypervisor: 'qemu', nodeName: NODE, resources: { cpu: 1, memory: '64Mi' }, gracefulStopSeconds: 0, ...spec },
});

async function virsh(...args: string[]): Promise<string> {
  return (await exec('virsh', ['-c', 'qemu:///system', ...args], { timeout: 60_000 })).stdout;
}

describe('kstatus: the GitOps tools\' health of real objects, and kubectl explain', function () {
  this.timeout(30 * 60_000);
  let env: KubeTestEnv;
  let kstatusBinary: string;
  let daemon: Daemon | undefined;
  let dir: string;
  let lxcpath: string;
  let stopWatches: (() => void) | undefined;
  /** Every version of every object the API server sent, by "kind/name", in order. */
  const versions = new Map<string, Obj[]>();
  /** Why a watch ended and was started again, for failure messages. */
  const watchRestarts: string[] = [];

  const apply = (doc: object): Promise<string> => env.kubectlOk(['apply', '-f', '-'], { input: yaml.dump(doc) });
  const getObj = async (resource: string, name: string): Promise<Obj> =>
    JSON.parse(await env.kubectlOk(['get', resource, name, '-n', NS, '-o', 'json'])) as Obj;

  /** What the real kstatus library says about each object, in order. */
  async function kstatus(objects: readonly Obj[]): Promise<KstatusResult[]> {
    const r = await runTool(kstatusBinary, [], { input: objects.map((o) => JSON.stringify(o)).join('\n'), timeoutMs: 30_000 });
    if (r.code !== 0) throw new Error(`cannot run kstatus (exit ${r.code}): ${r.stderr}`);
    return r.stdout.trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as KstatusResult);
  }

  /** Waits until kstatus says `want` for the object, and returns that result with the object. */
  async function waitForKstatus(
    resource: string, name: string, want: string, timeoutMs = 120_000,
  ): Promise<{ result: KstatusResult; obj: Obj }> {
    let last: KstatusResult | undefined;
    try {
      return await until(`${resource}/${name} kstatus ${want}`, async () => {
        const obj = await getObj(resource, name);
        last = (await kstatus([obj]))[0];
        return last?.status === want ? { result: last, obj } : undefined;
      }, timeoutMs, 250);
    } catch (err) {
      throw new Error(`${String(err)}; last kstatus: ${JSON.stringify(last)}`);
    }
  }

  /** kstatus of every version of `kind/name` the watch saw, with the reasons of Ready and Stalled. */
  async function history(kind: string, name: string): Promise<{ status: string; ready?: string; stalled?: string }[]> {
    const seen = versions.get(`${kind}/${name}`) ?? [];
    if (seen.length === 0) throw new Error(`the watch saw no version of ${kind}/${name}; restarts: ${JSON.stringify(watchRestarts)}`);
    const results = await kstatus(seen);
    return results.map((r, i) => {
      const conditions = seen[i]?.status?.conditions ?? [];
      const reason = (type: string): string | undefined => {
        const c = conditions.find((x) => x.type === type);
        return c === undefined ? undefined : `${c.status}:${c.reason}`;
      };
      const ready = reason('Ready');
      const stalled = reason('Stalled');
      return { status: r.status, ...(ready === undefined ? {} : { ready }), ...(stalled === undefined ? {} : { stalled }) };
    });
  }

  /**
   * Failed "within one reconcile": the first status the agent wrote that carries the failure
   * already says Stalled, so kstatus never reports the broken object as InProgress with an error.
   */
  async function expectFailedAtFirstFailure(kind: string, name: string, reason: string): Promise<void> {
    const h = await history(kind, name);
    const progress = /^False:(Creating|Progressing|Starting)$/;
    const first = h.findIndex((v) => v.ready !== undefined && v.ready.startsWith('False:') && !progress.test(v.ready));
    expect(first, JSON.stringify(h)).to.be.greaterThan(-1);
    expect(h[first], JSON.stringify(h)).to.deep.include({ status: 'Failed', stalled: `True:${reason}` });
  }

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('the kstatus e2e test needs root for LXC and libvirt; run make test as root');
    await access('/usr/share/lxc/templates/lxc-busybox').catch(() => {
      throw new Error('the kstatus e2e test needs lxc and the busybox template: run make host (lxc, lxc-templates, busybox-static)');
    });
    if (!existsSync('/run/libvirt/libvirt-sock')) {
      throw new Error('the kstatus e2e test needs libvirtd: /run/libvirt/libvirt-sock is missing; run scripts/setup-host.sh');
    }
    const built = await runTool('bash', [join(REPO_ROOT, 'scripts/kstatus/build-kstatus.sh')], { timeoutMs: 30 * 60_000 });
    if (built.code !== 0) throw new Error(`cannot build kstatus: ${built.stderr}`);
    kstatusBinary = built.stdout.trim().split('\n').pop() ?? '';
    env = await KubeTestEnv.start();
    await env.installHyperlet();
    await env.kubectlOk(['create', 'namespace', NS]);

    // Record every version of every object, to see what kstatus said at each status write. A
    // watch the API server ends (a 429 while it starts up) goes on from the last version seen.
    const watch = new Watch(env.admin());
    const aborts = new Map<string, AbortController>();
    let stopped = false;
    for (const [kind, plural] of [['Container', 'containers'], ['VirtualMachine', 'virtualmachines']] as const) {
      const path = `${GROUP_PATH}/namespaces/${NS}/${plural}`;
      const list = JSON.parse(await env.kubectlOk(['get', '--raw', path])) as { metadata: { resourceVersion: string } };
      let resourceVersion = list.metadata.resourceVersion;
      const follow = async (): Promise<void> => {
        if (stopped) return;
        const again = (err: unknown): void => {
          if (stopped) return;
          watchRestarts.push(`${plural}: ${String(err)}`);
          setTimeout(() => void follow(), 200);
        };
        try {
          aborts.set(plural, await watch.watch(path, { resourceVersion }, (type: string, obj: Versioned) => {
            resourceVersion = obj.metadata.resourceVersion ?? resourceVersion;
            if (type !== 'ADDED' && type !== 'MODIFIED') return;
            const k = `${kind}/${obj.metadata.name}`;
            versions.set(k, [...(versions.get(k) ?? []), obj]);
          }, again));
        } catch (err) {
          again(err);
        }
      };
      await follow();
    }
    stopWatches = () => {
      stopped = true;
      for (const a of aborts.values()) a.abort();
    };

    dir = mkdtempSync(join(tmpdir(), 'hyperlet-kstatus-e2e-'));
    lxcpath = join(dir, 'lxc');
    daemon = new Daemon({
      sources: [{ type: 'kube', location: '' }], kubeconfig: env.agentKubeconfigPath, namespace: NS, node: NODE, nodeFilter: true,
      statePath: join(dir, 'state.db'), lxcpath, libvirtUri: 'qemu:///system', kinds: ['Container', 'VirtualMachine'],
      resyncMs: 60_000, concurrency: 4, qps: 10, burst: 100, shutdownTimeoutMs: 30_000,
    }, pino({ level: 'info' }, pino.destination({ dest: join(dir, 'hyperlet.log'), sync: true })));
    await daemon.start();
  });

  after(async () => {
    stopWatches?.();
    await daemon?.stop();
    if (lxcpath !== undefined && existsSync(lxcpath)) {
      for (const name of readdirSync(lxcpath, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name)) {
        await exec('lxc-stop', ['-P', lxcpath, '-n', name, '-k'], { timeout: 30_000 }).catch(() => undefined);
        await exec('lxc-destroy', ['-P', lxcpath, '-n', name], { timeout: 60_000 }).catch(() => undefined);
      }
    }
    const domain = `${NS}.paused`;
    await virsh('destroy', domain).catch(() => undefined);
    await virsh('undefine', domain).catch(() => undefined);
    rmSync(join('/var/log/hyperlet/console', `${domain}.log`), { force: true });
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    await env?.stop();
  });

  describe('converging and converged', () => {
    it('a new container is InProgress from its creation on, while it is created, then Current once Running', async () => {
      // The API server's answer to the create itself, before any agent saw it: the CRD's
      // placeholder status (observedGeneration 0) makes it InProgress, not Current.
      const created = JSON.parse(await env.kubectlOk(['create', '-f', '-', '-o', 'json'], { input: yaml.dump(ct('web', {})) })) as Obj;
      const [fresh] = await kstatus([created]);
      expect(fresh?.status).to.equal('InProgress');
      expect(fresh?.message).to.equal('Container generation is 1, but latest observed generation is 0');
      const { obj } = await waitForKstatus('ct', 'web', 'Current');
      expect(obj.status?.phase).to.equal('Running');
      const h = await history('Container', 'web');
      expect(h.some((v) => v.status === 'InProgress' && v.ready === 'False:Creating'), JSON.stringify(h)).to.equal(true);
      expect(h.at(-1)).to.deep.equal({ status: 'Current', ready: 'True:Running', stalled: 'False:Converged' });
    });

    const converged = {
      Stopped: { reason: 'a deliberately stopped container is as declared', spec: { state: 'Stopped' } },
      Frozen: { reason: 'a frozen container is as declared', spec: { state: 'Frozen' } },
    };
    for (const [state, tc] of Object.entries(converged)) {
      it(`a ${state} container is Current`, async () => {
        const name = state.toLowerCase();
        await apply(ct(name, tc.spec));
        const { obj } = await waitForKstatus('ct', name, 'Current');
        expect(obj.status?.phase, tc.reason).to.equal(state);
        const lxcState = (await exec('lxc-info', ['-P', lxcpath, '-n', `${NS}.${name}`, '-sH'])).stdout.trim();
        expect(lxcState, 'the real container is in that state').to.equal(state.toUpperCase());
      });
    }

    it('a Paused VM (a small QEMU domain) is Current', async () => {
      await apply(vm('paused', { state: 'Paused' }));
      const { obj } = await waitForKstatus('vm', 'paused', 'Current', 180_000);
      expect(obj.status?.phase).to.equal('Paused');
      expect((await virsh('domstate', `${NS}.paused`)).trim()).to.equal('paused');
    });

    it('just after a spec change it is InProgress (observedGeneration lags), then Current again', async () => {
      // The API server's answer to the change itself: the new generation, the old status.
      const change = ['patch', 'ct', 'web', '-n', NS, '--type=merge', '-p', '{"spec":{"state":"Stopped"}}', '-o', 'json'];
      const patched = JSON.parse(await env.kubectlOk(change)) as Obj;
      expect(patched.metadata.generation).to.equal(2);
      const [result] = await kstatus([patched]);
      expect(result?.status).to.equal('InProgress');
      expect(result?.message).to.contain('generation is 2, but latest observed generation is 1');
      const { obj } = await waitForKstatus('ct', 'web', 'Current');
      expect([obj.status?.phase, obj.status?.observedGeneration]).to.deep.equal(['Stopped', 2]);
    });
  });

  describe('stalled: Failed at the first status that reports the failure', () => {
    it('TemplateNotFound: a template that is not installed', async () => {
      await apply(ct('notemplate', { template: 'no-such-template-kstatus' }));
      const { result, obj } = await waitForKstatus('ct', 'notemplate', 'Failed', 60_000);
      expect(result.message).to.contain('no-such-template-kstatus');
      expect(obj.status?.conditions.find((c) => c.type === 'Stalled')).to.include({ status: 'True', reason: 'TemplateNotFound' });
      expect(existsSync(join(lxcpath, `${NS}.notemplate`)), 'nothing was made').to.equal(false);
      await expectFailedAtFirstFailure('Container', 'notemplate', 'TemplateNotFound');
    });

    it('Conflict: the name is taken by a container hyperlet does not own, which is left alone', async () => {
      const base = join(dir, 'base.conf');
      writeFileSync(base, 'lxc.net.0.type = empty\n');
      await exec('lxc-create', ['-P', lxcpath, '-n', `${NS}.taken`, '-t', 'busybox', '-f', base], { timeout: 120_000 });
      await apply(ct('taken', { state: 'Stopped' }));
      const { obj } = await waitForKstatus('ct', 'taken', 'Failed', 60_000);
      expect(obj.status?.conditions.find((c) => c.type === 'Stalled')).to.include({ status: 'True', reason: 'Conflict' });
      expect(existsSync(markerPath(lxcpath, `${NS}.taken`)), 'no marker: never touched').to.equal(false);
      await expectFailedAtFirstFailure('Container', 'taken', 'Conflict');
    });

    it('DependencyNotFound: dependsOn names an object that does not exist', async () => {
      await apply(ct('orphan', { dependsOn: [{ kind: 'Container', name: 'nowhere' }] }));
      const { obj } = await waitForKstatus('ct', 'orphan', 'Failed', 60_000);
      expect(obj.status?.conditions.find((c) => c.type === 'Stalled')).to.include({ status: 'True', reason: 'DependencyNotFound' });
      await expectFailedAtFirstFailure('Container', 'orphan', 'DependencyNotFound');
    });

    it(`RetriesExhausted: a start that fails the same way ${RETRIES_BEFORE_STALLED} times in a row`, async () => {
      const startedMs = Date.now();
      await apply(ct('nobridge', { network: [{ type: 'veth', bridge: MISSING_BRIDGE }] }));
      const { result, obj } = await waitForKstatus('ct', 'nobridge', 'Failed', 180_000);
      const stalled = obj.status?.conditions.find((c) => c.type === 'Stalled');
      expect(stalled).to.include({ status: 'True', reason: 'RetriesExhausted' });
      expect(result.message).to.contain('StartFailed');
      const h = await history('Container', 'nobridge');
      const retried = h.some((v) => v.status === 'InProgress' && v.ready === 'False:StartFailed');
      expect(retried, `retried as InProgress first: ${JSON.stringify(h)}`).to.equal(true);
      console.log(`      RetriesExhausted reported ${((Date.now() - startedMs) / 1000).toFixed(1)} s after kubectl apply`);
    });
  });

  describe('kubectl explain', () => {
    /** Every object node: explaining one prints its description and each of its fields' (type and description). */
    const objects = [
      'containers', 'containers.spec', 'containers.spec.resources', 'containers.spec.network', 'containers.spec.dependsOn',
      'containers.status', 'containers.status.conditions', 'containers.status.pendingChanges',
      'virtualmachines', 'virtualmachines.spec', 'virtualmachines.spec.resources', 'virtualmachines.spec.boot',
      'virtualmachines.spec.disks', 'virtualmachines.spec.networks', 'virtualmachines.spec.dependsOn', 'virtualmachines.status',
    ];
    it('shows a description for every kind, object and field', async () => {
      const missing: string[] = [];
      for (const path of objects) {
        const out = await env.kubectlOk(['explain', path, '--api-version=hyperlet.io/v1alpha1']);
        if (/DESCRIPTION:\s*\n\s*<empty>/.test(out) || out.includes('<no description>')) missing.push(`${path}:\n${out}`);
      }
      expect(missing, missing.join('\n')).to.deep.equal([]);
    });

    it('containers.spec.resources: its description and its fields\'', async () => {
      const out = await env.kubectlOk(['explain', 'containers.spec.resources', '--api-version=hyperlet.io/v1alpha1']);
      expect(out).to.contain('Limits of the container');
      expect(out).to.match(/memory\s+<[^>]+>/);
      expect(out).to.contain('Memory limit.');
    });

    it('a quantity says it is an int-or-string quantity, and stays one for server-side apply', async () => {
      const quantities = [
        'containers.spec.resources.memory', 'containers.spec.resources.disk',
        'virtualmachines.spec.resources.memory', 'virtualmachines.spec.disks.size',
      ];
      for (const path of quantities) {
        const out = await env.kubectlOk(['explain', path, '--api-version=hyperlet.io/v1alpha1']);
        expect(out.replace(/\s+/g, ' '), path).to.contain('An int-or-string quantity').and.to.contain('512Mi');
      }
      // What Flux does: server-side apply, with an integer and then a string for the same field.
      for (const memory of [268435456, '256Mi']) {
        const doc = ct('ssa', { nodeName: 'no-agent-here', resources: { memory } });
        const ssa = ['apply', '--server-side', '--field-manager=kstatus-e2e', '-f', '-', '-o', 'json'];
        const out = JSON.parse(await env.kubectlOk(ssa, { input: yaml.dump(doc) })) as Obj & { spec: { resources: { memory: unknown } } };
        expect(out.spec.resources.memory).to.equal(memory);
        expect((await kstatus([out]))[0]?.status, 'on a node without an agent it never looks healthy').to.equal('InProgress');
      }
    });
  });
});
