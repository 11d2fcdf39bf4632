/**
 * `hyperlet snapshot` and `hyperlet restore` of a VirtualMachine against `hyperlet run` (a child
 * process on a directory of files) and the real libvirtd: a stopped VM's data disk written with
 * qemu-io, a one-off snapshot through the daemon's API, the disk overwritten and the declared vCPUs
 * raised, then a restore through the API: the disk holds the snapshot's bytes again, the declared
 * vCPUs are kept and the audit log says so. Needs libvirtd (scripts/setup-host.sh) and qemu-io.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { until } from '../support/until.js';
import { DaemonProcess, cliPath, repoRoot } from './support/daemon-process.js';
import { LibvirtEndState, virsh } from './support/libvirt-end-state.js';

const run = promisify(execFile);
const PREFIX = `hlrestorecli-${randomBytes(2).toString('hex')}`;
const VM = `${PREFIX}-a`;

describe('hyperlet snapshot and hyperlet restore through the daemon with libvirt', function () {
  this.timeout(600_000);
  let tmp = '';
  let statePath = '';
  let daemon: DaemonProcess | undefined;
  let end: LibvirtEndState;
  let disk = '';

  const file = (): string => join(tmp, 'manifests', 'vm.yaml');
  const cli = async (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    run(process.execPath, [cliPath, ...args, '--server', daemon!.baseUrl, '--state', statePath], { cwd: repoRoot, timeout: 30_000 }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: err.code ?? -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' }),
    );
  const audit = async (reason: string): Promise<string[]> =>
    (await run(process.execPath, [cliPath, 'describe', 'vm', VM, '--state', statePath], { timeout: 30_000 })).stdout.split('\n')
      .filter((l) => new RegExp(`^\\s+\\S+\\s+(Normal|Warning)\\s+${reason}\\s`).test(l));
  /** qemu-io's verdict on the first 64 KiB of the data disk holding `byte` in every position. */
  const holds = async (byte: number): Promise<boolean> => {
    const out = await run('qemu-io', ['-f', 'qcow2', '-c', `read -P ${byte} 0 64k`, disk], { timeout: 60_000 }).then((r) => r.stdout, (e: { stdout?: string }) => e.stdout ?? '');
    return !/Pattern verification failed|failed/i.test(out) && /read 65536\/65536 bytes/.test(out);
  };
  const configVcpus = async (): Promise<number> => Number((await virsh('vcpucount', VM, '--current', '--config')).trim());

  before(async () => {
    if (!existsSync('/run/libvirt/libvirt-sock')) throw new Error('cannot run: /run/libvirt/libvirt-sock is missing; run scripts/setup-host.sh');
    tmp = await mkdtemp(join(tmpdir(), 'hyperlet-libvirt-restore-cli-'));
    statePath = join(tmp, 'state', 'state.db');
    await mkdir(join(tmp, 'manifests'));
    await mkdir(join(tmp, 'state'));
    end = new LibvirtEndState(PREFIX, statePath);
    await writeFile(file(), end.manifest(VM, { cpu: 1, disks: ['data'], state: 'Stopped' }));
    daemon = await DaemonProcess.start([
      '--source', `dir:${join(tmp, 'manifests')}`, '--state', statePath, '--http', '127.0.0.1:0', '--lxcpath', join(tmp, 'lxc'),
      '--kinds', 'VirtualMachine', '--resync', '10s', '--log-level', 'info',
    ], join(tmp, 'daemon.log'));
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && daemon !== undefined) console.error(`--- daemon log ---\n${await daemon.logTail(40)}`);
  });

  after(async () => {
    await daemon?.stop('SIGKILL');
    await end?.cleanUp();
    if (tmp !== '') await rm(tmp, { recursive: true, force: true });
  });

  it('restores the disk of a snapshot taken with other vCPUs, keeps the declared vCPUs and says so', async () => {
    const volume = await until('the data volume', async () =>
      (await virsh('vol-list', end.pool).catch(() => '')).split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').find((v) => v.startsWith(`${VM}-data-`)), 120_000);
    disk = (await virsh('vol-path', '--pool', end.pool, volume)).trim();
    await until('the domain defined and shut off', async () => ((await virsh('domstate', VM).catch(() => '')).includes('shut off') ? true : undefined), 60_000);
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 97 0 64k', disk], { timeout: 60_000 });

    const asked = await cli(['snapshot', 'vm', VM, 'before-restore']);
    expect(asked, asked.stderr).to.include({ code: 0 });
    expect(asked.stdout).to.equal(`virtualmachine default/${VM}: snapshot before-restore requested\n`);
    await until('the SnapshotTaken audit entry', async () => ((await audit('SnapshotTaken')).length === 1 ? true : undefined), 120_000);
    expect((await virsh('snapshot-list', VM, '--name')).trim()).to.equal('before-restore');

    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 98 0 64k', disk], { timeout: 60_000 });
    await writeFile(file(), end.manifest(VM, { cpu: 2, disks: ['data'], state: 'Stopped' }));
    await until('two vCPUs declared in the definition', async () => ((await configVcpus()) === 2 ? true : undefined), 120_000);
    expect(await holds(98)).to.equal(true);

    const restore = await cli(['restore', 'vm', VM, 'before-restore', '--wait']);
    expect(restore, restore.stderr).to.include({ code: 0 });
    expect(restore.stdout.trimEnd().split('\n')[1]).to.match(
      new RegExp(`^virtualmachine default/${VM}: Restored: restored snapshot before-restore; it was taken with another spec, the declared spec is kept`));
    await until('the Restored audit entry', async () => ((await audit('Restored')).length === 1 ? true : undefined), 120_000);
    expect((await audit('Restored'))[0]).to.match(/restored snapshot before-restore; it was taken with another spec, the declared spec is kept \(request before-restore@\d{17}\)/);
    expect(await holds(97), 'the snapshot\'s bytes are back').to.equal(true);
    expect(await configVcpus(), 'the declared vCPUs, not the snapshot\'s').to.equal(2);
    expect((await virsh('domstate', VM)).trim(), 'declared Stopped').to.equal('shut off');
    expect(await virsh('dumpxml', '--inactive', VM)).to.match(/restoreRequest>before-restore@\d{17}</);
  });

  it('deleting the file removes the domain with its snapshot and its volume', async () => {
    await unlink(file());
    await until('the domain to be gone', async () => ((await virsh('list', '--all', '--name')).includes(VM) ? undefined : true), 120_000);
    const left = (await virsh('vol-list', end.pool).catch(() => '')).split('\n').filter((l) => l.includes(VM));
    expect(left).to.deep.equal([]);
  });
});
