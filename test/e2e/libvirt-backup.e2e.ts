/**
 * `hyperlet backup` and `hyperlet restore --from` of a VirtualMachine with the real libvirtd,
 * through the daemon's API: bytes written into the VM's data disk with qemu-io are backed up (a
 * stopped domain from its volume; a running one from an internal snapshot taken for the backup
 * and removed after), restored under --as into another storage pool, and read back from the new
 * volume with qemu-io. A truncated archive, a name in use and a pool the host policy refuses
 * create nothing. Needs libvirtd (scripts/setup-host.sh) and qemu-io.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { until } from '../support/until.js';
import { DaemonProcess, cliPath, repoRoot } from './support/daemon-process.js';
import { LibvirtEndState, virsh } from './support/libvirt-end-state.js';

const run = promisify(execFile);
const PREFIX = `hlbackups-${randomBytes(2).toString('hex')}`;
const VM = `${PREFIX}-a`;

describe('hyperlet backup and restore --from of a VM, into another storage pool', function () {
  this.timeout(600_000);
  let tmp = '';
  let backups = '';
  let statePath = '';
  let daemon: DaemonProcess | undefined;
  let end: LibvirtEndState;
  let other: LibvirtEndState;
  let disk = '';

  const cli = async (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    run(process.execPath, [cliPath, ...args, '--server', daemon!.baseUrl, '--state', statePath], { cwd: repoRoot, timeout: 300_000 }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: err.code ?? -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' }),
    );
  /** Whether qemu-io reads `byte` in all 64 KiB at `offset` of the qcow2 `file`. */
  const holds = async (file: string, byte: number, offset: string): Promise<boolean> => {
    const out = await run('qemu-io', ['-r', '-U', '-f', 'qcow2', '-c', `read -P ${byte} ${offset} 64k`, file], { timeout: 60_000 })
      .then((r) => r.stdout, (e: { stdout?: string }) => e.stdout ?? '');
    return !/Pattern verification failed|failed/i.test(out) && /read 65536\/65536 bytes/.test(out);
  };
  const volumes = async (pool: string): Promise<string[]> =>
    (await virsh('vol-list', pool).catch(() => '')).split('\n').slice(2).map((l) => l.trim().split(/\s+/)[0] ?? '').filter((v) => v !== '');

  before(async () => {
    if (!existsSync('/run/libvirt/libvirt-sock')) throw new Error('cannot run: /run/libvirt/libvirt-sock is missing; run scripts/setup-host.sh');
    tmp = await mkdtemp(join(tmpdir(), 'hyperlet-libvirt-backups-'));
    statePath = join(tmp, 'state', 'state.db');
    backups = join(tmp, 'backups');
    await mkdir(join(tmp, 'manifests'));
    await mkdir(join(tmp, 'state'));
    await mkdir(backups);
    end = new LibvirtEndState(PREFIX, statePath);
    other = new LibvirtEndState(`${PREFIX}-b`, statePath);
    await writeFile(join(tmp, 'manifests', 'vm.yaml'), end.manifest(VM, { cpu: 1, disks: ['data'], state: 'Stopped' }));
    await writeFile(join(tmp, 'policy.yaml'), [
      'apiVersion: hyperlet.io/v1alpha1', 'kind: HostPolicy', 'defaults:', `  paths: {backups: [${backups}]}`, '',
    ].join('\n'));
    daemon = await DaemonProcess.start([
      '--source', `dir:${join(tmp, 'manifests')}`, '--state', statePath, '--http', '127.0.0.1:0', '--lxcpath', join(tmp, 'lxc'),
      '--kinds', 'VirtualMachine', '--resync', '10s', '--log-level', 'info', '--policy', join(tmp, 'policy.yaml'),
    ], join(tmp, 'daemon.log'));
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && daemon !== undefined) console.error(`--- daemon log ---\n${await daemon.logTail(40)}`);
  });

  after(async () => {
    await daemon?.stop('SIGKILL');
    await end?.cleanUp();
    await other?.cleanUp();
    if (tmp !== '') await rm(tmp, { recursive: true, force: true });
  });

  const archive = (): string => join(backups, 'vm.tar.zst');

  it('backs up a stopped VM: its data disk as qcow2 with the object', async () => {
    const volume = await until('the data volume', async () => (await volumes(end.pool)).find((v) => v.startsWith(`${VM}-data-`)), 120_000);
    disk = (await virsh('vol-path', '--pool', end.pool, volume)).trim();
    await until('the domain defined and shut off', async () => ((await virsh('domstate', VM).catch(() => '')).includes('shut off') ? true : undefined), 60_000);
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 97 0 64k', '-c', 'write -P 98 50M 64k', disk], { timeout: 60_000 });

    const started = process.hrtime.bigint();
    const r = await cli(['backup', 'vm', VM, '--to', archive()]);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    expect(r, r.stderr).to.include({ code: 0 });
    console.log(`      backup of a stopped VM (100 MiB data disk): ${(ms / 1000).toFixed(2)} s, ${(await stat(archive())).size} bytes`);
    const members = (await run('tar', ['--zstd', '-tf', archive()])).stdout.trim().split('\n');
    expect(members).to.deep.equal(['hyperlet-backup.json', 'disks/', 'disks/data.qcow2', 'hyperlet-backup.sha256']);
  });

  it('refuses a truncated archive, a pool the policy refuses, creating nothing', async () => {
    const truncated = join(backups, 'truncated.tar.zst');
    await copyFile(archive(), truncated);
    await truncate(truncated, Math.floor((await stat(truncated)).size / 2));
    const cut = await cli(['restore', '--from', truncated, '--as', `${PREFIX}-b-copy`, '--pool', other.pool]);
    expect(cut.code, cut.stderr).to.equal(1);
    expect(cut.stderr).to.match(/truncated/);
    const refused = await cli(['restore', '--from', archive(), '--as', `${PREFIX}-b-copy`, '--pool', 'operators-pool']);
    expect(refused.code).to.equal(1);
    expect(refused.stderr).to.include('403: cannot restore');
    expect(refused.stderr).to.include('into storage pool operators-pool: the host policy refuses it');
    expect(await volumes(other.pool)).to.deep.equal([]);
    expect(await virsh('domstate', `${PREFIX}-b-copy`).catch(() => 'none')).to.equal('none');
  });

  it('restores under --as into another pool: the new volume holds the bytes, the domain is defined and not hyperlet\'s', async () => {
    const started = process.hrtime.bigint();
    const r = await cli(['restore', '--from', archive(), '--as', `${PREFIX}-b-copy`, '--pool', other.pool]);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    expect(r, r.stderr).to.include({ code: 0 });
    console.log(`      restore into another pool: ${(ms / 1000).toFixed(2)} s`);
    expect((await virsh('domstate', `${PREFIX}-b-copy`)).trim()).to.equal('shut off');
    const [volume] = await volumes(other.pool);
    expect(volume).to.match(new RegExp(`^${PREFIX}-b-copy-data-[0-9a-f]{8}\\.qcow2$`));
    const restored = (await virsh('vol-path', '--pool', other.pool, volume ?? '')).trim();
    expect(await holds(restored, 97, '0'), 'the first bytes').to.equal(true);
    expect(await holds(restored, 98, '50M'), 'the bytes at 50 MiB').to.equal(true);
    const xml = await virsh('dumpxml', `${PREFIX}-b-copy`);
    expect(xml).to.include(`pool='${other.pool}'`);
    expect(xml, 'no marker: the operator\'s until adopted').to.not.include('hyperlet:instance');
    expect(r.stdout).to.include(`name: ${PREFIX}-b-copy`);
    expect(r.stdout).to.include(`pool: ${other.pool}`);
    const again = await cli(['restore', '--from', archive(), '--as', `${PREFIX}-b-copy`, '--pool', other.pool]);
    expect(again.code).to.equal(1);
    expect(again.stderr).to.include('a domain of that name exists');
    expect(await volumes(other.pool), 'the refusal made no volume').to.have.length(1);
  });

  it('backs up a running VM from a snapshot taken for it, which is removed after', async () => {
    await writeFile(join(tmp, 'manifests', 'vm.yaml'), end.manifest(VM, { cpu: 1, disks: ['data'], state: 'Running' }));
    await until('the domain running', async () => ((await virsh('domstate', VM).catch(() => '')).trim() === 'running' ? true : undefined), 120_000);
    const running = join(backups, 'running.tar.zst');
    const r = await cli(['backup', 'vm', VM, '--to', running]);
    expect(r, r.stderr).to.include({ code: 0 });
    expect((await virsh('domstate', VM)).trim(), 'kept running').to.equal('running');
    expect((await virsh('snapshot-list', VM, '--name')).trim(), 'the backup\'s snapshot is gone').to.equal('');
    const out = join(tmp, 'running-out');
    await mkdir(out);
    await run('tar', ['--zstd', '-xf', running, '-C', out]);
    expect(await holds(join(out, 'disks', 'data.qcow2'), 97, '0')).to.equal(true);
    expect((await run('qemu-img', ['snapshot', '-l', join(out, 'disks', 'data.qcow2')])).stdout.trim(), 'a standalone qcow2, no snapshots').to.equal('');
  });
});
