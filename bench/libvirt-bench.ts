/**
 * libvirt benchmarks against the real libvirtd (qemu:///system), figures printed:
 *  1. RPC client alone: calls/s (pipelined) and p50/p99 of a state query, against `virsh domstate`.
 *  2. 20 firmware-only VMs from nothing to running through the daemon (`hyperlet run` wiring:
 *     dir source, state DB, queue, reconciler, LibvirtProvider; concurrency 4) against
 *     `virsh define` + `virsh start` with the same concurrency: ratio hyperlet/raw.
 *  3. Reaction to drift: a VM managed by the daemon destroyed from outside with `virsh destroy`,
 *     time from libvirt's STOPPED event until it runs again: p50 and p99 over 20 tries. Split
 *     inside the daemon, from the event that told it the domain was off to the end of the pass after
 *     the start (the one that sees the domain running and writes status): time inside provider
 *     calls (libvirtd, QEMU) is the tool's, the rest hyperlet's own share. Target: p99 < 50 ms.
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
import type { Kind } from '../src/api/v1alpha1/group.js';
import type { VirtualMachine, VirtualMachineSpec } from '../src/api/v1alpha1/types.js';
import { Daemon } from '../src/daemon/daemon.js';
import { LibvirtClient, LifecycleEventType } from '../src/providers/libvirt/libvirt-client.js';
import { LibvirtProvider } from '../src/providers/libvirt/libvirt-provider.js';
import type { Provider } from '../src/providers/provider.js';
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

/** The daemon's log lines the drift figure is cut from, stamped with performance.now() as written. */
interface Mark { readonly atMs: number; readonly msg: string; readonly key?: string; readonly detail?: string }
const marks: Mark[] = [];
const MARKED = ['"msg":"reconciled"', '"msg":"status written"', '"msg":"step done"'];
const daemonLogger = pino({ level: 'debug' }, {
  write: (line: string): void => {
    if (!MARKED.some((m) => line.includes(m))) return;
    type Line = { msg: string; key?: string; result?: string; phase?: string; step?: string };
    const { msg, key, result, phase, step } = JSON.parse(line) as Line;
    marks.push({ atMs: performance.now(), msg, key, detail: result ?? phase ?? step });
  },
});

/** One call of the daemon's provider for one domain: when it was made and when it returned (NaN until then). */
interface ProviderCall {
  readonly host: string;
  readonly method: string;
  readonly to?: string;
  readonly calledAtMs: number;
  returnedAtMs: number;
}
const providerCalls: ProviderCall[] = [];
/** When the daemon's provider handed it a change event (libvirt's lifecycle event, as hyperlet got it). */
const changeEvents: { readonly host: string; readonly atMs: number }[] = [];
const PER_DOMAIN_METHODS = new Set(['observe', 'create', 'update', 'setState', 'adopt', 'delete']);

/** `provider` with its change events and its per-domain calls timed; everything else as is. */
function timed(provider: LibvirtProvider): Provider<'VirtualMachine'> {
  return new Proxy(provider, {
    get(target, prop, receiver): unknown {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      const method = value as (...args: unknown[]) => unknown;
      if (prop === 'changes') {
        return async function* (signal: AbortSignal): AsyncIterable<string> {
          for await (const host of target.changes(signal)) {
            changeEvents.push({ host, atMs: performance.now() });
            yield host;
          }
        };
      }
      if (typeof prop !== 'string' || !PER_DOMAIN_METHODS.has(prop)) return method.bind(target);
      return async (...args: unknown[]) => {
        const desired = args[0] as Desired;
        const call: ProviderCall = {
          host: desired.hostName, method: prop, calledAtMs: performance.now(), returnedAtMs: NaN,
          ...(prop === 'setState' ? { to: String(args[1]) } : {}),
        };
        providerCalls.push(call);
        try {
          return await method.apply(target, args);
        } finally {
          call.returnedAtMs = performance.now();
        }
      };
    },
  });
}

/** Milliseconds spent inside provider calls for `host` between `fromMs` and `toMs`. */
function toolMsBetween(host: string, fromMs: number, toMs: number): number {
  let total = 0;
  for (const c of providerCalls) {
    if (c.host !== host) continue;
    total += Math.max(0, Math.min(toMs, c.returnedAtMs) - Math.max(fromMs, c.calledAtMs));
  }
  return total;
}

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
  const key = `dir/default/VirtualMachine/${name}`;
  const up = allStarted(watcher, [name]);
  writeFileSync(path.join(manifests, `${name}.yaml`), vmYaml(name));
  await up;
  await new Promise((r) => setTimeout(r, 500)); // let the daemon write status and settle
  const reactions: number[] = [];
  const beforeStart: number[] = [];
  const toolTime: number[] = [];
  const afterStart: number[] = [];
  const hyperletShare: number[] = [];
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
    const destroyedAt = performance.now();
    await virsh('destroy', name);
    reactions.push(await back);
    // Cut from inside the daemon: its own receipt of the event, its start call, and the end of the
    // pass after the start, which sees the domain running and writes status.
    // The repair starts at the last event before the start call: what told the daemon the domain
    // was off (earlier events of the destroy found it still stopping, which is libvirt's time).
    const start = providerCalls.find((c) => c.host === name && c.to === 'Running' && c.calledAtMs > destroyedAt);
    const event = start === undefined
      ? undefined
      : changeEvents.filter((e) => e.host === name && e.atMs > destroyedAt && e.atMs <= start.calledAtMs).pop();
    let end: Mark | undefined;
    for (let waited = 0; start !== undefined && end === undefined && waited < 10_000; waited += 20) {
      end = marks.find((m) => m.key === key && m.msg === 'reconciled' && m.detail !== 'nextStep' && m.atMs > start.returnedAtMs);
      if (end === undefined) await new Promise((r) => setTimeout(r, 20));
    }
    if (event !== undefined && start !== undefined && end !== undefined) {
      // The repair as the daemon lived it: that event, the start call, the end of the pass after
      // the start. Time inside provider calls (libvirtd, QEMU starting) is the tool's; the rest
      // (queue, reconcile, status) is hyperlet's.
      beforeStart.push(start.calledAtMs - event.atMs - toolMsBetween(name, event.atMs, start.calledAtMs));
      afterStart.push(end.atMs - start.returnedAtMs - toolMsBetween(name, start.returnedAtMs, end.atMs));
      const tool = toolMsBetween(name, event.atMs, end.atMs);
      toolTime.push(tool);
      hyperletShare.push(end.atMs - event.atMs - tool);
    }
    if (process.env.BENCH_DEBUG !== undefined) {
      const around = (t: number): boolean => t > destroyedAt - 100;
      console.error(JSON.stringify({
        try: i, destroyedAt, stoppedAt, now: performance.now(),
        events: changeEvents.filter((e) => e.host === name && around(e.atMs)),
        calls: providerCalls.filter((c) => c.host === name && around(c.calledAtMs)),
        marks: marks.filter((m) => m.key === key && around(m.atMs)),
      }));
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const split = (label: string, values: readonly number[]): string =>
    `${label} p50 ${ms(percentile(values, 50))} p99 ${ms(percentile(values, 99))}`;
  console.log(`drift reaction (virsh destroy → running again, via hyperlet run), ${DRIFT_TRIES} tries`);
  console.log(`  p50 ${ms(percentile(reactions, 50))}  p99 ${ms(percentile(reactions, 99))}  (target p99 < 500 ms)`);
  console.log(`  of which QEMU start alone (DOMAIN_CREATE, 8 tries): p50 ${ms(percentile(starts, 50))}  p99 ${ms(percentile(starts, 99))}`);
  console.log(`  split, ${hyperletShare.length} of ${DRIFT_TRIES} tries timed inside the daemon`
    + ' (the event that found it off → the pass after the start):');
  console.log(`    ${split('provider calls (libvirtd, QEMU)       ', toolTime)}`);
  console.log(`    ${split('hyperlet before the start call        ', beforeStart)}`);
  console.log(`    ${split('hyperlet after it, to status          ', afterStart)}`);
  console.log(`    ${split('hyperlet\'s own share                 ', hyperletShare)}  (target p99 < 50 ms)`);
  rmSync(path.join(manifests, `${name}.yaml`));
  return {
    driftP50Ms: percentile(reactions, 50), driftP99Ms: percentile(reactions, 99),
    qemuStartP50Ms: percentile(starts, 50), qemuStartP99Ms: percentile(starts, 99),
    driftToolP50Ms: percentile(toolTime, 50), driftBeforeStartP99Ms: percentile(beforeStart, 99),
    driftAfterStartP99Ms: percentile(afterStart, 99),
    driftHyperletShareP50Ms: percentile(hyperletShare, 50), driftHyperletShareP99Ms: percentile(hyperletShare, 99),
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
  // The daemon's own provider (its own libvirt session), with start calls timed for the drift split.
  const daemonProvider = new LibvirtProvider({ logger: daemonLogger, client: new LibvirtClient({ logger: daemonLogger }) });
  const daemon = new Daemon({
    sources: [{ type: 'dir', location: manifests }], statePath: path.join(dir, 'state.db'), lxcpath: '/nonexistent',
    libvirtUri: 'qemu:///system', kinds: ['VirtualMachine'], node: 'bench', nodeFilter: false, resyncMs: 60_000,
    concurrency: CONCURRENCY, qps: 100, burst: 100, shutdownTimeoutMs: 30_000,
    providers: new Map<Kind, Provider>([['VirtualMachine', timed(daemonProvider)]]),
  }, daemonLogger);
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
