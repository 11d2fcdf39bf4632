/**
 * The hyperlet.io/restore-request annotation through `hyperlet run` (a child process on a
 * directory of files) with real LXC in an isolated lxcpath: a file written in the running guest,
 * a snapshot, a change, then the annotation: the container is stopped, restored, started again,
 * the original file is back, the audit log says so, and the same value is not acted on twice.
 */
import { expect } from 'chai';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { access, chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pino from 'pino';
import { API_VERSION } from '../../src/api/v1alpha1/group.js';
import { validateObject } from '../../src/api/v1alpha1/validate.js';
import type { Container } from '../../src/api/v1alpha1/types.js';
import { LxcProvider } from '../../src/providers/lxc/lxc-provider.js';
import { LxcTools } from '../../src/providers/lxc/lxc-tools.js';
import { readMarker } from '../../src/providers/lxc/ownership-marker.js';
import { markerPath } from '../../src/providers/lxc/container-paths.js';
import { type Desired, hostNameOf, specHashOf } from '../../src/store/desired.js';
import { objectKey } from '../../src/store/object-key.js';
import { until } from './support/until.js';

const run = promisify(execFile);
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const cli = join(repoRoot, 'bin', 'hyperlet.js');
const name = `rr${randomBytes(2).toString('hex')}`;
const logger = pino({ level: 'silent' });

function manifest(annotation?: string): string {
  return [
    'apiVersion: hyperlet.io/v1alpha1', 'kind: Container', 'metadata:', `  name: ${name}`,
    ...(annotation === undefined ? [] : ['  annotations:', `    hyperlet.io/restore-request: "${annotation}"`]),
    'spec:', '  template: busybox', '  state: Running', '  gracefulStopSeconds: 0', '  network:', '    - type: none', '',
  ].join('\n');
}

describe('hyperlet.io/restore-request with LXC (daemon as a child process)', function () {
  this.timeout(600_000);
  let tmp = '';
  let lxcpath = '';
  let statePath = '';
  let daemon: ChildProcess | undefined;
  let daemonLog = '';

  const lxcState = async (): Promise<string> =>
    (await run('lxc-info', ['-P', lxcpath, '-n', name, '-sH'], { timeout: 30_000 }).then((r) => r.stdout, () => '')).trim();
  const attach = async (script: string): Promise<string> =>
    (await run('lxc-attach', ['-P', lxcpath, '-n', name, '--', '/bin/sh', '-c', script], { timeout: 30_000 })).stdout.trim();
  const describeOut = async (): Promise<string> =>
    (await run(process.execPath, [cli, 'describe', 'container', name, '--state', statePath], { timeout: 30_000 })).stdout;

  /** The provider as the daemon made it, for the snapshot the author would take (CLI/API come later). */
  const desiredNow = async (): Promise<Desired<'Container'>> => {
    const marker = await readMarker(markerPath(lxcpath, name));
    const result = validateObject({
      apiVersion: API_VERSION, kind: 'Container', metadata: { name, namespace: 'default' },
      spec: { template: 'busybox', state: 'Running', gracefulStopSeconds: 0, network: [{ type: 'none' }] },
    });
    if (!result.ok || marker === undefined) throw new Error('cannot build the test object');
    const object = result.object as Container;
    return {
      key: objectKey('dir', 'default', 'Container', name), source: 'dir', object, id: marker.id,
      generation: 1, specHash: specHashOf(object.spec), hostName: hostNameOf(object),
    };
  };

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('the LXC daemon e2e test needs root; run make test as root');
    await access(join(repoRoot, 'dist', 'src', 'cli', 'main.js')).catch(() => { throw new Error('dist/ is missing: run make build first'); });
    tmp = await mkdtemp(join(tmpdir(), 'hyperlet-restore-e2e-'));
    // Unprivileged containers' mapped root must pass through the directories above their lxcpath (as /var/lib is).
    await chmod(tmp, 0o711);
    lxcpath = join(tmp, 'lxc');
    statePath = join(tmp, 'state', 'state.db');
    await mkdir(join(tmp, 'manifests'));
    await mkdir(lxcpath);
    await mkdir(dirname(statePath));
    await writeFile(join(tmp, 'manifests', 'c.yaml'), manifest());
    daemonLog = join(tmp, 'daemon.log');
    const log = createWriteStream(daemonLog);
    daemon = spawn(process.execPath, [
      cli, 'run', '--source', `dir:${join(tmp, 'manifests')}`, '--lxcpath', lxcpath, '--state', statePath, '--http', '127.0.0.1:0',
      '--kinds', 'Container', '--resync', '10s', '--log-level', 'info',
    ], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    daemon.stdout?.pipe(log);
    daemon.stderr?.pipe(log);
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && daemonLog !== '') {
      const text = await readFile(daemonLog, 'utf8').catch(() => '');
      console.error(`--- last lines of ${daemonLog} ---\n${text.split('\n').slice(-40).join('\n')}`);
    }
  });

  after(async () => {
    if (daemon !== undefined && daemon.exitCode === null) {
      const exited = new Promise((r) => daemon?.once('exit', r));
      daemon.kill('SIGKILL');
      await exited;
    }
    if (tmp === '') return;
    for (const entry of await readdir(lxcpath).catch(() => [] as string[])) {
      await run('lxc-stop', ['-P', lxcpath, '-n', entry, '-k'], { timeout: 30_000 }).catch(() => undefined);
      await run('lxc-destroy', ['-P', lxcpath, '-n', entry], { timeout: 60_000 }).catch(() => undefined);
    }
    await rm(tmp, { recursive: true, force: true });
  });

  it('stops, restores and starts the container once per annotation value', async () => {
    await until('the container to run', async () => ((await lxcState()) === 'RUNNING' ? true : undefined), 120_000);
    await attach('echo original > /etc/restore-test');
    const provider = new LxcProvider({ lxcpath, logger, tools: new LxcTools({ logger }) });
    await provider.snapshot(await desiredNow(), 'golden', {}, AbortSignal.timeout(60_000));
    await attach('echo changed > /etc/restore-test');
    const pidBefore = (await run('lxc-info', ['-P', lxcpath, '-n', name, '-pH'])).stdout.trim();

    await writeFile(join(tmp, 'manifests', 'c.yaml'), manifest('golden'));
    await until('the Restored audit entry', async () => ((await describeOut()).includes('Restored') ? true : undefined), 120_000);
    await until('the container to run again', async () => ((await lxcState()) === 'RUNNING' ? true : undefined), 60_000);
    expect(await attach('cat /etc/restore-test')).to.equal('original');
    expect((await run('lxc-info', ['-P', lxcpath, '-n', name, '-pH'])).stdout.trim(), 'restarted').to.not.equal(pidBefore);
    expect(await describeOut()).to.match(/restored rootfs from snapshot golden \(request golden\)/);
    expect((await readMarker(markerPath(lxcpath, name)))?.restoreRequest).to.equal('golden');

    // The same value again (a resync, a restart of the daemon) changes nothing.
    await attach('echo after > /etc/restore-test');
    await new Promise((r) => setTimeout(r, 1_500));
    await writeFile(join(tmp, 'manifests', 'c.yaml'), `${manifest('golden')}\n`);
    await new Promise((r) => setTimeout(r, 3_000));
    expect(await attach('cat /etc/restore-test'), 'not restored twice').to.equal('after');
    expect((await describeOut()).match(/Restored/g)?.length).to.equal(1);

    // A new token restores the same snapshot again.
    await writeFile(join(tmp, 'manifests', 'c.yaml'), manifest('golden@2'));
    await until('the second restore', async () => ((await describeOut()).match(/Restored/g)?.length === 2 ? true : undefined), 120_000);
    await until('the container to run again', async () => ((await lxcState()) === 'RUNNING' ? true : undefined), 60_000);
    expect(await attach('cat /etc/restore-test')).to.equal('original');
  });

  it('a snapshot that does not exist fails clearly and leaves the container running', async () => {
    await attach('echo kept > /etc/restore-test');
    await writeFile(join(tmp, 'manifests', 'c.yaml'), manifest('nope'));
    await until('the failure in the audit log', async () => ((await describeOut()).includes('has no snapshot nope') ? true : undefined), 120_000);
    expect(await lxcState(), 'never stopped for a snapshot that does not exist').to.equal('RUNNING');
    expect(await attach('cat /etc/restore-test')).to.equal('kept');
  });
});
