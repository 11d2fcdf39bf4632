/**
 * Issue 10, secrets and the HTTP API, against the real daemon (`node bin/hyperlet.js run` as a
 * child process), real LXC in an isolated lxcpath, and a git repository served over HTTP with
 * Basic credentials (git http-backend on 127.0.0.1):
 * - environment values from environmentFrom {file} reach the container's init (read in /proc), from a dir
 *   source and a git source; a file outside the secrets directory is refused naming the field;
 *   rotating the file restarts the container with the new value (updatePolicy Restart);
 * - no secret (file values, a literal value, the git password) appears in the daemon's log, any
 *   HTTP route, `get`/`describe`/`diff` output, the audit log, or anywhere in the state directory
 *   (the literal value only where the declared object is kept, as the schema allows);
 * - the state directory is 0700 and its files 0600; POST needs the token (401), a foreign Host is
 *   421, a malformed path 400, and `hyperlet refresh` finds the token by itself;
 * - the console log is capped and rotated by LXC; `hyperlet logs` strips control sequences on a
 *   terminal (run under script(1)) and passes bytes through to a pipe;
 * - a non-loopback bind without TLS refuses to start; with a self-signed certificate it serves
 *   HTTPS and wants the token on every route.
 * Needs root, lxc, the busybox template, git and openssl (`make host`).
 */
import { expect } from 'chai';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { access, chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { parseInfo } from '../../src/providers/lxc/lxc-tools.js';
import { readApiToken } from '../../src/state/state-dir.js';
import { GitHttpServer } from '../support/git-http.js';
import { TestRepo, freePort } from '../support/git-repo.js';
import { until } from './support/until.js';

const run = promisify(execFile);
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const cli = join(repoRoot, 'bin', 'hyperlet.js');
const suffix = randomBytes(2).toString('hex');
const n = (letter: string): string => `sec${suffix}-${letter}`;
const hex = (): string => randomBytes(6).toString('hex');

const FILE_SECRET = `file-secret-${hex()}`;
const ROTATED_SECRET = `rotated-secret-${hex()}`;
const LITERAL_SECRET = `literal-secret-${hex()}`;
const GIT_PASSWORD = `git-pw-${hex()}`;
const SECRETS = [FILE_SECRET, ROTATED_SECRET, LITERAL_SECRET, GIT_PASSWORD];

function containerYaml(name: string, environmentFrom: Record<string, unknown>, extra: Record<string, unknown> = {}): string {
  const doc = {
    apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name },
    spec: { template: 'busybox', gracefulStopSeconds: 1, network: [{ type: 'none' }], environmentFrom, ...extra },
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

/** One raw HTTP/1.1 request to 127.0.0.1:port; resolves with the status code. */
function rawStatus(port: number, request: string): Promise<number> {
  return new Promise((resolveStatus, reject) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    socket.on('data', (c: Buffer) => { answer += c.toString(); });
    socket.on('close', () => resolveStatus(Number(/^HTTP\/1\.1 ([0-9]{3})/.exec(answer)?.[1] ?? 0)));
    socket.on('error', reject);
    socket.end(request);
  });
}

/** One HTTPS request to 127.0.0.1:port trusting `ca`; resolves with status and body. */
function httpsGet(port: number, path: string, ca: Buffer, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolveAnswer, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path, ca, servername: 'localhost', headers: { host: `localhost:${port}`, ...headers } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => { body += c.toString(); });
      res.on('end', () => resolveAnswer({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Every file under `dir`, recursively, as bytes. */
async function allFiles(dir: string): Promise<{ path: string; bytes: Buffer }[]> {
  const out: { path: string; bytes: Buffer }[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...await allFiles(p));
    else if (e.isFile()) out.push({ path: p, bytes: await readFile(p) });
  }
  return out;
}

describe('secrets and the HTTP API with the real daemon (LXC, git over HTTP with credentials, TLS)', function () {
  this.timeout(600_000);
  let tmp = '';
  let manifests = '';
  let lxcpath = '';
  let statePath = '';
  let secretsDir = '';
  let port = 0;
  let git: GitHttpServer | undefined;
  let gitUrl = '';
  const daemons: { child: ChildProcess; log: string }[] = [];
  let logPath = '';

  const lxcInfo = async (path: string, name: string): Promise<{ state?: string; pid?: number }> => {
    try {
      const { stdout } = await run('lxc-info', ['-P', path, '-n', name, '-s', '-p'], { timeout: 30_000 });
      return parseInfo(stdout);
    } catch {
      return {};
    }
  };
  /** The environment of the container's init, as the kernel has it. */
  const initEnvironment = async (name: string): Promise<Record<string, string>> => {
    const { pid } = await lxcInfo(lxcpath, name);
    if (pid === undefined) return {};
    const raw = await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '');
    return Object.fromEntries(raw.split('\0').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  };
  const cliRun = (args: string[]): Promise<{ stdout: string; stderr: string; code: number }> =>
    run(process.execPath, [cli, ...args], { timeout: 60_000, cwd: repoRoot }).then(
      (r) => ({ stdout: r.stdout, stderr: r.stderr, code: 0 }),
      (err: { stdout?: string; stderr?: string; code?: number }) => ({ stdout: err.stdout ?? '', stderr: err.stderr ?? '', code: err.code ?? -1 }),
    );
  const statusOf = async (name: string): Promise<{ phase?: string; conditions?: { type: string; status: string; reason: string; message: string }[] } | undefined> => {
    const { stdout } = await cliRun(['get', 'containers', '-o', 'json', '--state', statePath]);
    const list = JSON.parse(stdout) as { items: { metadata: { name: string }; status?: { phase?: string; conditions?: { type: string; status: string; reason: string; message: string }[] } }[] };
    return list.items.find((i) => i.metadata.name === name)?.status;
  };

  function startDaemon(args: string[], label: string): ChildProcess {
    const log = join(tmp, `daemon-${label}.log`);
    const child = spawn(process.execPath, [cli, 'run', ...args], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = createWriteStream(log);
    child.stdout?.pipe(out);
    child.stderr?.pipe(out);
    daemons.push({ child, log });
    return child;
  }

  async function stopDaemon(child: ChildProcess): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('the secrets e2e test needs root (LXC); run make test as root');
    await access(join(repoRoot, 'dist', 'src', 'cli', 'main.js')).catch(() => { throw new Error('dist/ is missing: run make build first'); });
    await access('/usr/share/lxc/templates/lxc-busybox').catch(() => {
      throw new Error('the secrets e2e test needs the busybox template: run make host (lxc-templates, busybox-static)');
    });
    await run('openssl', ['version'], { timeout: 10_000 }).catch(() => { throw new Error('the secrets e2e test needs openssl: run make host'); });
    tmp = await mkdtemp(join(tmpdir(), 'hyperlet-secrets-e2e-'));
    await chmod(tmp, 0o711); // unprivileged containers: their mapped root must pass through to the lxcpath
    manifests = join(tmp, 'manifests');
    lxcpath = join(tmp, 'lxc');
    statePath = join(tmp, 'state', 'state.db');
    secretsDir = join(tmp, 'secrets');
    for (const d of [manifests, lxcpath, secretsDir]) await mkdir(d, { recursive: true });
    await writeFile(join(secretsDir, 'db-password'), `${FILE_SECRET}\n`, { mode: 0o600 });
    await symlink('/etc/hostname', join(secretsDir, 'escape'));

    // The git source: a repository behind HTTP Basic credentials.
    const served = join(tmp, 'served');
    const work = await TestRepo.create(join(tmp, 'work'));
    await work.write('b.yaml', containerYaml(n('b'), { API_KEY: { file: 'db-password' } }));
    await work.commit('b with a secret from the host');
    await mkdir(served);
    await run('git', ['clone', '--bare', '-q', join(tmp, 'work'), join(served, 'r.git')], { timeout: 30_000 });
    git = await GitHttpServer.start(served, { username: 'alice', password: GIT_PASSWORD });
    gitUrl = git.url('r.git', `alice:${GIT_PASSWORD}`);

    await writeFile(join(manifests, 'a.yaml'), containerYaml(n('a'), { DB_PASSWORD: { file: 'db-password' } }, {
      updatePolicy: 'Restart', environment: { LITERAL_TOKEN: LITERAL_SECRET },
    }));
    await writeFile(join(manifests, 'c.yaml'), containerYaml(n('c'), { X: { file: 'escape' } }));

    port = await freePort();
    const child = startDaemon([
      '--source', `dir:${manifests}`, '--source', `git:${gitUrl}#main`, '--lxcpath', lxcpath, '--state', statePath,
      '--http', `127.0.0.1:${port}`, '--kinds', 'Container', '--resync', '3s', '--interval', '2s', '--secrets-dir', secretsDir,
      '--console-log-size', '64Ki', '--log-level', 'debug',
    ], 'main');
    logPath = daemons[0]!.log;
    await until('the daemon to answer /healthz', async () => {
      if (child.exitCode !== null) throw new Error(`the daemon exited: ${await readFile(logPath, 'utf8')}`);
      return fetch(`http://127.0.0.1:${port}/healthz`).then((r) => (r.ok ? true : undefined), () => undefined);
    }, 60_000, 100);
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && logPath !== '') {
      const text = await readFile(logPath, 'utf8').catch(() => '');
      console.error(`--- last lines of ${logPath} ---\n${text.split('\n').slice(-30).join('\n')}`);
    }
  });

  after(async () => {
    for (const d of daemons) await stopDaemon(d.child);
    await git?.stop();
    if (tmp === '') return;
    for (const path of [lxcpath, join(tmp, 'lxc-tls')]) {
      for (const name of await readdir(path).catch(() => [] as string[])) {
        await run('lxc-stop', ['-P', path, '-n', name, '-k'], { timeout: 30_000 }).catch(() => undefined);
        await run('lxc-destroy', ['-P', path, '-n', name], { timeout: 60_000 }).catch(() => undefined);
      }
    }
    await rm(tmp, { recursive: true, force: true });
  });

  it('environmentFrom files reach the container\'s init, from a dir source and from a git source behind credentials', async () => {
    const envA = await until('container a to run with its environment', async () => {
      const env = await initEnvironment(n('a'));
      return env.DB_PASSWORD !== undefined ? env : undefined;
    }, 120_000, 250);
    expect(envA.DB_PASSWORD, 'read from the secrets directory, trailing new line dropped').to.equal(FILE_SECRET);
    expect(envA.LITERAL_TOKEN).to.equal(LITERAL_SECRET);
    const envB = await until('container b (git source) to run', async () => {
      const env = await initEnvironment(n('b'));
      return env.API_KEY !== undefined ? env : undefined;
    }, 120_000, 250);
    expect(envB.API_KEY).to.equal(FILE_SECRET);
    expect(git!.seen.some((r) => r.authorized), 'the credentials of the URL reached the git server').to.equal(true);
  });

  it('refuses a secret file that leads out of the secrets directory, naming the field, and creates nothing', async () => {
    const ready = await until('c to report why', async () => (await statusOf(n('c')))?.conditions?.find((c) => c.type === 'Ready' && c.reason !== 'Creating'), 60_000, 250);
    expect(ready).to.include({ status: 'False', reason: 'PolicyDenied' });
    expect(ready.message).to.contain('spec.environmentFrom.X').and.contain('secrets directory');
    expect(await stat(join(lxcpath, n('c'))).then(() => true, () => false), 'no container directory').to.equal(false);
  });

  it('a rotated secret file reaches the container at its restart (updatePolicy Restart)', async () => {
    const before = (await lxcInfo(lxcpath, n('a'))).pid;
    await writeFile(join(secretsDir, 'db-password'), `${ROTATED_SECRET}\n`);
    await until('container a to restart with the rotated secret', async () => ((await initEnvironment(n('a'))).DB_PASSWORD === ROTATED_SECRET ? true : undefined), 120_000, 250);
    expect((await lxcInfo(lxcpath, n('a'))).pid, 'a new init').to.not.equal(before);
  });

  it('no secret appears in the log, any HTTP route, get/describe/diff, the audit log, or the state directory', async () => {
    const base = `http://127.0.0.1:${port}`;
    const routes = ['/healthz', '/readyz', '/metrics', '/sources', '/apis/hyperlet.io/v1alpha1/containers',
      ...['a', 'b', 'c'].map((l) => `/apis/hyperlet.io/v1alpha1/namespaces/default/containers/${n(l)}`)];
    const answers: Record<string, string> = {};
    for (const r of routes) answers[r] = await (await fetch(`${base}${r}`)).text();
    const cliOutputs: Record<string, string> = {};
    for (const args of [
      ['get', 'containers', '-o', 'yaml'], ['get', 'containers', '-o', 'json'], ['get', 'containers', '-o', 'wide'],
      ['describe', 'ct', n('a')], ['describe', 'ct', n('b')], ['get', 'sources'], ['get', 'sources', '-o', 'wide'], ['get', 'sources', '-o', 'yaml'],
    ]) {
      const r = await cliRun([...args, '--state', statePath]);
      cliOutputs[args.join(' ')] = r.stdout + r.stderr;
    }
    const diff = await cliRun(['diff', '-f', join(manifests, 'a.yaml'), '--lxcpath', lxcpath, '--state', statePath, '--secrets-dir', secretsDir]);
    cliOutputs.diff = diff.stdout + diff.stderr;
    const log = await readFile(logPath, 'utf8');
    for (const secret of SECRETS) {
      for (const [route, text] of Object.entries(answers)) expect(text, `${route} shows ${secret}`).to.not.contain(secret);
      for (const [cmd, text] of Object.entries(cliOutputs)) expect(text, `hyperlet ${cmd} shows ${secret}`).to.not.contain(secret);
      expect(log, `the daemon's log shows ${secret}`).to.not.contain(secret);
    }
    expect(log, 'the log was written, steps included').to.contain('"msg":"step done"');
    // What is shown instead: keys, references, and REDACTED.
    expect(answers[`/apis/hyperlet.io/v1alpha1/namespaces/default/containers/${n('a')}`]).to.contain('"LITERAL_TOKEN":"<redacted>"')
      .and.contain('"environmentFrom":{"DB_PASSWORD":{"file":"db-password"}}');
    expect(cliOutputs['get containers -o yaml']).to.contain('LITERAL_TOKEN: <redacted>');
    expect(answers['/readyz']).to.contain('http://<redacted>@127.0.0.1');
    expect(cliOutputs['get sources -o yaml']).to.contain('<redacted>@127.0.0.1');
    // diff reads the secret file and the policy defaults as the daemon does: nothing differs.
    expect(cliOutputs.diff).to.contain(`Container/${n('a')}: up to date`);

    // The audit log and every status, problem and source row: no secret at all.
    await stopDaemonFor('main'); // flushes the WAL into the DB file
    const db = new Database(statePath, { readonly: true });
    const text = JSON.stringify([
      db.prepare('SELECT * FROM audit').all(), db.prepare('SELECT status FROM objects').all(),
      db.prepare('SELECT * FROM problems').all(), db.prepare('SELECT * FROM sources').all(),
    ]);
    const objects = JSON.stringify(db.prepare('SELECT object, applied FROM objects').all());
    db.close();
    expect(text).to.contain(n('a'));
    for (const secret of SECRETS) expect(text, `audit/status/problems/sources hold ${secret}`).to.not.contain(secret);
    // The declared object is kept (a broken file falls back to it after a restart): the literal value is in it, as written.
    expect(objects, 'the declared object keeps its literal value').to.contain(LITERAL_SECRET);
    for (const file of await allFiles(dirname(statePath))) {
      for (const secret of [FILE_SECRET, ROTATED_SECRET, GIT_PASSWORD]) {
        expect(file.bytes.includes(Buffer.from(secret)), `${file.path} holds ${secret}`).to.equal(false);
      }
    }
  });

  /** Stops the daemon started with `label` (its state DB is then whole). */
  async function stopDaemonFor(label: string): Promise<void> {
    const d = daemons.find((x) => x.log.endsWith(`daemon-${label}.log`));
    if (d !== undefined) await stopDaemon(d.child);
  }

  it('keeps the state directory 0700 and its files 0600', async () => {
    const dir = dirname(statePath);
    expect((await stat(dir)).mode & 0o7777).to.equal(0o700);
    const files = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
    expect(files).to.include.members(['state.db', 'api-token']);
    for (const f of files) expect((await stat(join(dir, f))).mode & 0o777, f).to.equal(0o600);
  });

  it('wants the token for POST, refuses a foreign Host and a malformed path, and hyperlet refresh finds the token itself', async () => {
    const child = startDaemon([
      '--source', `dir:${manifests}`, '--source', `git:${gitUrl}#main`, '--lxcpath', lxcpath, '--state', statePath,
      '--http', `127.0.0.1:${port}`, '--kinds', 'Container', '--resync', '3s', '--interval', '1h', '--secrets-dir', secretsDir,
    ], 'again');
    await until('the daemon to answer again', async () => {
      if (child.exitCode !== null) throw new Error('the daemon exited');
      return fetch(`http://127.0.0.1:${port}/readyz`).then((r) => (r.ok ? true : undefined), () => undefined);
    }, 60_000, 100);
    const token = readApiToken(statePath);
    const post = (host: string, auth?: string): string =>
      `POST /sources/git/refresh HTTP/1.1\r\nHost: ${host}\r\n${auth === undefined ? '' : `Authorization: Bearer ${auth}\r\n`}Content-Length: 0\r\nConnection: close\r\n\r\n`;
    const fetchesBefore = git!.seen.length;
    expect(await rawStatus(port, post('127.0.0.1')), 'no token').to.equal(401);
    expect(await rawStatus(port, post('127.0.0.1', 'x'.repeat(43))), 'a wrong token').to.equal(401);
    expect(await rawStatus(port, post('rebind.attacker.example', token)), 'a foreign Host, even with the token').to.equal(421);
    expect(await rawStatus(port, 'GET /apis/hyperlet.io/v1alpha1/containers HTTP/1.1\r\nHost: rebind.attacker.example\r\nConnection: close\r\n\r\n'), 'DNS rebinding read').to.equal(421);
    expect(await rawStatus(port, 'GET /apis/hyperlet.io/v1alpha1/namespaces/%E0%A4%A/containers HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')).to.equal(400);
    expect(git!.seen.length, 'nothing refused reached the source').to.equal(fetchesBefore);
    expect(await rawStatus(port, post(`localhost:${port}`, token)), 'the token').to.equal(202);
    const refresh = await cliRun(['refresh', '--server', `http://127.0.0.1:${port}`, '--state', statePath]);
    expect(refresh.code, refresh.stderr).to.equal(0);
    expect(refresh.stdout).to.contain('git: refreshing');
    await until('the refreshes to fetch', () => (git!.seen.filter((r) => r.authorized).length > 0 && git!.seen.length > fetchesBefore ? true : undefined), 30_000, 100);
  });

  it('caps and rotates the console log; hyperlet logs strips control sequences on a terminal only', async () => {
    await until('a to run', async () => ((await lxcInfo(lxcpath, n('a'))).state === 'RUNNING' ? true : undefined), 60_000, 250);
    // 3000 lines of 70 bytes: over twice the 64Ki cap.
    const flood = 'i=0; while [ $i -lt 3000 ]; do echo "line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"; i=$((i+1)); done > /dev/console';
    await run('lxc-attach', ['-P', lxcpath, '-n', n('a'), '--', '/bin/sh', '-c', flood], { timeout: 120_000 });
    // Then a title-setting escape, a screen clear and a marker; written again until the console
    // log shows it (under load liblxc sometimes leaves the tail of a flood unread until more comes).
    const marker = 'printf "\\033]0;pwned\\007\\033[2JTITLE-MARK\\n" > /dev/console';
    const log = join(lxcpath, n('a'), 'console.log');
    await until('the marker in the console log', async () => {
      if ((await readFile(log, 'utf8').catch(() => '')).includes('TITLE-MARK')) return true;
      await run('lxc-attach', ['-P', lxcpath, '-n', n('a'), '--', '/bin/sh', '-c', marker], { timeout: 60_000 });
      return undefined;
    }, 30_000, 1_000).catch(async (err: unknown) => {
      const listing = (await run('ls', ['-la', dirname(log)])).stdout;
      throw new Error(`${String(err)}\n${listing}\n${(await readFile(log, 'utf8').catch(() => '')).slice(-500)}`);
    });
    const size = (await stat(log)).size;
    const rotated = (await stat(`${log}.1`)).size;
    expect(size, 'the live log stays under the cap').to.be.at.most(65_536);
    expect(rotated, 'one rotated part, also capped').to.be.at.most(65_536).and.greaterThan(0);
    const piped = await cliRun(['logs', n('a'), '--lxcpath', lxcpath]);
    expect(piped.stdout, 'a pipe gets the bytes as written').to.contain('\u001b]0;pwned\u0007');
    const cmd = [process.execPath, cli, 'logs', n('a'), '--lxcpath', lxcpath].map((a) => `'${a}'`).join(' ');
    const { stdout: tty } = await run('script', ['-qec', cmd, '/dev/null'], { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 });
    expect(tty).to.contain('TITLE-MARK');
    expect(tty, 'no OSC title on a terminal').to.not.contain('\u001b]0;');
    expect(tty, 'no screen clear on a terminal').to.not.contain('\u001b[2J');
  });

  it('refuses to start on a non-loopback address without TLS', async () => {
    const r = await cliRun(['run', '--source', `dir:${manifests}`, '--state', join(tmp, 'nostart', 'state.db'), '--http', '0.0.0.0:0', '--kinds', 'Container']);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.match(/0\.0\.0\.0 is not a loopback address; serving it needs TLS \(--tls-cert FILE --tls-key FILE\)/);
    expect(await stat(join(tmp, 'nostart')).then(() => true, () => false), 'nothing was started or written').to.equal(false);
  });

  it('serves HTTPS with a self-signed certificate, and off loopback wants the token on every route', async () => {
    const certDir = join(tmp, 'tls');
    await mkdir(certDir);
    const cert = join(certDir, 'cert.pem');
    const key = join(certDir, 'key.pem');
    await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
      '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { timeout: 30_000 });
    const empty = join(tmp, 'empty');
    await mkdir(empty);
    await mkdir(join(tmp, 'lxc-tls'));
    const tlsState = join(tmp, 'tls-state', 'state.db');
    const tlsPort = await freePort();
    const child = startDaemon(['--source', `dir:${empty}`, '--lxcpath', join(tmp, 'lxc-tls'), '--state', tlsState, '--kinds', 'Container',
      '--http', `0.0.0.0:${tlsPort}`, '--tls-cert', cert, '--tls-key', key], 'tls');
    const ca = await readFile(cert);
    await until('the TLS daemon to answer', async () => {
      if (child.exitCode !== null) throw new Error(`the TLS daemon exited: ${await readFile(daemons.at(-1)!.log, 'utf8')}`);
      return httpsGet(tlsPort, '/healthz', ca).then((r) => (r.status > 0 ? true : undefined), () => undefined);
    }, 60_000, 100);
    const token = readApiToken(tlsState);
    expect((await httpsGet(tlsPort, '/healthz', ca)).status, 'reads need the token off loopback').to.equal(401);
    expect((await httpsGet(tlsPort, '/apis/hyperlet.io/v1alpha1/containers', ca)).status).to.equal(401);
    expect((await httpsGet(tlsPort, '/healthz', ca, { authorization: `Bearer ${token}` })).status).to.equal(200);
    expect((await httpsGet(tlsPort, '/readyz', ca, { authorization: `Bearer ${token}`, host: 'rebind.attacker.example' })).status).to.equal(421);
    expect(await rawStatus(tlsPort, 'GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'), 'no plain HTTP').to.equal(0);
    const refresh = await cliRun(['refresh', '--server', `https://localhost:${tlsPort}`, '--cacert', cert, '--state', tlsState]);
    expect(refresh.code, refresh.stderr).to.equal(0);
    expect(refresh.stderr).to.contain('no source that refreshes');
    const untrusted = await cliRun(['refresh', '--server', `https://localhost:${tlsPort}`, '--state', tlsState]);
    expect(untrusted.code, 'a certificate nobody vouched for is refused').to.equal(1);
    expect(untrusted.stderr).to.match(/self[- ]signed|certificate/i);
    await stopDaemon(child);
  });
});
