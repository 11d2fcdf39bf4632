/**
 * VM internal snapshot, disk-only, of a stopped qemu domain with one qcow2 data disk (the test guest
 * from scripts/build-test-guest.sh): LibvirtProvider.snapshot (libvirt-snapshots.ts, over hyperlet's
 * RPC client) against `virsh snapshot-create-as` on the same domain in the same run, interleaved,
 * each snapshot deleted after it is timed. Prints p50/p95 of each and the ratio hyperlet / virsh
 * (the target: at most 1.0). The domain and pool are named hyperlet-vmsnap-bench-PID and
 * removed at the end. virsh pays its own process start and connection each time; hyperlet keeps
 * one connection, as the daemon does.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import type { VirtualMachine, VirtualMachineSpec } from '../src/api/v1alpha1/types.js';
import { LibvirtClient } from '../src/providers/libvirt/libvirt-client.js';
import { LibvirtProvider } from '../src/providers/libvirt/libvirt-provider.js';
import { hostNameOf, specHashOf, type Desired } from '../src/store/desired.js';
import { objectKey } from '../src/store/object-key.js';

const run = promisify(execFile);
const NAME = `hyperlet-vmsnap-bench-${process.pid}`;
const POOL_ROOT = '/var/lib/hyperlet/pools';
const CONSOLE_DIR = '/var/log/hyperlet/console';

const virsh = async (...args: string[]): Promise<string> => (await run('virsh', ['-c', 'qemu:///system', ...args], { timeout: 120_000 })).stdout;

const quantile = (xs: readonly number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] ?? Number.NaN;
};

/** `rounds` hyperlet snapshots and as many `virsh snapshot-create-as`, interleaved; returns the figures. */
export async function vmSnapshotBench(rounds = 10): Promise<Record<string, number | string>> {
  const logger = pino({ level: 'silent' });
  const signal = AbortSignal.timeout(900_000);
  const out = (await run('bash', [path.resolve('scripts/build-test-guest.sh')], { timeout: 900_000 })).stdout;
  const guest = out.trim().split('\n').pop() ?? '';
  const spec: VirtualMachineSpec = {
    state: 'Stopped', hypervisor: 'qemu', resources: { cpu: 1, memory: '128Mi' }, gracefulStopSeconds: 0,
    updatePolicy: 'Live', deletionPolicy: 'Delete',
    boot: { kernel: path.join(guest, 'vmlinuz'), initrd: path.join(guest, 'initrd.img'), cmdline: 'console=ttyS0 quiet' },
    disks: [{ name: 'data', pool: NAME, bus: 'virtio', size: '100Mi' }],
  };
  const object: VirtualMachine = { apiVersion: 'hyperlet.io/v1alpha1', kind: 'VirtualMachine', metadata: { name: NAME, namespace: 'default' }, spec };
  const d: Desired<'VirtualMachine'> = {
    key: objectKey('dir', 'default', 'VirtualMachine', NAME), source: 'dir', object, id: randomUUID(), generation: 1,
    specHash: specHashOf(spec), hostName: hostNameOf(object),
  };
  const provider = new LibvirtProvider({ logger, client: new LibvirtClient({ logger }), consoleDir: CONSOLE_DIR, poolRoot: POOL_ROOT });
  try {
    await provider.probe(signal);
    await provider.create(d, signal);
    // One of each first, untimed: both paths warm (libvirtd's caches, the page cache of qemu-img and virsh).
    await provider.snapshot(d, 'warm-h', { origin: 'request' }, signal);
    await provider.deleteSnapshot(d, 'warm-h', signal);
    await virsh('snapshot-create-as', '--domain', d.hostName, '--name', 'warm-v', '--atomic');
    await virsh('snapshot-delete', '--domain', d.hostName, '--snapshotname', 'warm-v');
    const hyperletMs: number[] = [];
    const virshMs: number[] = [];
    for (let i = 0; i < rounds; i++) {
      let t = performance.now();
      await provider.snapshot(d, `h${i}`, { origin: 'request' }, signal);
      hyperletMs.push(performance.now() - t);
      await provider.deleteSnapshot(d, `h${i}`, signal);
      t = performance.now();
      // The domain is stopped: libvirt's internal snapshot of it is disk-only, as hyperlet's is.
      await virsh('snapshot-create-as', '--domain', d.hostName, '--name', `v${i}`, '--atomic');
      virshMs.push(performance.now() - t);
      await virsh('snapshot-delete', '--domain', d.hostName, '--snapshotname', `v${i}`);
    }
    const p50 = quantile(hyperletMs, 0.5);
    const virshP50 = quantile(virshMs, 0.5);
    return {
      rounds, hyperletP50Ms: Math.round(p50), hyperletP95Ms: Math.round(quantile(hyperletMs, 0.95)),
      virshP50Ms: Math.round(virshP50), virshP95Ms: Math.round(quantile(virshMs, 0.95)),
      ratioP50: Number((p50 / virshP50).toFixed(2)), targetRatio: 1,
    };
  } finally {
    await provider.delete(d, signal).catch((err: unknown) => process.stderr.write(`cleanup: cannot delete ${NAME}: ${String(err)}\n`));
    await virsh('pool-destroy', NAME).catch(() => undefined);
    await virsh('pool-undefine', NAME).catch(() => undefined);
    rmSync(path.join(POOL_ROOT, NAME), { recursive: true, force: true });
    rmSync(path.join(CONSOLE_DIR, `${NAME}.log`), { force: true });
    await provider.close();
  }
}
