/**
 * `hyperlet snapshot` and `hyperlet restore` against `hyperlet run` (a child process on a
 * directory of files) with real LXC in an isolated lxcpath. Both go through the daemon's
 * authenticated API as request annotations the reconcile loop acts on: a one-off snapshot of the
 * running container, a change of the guest's file and of the declared spec, then a restore: the
 * original file is back, the declared spec is kept and the audit log and the event stream say so.
 * Refusals (no token, a bad name, an undeclared object, a snapshot that does not exist) change nothing.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { readMarker } from '../../src/providers/lxc/ownership-marker.js';
import { markerPath } from '../../src/providers/lxc/container-paths.js';
import { snapshotsDir } from '../../src/providers/lxc/lxc-snapshots.js';
import { until } from '../support/until.js';
import { DaemonProcess, cliPath, repoRoot } from './support/daemon-process.js';

const run = promisify(execFile);
const name = `restore-cli-${randomBytes(2).toString('hex')}`;

function manifest(memory: string, cpu: number): string {
  return [
    'apiVersion: hyperlet.io/v1alpha1', 'kind: Container', 'metadata:', `  name: ${name}`,
    'spec:', '  template: busybox', '  state: Running', '  gracefulStopSeconds: 0', '  network:', '    - type: none',
    `  resources: {cpu: ${cpu}, memory: ${memory}}`, '',
  ].join('\n');
}

describe('hyperlet snapshot and hyperlet restore through the daemon with LXC', function () {
  this.timeout(600_000);
  let tmp = '';
  let lxcpath = '';
  let statePath = '';
  let daemon: DaemonProcess | undefined;

  const lxcState = async (): Promise<string> =>
    (await run('lxc-info', ['-P', lxcpath, '-n', name, '-sH'], { timeout: 30_000 }).then((r) => r.stdout, () => '')).trim();
  const attach = async (script: string): Promise<string> =>
    (await run('lxc-attach', ['-P', lxcpath, '-n', name, '--', '/bin/sh', '-c', script], { timeout: 30_000 })).stdout.trim();
  const describeOut = async (): Promise<string> =>
    (await run(process.execPath, [cliPath, 'describe', 'container', name, '--state', statePath], { timeout: 30_000 })).stdout;
  /** `hyperlet ARGS --server URL [--state PATH]`: exit code and output (never throws). */
  const cli = async (args: string[], withState = true): Promise<{ code: number; stdout: string; stderr: string }> => {
    const flags = ['--server', daemon!.baseUrl, ...(withState ? ['--state', statePath] : [])];
    return run(process.execPath, [cliPath, ...args, ...flags], { cwd: repoRoot, timeout: 30_000 }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: err.code ?? -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' }),
    );
  };
  /** The audit entries (describe's Events rows) with this reason. */
  const audit = async (reason: string): Promise<string[]> =>
    (await describeOut()).split('\n').filter((l) => new RegExp(`^\\s+\\S+\\s+(Normal|Warning)\\s+${reason}\\s`).test(l));

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('the LXC daemon e2e test needs root; run make test as root');
    tmp = await mkdtemp(join(tmpdir(), 'hyperlet-restore-cli-e2e-'));
    // Unprivileged containers' mapped root must pass through the directories above their lxcpath.
    await chmod(tmp, 0o711);
    lxcpath = join(tmp, 'lxc');
    statePath = join(tmp, 'state', 'state.db');
    await mkdir(join(tmp, 'manifests'));
    await mkdir(lxcpath);
    await mkdir(dirname(statePath));
    await writeFile(join(tmp, 'manifests', 'c.yaml'), manifest('128Mi', 1));
    daemon = await DaemonProcess.start([
      '--source', `dir:${join(tmp, 'manifests')}`, '--lxcpath', lxcpath, '--state', statePath, '--http', '127.0.0.1:0',
      '--kinds', 'Container', '--resync', '10s', '--log-level', 'info',
    ], join(tmp, 'daemon.log'));
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && daemon !== undefined) {
      console.error(`--- daemon log ---\n${await daemon.logTail(40)}\n--- hyperlet describe ---\n${await describeOut().catch(String)}`);
    }
  });

  after(async () => {
    await daemon?.stop('SIGKILL');
    if (tmp === '') return;
    for (const entry of await readdir(lxcpath).catch(() => [] as string[])) {
      await run('lxc-stop', ['-P', lxcpath, '-n', entry, '-k'], { timeout: 30_000 }).catch(() => undefined);
      await run('lxc-destroy', ['-P', lxcpath, '-n', entry], { timeout: 60_000 }).catch(() => undefined);
    }
    await rm(tmp, { recursive: true, force: true });
  });

  it('takes a one-off snapshot through the API, once, while the container runs', async () => {
    await until('the container to run', async () => ((await lxcState()) === 'RUNNING' ? true : undefined), 120_000);
    await attach('echo original > /etc/restore-cli-test');
    const pid = (await run('lxc-info', ['-P', lxcpath, '-n', name, '-pH'])).stdout.trim();

    const asked = await cli(['snapshot', 'ct', name, 'golden-restore']);
    expect(asked, asked.stderr).to.include({ code: 0 });
    expect(asked.stdout).to.equal(`container default/${name}: snapshot golden-restore requested\n`);
    await until('the SnapshotTaken audit entry', async () => ((await audit('SnapshotTaken')).length === 1 ? true : undefined), 120_000);
    expect((await audit('SnapshotTaken'))[0]).to.match(new RegExp(`Took snapshot golden-restore of ${name} \\(request, \\d+ bytes\\)`));
    expect(await readdir(snapshotsDir(lxcpath, name))).to.include('golden-restore');
    expect((await run('lxc-info', ['-P', lxcpath, '-n', name, '-pH'])).stdout.trim(), 'never stopped for a snapshot').to.equal(pid);
    expect(await lxcState(), 'thawed after the copy').to.equal('RUNNING');

    // A name of the daemon's choosing (snap- and the UTC time), and --wait for the outcome.
    const unnamed = await cli(['snapshot', 'container', name, '--wait', '--timeout', '2m']);
    expect(unnamed, unnamed.stderr).to.include({ code: 0 });
    const [requested, outcome] = unnamed.stdout.trimEnd().split('\n');
    expect(requested).to.match(new RegExp(`^container default/${name}: snapshot snap-\\d{8}t\\d{6}z requested$`));
    const auto = /snapshot (snap-\S+) requested/.exec(unnamed.stdout)?.[1] ?? '';
    expect(outcome).to.match(new RegExp(`^container default/${name}: SnapshotTaken: Took snapshot ${auto} of ${name} \\(request, \\d+ bytes\\)$`));
    expect(await readdir(snapshotsDir(lxcpath, name)), 'there when --wait returns').to.include(auto);
    await until('its audit entry', async () => ((await audit('SnapshotTaken')).length === 2 ? true : undefined), 60_000);
  });

  it('refuses what it cannot do and changes nothing', async () => {
    const noToken = await cli(['restore', 'ct', name, 'golden-restore'], false);
    expect(noToken.code, 'no token, no action').to.equal(2);
    expect(noToken.stderr).to.contain('needs the API token');
    const unauthenticated = await fetch(`${daemon!.baseUrl}/api/v1/objects/Container/default/${name}/restore?snapshot=golden-restore`, { method: 'POST' });
    expect(unauthenticated.status).to.equal(401);
    const badName = await cli(['snapshot', 'ct', name, '../etc']);
    expect([badName.code, badName.stderr.trim()]).to.deep.equal([1,
      `container default/${name}: 400: snapshot takes ?snapshot=NAME (a DNS-1123 label), or none for snap-TIME`]);
    const missingWord = await cli(['restore', 'ct', name]);
    expect([missingWord.code, missingWord.stderr.trim()]).to.deep.equal([2, 'hyperlet restore: restore needs KIND NAME SNAPSHOT']);
    const undeclared = await cli(['restore', 'ct', `${name}-nope`, 'golden-restore']);
    expect([undeclared.code, undeclared.stderr.trim()]).to.deep.equal([1,
      `container default/${name}-nope: 404: Container default/${name}-nope not found`]);
    expect(await audit('Restored')).to.deep.equal([]);
    expect(await lxcState()).to.equal('RUNNING');
  });

  it('restores a snapshot taken with another spec: the file is back, the declared spec is kept and said so', async () => {
    // The guest changes, then the declared spec: memory 128Mi -> 192Mi, cpu 1 -> 2 (applied live).
    await attach('echo changed > /etc/restore-cli-test');
    await writeFile(join(tmp, 'manifests', 'c.yaml'), manifest('192Mi', 2));
    const config = join(lxcpath, name, 'config');
    await until('the new memory limit in the config', async () => ((await readFile(config, 'utf8')).includes('201326592') ? true : undefined), 120_000);
    await until('the update recorded (config, live limits and marker done)', async () => ((await audit('Updated')).length === 1 ? true : undefined), 60_000);
    const specHash = (await readMarker(markerPath(lxcpath, name)))?.specHash;
    const pid = (await run('lxc-info', ['-P', lxcpath, '-n', name, '-pH'])).stdout.trim();

    const asked = await cli(['restore', 'ct', name, 'golden-restore', '--wait']);
    expect(asked, asked.stderr).to.include({ code: 0 });
    // The request, then (--wait) its outcome as the reconcile loop recorded it: the CLI itself says the spec differed.
    expect(asked.stdout).to.match(new RegExp(
      `^container default/${name}: restore of snapshot golden-restore requested \\(golden-restore@\\d{17}\\); the declared spec is kept\\n`
      + `container default/${name}: Restored: restored rootfs from snapshot golden-restore; it was taken with another spec, the declared spec is kept`
      + ' \\(request golden-restore@\\d{17}\\)\\n$'));
    await until('the Restored audit entry', async () => ((await audit('Restored')).length === 1 ? true : undefined), 120_000);
    await until('the container to run again', async () => ((await lxcState()) === 'RUNNING' ? true : undefined), 60_000);
    expect(await attach('cat /etc/restore-cli-test')).to.equal('original');
    expect((await run('lxc-info', ['-P', lxcpath, '-n', name, '-pH'])).stdout.trim(), 'stopped and started again').to.not.equal(pid);
    expect((await audit('Restored'))[0]).to.match(
      /restored rootfs from snapshot golden-restore; it was taken with another spec, the declared spec is kept \(request golden-restore@\d{17}\)/);
    expect((await readFile(config, 'utf8')).match(/^lxc\.cgroup2?\.memory\.(max|limit_in_bytes)\s*=.*$/m)?.[0], 'the declared memory').to.match(/= ?201326592$/);
    expect((await readMarker(markerPath(lxcpath, name)))?.specHash, 'the declared spec').to.equal(specHash);

    // The same entry on the daemon's event stream (what the dashboard and watchers read).
    const events = await daemon!.get('/api/v1/events?limit=200');
    const restored = (JSON.parse(events.text) as { items: { reason: string; message: string; involvedObject: { name: string } }[] }).items
      .filter((e) => e.reason === 'Restored' && e.involvedObject.name === name);
    expect(restored.map((e) => e.message)).to.have.length(1);
    expect(restored[0]?.message).to.contain('taken with another spec, the declared spec is kept');
  });

  it('a restore of a snapshot that does not exist fails clearly and never stops the container', async () => {
    await attach('echo kept > /etc/restore-cli-test');
    const asked = await cli(['restore', 'ct', name, 'nope-restore', '--wait']);
    // Accepted (202), then the reconcile loop refuses it: --wait reports that and exits 1.
    expect([asked.code, asked.stderr.trim()]).to.deep.equal([1,
      `container default/${name}: SnapshotNotFound: cannot set container ${name} to stopped: cannot restore ${name}: it has no snapshot nope-restore`]);
    await until('the failure in the audit log', async () => ((await describeOut()).includes('has no snapshot nope-restore') ? true : undefined), 120_000);
    expect(await lxcState()).to.equal('RUNNING');
    expect(await attach('cat /etc/restore-cli-test')).to.equal('kept');
    expect(await audit('Restored'), 'still one restore').to.have.length(1);
  });

  it('after a kill -9 and a restart, neither request is acted on again', async () => {
    await attach('echo after > /etc/restore-cli-test');
    await daemon!.stop('SIGKILL');
    daemon = await DaemonProcess.start([
      '--source', `dir:${join(tmp, 'manifests')}`, '--lxcpath', lxcpath, '--state', statePath, '--http', '127.0.0.1:0',
      '--kinds', 'Container', '--resync', '2s', '--log-level', 'info',
    ], join(tmp, 'daemon.log'));
    // Three passes of the object (start, then resyncs): any of them would have acted on a request not yet honoured.
    const passes = async (): Promise<number> => {
      const text = (await daemon!.get('/metrics')).text;
      const lines = [...text.matchAll(/^hyperlet_reconcile_total\{[^}]*controller="Container"[^}]*\} (\d+)$/gm)];
      return lines.reduce((sum, m) => sum + Number(m[1]), 0);
    };
    await until('three reconcile passes', async () => ((await passes()) >= 3 ? true : undefined), 60_000);
    expect(await attach('cat /etc/restore-cli-test'), 'not restored again').to.equal('after');
    expect(await audit('Restored')).to.have.length(1);
    expect(await audit('SnapshotTaken')).to.have.length(2);
    expect((await readdir(snapshotsDir(lxcpath, name))).filter((n) => !n.startsWith('.')).sort()).to.have.length(2);
  });
});

/**
 * Deleting an object with snapshots (issue 12, item 6), through `hyperlet run` on a directory with
 * real LXC: `deletionPolicy: Orphan` (allowed by a policy file: the default refuses orphans) leaves
 * the container and its snapshots; the default policy removes the container with its snapshots.
 * A deletion is finished when its object's row leaves the state DB (the pass that finishes it
 * forgets the key): only then is what is left on the host looked at.
 */
describe('deleting a Container object with snapshots through the daemon with LXC', function () {
  this.timeout(300_000);
  const base = `del-snap-${randomBytes(2).toString('hex')}`;
  const kept = `${base}-orphan`;
  const gone = `${base}-delete`;
  let tmp = '';
  let lxcpath = '';
  let statePath = '';
  let daemon: DaemonProcess | undefined;

  const lxcState = async (n: string): Promise<string> =>
    (await run('lxc-info', ['-P', lxcpath, '-n', n, '-sH'], { timeout: 30_000 }).then((r) => r.stdout.trim(), () => 'MISSING'));
  const inStateDb = async (n: string): Promise<boolean> =>
    run(process.execPath, [cliPath, 'describe', 'container', n, '--state', statePath], { timeout: 30_000 }).then(() => true, () => false);
  const snapshotOf = async (n: string, snapshot: string): Promise<void> => {
    const r = await run(process.execPath, [cliPath, 'snapshot', 'ct', n, snapshot, '--wait', '--timeout', '2m', '--server', daemon!.baseUrl,
      '--state', statePath], { cwd: repoRoot, timeout: 150_000 });
    expect(r.stdout).to.contain(`SnapshotTaken: Took snapshot ${snapshot} of ${n}`);
  };
  const manifest = (n: string, policy: string | undefined): string => [
    'apiVersion: hyperlet.io/v1alpha1', 'kind: Container', 'metadata:', `  name: ${n}`, 'spec:', '  template: busybox',
    '  state: Running', '  gracefulStopSeconds: 0', '  network:', '    - type: none',
    ...(policy === undefined ? [] : [`  deletionPolicy: ${policy}`]), '',
  ].join('\n');

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('the LXC daemon e2e test needs root; run make test as root');
    tmp = await mkdtemp(join(tmpdir(), 'hyperlet-delete-snapshots-e2e-'));
    await chmod(tmp, 0o711);
    lxcpath = join(tmp, 'lxc');
    statePath = join(tmp, 'state', 'state.db');
    for (const d of ['manifests', 'lxc', 'state']) await mkdir(join(tmp, d));
    await writeFile(join(tmp, 'policy.yaml'), 'apiVersion: hyperlet.io/v1alpha1\nkind: HostPolicy\ndefaults:\n  allow: {orphan: true}\n');
    await writeFile(join(tmp, 'manifests', `${kept}.yaml`), manifest(kept, 'Orphan'));
    await writeFile(join(tmp, 'manifests', `${gone}.yaml`), manifest(gone, undefined));
    daemon = await DaemonProcess.start([
      '--source', `dir:${join(tmp, 'manifests')}`, '--lxcpath', lxcpath, '--state', statePath, '--http', '127.0.0.1:0',
      '--kinds', 'Container', '--resync', '10s', '--log-level', 'info', '--policy', join(tmp, 'policy.yaml'),
    ], join(tmp, 'daemon.log'));
    await until('both containers to run', async () =>
      ((await lxcState(kept)) === 'RUNNING' && (await lxcState(gone)) === 'RUNNING' ? true : undefined), 120_000);
    await snapshotOf(kept, 'kept-one');
    await snapshotOf(gone, 'gone-one');
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && daemon !== undefined) console.error(`--- daemon log ---\n${await daemon.logTail(40)}`);
  });

  after(async () => {
    await daemon?.stop('SIGKILL');
    if (tmp === '') return;
    for (const entry of await readdir(lxcpath).catch(() => [] as string[])) {
      await run('lxc-stop', ['-P', lxcpath, '-n', entry, '-k'], { timeout: 30_000 }).catch(() => undefined);
      await run('lxc-destroy', ['-P', lxcpath, '-n', entry], { timeout: 60_000 }).catch(() => undefined);
    }
    await rm(tmp, { recursive: true, force: true });
  });

  it('deletionPolicy Orphan: the object goes, the container and its snapshots stay', async () => {
    expect(await readdir(snapshotsDir(lxcpath, kept))).to.include('kept-one');
    await rm(join(tmp, 'manifests', `${kept}.yaml`));
    await until('the orphaning pass to finish (the object forgotten)', async () => ((await inStateDb(kept)) ? undefined : true), 60_000);
    expect(await lxcState(kept), 'the container is left running').to.equal('RUNNING');
    expect((await readdir(snapshotsDir(lxcpath, kept))).filter((n) => !n.startsWith('.'))).to.deep.equal(['kept-one']);
    expect((await readMarker(markerPath(lxcpath, kept)))?.id, 'still marked (an adopt can take it back)').to.be.a('string');
  });

  it('the default deletion removes the container with its snapshots', async () => {
    expect(await readdir(snapshotsDir(lxcpath, gone))).to.include('gone-one');
    await rm(join(tmp, 'manifests', `${gone}.yaml`));
    await until('the deletion to finish (the object forgotten)', async () => ((await inStateDb(gone)) ? undefined : true), 60_000);
    expect(await lxcState(gone)).to.equal('MISSING');
    expect(await readdir(lxcpath), 'nothing of it left in the lxcpath').to.not.include(gone);
    expect(await readdir(snapshotsDir(lxcpath, gone)).then(() => 'present', () => 'absent'), 'its snapshots').to.equal('absent');
    expect(await lxcState(kept), 'the orphan is untouched').to.equal('RUNNING');
  });
});
