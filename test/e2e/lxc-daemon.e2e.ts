/**
 * `hyperlet run` as a child process on a temporary directory of files, with real LXC in an
 * isolated lxcpath: creation, live changes, power states, deletion by file removal, drift made
 * behind its back, an unowned container, invalid files, and kill -9 in the middle of creates.
 * Needs root and the LXC packages (`make host`); without them it fails saying so.
 */
import { expect } from 'chai';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { access, chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseCgroupLayout, parseProcCgroup } from '../../src/providers/lxc/cgroup-host.js';
import { parseInfo } from '../../src/providers/lxc/lxc-tools.js';
import { readMarker } from '../../src/providers/lxc/ownership-marker.js';
import { until } from './support/until.js';

const run = promisify(execFile);
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const cli = join(repoRoot, 'bin', 'hyperlet.js');
const suffix = randomBytes(2).toString('hex');
const n = (letter: string): string => `d${suffix}-${letter}`;

interface Spec {
  state?: 'Running' | 'Stopped' | 'Frozen';
  memory?: string;
  cpu?: number;
  namespace?: string;
  extra?: string;
}

function manifest(name: string, spec: Spec = {}): string {
  return [
    'apiVersion: hyperlet.io/v1alpha1',
    'kind: Container',
    'metadata:',
    `  name: ${name}`,
    ...(spec.namespace === undefined ? [] : [`  namespace: ${spec.namespace}`]),
    'spec:',
    '  template: busybox',
    `  state: ${spec.state ?? 'Running'}`,
    '  gracefulStopSeconds: 2',
    '  resources:',
    `    cpu: ${spec.cpu ?? 1}`,
    `    memory: ${spec.memory ?? '128Mi'}`,
    '  network:',
    '    - type: none',
    ...(spec.extra === undefined ? [] : [spec.extra]),
    '',
  ].join('\n');
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

describe('hyperlet run with LXC (daemon as a child process)', function () {
  this.timeout(900_000);
  let tmp = '';
  let manifests = '';
  let lxcpath = '';
  let statePath = '';
  let daemon: ChildProcess | undefined;
  let daemonLog = '';
  let starts = 0;

  const info = async (name: string): Promise<{ state?: string; pid?: number }> => {
    try {
      const { stdout } = await run('lxc-info', ['-P', lxcpath, '-n', name, '-s', '-p'], { timeout: 30_000 });
      return parseInfo(stdout);
    } catch {
      return {};
    }
  };
  const lxcState = async (name: string): Promise<string | undefined> => (await info(name)).state;
  const waitState = (name: string, want: string, timeoutMs = 60_000): Promise<true> =>
    until(`${name} to be ${want}`, async () => ((await lxcState(name)) === want ? true : undefined), timeoutMs);
  const listed = async (): Promise<string[]> => {
    const { stdout } = await run('lxc-ls', ['-P', lxcpath, '-1'], { timeout: 30_000 });
    return stdout.split(/\s+/).filter((s) => s !== '').sort();
  };
  const lxc = (tool: string, args: string[]): Promise<unknown> => run(tool, ['-P', lxcpath, ...args], { timeout: 60_000 });
  const memoryLimit = async (pid: number): Promise<number> => {
    const layout = parseCgroupLayout(await readFile('/proc/self/mounts', 'utf8'))!;
    const path = parseProcCgroup(await readFile(`/proc/${pid}/cgroup`, 'utf8'), layout.version).memory ?? '';
    return Number((await readFile(join(layout.memoryRoot, path, layout.version === 1 ? 'memory.limit_in_bytes' : 'memory.max'), 'utf8')).trim());
  };
  const statusOf = async (name: string, namespace = 'default'): Promise<{ phase?: string; conditions?: { type: string; status: string; reason: string }[] } | undefined> => {
    const { stdout } = await run(process.execPath, [cli, 'get', 'containers', '-A', '-o', 'json', '--state', statePath], { timeout: 30_000 });
    const list = JSON.parse(stdout) as { items: { metadata: { name: string; namespace: string }; status?: { phase?: string; conditions?: { type: string; status: string; reason: string }[] } }[] };
    return list.items.find((i) => i.metadata.name === name && i.metadata.namespace === namespace)?.status;
  };
  const put = (file: string, text: string): Promise<void> => writeFile(join(manifests, file), text);

  function startDaemon(): ChildProcess {
    starts += 1;
    const log = createWriteStream(join(tmp, `daemon-${starts}.log`));
    daemonLog = join(tmp, `daemon-${starts}.log`);
    const child = spawn(process.execPath, [
      cli, 'run', '--source', `dir:${manifests}`, '--lxcpath', lxcpath, '--state', statePath, '--http', '127.0.0.1:0',
      '--kinds', 'Container', '--resync', '10s', '--log-level', 'info',
    ], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    return child;
  }

  async function stopDaemon(sig: NodeJS.Signals): Promise<void> {
    const child = daemon;
    daemon = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(sig);
    await exited;
  }

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('the LXC daemon e2e test needs root (privileged containers); run make test as root');
    await access(cli).catch(() => { throw new Error('bin/hyperlet.js is missing: run make build first'); });
    await access(join(repoRoot, 'dist', 'src', 'cli', 'main.js')).catch(() => { throw new Error('dist/ is missing: run make build first'); });
    await access('/usr/share/lxc/templates/lxc-busybox').catch(() => {
      throw new Error('the LXC daemon e2e test needs the busybox template: run make host (lxc-templates, busybox-static)');
    });
    tmp = await mkdtemp(join(tmpdir(), 'hyperlet-lxcd-e2e-'));
    // Unprivileged containers' mapped root must pass through the directories above their lxcpath (as /var/lib is).
    await chmod(tmp, 0o711);
    manifests = join(tmp, 'manifests');
    lxcpath = join(tmp, 'lxc');
    statePath = join(tmp, 'state', 'state.db');
    await mkdir(manifests);
    await mkdir(lxcpath);
    await mkdir(dirname(statePath));
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && daemonLog !== '') {
      const text = await readFile(daemonLog, 'utf8').catch(() => '');
      console.error(`--- last lines of ${daemonLog} ---\n${text.split('\n').slice(-40).join('\n')}`);
    }
  });

  after(async () => {
    await stopDaemon('SIGKILL');
    if (tmp === '') return;
    for (const name of await readdir(lxcpath).catch(() => [] as string[])) {
      await run('lxc-stop', ['-P', lxcpath, '-n', name, '-k'], { timeout: 30_000 }).catch(() => undefined);
      await run('lxc-destroy', ['-P', lxcpath, '-n', name], { timeout: 60_000 }).catch(() => undefined);
    }
    await rm(tmp, { recursive: true, force: true });
  });

  it('creates five containers from files and runs them', async () => {
    for (const letter of ['a', 'b', 'c', 'd', 'e']) await put(`${letter}.yaml`, manifest(n(letter)));
    daemon = startDaemon();
    for (const letter of ['a', 'b', 'c', 'd', 'e']) await waitState(n(letter), 'RUNNING', 120_000);
    expect(await listed()).to.deep.equal(['a', 'b', 'c', 'd', 'e'].map(n));
    const status = await until('status Running', async () => ((await statusOf(n('a')))?.phase === 'Running' ? statusOf(n('a')) : undefined));
    expect(status?.conditions?.find((c) => c.type === 'Ready')?.status).to.equal('True');
  });

  it('changes memory and cpu of a running container live', async () => {
    const before = await info(n('a'));
    await put('a.yaml', manifest(n('a'), { memory: '192Mi', cpu: 2 }));
    await until('the new memory limit in the cgroup', async () => ((await memoryLimit(before.pid!)) === 192 * 1024 * 1024 ? true : undefined));
    expect((await info(n('a'))).pid, 'applied without a restart').to.equal(before.pid);
  });

  it('freezes and thaws a container', async () => {
    await put('b.yaml', manifest(n('b'), { state: 'Frozen' }));
    await waitState(n('b'), 'FROZEN');
    await put('b.yaml', manifest(n('b'), { state: 'Running' }));
    await waitState(n('b'), 'RUNNING');
  });

  it('stops a container', async () => {
    await put('c.yaml', manifest(n('c'), { state: 'Stopped' }));
    await waitState(n('c'), 'STOPPED');
    expect(await exists(join(lxcpath, n('c'))), 'stopped, not destroyed').to.equal(true);
  });

  it('destroys the container of a deleted file', async () => {
    await unlink(join(manifests, 'd.yaml'));
    await until('the container to be destroyed', async () => ((await exists(join(lxcpath, n('d')))) ? undefined : true));
    expect(await listed()).to.not.include(n('d'));
  });

  it('corrects a container stopped, frozen and destroyed behind its back', async () => {
    await lxc('lxc-stop', ['-n', n('e'), '-k']);
    await waitState(n('e'), 'RUNNING', 30_000);
    await lxc('lxc-freeze', ['-n', n('e')]);
    await waitState(n('e'), 'RUNNING', 30_000);

    const markerBefore = await readMarker(join(lxcpath, n('e'), 'hyperlet.json'));
    // lxc-destroy -f stops it first; hyperlet may restart it in between, so try until it is gone once.
    await until('lxc-destroy to succeed', async () => lxc('lxc-destroy', ['-n', n('e'), '-f']).then(() => true, () => undefined), 30_000);
    await until('the container to come back', async () => ((await lxcState(n('e'))) === 'RUNNING' ? true : undefined));
    const markerAfter = await readMarker(join(lxcpath, n('e'), 'hyperlet.json'));
    expect(markerAfter?.id, 'the same object owns the new container').to.equal(markerBefore?.id);
    expect(markerAfter?.complete).to.equal(true);
  });

  it('leaves a container it does not own alone and reports a conflict', async () => {
    const base = join(tmp, 'empty-net.conf');
    await writeFile(base, 'lxc.net.0.type = empty\n');
    await lxc('lxc-create', ['-n', n('f'), '-t', 'busybox', '-f', base]);
    await lxc('lxc-start', ['-n', n('f')]);
    const before = await info(n('f'));
    await put('f.yaml', manifest(n('f'), { memory: '96Mi', state: 'Stopped' }));
    const status = await until('a Conflict status', async () => {
      const s = await statusOf(n('f'));
      return s?.conditions?.some((c) => c.type === 'Ready' && c.status === 'False' && c.reason === 'Conflict') === true ? s : undefined;
    });
    expect(status).to.not.equal(undefined);
    const after = await info(n('f'));
    expect(after.state, 'not stopped').to.equal('RUNNING');
    expect(after.pid, 'not restarted').to.equal(before.pid);
    expect(await memoryLimit(after.pid!), 'limits untouched').to.not.equal(96 * 1024 * 1024);
    expect(await exists(join(lxcpath, n('f'), 'hyperlet.json')), 'no marker written').to.equal(false);
  });

  it('creates nothing for invalid files', async () => {
    await put('g-invalid.yaml', manifest(n('g'), { memory: '1Ki' }));
    await put('i-broken.yaml', `${manifest(n('i'))}  oops: [unclosed\n`);
    await put('j-unknown-field.yaml', manifest(n('j'), { extra: '  colour: blue' }));
    await put('h.yaml', manifest(n('h'))); // a valid file beside them: once it runs, the others were read too
    await waitState(n('h'), 'RUNNING');
    await new Promise((r) => setTimeout(r, 1_000));
    const names = await listed();
    for (const letter of ['g', 'i', 'j']) expect(names, `nothing for ${letter}`).to.not.include(n(letter));
    for (const file of ['g-invalid.yaml', 'i-broken.yaml', 'j-unknown-field.yaml']) await unlink(join(manifests, file));
  });

  it('survives kill -9 in the middle of creates with exactly the declared containers', async () => {
    for (const letter of ['k', 'l', 'm', 'o']) await put(`${letter}.yaml`, manifest(n(letter), { namespace: letter === 'o' ? 'team' : undefined }));
    // Wait until an lxc-create for one of them is running, then kill the daemon hard.
    await until('an lxc-create in flight', async () => {
      for (const entry of await readdir('/proc')) {
        if (!/^[0-9]+$/.test(entry)) continue;
        const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0');
        if (argv[0]?.endsWith('lxc-create') === true && argv.includes(lxcpath)) return true;
      }
      return undefined;
    }, 60_000);
    await stopDaemon('SIGKILL');
    daemon = startDaemon();
    const declared = ['a', 'b', 'c', 'e', 'f', 'h', 'k', 'l', 'm'].map(n).concat([`team.${n('o')}`]).sort();
    for (const name of declared) {
      if (name === n('c')) continue;
      await waitState(name, 'RUNNING', 120_000);
    }
    expect(await listed(), 'exactly the declared containers, none twice').to.deep.equal(declared);
    const log = await readFile(daemonLog, 'utf8');
    expect(log, 'the restarted daemon found the create it was killed in and cleaned it up').to.include('"step":"delete:partial"');
    const dirs = (await readdir(lxcpath)).sort();
    expect(dirs, 'no partial leftovers beside them').to.deep.equal(declared);
    for (const name of declared) {
      if (name === n('f')) continue;
      const marker = await readMarker(join(lxcpath, name, 'hyperlet.json'));
      expect(marker?.complete, `${name} finished creating`).to.equal(true);
      expect(await exists(join(lxcpath, name, 'rootfs', 'bin', 'busybox')), `${name} has its rootfs`).to.equal(true);
    }
  });

  it('hyperlet exec passes the exit code through and hyperlet logs shows the console', async () => {
    const exec = await run(process.execPath, [cli, 'exec', n('a'), '--lxcpath', lxcpath, '--', '/bin/sh', '-c', 'echo "in $(hostname)"; exit 3'], { timeout: 60_000 })
      .then(() => ({ code: 0, stdout: '' }), (err: { code?: number; stdout?: string }) => ({ code: err.code, stdout: err.stdout ?? '' }));
    expect(exec.code, 'the command\'s own exit code').to.equal(3);
    expect(exec.stdout).to.equal(`in ${n('a')}\n`);
    const { stdout } = await run(process.execPath, [cli, 'logs', n('a'), '--lxcpath', lxcpath], { timeout: 60_000 });
    expect(stdout, "busybox init's console output").to.match(/Please press Enter to activate this console/);
  });

  it('shuts down on SIGTERM and leaves the containers running', async () => {
    await stopDaemon('SIGTERM');
    expect(await lxcState(n('a'))).to.equal('RUNNING');
  });
});
