/**
 * libvirt benchmarks against the real libvirtd (qemu:///system), figures printed:
 *  1. RPC client alone: calls/s (pipelined) and p50/p99 of a state query, against `virsh domstate`.
 *  2. 20 firmware-only VMs from nothing to running through the daemon (`hyperlet run` wiring:
 *     dir source, state DB, queue, reconciler, LibvirtProvider; concurrency 4) against
 *     `virsh define` + `virsh start` with the same concurrency: ratio hyperlet/raw.
 *  3. Reaction to drift: a VM managed by the daemon destroyed from outside with `virsh destroy`,
 *     time from libvirt's STOPPED event until it runs again: p50 and p99 over 20 tries.
 * Run: npx tsc -p . && node dist/bench/libvirt-bench.js
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import pino from 'pino';
import type { VirtualMachine, VirtualMachineSpec } from '../src/api/v1alpha1/types.js';
import { Daemon } from '../src/daemon/daemon.js';
import { LibvirtClient, LifecycleEventType } from '../src/providers/libvirt/libvirt-client.js';
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

type Figures = Record<string, number>;

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

async function rpcVersusVirsh(client: LibvirtClient, name: string): Promise<Figures> {
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
  return {
    rpcStateP50Ms: percentile(latencies, 50), rpcStateP99Ms: percentile(latencies, 99), rpcCallsPerSecond: Math.round(rpcPerSecond),
    virshStateP50Ms: percentile(virshLatencies, 50), virshStateP99Ms: percentile(virshLatencies, 99), virshCallsPerSecond: virshPerSecond,
  };
}

const vmYaml = (name: string): string =>
  `apiVersion: hyperlet.io/v1alpha1\nkind: VirtualMachine\nmetadata: {name: ${name}}\nspec: {hypervisor: qemu, resources: {cpu: 1, memory: 64Mi}, gracefulStopSeconds: 0}\n`;

/** Resolves when `names` have all reported STARTED (seen by an independent client). */
function allStarted(watcher: LibvirtClient, names: readonly string[]): Promise<void> {
  const waiting = new Set(names);
  return new Promise((resolve) => {
    const onEvent = (e: { domain: { name: string }; event: number }): void => {
      if (e.event === LifecycleEventType.Started) waiting.delete(e.domain.name);
      if (waiting.size === 0) {
        watcher.off('lifecycle', onEvent);
        resolve();
      }
    };
    watcher.on('lifecycle', onEvent);
  });
}

async function twentyVms(manifests: string, dir: string, watcher: LibvirtClient): Promise<Figures> {
  const ours = Array.from({ length: VM_COUNT }, (_, i) => `${PREFIX}-h${i}`);
  const t0 = performance.now();
  const hyperletDone = allStarted(watcher, ours);
  for (const name of ours) writeFileSync(path.join(manifests, `${name}.yaml`), vmYaml(name));
  await hyperletDone;
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
  console.log(`  hyperlet run ${(hyperletMs / 1000).toFixed(2)} s   virsh define+start ${(rawMs / 1000).toFixed(2)} s   ratio hyperlet/raw ${(hyperletMs / rawMs).toFixed(2)}`);
  for (const name of ours) rmSync(path.join(manifests, `${name}.yaml`));
  await pool(raw, CONCURRENCY, async (name) => {
    await virsh('destroy', name).catch(() => undefined);
    await virsh('undefine', name).catch(() => undefined);
  });
  const deadline = Date.now() + 120_000;
  while ((await virsh('list', '--all', '--name')).includes(`${PREFIX}-h`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  return { twentyVmsHyperletMs: hyperletMs, twentyVmsVirshMs: rawMs, twentyVmsRatio: hyperletMs / rawMs };
}

/** QEMU's own start time on this host (DOMAIN_CREATE of a defined firmware-only domain): the floor under any drift reaction. */
async function rawStart(client: LibvirtClient): Promise<number[]> {
  const dom = await client.domainDefineXml(`<domain type="qemu"><name>${PREFIX}-start</name><memory unit="KiB">65536</memory><vcpu>1</vcpu><os><type arch="x86_64">hvm</type><boot dev="hd"/></os></domain>`);
  const starts: number[] = [];
  try {
    for (let i = 0; i < 8; i++) {
      const t = performance.now();
      await client.domainCreate(dom);
      starts.push(performance.now() - t);
      await client.domainDestroy(dom);
    }
  } finally {
    await client.domainUndefine(dom, 0);
  }
  return starts;
}

async function driftReaction(manifests: string, watcher: LibvirtClient): Promise<Figures> {
  const starts = await rawStart(watcher);
  const name = `${PREFIX}-drift`;
  const up = allStarted(watcher, [name]);
  writeFileSync(path.join(manifests, `${name}.yaml`), vmYaml(name));
  await up;
  await new Promise((r) => setTimeout(r, 500)); // let the daemon write status and settle
  const reactions: number[] = [];
  for (let i = 0; i < DRIFT_TRIES; i++) {
    let stoppedAt = 0;
    const back = new Promise<number>((resolve) => {
      const onEvent = (e: { domain: { name: string }; event: number }): void => {
        if (e.domain.name !== name) return;
        if (e.event === LifecycleEventType.Stopped) stoppedAt = performance.now();
        if (e.event === LifecycleEventType.Started && stoppedAt > 0) {
          watcher.off('lifecycle', onEvent);
          resolve(performance.now() - stoppedAt);
        }
      };
      watcher.on('lifecycle', onEvent);
    });
    await virsh('destroy', name);
    reactions.push(await back);
    await new Promise((r) => setTimeout(r, 200));
  }
  console.log(`drift reaction (virsh destroy → running again, via hyperlet run), ${DRIFT_TRIES} tries`);
  console.log(`  p50 ${ms(percentile(reactions, 50))}  p99 ${ms(percentile(reactions, 99))}  (target p99 < 500 ms)`);
  console.log(`  of which QEMU start alone (DOMAIN_CREATE, 8 tries): p50 ${ms(percentile(starts, 50))}  p99 ${ms(percentile(starts, 99))}`);
  console.log(`  hyperlet's share (reaction p50 - start p50): ${ms(percentile(reactions, 50) - percentile(starts, 50))}`);
  rmSync(path.join(manifests, `${name}.yaml`));
  return {
    driftP50Ms: percentile(reactions, 50), driftP99Ms: percentile(reactions, 99),
    qemuStartP50Ms: percentile(starts, 50), qemuStartP99Ms: percentile(starts, 99),
  };
}

/** Runs the three libvirt benchmarks against qemu:///system, prints them and returns the figures (bench/run-all.ts). */
export async function libvirtBench(): Promise<Figures> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hyperlet-bench-'));
  const manifests = path.join(dir, 'manifests');
  mkdirSync(manifests);
  const client = new LibvirtClient({ logger });
  const provider = new LibvirtProvider({ logger, client });
  const watcher = new LibvirtClient({ logger });
  await provider.probe(signal);
  await watcher.connect();
  const probe = desiredVm(`${PREFIX}-probe`);
  const daemon = new Daemon({
    sources: [{ type: 'dir', location: manifests }], statePath: path.join(dir, 'state.db'), lxcpath: '/nonexistent',
    libvirtUri: 'qemu:///system', kinds: ['VirtualMachine'], node: 'bench', nodeFilter: false, resyncMs: 60_000,
    concurrency: CONCURRENCY, qps: 100, burst: 100, shutdownTimeoutMs: 30_000,
  }, logger);
  try {
    await provider.create(probe, signal);
    const rpc = await rpcVersusVirsh(client, probe.hostName);
    await daemon.start();
    const twenty = await twentyVms(manifests, dir, watcher);
    const drift = await driftReaction(manifests, watcher);
    return Object.fromEntries(Object.entries({ ...rpc, ...twenty, ...drift }).map(([k, v]) => [k, Math.round(v * 100) / 100]));
  } finally {
    await daemon.stop();
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

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) await libvirtBench();
