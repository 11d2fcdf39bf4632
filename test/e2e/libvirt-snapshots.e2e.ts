/**
 * LibvirtProvider snapshots against the real libvirtd (qemu:///system): internal qcow2 snapshots
 * of a VM's data disk. The disk is written with qemu-io while the domain is stopped (the test
 * guest is a kernel and initrd with no filesystem to write), snapshotted, overwritten, restored,
 * and its first bytes read back; then a memory snapshot of the running guest. Every domain and
 * pool is named hyperlet-snap-e2e-PID-… and removed in after().
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import type { VirtualMachine, VirtualMachineSpec } from '../../src/api/v1alpha1/types.js';
import { isTerminalError } from '../../src/shared/errors.js';
import { hostNameOf, specHashOf, type Desired } from '../../src/store/desired.js';
import { objectKey } from '../../src/store/object-key.js';
import { volumeNameFor } from '../../src/providers/libvirt/domain-xml.js';
import { LibvirtProvider } from '../../src/providers/libvirt/libvirt-provider.js';
import { LibvirtClient } from '../../src/providers/libvirt/libvirt-client.js';

const run = promisify(execFile);
const NAME = `hyperlet-snap-e2e-${process.pid}`;
const POOL = `hyperlet-snap-e2e-${process.pid}`;
const POOL_ROOT = '/var/lib/hyperlet/pools';
const CONSOLE_DIR = '/var/log/hyperlet/console';
const logger = pino({ level: process.env.HYPERLET_TEST_LOG ?? 'silent' });
const signal = new AbortController().signal;

async function tool(cmd: string, ...args: string[]): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { timeout: 120_000 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`cannot run ${cmd} ${args.join(' ')}: ${e.stderr ?? ''}${e.stdout ?? ''}${e.message}`);
  }
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(() => undefined, (e: unknown) => e);
}

describe('LibvirtProvider snapshots against qemu:///system', function () {
  this.timeout(600_000);
  let provider: LibvirtProvider;
  let d: Desired<'VirtualMachine'>;
  let disk = '';

  /** qemu-io's verdict on the first 64 KiB holding `byte` in every position. */
  const holds = async (byte: number): Promise<boolean> => {
    const out = await run('qemu-io', ['-f', 'qcow2', '-c', `read -P ${byte} 0 64k`, disk], { timeout: 60_000 }).then((r) => r.stdout, (e: { stdout?: string }) => e.stdout ?? '');
    return !/Pattern verification failed|failed/i.test(out) && /read 65536\/65536 bytes/.test(out);
  };

  before(async () => {
    if (!existsSync('/run/libvirt/libvirt-sock')) throw new Error('cannot run: /run/libvirt/libvirt-sock is missing; run scripts/setup-host.sh');
    const out = await tool('bash', path.resolve('scripts/build-test-guest.sh'));
    const dir = out.trim().split('\n').pop() ?? '';
    const spec: VirtualMachineSpec = {
      state: 'Stopped', hypervisor: 'qemu', resources: { cpu: 1, memory: '128Mi' }, gracefulStopSeconds: 0,
      updatePolicy: 'Live', deletionPolicy: 'Delete',
      boot: { kernel: path.join(dir, 'vmlinuz'), initrd: path.join(dir, 'initrd.img'), cmdline: 'console=ttyS0 quiet' },
      disks: [{ name: 'data', pool: POOL, bus: 'virtio', size: '100Mi' }],
    };
    const object: VirtualMachine = { apiVersion: 'hyperlet.io/v1alpha1', kind: 'VirtualMachine', metadata: { name: NAME, namespace: 'default' }, spec };
    const id = randomUUID();
    d = { key: objectKey('dir', 'default', 'VirtualMachine', NAME), source: 'dir', object, id, generation: 1, specHash: specHashOf(spec), hostName: hostNameOf(object) };
    disk = path.join(POOL_ROOT, POOL, volumeNameFor(d.hostName, 'data', id));
    provider = new LibvirtProvider({ logger, client: new LibvirtClient({ logger }), consoleDir: CONSOLE_DIR, poolRoot: POOL_ROOT });
    await provider.probe(signal);
    await provider.create(d, signal);
  });

  after(async () => {
    await provider?.delete(d, signal).catch((err: unknown) => console.error(`cleanup: cannot delete ${NAME}: ${String(err)}`));
    await run('virsh', ['-c', 'qemu:///system', 'pool-destroy', POOL]).catch(() => undefined);
    await run('virsh', ['-c', 'qemu:///system', 'pool-undefine', POOL]).catch(() => undefined);
    rmSync(path.join(POOL_ROOT, POOL), { recursive: true, force: true });
    rmSync(path.join(CONSOLE_DIR, `${NAME}.log`), { force: true });
    await provider?.close();
  });

  it('snapshots a stopped domain\'s disk as an internal qcow2 snapshot', async () => {
    await tool('qemu-io', '-f', 'qcow2', '-c', 'write -P 97 0 64k', disk);
    expect(await holds(97)).to.equal(true);
    const snap = await provider.snapshot(d, 'before', { origin: 'schedule' }, signal);
    expect([snap.name, snap.origin, snap.memory, snap.specHash]).to.deep.equal(['before', 'schedule', false, d.specHash]);
    expect(Date.parse(snap.createdAt)).to.be.within(Date.now() - 120_000, Date.now() + 5_000);
    expect(await provider.snapshot(d, 'before', {}, signal), 'same name: the same snapshot').to.deep.equal(snap);
    expect((await provider.listSnapshots(d, signal)).map((s) => s.name)).to.deep.equal(['before']);
    expect(await tool('qemu-img', 'snapshot', '-l', '-U', disk), 'inside the qcow2 itself').to.match(/\sbefore\s/);
  });

  it('refuses memory on a stopped domain and a snapshot that does not exist', async () => {
    const memory = await rejection(provider.snapshot(d, 'mem', { memory: true }, signal));
    expect(isTerminalError(memory) && memory.reason).to.equal('SnapshotUnsupported');
    const missing = await rejection(provider.restoreSnapshot(d, 'nope', signal));
    expect(isTerminalError(missing) && missing.reason).to.equal('SnapshotNotFound');
  });

  it('restores: the disk holds the snapshot\'s bytes again', async () => {
    await tool('qemu-io', '-f', 'qcow2', '-c', 'write -P 98 0 64k', disk);
    expect(await holds(98)).to.equal(true);
    const outcome = await provider.restoreSnapshot(d, 'before', signal);
    expect(outcome.specDiffers).to.equal(false);
    expect(await holds(97), 'the bytes written before the snapshot').to.equal(true);
    const o = await provider.observe(d, signal);
    expect([o?.state, o?.ownerId, o?.specHash]).to.deep.equal(['Stopped', d.id, d.specHash]);
  });

  it('takes a snapshot of the running guest with its memory, and deletes snapshots', async () => {
    await provider.setState(d, 'Running', (await provider.observe(d, signal))!, signal);
    const live = await provider.snapshot(d, 'live', {}, signal);
    expect(live.memory, 'QEMU internal snapshots of a running domain hold its memory').to.equal(true);
    expect((await provider.listSnapshots(d, signal)).map((s) => [s.name, s.memory])).to.deep.equal([['before', false], ['live', true]]);
    await provider.setState(d, 'Stopped', (await provider.observe(d, signal))!, signal);
    await provider.deleteSnapshot(d, 'live', signal);
    await provider.deleteSnapshot(d, 'live', signal);
    expect((await provider.listSnapshots(d, signal)).map((s) => s.name)).to.deep.equal(['before']);
  });

  it('deleting the domain removes its snapshots with its volumes', async () => {
    await provider.delete(d, signal);
    expect(existsSync(disk)).to.equal(false);
    expect(await provider.listSnapshots(d, signal)).to.deep.equal([]);
  });
});
