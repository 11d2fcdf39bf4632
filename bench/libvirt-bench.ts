/**
 * libvirt benchmarks against the real libvirtd (qemu:///system), figures printed:
 *  1. RPC client alone: calls/s (pipelined) and p50/p99 of a state query, against `virsh domstate`.
 *  2. 20 firmware-only VMs from nothing to running through hyperlet's provider against
 *     `virsh define` + `virsh start` with the same concurrency: ratio hyperlet/raw.
 *  3. Reaction to drift: a managed VM destroyed from outside with `virsh destroy`, time from
 *     libvirt's STOPPED event until it runs again: p50 and p99 over 20 tries.
 *
 * Caveat: main has no daemon yet, so (2) and (3) drive the provider directly with the minimal
 * loop a reconciler runs (changes() → observe → setState); they measure hyperlet's libvirt
 * layer, not the queue and status writes on top of it.
 * Run: npx tsc -p . && node dist/bench/libvirt-bench.js
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import type { VirtualMachine, VirtualMachineSpec } from '../src/api/v1alpha1/types.js';
import { LibvirtClient, LifecycleEventType, uuidFromBytes } from '../src/providers/libvirt/libvirt-client.js';
import { LibvirtProvider } from '../src/providers/libvirt/libvirt-provider.js';
import { hostNameOf, specHashOf, type Desired } from '../src/store/desired.js';
import { objectKey } from '../src/store/object-key.js';

const run = promisify(execFile);
const logger = pino({ level: 'silent' });
const signal = new AbortController().signal;
const PREFIX = `hyperlet-bench-${process.pid}`;
const VM_COUNT = 20;
const CONCURRENCY = 4;
const DRIFT_TRIES = 20;

const virsh = async (...args: string[]): Promise<string> => (await run('virsh', ['-c', 'qemu:///system', ...args], { timeout: 60_000 })).stdout;

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}
const ms = (n: number): string => `${n.toFixed(2)} ms`;

function desiredVm(name: string): Desired<'VirtualMachine'> {
  const spec: VirtualMachineSpec = {
    state: 'Running', hypervisor: 'qemu', resources: { cpu: 1, memory: '64Mi' }, gracefulStopSeconds: 0, updatePolicy: 'Live', deletionPolicy: 'Delete',
  };
  const object: VirtualMachine = { apiVersion: 'hyperlet.io/v1alpha1', kind: 'VirtualMachine', metadata: { name, namespace: 'default' }, spec };
  return { key: objectKey('bench', 'default', 'VirtualMachine', name), source: 'bench', object, id: randomUUID(), generation: 1, specHash: specHashOf(spec), hostName: hostNameOf(object) };
}

async function pool<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < items.length) {
      const item = items[next++];
      if (item !== undefined) await work(item);
    }
  }));
}

async function rpcVersusVirsh(client: LibvirtClient, name: string): Promise<void> {
  const dom = await client.lookupDomainByName(name);
  if (dom === undefined) throw new Error(`cannot find ${name}`);
  const latencies: number[] = [];
  for (let i = 0; i < 2_000; i++) {
    const t = performance.now();
    await client.domainGetState(dom);
    latencies.push(performance.now() - t);
  }
  const n = 5_000;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: n }, () => client.domainGetState(dom)));
  const rpcPerSecond = n / ((performance.now() - t0) / 1000);
  const virshLatencies: number[] = [];
  for (let i = 0; i < 30; i++) {
    const t = performance.now();
    await virsh('domstate', name);
    virshLatencies.push(performance.now() - t);
  }
  const virshPerSecond = 1000 / (virshLatencies.reduce((a, b) => a + b, 0) / virshLatencies.length);
  console.log('state query: RPC client vs virsh domstate');
  console.log(`  RPC    p50 ${ms(percentile(latencies, 50))}  p99 ${ms(percentile(latencies, 99))}  pipelined ${rpcPerSecond.toFixed(0)} calls/s`);
  console.log(`  virsh  p50 ${ms(percentile(virshLatencies, 50))}  p99 ${ms(percentile(virshLatencies, 99))}  sequential ${virshPerSecond.toFixed(1)} calls/s`);
  console.log(`  speed-up p50 x${(percentile(virshLatencies, 50) / percentile(latencies, 50)).toFixed(0)}`);
}

async function twentyVms(provider: LibvirtProvider, dir: string): Promise<void> {
  const ours = Array.from({ length: VM_COUNT }, (_, i) => desiredVm(`${PREFIX}-h${i}`));
  const t0 = performance.now();
  await pool(ours, CONCURRENCY, async (d) => {
    await provider.create(d, signal);
    const o = await provider.observe(d, signal);
    if (o === undefined) throw new Error(`cannot observe ${d.hostName}`);
    await provider.setState(d, 'Running', o, signal);
  });
  const hyperletMs = performance.now() - t0;
  const raw = Array.from({ length: VM_COUNT }, (_, i) => `${PREFIX}-r${i}`);
  for (const name of raw) {
    writeFileSync(path.join(dir, `${name}.xml`), `<domain type="qemu"><name>${name}</name><memory unit="KiB">65536</memory><vcpu>1</vcpu><os><type arch="x86_64">hvm</type><boot dev="hd"/></os><devices><memballoon model="virtio"/></devices></domain>`);
  }
  const t1 = performance.now();
  await pool(raw, CONCURRENCY, async (name) => {
    await virsh('define', path.join(dir, `${name}.xml`));
    await virsh('start', name);
  });
  const rawMs = performance.now() - t1;
  console.log(`${VM_COUNT} firmware-only VMs to running, concurrency ${CONCURRENCY}`);
  console.log(`  hyperlet provider ${(hyperletMs / 1000).toFixed(2)} s   virsh define+start ${(rawMs / 1000).toFixed(2)} s   ratio hyperlet/raw ${(hyperletMs / rawMs).toFixed(2)}`);
  await pool(ours, CONCURRENCY, (d) => provider.delete(d, signal));
  await pool(raw, CONCURRENCY, async (name) => {
    await virsh('destroy', name).catch(() => undefined);
    await virsh('undefine', name).catch(() => undefined);
  });
}

async function driftReaction(provider: LibvirtProvider, watcher: LibvirtClient): Promise<void> {
  const d = desiredVm(`${PREFIX}-drift`);
  await provider.create(d, signal);
  const first = await provider.observe(d, signal);
  if (first === undefined) throw new Error('cannot observe the drift VM');
  await provider.setState(d, 'Running', first, signal);
  // The minimal reconcile loop: every change of our VM → observe → start it if it is not running.
  const loop = new AbortController();
  const reconcile = (async () => {
    for await (const name of provider.changes(loop.signal)) {
      if (name !== d.hostName) continue;
      const o = await provider.observe(d, signal);
      if (o !== undefined && o.state === 'Stopped') await provider.setState(d, 'Running', o, signal);
    }
  })();
  const uuid = d.id;
  const reactions: number[] = [];
  for (let i = 0; i < DRIFT_TRIES; i++) {
    let stoppedAt = 0;
    const back = new Promise<number>((resolve) => {
      const onEvent = (e: { domain: { uuid: Buffer }; event: number }): void => {
        if (uuidFromBytes(e.domain.uuid) !== uuid) return;
        if (e.event === LifecycleEventType.Stopped) stoppedAt = performance.now();
        if (e.event === LifecycleEventType.Started && stoppedAt > 0) {
          watcher.off('lifecycle', onEvent);
          resolve(performance.now() - stoppedAt);
        }
      };
      watcher.on('lifecycle', onEvent);
    });
    await virsh('destroy', d.hostName);
    reactions.push(await back);
  }
  loop.abort();
  await reconcile.catch(() => undefined);
  console.log(`drift reaction (virsh destroy → running again), ${DRIFT_TRIES} tries`);
  console.log(`  p50 ${ms(percentile(reactions, 50))}  p99 ${ms(percentile(reactions, 99))}  (target p99 < 500 ms)`);
  await provider.delete(d, signal);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hyperlet-bench-'));
  const provider = new LibvirtProvider({ logger });
  const watcher = new LibvirtClient({ logger });
  await provider.probe(signal);
  await watcher.connect();
  const probe = desiredVm(`${PREFIX}-probe`);
  try {
    await provider.create(probe, signal);
    await rpcVersusVirsh(provider.client, probe.hostName);
    await twentyVms(provider, dir);
    await driftReaction(provider, watcher);
  } finally {
    await provider.delete(probe, signal).catch(() => undefined);
    for (const name of (await virsh('list', '--all', '--name')).split('\n').filter((n) => n.startsWith(PREFIX))) {
      await virsh('destroy', name).catch(() => undefined);
      await virsh('undefine', name).catch(() => undefined);
    }
    rmSync(dir, { recursive: true, force: true });
    await watcher.close();
    await provider.close();
  }
}

await main();
