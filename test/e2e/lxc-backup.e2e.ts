/**
 * `hyperlet backup` and `hyperlet restore --from` with real LXC, through two daemons (`hyperlet
 * run` child processes) on two isolated lxcpaths, as two hosts would be: a file written in the
 * running guest is backed up on host A (the container keeps running: it is read from a snapshot
 * taken for the backup and removed after), restored on host B under another name (--as), read
 * back from B's rootfs and from the started container, and adopted by declaring the object the
 * restore printed. Truncated, altered and newer-format archives, a name in use and paths the host
 * policy refuses are clear errors that create nothing.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, readdir, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { load } from 'js-yaml';
import { BACKUP_FORMAT_VERSION, writeBackup } from '../../src/providers/backup/backup-archive.js';
import { toolOutput } from '../../src/providers/backup/tool-stream.js';
import { readMarker } from '../../src/providers/lxc/ownership-marker.js';
import { markerPath } from '../../src/providers/lxc/container-paths.js';
import { snapshotsDir } from '../../src/providers/lxc/lxc-snapshots.js';
import { until } from '../support/until.js';
import { DaemonProcess, cliPath, repoRoot } from './support/daemon-process.js';

const run = promisify(execFile);
const suffix = randomBytes(2).toString('hex');
const name = `backups-ct-${suffix}`;
const copy = `backups-copy-${suffix}`;

const manifest = [
  'apiVersion: hyperlet.io/v1alpha1', 'kind: Container', 'metadata:', `  name: ${name}`,
  'spec:', '  template: busybox', '  state: Running', '  gracefulStopSeconds: 0', '  network:', '    - type: none', '',
].join('\n');

describe('hyperlet backup and restore --from with LXC, from one lxcpath to another', function () {
  this.timeout(600_000);
  let tmp = '';
  let backups = '';
  const hosts: Record<'a' | 'b', { lxcpath: string; state: string; manifests: string; daemon?: DaemonProcess }> = {
    a: { lxcpath: '', state: '', manifests: '' }, b: { lxcpath: '', state: '', manifests: '' },
  };

  const lxc = async (tool: string, host: 'a' | 'b', ctName: string, ...args: string[]): Promise<string> =>
    (await run(tool, ['-P', hosts[host].lxcpath, '-n', ctName, ...args], { timeout: 60_000 })).stdout.trim();
  const cli = async (host: 'a' | 'b', args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
    const flags = ['--server', hosts[host].daemon!.baseUrl, '--state', hosts[host].state];
    return run(process.execPath, [cliPath, ...args, ...flags], { cwd: repoRoot, timeout: 300_000 }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: err.code ?? -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' }),
    );
  };
  const entries = async (host: 'a' | 'b'): Promise<string[]> => (await readdir(hosts[host].lxcpath)).sort();

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('the LXC backup e2e test needs root; run make test as root');
    tmp = await mkdtemp(join(tmpdir(), 'hyperlet-backups-e2e-'));
    await chmod(tmp, 0o711);
    backups = join(tmp, 'backups');
    await mkdir(backups);
    const policy = join(tmp, 'policy.yaml');
    await writeFile(policy, [
      'apiVersion: hyperlet.io/v1alpha1', 'kind: HostPolicy', 'defaults:', `  paths: {backups: [${backups}]}`, '  allow: {adoption: true}', '',
    ].join('\n'));
    for (const host of ['a', 'b'] as const) {
      const h = hosts[host];
      h.lxcpath = join(tmp, `lxc-${host}`);
      h.state = join(tmp, `state-${host}`, 'state.db');
      h.manifests = join(tmp, `manifests-${host}`);
      await mkdir(h.lxcpath);
      await mkdir(dirname(h.state));
      await mkdir(h.manifests);
    }
    await writeFile(join(hosts.a.manifests, 'c.yaml'), manifest);
    for (const host of ['a', 'b'] as const) {
      const h = hosts[host];
      h.daemon = await DaemonProcess.start([
        '--source', `dir:${h.manifests}`, '--lxcpath', h.lxcpath, '--state', h.state, '--http', '127.0.0.1:0',
        '--kinds', 'Container', '--resync', '10s', '--log-level', 'info', '--policy', policy,
      ], join(tmp, `daemon-${host}.log`));
    }
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') {
      for (const host of ['a', 'b'] as const) console.error(`--- daemon ${host} ---\n${await hosts[host].daemon?.logTail(30)}`);
    }
  });

  after(async () => {
    for (const host of ['a', 'b'] as const) await hosts[host].daemon?.stop('SIGKILL');
    if (tmp === '') return;
    for (const host of ['a', 'b'] as const) {
      for (const entry of await readdir(hosts[host].lxcpath).catch(() => [] as string[])) {
        if (entry.startsWith('.')) continue;
        await run('lxc-stop', ['-P', hosts[host].lxcpath, '-n', entry, '-k'], { timeout: 30_000 }).catch(() => undefined);
        await run('lxc-destroy', ['-P', hosts[host].lxcpath, '-n', entry], { timeout: 60_000 }).catch(() => undefined);
      }
    }
    await rm(tmp, { recursive: true, force: true });
  });

  const archive = (): string => join(backups, `${name}.tar.zst`);

  it('backs up the running container through the daemon: it keeps running, no snapshot is left behind', async () => {
    await until('the container to run', async () => ((await lxc('lxc-info', 'a', name, '-sH').catch(() => '')) === 'RUNNING' ? true : undefined), 120_000);
    await lxc('lxc-attach', 'a', name, '--', '/bin/sh', '-c', 'echo backed-up-by-hyperlet > /etc/backup-test && sync');
    const pid = await lxc('lxc-info', 'a', name, '-pH');

    const started = process.hrtime.bigint();
    const done = await cli('a', ['backup', 'ct', name, '--to', archive()]);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    expect(done, done.stderr).to.include({ code: 0 });
    expect(done.stdout).to.match(new RegExp(`^${archive()}: \\d+ bytes, \\d+ compressed, sha256 [0-9a-f]{64}\\n$`));
    expect(done.stderr, 'progress, then the outcome').to.match(new RegExp(`backup container default/${name}: done`));
    const size = (await stat(archive())).size;
    console.log(`      backup of a running busybox container: ${(ms / 1000).toFixed(2)} s with the CLI, ${size} bytes compressed`);
    const members = (await run('tar', ['--zstd', '-tf', archive()])).stdout.trim().split('\n');
    expect(members[0]).to.equal('hyperlet-backup.json');
    expect(members).to.include('config');
    expect(members).to.include('rootfs/etc/backup-test');
    expect(members.at(-1)).to.equal('hyperlet-backup.sha256');
    expect(await lxc('lxc-info', 'a', name, '-pH'), 'never stopped').to.equal(pid);
    expect(await lxc('lxc-info', 'a', name, '-sH'), 'thawed').to.equal('RUNNING');
    expect(await readdir(snapshotsDir(hosts.a.lxcpath, name)).catch(() => []), 'the backup\'s snapshot is removed').to.deep.equal([]);
    expect((await readdir(backups)).filter((f) => f.includes('partial')), 'no partial file').to.deep.equal([]);
  });

  it('refuses paths the host policy does not allow, and overwriting a backup, writing nothing', async () => {
    const outside = await cli('a', ['backup', 'ct', name, '--to', join(tmp, 'outside.tar.zst')]);
    expect(outside.code).to.equal(1);
    expect(outside.stderr).to.match(/403: cannot write the backup: the host policy refuses it \(paths\.backups\): .* it is outside them/);
    const again = await cli('a', ['backup', 'ct', name, '--to', archive()]);
    expect(again.code).to.equal(1);
    expect(again.stderr).to.include('exists already (backups are never overwritten)');
    const undeclared = await cli('a', ['backup', 'ct', `${name}-nope`, '--to', join(backups, 'nope.tar.zst')]);
    expect(undeclared.stderr).to.include(`404: container default/${name}-nope is not declared here`);
    expect(await readdir(tmp)).to.not.include('outside.tar.zst');
    expect((await readdir(backups)).sort()).to.deep.equal([`${name}.tar.zst`]);
  });

  it('refuses truncated, altered and newer-format archives on the other host, creating nothing', async () => {
    const before = await entries('b');
    const truncated = join(backups, 'truncated.tar.zst');
    await copyFile(archive(), truncated);
    await truncate(truncated, Math.floor((await stat(truncated)).size * 0.6));
    const altered = join(backups, 'altered.tar.gz');
    // The same archive as gzip with one byte of the guest's file changed: valid compression, wrong checksum.
    const raw = (await run('zstd', ['-dc', archive()], { encoding: 'buffer', maxBuffer: 256 << 20 })).stdout;
    const at = raw.indexOf('backed-up-by-hyperlet');
    expect(at).to.be.greaterThan(0);
    raw[at] = 'B'.charCodeAt(0);
    await writeFile(join(backups, 'altered.tar'), raw);
    await run('gzip', ['-n', join(backups, 'altered.tar')]);
    const newer = join(backups, 'newer.tar.zst');
    await writeBackup({
      head: { formatVersion: BACKUP_FORMAT_VERSION + 1, kind: 'Container', hostName: name, createdAt: new Date().toISOString(), layout: 'lxc-dir', object: {} },
      payload: toolOutput('tar', ['-c', '-f', '-', '-C', tmp, 'policy.yaml']), out: createWriteStream(newer),
    });
    const cases = {
      truncated: { file: truncated, want: /BackupTruncated|truncated/ },
      altered: { file: altered, want: /checksum mismatch/ },
      newer: { file: newer, want: /format version 2, and this hyperlet reads up to 1/ },
    };
    for (const [what, tc] of Object.entries(cases)) {
      const r = await cli('b', ['restore', '--from', tc.file, '--as', copy]);
      expect(r.code, `${what}: ${r.stderr}`).to.equal(1);
      expect(r.stderr, what).to.match(tc.want);
      expect(await entries('b'), `${what}: nothing created`).to.deep.equal(before);
    }
  });

  it('restores on the other host under --as: the guest\'s file is there and the container starts', async () => {
    const started = process.hrtime.bigint();
    const r = await cli('b', ['restore', '--from', archive(), '--as', copy]);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    expect(r, r.stderr).to.include({ code: 0 });
    console.log(`      restore into another lxcpath: ${(ms / 1000).toFixed(2)} s with the CLI`);
    expect(await entries('b')).to.deep.equal([copy]);
    const object = load(r.stdout) as { kind: string; metadata: { name: string; annotations: Record<string, string> }; spec: { template: string } };
    expect(object.kind).to.equal('Container');
    expect(object.metadata.name).to.equal(copy);
    expect(object.metadata.annotations['hyperlet.io/adopt']).to.equal('true');
    expect(object.spec.template).to.equal('busybox');
    const rootfs = join(hosts.b.lxcpath, copy, 'rootfs');
    expect(await readFile(join(rootfs, 'etc', 'backup-test'), 'utf8')).to.equal('backed-up-by-hyperlet\n');
    const config = await readFile(join(hosts.b.lxcpath, copy, 'config'), 'utf8');
    expect(config).to.include(`lxc.uts.name = ${copy}`);
    expect(config, 'no path of host A is left').to.not.include(hosts.a.lxcpath);
    expect(await readMarker(markerPath(hosts.b.lxcpath, copy)).catch(() => undefined), 'not hyperlet\'s until adopted').to.equal(undefined);
    await lxc('lxc-start', 'b', copy);
    await until('the restored container to run', async () => ((await lxc('lxc-info', 'b', copy, '-sH')) === 'RUNNING' ? true : undefined), 60_000);
    expect(await lxc('lxc-attach', 'b', copy, '--', '/bin/cat', '/etc/backup-test')).to.equal('backed-up-by-hyperlet');
    expect(await lxc('lxc-attach', 'b', copy, '--', '/bin/hostname')).to.equal(copy);
  });

  it('refuses a name in use, changing nothing', async () => {
    const configBefore = await readFile(join(hosts.b.lxcpath, copy, 'config'), 'utf8');
    const r = await cli('b', ['restore', '--from', archive(), '--as', copy]);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.include(`cannot restore backup as ${copy}: a container of that name exists`);
    expect(await entries('b')).to.deep.equal([copy]);
    expect(await readFile(join(hosts.b.lxcpath, copy, 'config'), 'utf8')).to.equal(configBefore);
    expect(await lxc('lxc-info', 'b', copy, '-sH')).to.equal('RUNNING');
  });

  it('the printed object, declared on the other host, adopts the restored container', async () => {
    const r = await cli('b', ['restore', '--from', archive(), '--as', `${copy}-2`]);
    expect(r, r.stderr).to.include({ code: 0 });
    await writeFile(join(hosts.b.manifests, 'restored.yaml'), r.stdout);
    await until('the adopted container to run', async () => {
      const marker = await readMarker(markerPath(hosts.b.lxcpath, `${copy}-2`)).catch(() => undefined);
      return marker?.origin === 'adopted' && (await lxc('lxc-info', 'b', `${copy}-2`, '-sH')) === 'RUNNING' ? true : undefined;
    }, 120_000);
    expect(await lxc('lxc-attach', 'b', `${copy}-2`, '--', '/bin/cat', '/etc/backup-test')).to.equal('backed-up-by-hyperlet');
  });

  it('spec.backups writes scheduled archives into its directory and keeps what the retain rules say', async () => {
    const scheduled = join(backups, 'scheduled');
    await mkdir(scheduled);
    await writeFile(join(hosts.a.manifests, 'c.yaml'), manifest.replace('  gracefulStopSeconds: 0\n',
      `  gracefulStopSeconds: 0\n  backups: {schedule: "@every 1m", retain: {last: 1}, directory: ${scheduled}}\n`));
    const started = Date.now();
    // The schedule is looked at every 30 s; the first run is due a minute after it was first seen.
    const first = await until('a scheduled archive', async () =>
      (await readdir(scheduled)).find((f) => /^backups-ct-[0-9a-f]{4}\.auto-\d{8}t\d{6}z\.tar\.zst$/.test(f)), 180_000);
    console.log(`      first scheduled backup after ${((Date.now() - started) / 1000).toFixed(0)} s`);
    const members = (await run('tar', ['--zstd', '-tf', join(scheduled, first)])).stdout.split('\n');
    expect(members).to.include('rootfs/etc/backup-test');
    expect(await lxc('lxc-info', 'a', name, '-sH'), 'kept running').to.equal('RUNNING');
    // retain last 1: the second run prunes the first.
    await until('the second run, pruning the first', async () => {
      const files = await readdir(scheduled);
      return files.length === 1 && files[0] !== first ? true : undefined;
    }, 180_000);
  });
});
