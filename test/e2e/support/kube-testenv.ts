/**
 * A real Kubernetes control plane for the e2e tests, the way controller-runtime's envtest makes
 * one: Debian's etcd and a kube-apiserver built from the Go module proxy
 * (scripts/kube-testenv/build-kube-apiserver.sh, built on first use and cached by version), on
 * 127.0.0.1 with throw-away certificates and RBAC authorization. It hands out two identities: an
 * admin (group system:masters) and the hyperlet ServiceAccount with a real TokenRequest token, so
 * whatever the agent does in a test is allowed by manifests/rbac.yaml and nothing more.
 *
 * Guarantees: `stop()` kills both processes and removes every file it made, also after a failed
 * start. Caveats: there is no controller-manager, so no garbage collection, no namespace
 * finalization and no Pods (envtest has the same limits).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';

/** The repository root (this file runs from dist/test/e2e/support). */
export const REPO_ROOT = findRepoRoot(dirname(fileURLToPath(import.meta.url)));

const BUILD_SCRIPT = join(REPO_ROOT, 'scripts/kube-testenv/build-kube-apiserver.sh');
/** A cold kube-apiserver build on two busy cores; CI's whole run has 90 minutes. */
const BUILD_TIMEOUT_MS = 60 * 60_000;
const START_TIMEOUT_MS = 90_000;

/** The namespace and ServiceAccount manifests/ creates for the agent. */
export const AGENT_NAMESPACE = 'hyperlet-system';
export const AGENT_SERVICE_ACCOUNT = 'hyperlet';

function findRepoRoot(from: string): string {
  let dir = from;
  for (let i = 0; i < 8; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'scripts'))) return dir;
    dir = resolve(dir, '..');
  }
  throw new Error(`cannot find the repository root above ${from}`);
}

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a tool with an argument array; never throws for a non-zero exit, the caller looks at `code`. */
export function run(file: string, args: readonly string[], options: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = execFile(file, [...args], { timeout: options.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024, env: options.env ?? process.env },
      (err, stdout, stderr) => {
        if (err !== null && typeof err.code !== 'number') {
          reject(new Error(`cannot run ${file} ${args.join(' ')}: ${err.message}: ${stderr}`));
          return;
        }
        resolvePromise({ code: err === null ? 0 : Number(err.code), stdout, stderr });
      });
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

async function runOk(file: string, args: readonly string[], options: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  const r = await run(file, args, options);
  if (r.code !== 0) throw new Error(`cannot run ${file} ${args.join(' ')} (exit ${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** A port free on 127.0.0.1 right now (envtest's addr.Suggest). */
export function freePort(): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolvePromise(address.port) : reject(new Error('cannot get a free port'))));
    });
  });
}

/**
 * The kube-apiserver binary: $HYPERLET_KUBE_APISERVER, else the cached build (built now when
 * missing, which takes many minutes the first time on a machine).
 */
export async function kubeApiServerBinary(): Promise<string> {
  const fromEnv = process.env.HYPERLET_KUBE_APISERVER;
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  const out = await runOk('bash', [BUILD_SCRIPT], { timeoutMs: BUILD_TIMEOUT_MS });
  const path = out.trim().split('\n').pop() ?? '';
  if (!existsSync(path)) throw new Error(`cannot find kube-apiserver: the build script printed ${JSON.stringify(path)}`);
  return path;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** GET url; resolves with the status code and body, or undefined when nothing answers. */
function get(url: string, tls?: { ca: Buffer; cert?: Buffer; key?: Buffer }): Promise<{ status: number; body: string } | undefined> {
  return new Promise((resolvePromise) => {
    const u = new URL(url);
    const options = { method: 'GET', timeout: 5_000, ...(tls ?? {}) };
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, options, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', () => resolvePromise(undefined));
    });
    req.on('error', () => resolvePromise(undefined));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

function tail(path: string, lines = 30): string {
  try {
    return readFileSync(path, 'utf8').trim().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

interface Proc {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
}

function startProcess(file: string, args: readonly string[], logPath: string): Proc {
  const log = createWriteStream(logPath, { flags: 'a' });
  const child = spawn(file, [...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.once('error', (err) => log.write(`cannot start ${file}: ${err.message}\n`));
  return { child, exited };
}

async function stopProcess(p: Proc | undefined, timeoutMs = 15_000): Promise<void> {
  if (p === undefined || p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  const done = await Promise.race([p.exited.then(() => true), sleep(timeoutMs).then(() => false)]);
  if (!done) {
    p.child.kill('SIGKILL');
    await p.exited;
  }
}

/** Options of startKubeTestEnv. */
export interface KubeTestEnvOptions {
  /** Extra kube-apiserver flags ("--flag=value"). */
  readonly apiServerFlags?: readonly string[];
}

/** A running etcd + kube-apiserver; see the file comment. */
export class KubeTestEnv {
  /** https://127.0.0.1:PORT */
  readonly server: string;
  /** A kubeconfig file for the admin (system:masters). */
  readonly adminKubeconfigPath: string;
  private agentKubeconfigFile: string | undefined;
  private apiServer: Proc | undefined;
  private etcd: Proc | undefined;

  private constructor(
    private readonly dir: string,
    private readonly apiServerBinary: string,
    private readonly apiServerArgs: readonly string[],
    readonly apiServerPort: number,
  ) {
    this.server = `https://127.0.0.1:${apiServerPort}`;
    this.adminKubeconfigPath = join(dir, 'admin.kubeconfig');
  }

  /** Builds kube-apiserver if needed, makes certificates, starts etcd and kube-apiserver and waits until they serve. */
  static async start(options: KubeTestEnvOptions = {}): Promise<KubeTestEnv> {
    const binary = await kubeApiServerBinary();
    const dir = mkdtempSync(join(tmpdir(), 'hyperlet-kube-'));
    let env: KubeTestEnv | undefined;
    try {
      const pki = join(dir, 'pki');
      await makeCertificates(pki);
      const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
      const args = [
        `--etcd-servers=http://127.0.0.1:${etcdPort}`,
        '--bind-address=127.0.0.1', '--advertise-address=127.0.0.1', `--secure-port=${apiPort}`,
        `--cert-dir=${pki}`, `--tls-cert-file=${pki}/apiserver.crt`, `--tls-private-key-file=${pki}/apiserver.key`,
        `--client-ca-file=${pki}/ca.crt`,
        '--authorization-mode=RBAC',
        `--service-account-issuer=https://127.0.0.1:${apiPort}/`,
        `--service-account-key-file=${pki}/sa.pub`, `--service-account-signing-key-file=${pki}/sa.key`,
        '--service-cluster-ip-range=10.0.0.0/24',
        // No controller-manager creates default ServiceAccounts here (envtest does the same).
        '--disable-admission-plugins=ServiceAccount',
        '--allow-privileged=true',
        ...(options.apiServerFlags ?? []),
      ];
      env = new KubeTestEnv(dir, binary, args, apiPort);
      // etcd's data on tmpfs: fsync on a shared disk would slow every write.
      const etcdData = existsSync('/dev/shm') ? mkdtempSync('/dev/shm/hyperlet-etcd-') : join(dir, 'etcd');
      env.etcdDataDir = etcdData;
      env.etcd = startProcess('etcd', [
        '--name=testenv', `--data-dir=${etcdData}`,
        `--listen-client-urls=http://127.0.0.1:${etcdPort}`, `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
        `--listen-peer-urls=http://127.0.0.1:${peerPort}`, `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-cluster=testenv=http://127.0.0.1:${peerPort}`,
      ], join(dir, 'etcd.log'));
      await env.waitFor(`http://127.0.0.1:${etcdPort}/health`, join(dir, 'etcd.log'), () => env?.etcd);
      writeFileSync(env.adminKubeconfigPath, kubeconfigYaml(env.server, readFileSync(join(pki, 'ca.crt')), {
        certData: readFileSync(join(pki, 'admin.crt')), keyData: readFileSync(join(pki, 'admin.key')),
      }));
      await env.startApiServer();
      return env;
    } catch (err) {
      if (env !== undefined) await env.stop();
      else rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  private etcdDataDir: string | undefined;

  private get pki(): string {
    return join(this.dir, 'pki');
  }

  private async waitFor(url: string, logPath: string, proc: () => Proc | undefined): Promise<void> {
    const tls = url.startsWith('https:') ? { ca: readFileSync(join(this.pki, 'ca.crt')) } : undefined;
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      const p = proc();
      if (p !== undefined && (p.child.exitCode !== null || p.child.signalCode !== null)) {
        throw new Error(`cannot start the control plane: the process behind ${url} exited: ${tail(logPath)}`);
      }
      const res = await get(url, tls);
      if (res?.status === 200) return;
      await sleep(200);
    }
    throw new Error(`cannot start the control plane: ${url} not ready after ${START_TIMEOUT_MS} ms: ${tail(logPath)}`);
  }

  private async startApiServer(): Promise<void> {
    const logPath = join(this.dir, 'kube-apiserver.log');
    this.apiServer = startProcess(this.apiServerBinary, this.apiServerArgs, logPath);
    await this.waitFor(`${this.server}/readyz`, logPath, () => this.apiServer);
    // envtest's waitForDefaultNamespace: the bootstrap controllers have run.
    const core = this.admin().makeApiClient(CoreV1Api);
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        await core.readNamespace({ name: 'default' });
        return;
      } catch (err) {
        if (Date.now() > deadline) throw new Error('cannot start the control plane: namespace default never appeared', { cause: err });
        await sleep(100);
      }
    }
  }

  /** Stops kube-apiserver (SIGTERM), waits `downMs`, starts it again on the same port and waits until ready. */
  async restartApiServer(downMs = 1_000): Promise<void> {
    await stopProcess(this.apiServer);
    await sleep(downMs);
    await this.startApiServer();
  }

  /** Stops kube-apiserver only (to test what clients do while it is down). */
  async stopApiServer(): Promise<void> {
    await stopProcess(this.apiServer);
  }

  /** Starts kube-apiserver again after stopApiServer. */
  async startApiServerAgain(): Promise<void> {
    await this.startApiServer();
  }

  /** Process ids of kube-apiserver and etcd (benchmarks read their CPU time from /proc). */
  get pids(): { apiServer?: number; etcd?: number } {
    return {
      ...(this.apiServer?.child.pid !== undefined ? { apiServer: this.apiServer.child.pid } : {}),
      ...(this.etcd?.child.pid !== undefined ? { etcd: this.etcd.child.pid } : {}),
    };
  }

  /** A client configuration for the admin. */
  admin(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromFile(this.adminKubeconfigPath);
    return kc;
  }

  /** `kubectl --kubeconfig ADMIN args…` without throwing on failure. */
  kubectl(args: readonly string[], options: { input?: string; kubeconfig?: string; timeoutMs?: number } = {}): Promise<RunResult> {
    return run('kubectl', ['--kubeconfig', options.kubeconfig ?? this.adminKubeconfigPath, ...args],
      { timeoutMs: options.timeoutMs ?? 60_000, ...(options.input !== undefined ? { input: options.input } : {}) });
  }

  /** `kubectl` that throws with its stderr on failure; returns stdout. */
  async kubectlOk(args: readonly string[], options: { input?: string; kubeconfig?: string; timeoutMs?: number } = {}): Promise<string> {
    const r = await this.kubectl(args, options);
    if (r.code !== 0) throw new Error(`cannot run kubectl ${args.join(' ')} (exit ${r.code}): ${r.stderr.trim()}`);
    return r.stdout;
  }

  /**
   * Applies manifests/ (kubectl apply -k, which includes crds/) as the admin, waits until the CRDs are Established, and makes
   * a kubeconfig for the hyperlet ServiceAccount from a TokenRequest (what a Pod would get).
   */
  async installHyperlet(): Promise<void> {
    // What a cluster admin runs (README): the CRDs, namespace, RBAC, policy and DaemonSet in one go.
    await this.kubectlOk(['apply', '-k', join(REPO_ROOT, 'manifests')]);
    await this.kubectlOk(['wait', '--for=condition=Established', '--timeout=60s',
      'crd/containers.hyperlet.io', 'crd/virtualmachines.hyperlet.io', 'crd/hypervisornodes.hyperlet.io']);
    const core = this.admin().makeApiClient(CoreV1Api);
    const tr = await core.createNamespacedServiceAccountToken({
      name: AGENT_SERVICE_ACCOUNT, namespace: AGENT_NAMESPACE,
      body: { spec: { audiences: [`https://127.0.0.1:${this.apiServerPort}/`], expirationSeconds: 24 * 3600 } },
    });
    const token = tr.status?.token;
    if (token === undefined) throw new Error('cannot get a ServiceAccount token: the TokenRequest returned none');
    this.agentKubeconfigFile = join(this.dir, 'agent.kubeconfig');
    writeFileSync(this.agentKubeconfigFile, kubeconfigYaml(this.server, readFileSync(join(this.pki, 'ca.crt')), { token }));
  }

  /** Writes a kubeconfig for ServiceAccount `name` of hyperlet-system (a TokenRequest, as a Pod would get) and returns its path. */
  async serviceAccountKubeconfig(name: string): Promise<string> {
    const core = this.admin().makeApiClient(CoreV1Api);
    const tr = await core.createNamespacedServiceAccountToken({
      name, namespace: AGENT_NAMESPACE,
      body: { spec: { audiences: [`https://127.0.0.1:${this.apiServerPort}/`], expirationSeconds: 24 * 3600 } },
    });
    const token = tr.status?.token;
    if (token === undefined) throw new Error(`cannot get a token of ServiceAccount ${name}: the TokenRequest returned none`);
    const path = join(this.dir, `${name}.kubeconfig`);
    writeFileSync(path, kubeconfigYaml(this.server, readFileSync(join(this.pki, 'ca.crt')), { token }));
    return path;
  }

  /** The kubeconfig file of the hyperlet ServiceAccount (after installHyperlet). */
  get agentKubeconfigPath(): string {
    if (this.agentKubeconfigFile === undefined) throw new Error('cannot use the agent identity before installHyperlet()');
    return this.agentKubeconfigFile;
  }

  /** A client configuration for the hyperlet ServiceAccount (after installHyperlet). */
  agent(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromFile(this.agentKubeconfigPath);
    return kc;
  }

  /**
   * The sum of kube-apiserver's `apiserver_request_total` over the series whose labels include
   * all of `labels` (e.g. { verb: 'PUT', resource: 'containers', subresource: 'status' }).
   * Counts since the last (re)start of kube-apiserver.
   */
  async requestCount(labels: Readonly<Record<string, string>>): Promise<number> {
    const pki = this.pki;
    const res = await get(`${this.server}/metrics`, {
      ca: readFileSync(join(pki, 'ca.crt')), cert: readFileSync(join(pki, 'admin.crt')), key: readFileSync(join(pki, 'admin.key')),
    });
    if (res?.status !== 200) throw new Error(`cannot read kube-apiserver metrics: status ${res?.status ?? 'none'}`);
    let sum = 0;
    for (const line of res.body.split('\n')) {
      if (!line.startsWith('apiserver_request_total{')) continue;
      const close = line.lastIndexOf('}');
      const series = new Map<string, string>();
      for (const m of line.slice('apiserver_request_total{'.length, close).matchAll(/([a-z_]+)="([^"]*)"/g)) series.set(m[1] ?? '', m[2] ?? '');
      if (Object.entries(labels).every(([k, v]) => series.get(k) === v)) sum += Number(line.slice(close + 1).trim());
    }
    return sum;
  }

  /**
   * Clears the finalizers of the Containers left in `namespace` (their agents are gone, so nothing
   * would release them), then stops like stop(). For after hooks.
   */
  async stopReleasing(namespace: string): Promise<void> {
    const names = (await this.kubectl(['get', 'ct', '-n', namespace, '-o', 'name'])).stdout.trim().split('\n').filter((n) => n !== '');
    for (const n of names) await this.kubectl(['patch', n, '-n', namespace, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
    await this.stop();
  }

  /** Stops both processes and removes every file. Idempotent. */
  async stop(): Promise<void> {
    await stopProcess(this.apiServer);
    await stopProcess(this.etcd);
    if (this.etcdDataDir !== undefined) rmSync(this.etcdDataDir, { recursive: true, force: true });
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The tail of kube-apiserver's log, for failure messages. */
  apiServerLog(lines = 40): string {
    return tail(join(this.dir, 'kube-apiserver.log'), lines);
  }
}

function kubeconfigYaml(server: string, ca: Buffer, user: { certData: Buffer; keyData: Buffer } | { token: string }): string {
  const b64 = (b: Buffer): string => b.toString('base64');
  const userYaml = 'token' in user
    ? `    token: ${user.token}`
    : `    client-certificate-data: ${b64(user.certData)}\n    client-key-data: ${b64(user.keyData)}`;
  return [
    'apiVersion: v1', 'kind: Config',
    'clusters:', '- name: testenv', '  cluster:', `    server: ${server}`, `    certificate-authority-data: ${b64(ca)}`,
    'users:', '- name: testenv', '  user:', userYaml,
    'contexts:', '- name: testenv', '  context:', '    cluster: testenv', '    user: testenv',
    'current-context: testenv', '',
  ].join('\n');
}

/** A CA, a serving certificate for 127.0.0.1/localhost, an admin client certificate and the ServiceAccount key pair. */
async function makeCertificates(pki: string): Promise<void> {
  rmSync(pki, { recursive: true, force: true });
  await runOk('mkdir', ['-p', pki]);
  const at = (f: string): string => join(pki, f);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await runOk('openssl', ['req', '-x509', ...ec, '-days', '7', '-subj', '/CN=hyperlet-testenv-ca', '-keyout', at('ca.key'), '-out', at('ca.crt')]);
  writeFileSync(at('srv.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n');
  writeFileSync(at('cli.ext'), 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n');
  const issue = async (name: string, subject: string, ext: string): Promise<void> => {
    await runOk('openssl', ['req', ...ec, '-subj', subject, '-keyout', at(`${name}.key`), '-out', at(`${name}.csr`)]);
    await runOk('openssl', ['x509', '-req', '-in', at(`${name}.csr`), '-CA', at('ca.crt'), '-CAkey', at('ca.key'), '-CAcreateserial',
      '-days', '7', '-extfile', at(ext), '-out', at(`${name}.crt`)]);
  };
  await issue('apiserver', '/CN=localhost', 'srv.ext');
  await issue('admin', '/O=system:masters/CN=admin', 'cli.ext');
  await runOk('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', at('sa.key')]);
  await runOk('openssl', ['pkey', '-in', at('sa.key'), '-pubout', '-out', at('sa.pub')]);
}
