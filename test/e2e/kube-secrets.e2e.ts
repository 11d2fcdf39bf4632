/**
 * Issue 10 in Kubernetes mode: `environmentFrom: {NAME: {secretKeyRef: {name, key}}}` read from a
 * Secret of the object's namespace by the real daemon (`hyperlet run --source kube`, as the
 * hyperlet ServiceAccount, so manifests/20-rbac.yaml is proven enough) against a real
 * kube-apiserver, with real LXC: the value reaches the container's init; it never appears in the
 * object's status, its Events or the agent's log; a missing Secret is reported (SecretNotFound,
 * naming the field) and the container is created once the Secret exists; a Secret of another
 * namespace is never read; a host file reference is refused (PolicyDenied).
 * Needs root, lxc and the busybox template (`make host`).
 */
import { expect } from 'chai';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import yaml from 'js-yaml';
import type { Status } from '../../src/api/v1alpha1/types.js';
import { parseInfo } from '../../src/providers/lxc/lxc-tools.js';
import { KubeTestEnv, REPO_ROOT } from './support/kube-testenv.js';
import { waitFor } from './support/kube-wait.js';

const run = promisify(execFile);
const NS = `secrets-e2e-${process.pid}`;
const OTHER_NS = `secrets-other-${process.pid}`;
const SECRET_VALUE = `kube-secret-${randomBytes(6).toString('hex')}`;
const OTHER_VALUE = `other-ns-secret-${randomBytes(6).toString('hex')}`;
const LATE_VALUE = `late-secret-${randomBytes(6).toString('hex')}`;

const ct = (name: string, environmentFrom: Record<string, unknown>) => ({
  apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name, namespace: NS },
  spec: { template: 'busybox', nodeName: 'node-s', gracefulStopSeconds: 1, network: [{ type: 'none' }], environmentFrom },
});
const secret = (namespace: string, name: string, data: Record<string, string>) => ({
  apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace }, type: 'Opaque',
  data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
});

describe('kube: environmentFrom secretKeyRef with the real daemon, real LXC and a real kube-apiserver', function () {
  this.timeout(70 * 60_000);
  let env: KubeTestEnv;
  let dir = '';
  let lxcpath = '';
  let agent: ChildProcess | undefined;

  const apply = (doc: object): Promise<string> => env.kubectlOk(['apply', '-f', '-'], { input: yaml.dump(doc) });
  const get = async (name: string): Promise<{ status?: Status } | undefined> => {
    const r = await env.kubectl(['get', 'ct', name, '-n', NS, '-o', 'json']);
    return r.code === 0 ? JSON.parse(r.stdout) as never : undefined;
  };
  const ready = async (name: string) => (await get(name))?.status?.conditions.find((c) => c.type === 'Ready');
  const hostName = (name: string): string => `${NS}.${name}`;
  const initEnvironment = async (name: string): Promise<Record<string, string>> => {
    const info = await run('lxc-info', ['-P', lxcpath, '-n', hostName(name), '-s', '-p'], { timeout: 20_000 }).then((r) => parseInfo(r.stdout), () => ({ pid: undefined }));
    if (info.pid === undefined) return {};
    const raw = await readFile(`/proc/${info.pid}/environ`, 'utf8').catch(() => '');
    return Object.fromEntries(raw.split('\0').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  };
  const agentLog = (): string => readFileSync(join(dir, 'hyperlet.log'), 'utf8');

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('the kube secrets e2e test needs root for LXC; run make test as root');
    await access('/usr/share/lxc/templates/lxc-busybox').catch(() => {
      throw new Error('the kube secrets e2e test needs lxc and the busybox template: run make host (lxc, lxc-templates, busybox-static)');
    });
    env = await KubeTestEnv.start();
    await env.installHyperlet();
    for (const ns of [NS, OTHER_NS]) await env.kubectlOk(['create', 'namespace', ns]);
    await apply(secret(NS, 'db', { password: `${SECRET_VALUE}\n` }));
    await apply(secret(OTHER_NS, 'elsewhere', { password: OTHER_VALUE }));
    dir = mkdtempSync(join(tmpdir(), 'hyperlet-kube-secrets-'));
    lxcpath = mkdtempSync(join(tmpdir(), 'hyperlet-kube-secrets-lxc-'));
    const log = createWriteStream(join(dir, 'hyperlet.log'), { flags: 'a' });
    agent = spawn(process.execPath, [join(REPO_ROOT, 'bin/hyperlet.js'), 'run',
      '--source', 'kube', '--kubeconfig', env.agentKubeconfigPath, '--namespace', NS, '--node', 'node-s',
      '--lxcpath', lxcpath, '--state', join(dir, 'state', 'state.db'), '--kinds', 'Container', '--http', 'off',
      '--resync', '3s', '--log-level', 'debug'], { stdio: ['ignore', 'pipe', 'pipe'] });
    agent.stdout?.pipe(log);
    agent.stderr?.pipe(log);
  });

  after(async () => {
    if (agent !== undefined && agent.exitCode === null) {
      const exited = new Promise((r) => agent?.once('exit', r));
      agent.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
      if (agent.exitCode === null) agent.kill('SIGKILL');
    }
    if (lxcpath !== '') {
      for (const name of readdirSync(lxcpath, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name)) {
        await run('lxc-stop', ['-P', lxcpath, '-n', name, '-k'], { timeout: 30_000 }).catch(() => undefined);
        await run('lxc-destroy', ['-P', lxcpath, '-n', name], { timeout: 60_000 }).catch(() => undefined);
      }
      rmSync(lxcpath, { recursive: true, force: true });
    }
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
    if (env !== undefined) {
      const names = (await env.kubectl(['get', 'ct', '-n', NS, '-o', 'name'])).stdout.trim().split('\n').filter((x) => x !== '');
      for (const x of names) await env.kubectl(['patch', x, '-n', NS, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
      await env.stop();
    }
  });

  it('a Secret key of the object\'s namespace reaches the container\'s init (RBAC: get secrets is enough)', async () => {
    await apply(ct('web', { DB_PASSWORD: { secretKeyRef: { name: 'db', key: 'password' } } }));
    const environment = await waitFor('web to run with its Secret', async () => {
      const e = await initEnvironment('web');
      return e.DB_PASSWORD !== undefined ? e : undefined;
    }, 120_000, 250).catch((err: unknown) => { throw new Error(`${String(err)}\n${agentLog().split('\n').slice(-20).join('\n')}`); });
    expect(environment.DB_PASSWORD, 'the trailing new line of the Secret is dropped').to.equal(SECRET_VALUE);
    await waitFor('web Ready', async () => ((await ready('web'))?.status === 'True' ? true : undefined), 60_000, 250);
  });

  it('reports a missing Secret naming the field, then creates the container once the Secret exists', async () => {
    await apply(ct('late', { TOKEN: { secretKeyRef: { name: 'late', key: 'token' } } }));
    const cond = await waitFor('late to report SecretNotFound', async () => {
      const c = await ready('late');
      return c?.reason === 'SecretNotFound' ? c : undefined;
    }, 60_000, 250);
    expect(cond.message).to.contain('spec.environmentFrom.TOKEN').and.contain(`Secret ${NS}/late`);
    const events = JSON.parse(await env.kubectlOk(['get', 'events', '-n', NS, '-o', 'json'])) as { items: { reason: string; message: string; involvedObject: { name: string } }[] };
    expect(events.items.some((e) => e.involvedObject.name === 'late' && e.reason === 'SecretNotFound'), 'a Warning event says why').to.equal(true);
    expect(readdirSync(lxcpath), 'nothing created meanwhile').to.not.include(hostName('late'));
    await apply(secret(NS, 'late', { token: LATE_VALUE }));
    await waitFor('late to run with the Secret made later', async () => ((await initEnvironment('late')).TOKEN === LATE_VALUE ? true : undefined), 120_000, 250);
  });

  it('never reads a Secret of another namespace, and refuses a host file reference', async () => {
    await apply(ct('cross', { STOLEN: { secretKeyRef: { name: 'elsewhere', key: 'password' } } }));
    await apply(ct('hostfile', { SHADOW: { file: '/etc/shadow' } }));
    const cross = await waitFor('cross to report', async () => {
      const c = await ready('cross');
      return c?.reason === 'SecretNotFound' ? c : undefined;
    }, 60_000, 250);
    expect(cross.message).to.contain(`no Secret ${NS}/elsewhere`);
    const hostfile = await waitFor('hostfile to report', async () => {
      const c = await ready('hostfile');
      return c?.reason === 'PolicyDenied' ? c : undefined;
    }, 60_000, 250);
    expect(hostfile.message).to.contain('spec.environmentFrom.SHADOW').and.contain('dir and git sources only');
    const names = readdirSync(lxcpath);
    expect(names).to.not.include(hostName('cross'));
    expect(names).to.not.include(hostName('hostfile'));
  });

  it('no Secret value appears in status, Events, kubectl get -o yaml or the agent\'s log', async () => {
    const objects = await env.kubectlOk(['get', 'ct', '-n', NS, '-o', 'yaml']);
    const events = await env.kubectlOk(['get', 'events', '-n', NS, '-o', 'yaml']);
    const log = agentLog();
    for (const value of [SECRET_VALUE, LATE_VALUE, OTHER_VALUE]) {
      expect(objects, `objects hold ${value}`).to.not.contain(value);
      expect(events, `events hold ${value}`).to.not.contain(value);
      expect(log, `the agent log holds ${value}`).to.not.contain(value);
    }
    expect(log, 'the agent logged its steps').to.contain('"msg":"step done"');
    for (const file of readdirSync(join(dir, 'state'))) {
      const bytes = readFileSync(join(dir, 'state', file));
      for (const value of [SECRET_VALUE, LATE_VALUE]) expect(bytes.includes(Buffer.from(value)), `${file} holds ${value}`).to.equal(false);
    }
  });
});
