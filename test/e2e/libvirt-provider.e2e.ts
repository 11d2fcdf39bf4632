/**
 * LibvirtProvider against the real libvirtd (qemu:///system) with real QEMU guests under
 * type='qemu': the tiny guest from scripts/build-test-guest.sh boots, prints its first line on
 * the serial console and powers off on the ACPI power button. Every domain, volume, pool and
 * network is named hyperlet-e2e-PID-… and removed in after(), even on failure.
 *
 * The libvirtd-restart test stops the running libvirtd (by the pid in /run/libvirtd.pid) and
 * starts `libvirtd -d` again, as scripts/setup-host.sh does; running domains survive it.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import yaml from 'js-yaml';
import { specFields, type SpecFields } from '../../src/api/v1alpha1/fields.js';
import { validateObject } from '../../src/api/v1alpha1/validate.js';
import type { VirtualMachine, VirtualMachineSpec } from '../../src/api/v1alpha1/types.js';
import { isTerminalError } from '../../src/shared/errors.js';
import { hostNameOf, specHashOf, type Desired } from '../../src/store/desired.js';
import { objectKey } from '../../src/store/object-key.js';
import { isProviderUnavailableError, type FieldChange, type ObservedInstance } from '../../src/providers/provider.js';
import { deriveMac, parseDomainXml, volumeNameFor } from '../../src/providers/libvirt/domain-xml.js';
import { LibvirtProvider } from '../../src/providers/libvirt/libvirt-provider.js';
import { LibvirtClient } from '../../src/providers/libvirt/libvirt-client.js';
import { REBOOT_REQUEST_ANNOTATION } from '../../src/shared/annotations.js';
import { until } from '../support/until.js';

const run = promisify(execFile);
const PREFIX = `hyperlet-e2e-${process.pid}`;
const POOL = `hyperlet-e2e-${process.pid}`;
const POOL_ROOT = '/var/lib/hyperlet/pools';
const NETWORK = `hyperlet-e2e-${process.pid}-net`;
const BRIDGE = `hle2e${process.pid % 100000}`;
const CONSOLE_DIR = '/var/log/hyperlet/console';
const logger = pino({ level: process.env.HYPERLET_TEST_LOG ?? 'silent' });
const signal = new AbortController().signal;

async function virsh(...args: string[]): Promise<string> {
  try {
    const { stdout } = await run('virsh', ['-c', 'qemu:///system', ...args], { timeout: 60_000 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`cannot run virsh ${args.join(' ')}: ${e.stderr ?? e.message}`);
  }
}

const desiredVm = (name: string, spec: Partial<VirtualMachineSpec>, annotations?: Record<string, string>, id: string = randomUUID()): Desired<'VirtualMachine'> => {
  const fullSpec: VirtualMachineSpec = {
    state: 'Running', hypervisor: 'qemu', resources: { cpu: 1, memory: '128Mi' }, gracefulStopSeconds: 30,
    updatePolicy: 'Live', deletionPolicy: 'Delete', ...spec,
  };
  const object: VirtualMachine = {
    apiVersion: 'hyperlet.io/v1alpha1', kind: 'VirtualMachine',
    metadata: { name, namespace: 'default', ...(annotations === undefined ? {} : { annotations }) }, spec: fullSpec,
  };
  return { key: objectKey('dir', 'default', 'VirtualMachine', name), source: 'dir', object, id, generation: 1, specHash: specHashOf(fullSpec), hostName: hostNameOf(object) };
};

const withSpec = (d: Desired<'VirtualMachine'>, spec: Partial<VirtualMachineSpec>, annotations?: Record<string, string>): Desired<'VirtualMachine'> => {
  const next = desiredVm(d.object.metadata.name, { ...d.object.spec, ...spec }, annotations ?? d.object.metadata.annotations, d.id);
  return { ...next, generation: d.generation + 1 };
};

/** The changes plan() would compute, classified by the provider. */
function changesOf(provider: LibvirtProvider, d: Desired<'VirtualMachine'>, observed: ObservedInstance): FieldChange[] {
  const want = specFields('VirtualMachine', d.object.spec);
  const apply: Record<string, 'live' | 'restart'> = { 'resources.memory': 'live', 'resources.cpu': 'live', disks: 'restart', networks: 'restart', boot: 'restart' };
  return Object.keys(want).filter((k) => want[k] !== observed.fields[k]).map((k) => {
    const c: FieldChange = { path: k, from: observed.fields[k], to: want[k], apply: apply[k] ?? 'restart' };
    return { ...c, apply: provider.applyModeOf(c, observed) };
  });
}

const consoleOf = (hostName: string): string => {
  const file = path.join(CONSOLE_DIR, `${hostName}.log`);
  return existsSync(file) ? readFileSync(file, 'utf8') : '';
};

describe('LibvirtProvider against qemu:///system', function () {
  this.timeout(600_000);
  let provider: LibvirtProvider;
  let client: LibvirtClient;
  let guest: { kernel: string; initrd: string };
  const created: Desired<'VirtualMachine'>[] = [];
  const names: string[] = [];
  const changeLog: string[] = [];
  const changesAbort = new AbortController();

  const track = (d: Desired<'VirtualMachine'>): Desired<'VirtualMachine'> => {
    created.push(d);
    return d;
  };
  const observe = async (d: Desired<'VirtualMachine'>): Promise<ObservedInstance> => {
    const o = await provider.observe(d, signal);
    if (o === undefined) throw new Error(`domain ${d.hostName} does not exist`);
    return o;
  };
  const bootSpec = (cmdline: string): Partial<VirtualMachineSpec> => ({ boot: { kernel: guest.kernel, initrd: guest.initrd, cmdline } });

  before(async () => {
    if (!existsSync('/run/libvirt/libvirt-sock')) throw new Error('cannot run: /run/libvirt/libvirt-sock is missing; run scripts/setup-host.sh');
    const { stdout } = await run('bash', [path.resolve('scripts/build-test-guest.sh')], { timeout: 600_000 });
    const dir = stdout.trim().split('\n').pop() ?? '';
    guest = { kernel: path.join(dir, 'vmlinuz'), initrd: path.join(dir, 'initrd.img') };
    client = new LibvirtClient({ logger });
    provider = new LibvirtProvider({ logger, client, consoleDir: CONSOLE_DIR, poolRoot: POOL_ROOT });
    await provider.probe(signal);
    void (async () => {
      for await (const name of provider.changes(changesAbort.signal)) changeLog.push(name);
    })();
  });

  after(async () => {
    changesAbort.abort();
    for (const d of created) {
      try {
        await provider.delete(d, signal);
      } catch (err) {
        console.error(`cleanup: cannot delete ${d.hostName}: ${String(err)}`);
      }
    }
    await virsh('net-destroy', NETWORK).catch(() => undefined);
    await virsh('net-undefine', NETWORK).catch(() => undefined);
    await virsh('pool-destroy', POOL).catch(() => undefined);
    await virsh('pool-undefine', POOL).catch(() => undefined);
    rmSync(path.join(POOL_ROOT, POOL), { recursive: true, force: true });
    for (const n of names) rmSync(path.join(CONSOLE_DIR, `${n}.log`), { force: true });
    await provider?.close();
  });

  const vmName = (suffix: string): string => {
    const n = `${PREFIX}-${suffix}`;
    names.push(n);
    return n;
  };

  it('probe fails with ProviderUnavailableError when the socket is absent', async () => {
    const p = new LibvirtProvider({ logger, client: new LibvirtClient({ logger, socketPath: '/run/libvirt/no-such-sock' }) });
    const err: unknown = await p.probe(signal).then(() => undefined, (e: unknown) => e);
    expect(isProviderUnavailableError(err)).to.equal(true);
    await p.close();
  });

  describe('a booting guest', () => {
    let d: Desired<'VirtualMachine'>;

    it('is created stopped, owned, and observed exactly as declared', async () => {
      d = track(desiredVm(vmName('boot'), { ...bootSpec('console=ttyS0 quiet'), resources: { cpu: 1, memory: '128Mi', maxMemory: '256Mi' } }));
      await provider.create(d, signal);
      const o = await observe(d);
      expect(o.state).to.equal('Stopped');
      expect(o.ownerId).to.equal(d.id);
      expect(o.specHash).to.equal(d.specHash);
      expect(o.fields).to.deep.equal(specFields('VirtualMachine', d.object.spec));
      expect((await virsh('domuuid', d.hostName)).trim()).to.equal(d.id);
    });

    it('boots: the console shows the guest\'s first line', async () => {
      const note = await provider.setState(d, 'Running', await observe(d), signal);
      expect(note).to.equal('started');
      await until('the guest\'s first line', () => (consoleOf(d.hostName).includes('hyperlet-guest: up ignore_acpi=0') ? true : undefined), 120_000, 200);
      const o = await observe(d);
      expect(o.state).to.equal('Running');
      expect(o.details?.libvirtState).to.equal('running');
    });

    it('applies a memory change live, within maxMemory', async () => {
      const d2 = withSpec(d, { resources: { cpu: 1, memory: '192Mi', maxMemory: '256Mi' } });
      const o = await observe(d2);
      const changes = changesOf(provider, d2, o);
      expect(changes.map((c) => [c.path, c.apply])).to.deep.equal([['resources.memory', 'live']]);
      await provider.update(d2, changes, o, signal);
      await until('the balloon to reach 192 MiB', async () => ((await observe(d2)).fields['resources.memory'] === 192 * 2 ** 20 ? true : undefined), 60_000, 200);
      expect((await observe(d2)).state, 'no restart').to.equal('Running');
      expect(await virsh('dumpxml', '--inactive', d.hostName)).to.include('<currentMemory unit=\'KiB\'>196608</currentMemory>');
      d = d2;
    });

    it('reboots once when the reboot-request annotation changes', async () => {
      const d2 = withSpec(d, {}, { [REBOOT_REQUEST_ANNOTATION]: '2026-11-22T00:00:00Z' });
      const note = await provider.setState(d2, 'Running', await observe(d2), signal);
      expect(note).to.match(/^rebooted on request/);
      await until('a second boot on the console', () => (consoleOf(d.hostName).split('hyperlet-guest: up').length >= 3 ? true : undefined), 120_000, 200);
      const o = await observe(d2);
      expect(o.details?.rebootRequest).to.equal('2026-11-22T00:00:00Z');
      expect(await provider.setState(d2, 'Running', o, signal), 'the same token does not reboot again').to.equal(undefined);
      d = d2;
    });

    it('stops through ACPI (reason shutdown)', async () => {
      const note = await provider.setState(d, 'Stopped', await observe(d), signal);
      expect(note).to.match(/^shut down by ACPI/);
      const o = await observe(d);
      expect(o.state).to.equal('Stopped');
      expect(o.details?.libvirtReason).to.equal('shutdown');
      expect(o.details?.lastStop).to.equal(note);
      expect(consoleOf(d.hostName)).to.include('power button, powering off');
    });
  });

  it('destroys a guest that ignores ACPI after gracefulStopSeconds', async () => {
    const d = track(desiredVm(vmName('noacpi'), { ...bootSpec('console=ttyS0 quiet hyperlet.ignore_acpi=1'), gracefulStopSeconds: 3 }));
    await provider.create(d, signal);
    await provider.setState(d, 'Running', await observe(d), signal);
    await until('the guest\'s first line', () => (consoleOf(d.hostName).includes('hyperlet-guest: up ignore_acpi=1') ? true : undefined), 120_000, 200);
    const started = Date.now();
    const note = await provider.setState(d, 'Stopped', await observe(d), signal);
    expect(note).to.match(/^destroyed after 3 s/);
    expect(Date.now() - started).to.be.within(2_900, 10_000);
    const o = await observe(d);
    expect(o.state).to.equal('Stopped');
    expect(o.details?.libvirtReason).to.equal('destroyed');
  });

  describe('storage and network', () => {
    let d: Desired<'VirtualMachine'>;
    const volume = (): string => volumeNameFor(d.hostName, 'data', d.id);
    const capacity = async (): Promise<number> => {
      const out = await virsh('vol-info', '--bytes', '--pool', POOL, volume());
      return Number(/Capacity:\s+(\d+)/.exec(out)?.[1]);
    };

    before(async () => {
      const xml = `<network><name>${NETWORK}</name><bridge name="${BRIDGE}" stp="off"/></network>`; // no <ip>, no <forward>: isolated, no address
      const net = await client.networkDefineXml(xml);
      await client.networkCreate(net);
    });

    it('creates a qcow2 volume in a pool it creates, and attaches a NIC with the model and a derived MAC', async () => {
      d = track(desiredVm(vmName('disk'), {
        disks: [{ name: 'data', pool: POOL, bus: 'virtio', size: '100Mi' }],
        networks: [{ network: NETWORK, model: 'e1000' }],
      }));
      await provider.create(d, signal);
      expect(existsSync(path.join(POOL_ROOT, POOL, volume())), 'dir pool under /var/lib/hyperlet/pools').to.equal(true);
      expect(await capacity()).to.equal(100 * 2 ** 20);
      expect((await observe(d)).fields).to.deep.equal(specFields('VirtualMachine', d.object.spec));
      await provider.setState(d, 'Running', await observe(d), signal);
      const live = parseDomainXml(await virsh('dumpxml', d.hostName));
      expect(live.interfaces.map((i) => [i.type, i.network, i.model, i.mac])).to.deep.equal([['network', NETWORK, 'e1000', deriveMac(d.id, 0)]]);
      const iflist = await virsh('domiflist', d.hostName);
      expect(iflist).to.include(NETWORK).and.to.include(deriveMac(d.id, 0));
    });

    it('attaches a NIC to a host bridge (one the test creates, with no address)', async () => {
      const hostBridge = `hlb${process.pid % 100000}`;
      await run('ip', ['link', 'add', hostBridge, 'type', 'bridge'], { timeout: 10_000 });
      try {
        await run('ip', ['link', 'set', hostBridge, 'up'], { timeout: 10_000 });
        const b = track(desiredVm(vmName('bridge'), { networks: [{ bridge: hostBridge, model: 'rtl8139', mac: '52:54:00:AB:CD:EF' }] }));
        await provider.create(b, signal);
        await provider.setState(b, 'Running', await observe(b), signal);
        const live = parseDomainXml(await virsh('dumpxml', b.hostName));
        expect(live.interfaces.map((i) => [i.type, i.bridge, i.model, i.mac])).to.deep.equal([['bridge', hostBridge, 'rtl8139', '52:54:00:ab:cd:ef']]);
        expect((await observe(b)).fields.networks).to.equal(specFields('VirtualMachine', b.object.spec).networks);
        const { stdout } = await run('ip', ['-o', 'link', 'show', 'master', hostBridge], { timeout: 10_000 });
        expect(stdout, 'the VM\'s tap is enslaved to the bridge').to.match(/vnet\d+/);
        await provider.delete(b, signal);
      } finally {
        await run('ip', ['link', 'del', hostBridge], { timeout: 10_000 }).catch(() => undefined);
      }
    });

    it('grows the disk live and refuses to shrink it', async () => {
      const grown = withSpec(d, { disks: [{ name: 'data', pool: POOL, bus: 'virtio', size: '200Mi' }] });
      const o = await observe(grown);
      const changes = changesOf(provider, grown, o);
      expect(changes.map((c) => [c.path, c.apply])).to.deep.equal([['disks', 'live']]);
      await provider.update(grown, changes, o, signal);
      expect(await capacity()).to.equal(200 * 2 ** 20);
      expect((await observe(grown)).fields.disks).to.equal(specFields('VirtualMachine', grown.object.spec).disks);
      const shrunk = withSpec(grown, { disks: [{ name: 'data', pool: POOL, bus: 'virtio', size: '150Mi' }] });
      const err: unknown = await provider.update(shrunk, changesOf(provider, shrunk, await observe(shrunk)), await observe(shrunk), signal).then(() => undefined, (e: unknown) => e);
      expect(isTerminalError(err) && err.reason === 'DiskShrinkRefused').to.equal(true);
      expect(await capacity()).to.equal(200 * 2 ** 20);
      d = grown;
    });

    it('refuses a missing pool it may not create', async () => {
      const x = desiredVm(vmName('nopool'), { disks: [{ name: 'data', pool: `operators-${process.pid}`, bus: 'virtio', size: '100Mi' }] });
      const err: unknown = await provider.create(x, signal).then(() => undefined, (e: unknown) => e);
      expect(isTerminalError(err) && err.reason === 'PoolNotFound').to.equal(true);
      expect(await provider.observe(x, signal)).to.equal(undefined);
    });

  });

  it('adds a vCPU live, within maxCpu', async () => {
    const d = track(desiredVm(vmName('cpu'), { resources: { cpu: 1, maxCpu: 2, memory: '128Mi' } }));
    await provider.create(d, signal);
    await provider.setState(d, 'Running', await observe(d), signal);
    const d2 = withSpec(d, { resources: { cpu: 2, maxCpu: 2, memory: '128Mi' } });
    const o = await observe(d2);
    const changes = changesOf(provider, d2, o);
    expect(changes.map((c) => [c.path, c.apply])).to.deep.equal([['resources.cpu', 'live']]);
    await provider.update(d2, changes, o, signal);
    const after = await observe(d2);
    expect([after.state, after.fields['resources.cpu']]).to.deep.equal(['Running', 2]);
    expect(after.fields).to.deep.equal(specFields('VirtualMachine', d2.object.spec));
  });

  it('sees a domain undefined behind its back through events', async () => {
    const d = track(desiredVm(vmName('drift'), {}));
    await provider.create(d, signal);
    expect((await observe(d)).ownerId).to.equal(d.id);
    changeLog.length = 0;
    await virsh('undefine', d.hostName);
    await until('a change for the undefined domain', () => (changeLog.includes(d.hostName) ? true : undefined), 5_000, 200);
    expect(await provider.observe(d, signal)).to.equal(undefined);
    expect((await provider.observeAll(signal)).has(d.hostName)).to.equal(false);
  });

  it('reconnects when libvirtd restarts, and events still arrive', async () => {
    const d = track(desiredVm(vmName('restart'), {}));
    await provider.create(d, signal);
    const reconnected = new Promise<void>((resolve) => client.once('reconnected', resolve));
    const pid = Number(readFileSync('/run/libvirtd.pid', 'utf8').trim());
    process.kill(pid, 'SIGTERM');
    await until('libvirtd to exit', () => {
      try { process.kill(pid, 0); return undefined; } catch { return true; }
    }, 30_000, 200);
    await run('libvirtd', ['-d'], { timeout: 30_000 });
    await until('the libvirt socket', () => (existsSync('/run/libvirt/libvirt-sock') ? true : undefined), 30_000, 200);
    await reconnected;
    changeLog.length = 0;
    await provider.setState(d, 'Running', await observe(d), signal);
    await until('an event after the restart', () => (changeLog.includes(d.hostName) ? true : undefined), 10_000, 200);
    expect((await observe(d)).state).to.equal('Running');
  });

  it('writes <, >, &, ]]> and quotes exactly as declared', async () => {
    const nasty = `<>&]]>"'`;
    const d = track(desiredVm(vmName('xml'), {
      boot: { kernel: `/tmp/${PREFIX}/${nasty}/vmlinuz`, initrd: `/tmp/${PREFIX}/${nasty}/initrd`, cmdline: `console=ttyS0 x=${nasty} y="${nasty}"` },
    }, { 'example.com/note': `a ${nasty} b`, [REBOOT_REQUEST_ANNOTATION]: nasty }));
    await provider.create(d, signal);
    const p = parseDomainXml(await virsh('dumpxml', d.hostName));
    expect([p.kernel, p.initrd, p.cmdline]).to.deep.equal([d.object.spec.boot?.kernel, d.object.spec.boot?.initrd, d.object.spec.boot?.cmdline]);
    expect(p.marker?.annotations).to.deep.equal(d.object.metadata.annotations);
    expect(p.marker?.rebootRequest).to.equal(nasty);
    expect(p.disks.length + p.interfaces.length, 'nothing injected').to.equal(0);
    const fields: SpecFields = (await observe(d)).fields;
    expect(fields).to.deep.equal(specFields('VirtualMachine', d.object.spec));
  });

  it('boots examples/hello-vm.yaml (renamed, on the test pool) and removes it with its volume', async () => {
    const result = validateObject(yaml.load(readFileSync(path.resolve('examples/hello-vm.yaml'), 'utf8')));
    if (!result.ok) throw new Error(`examples/hello-vm.yaml is invalid: ${JSON.stringify(result.issues)}`);
    const spec = result.object.spec as VirtualMachineSpec;
    const d = track(desiredVm(vmName('example'), { ...spec, disks: (spec.disks ?? []).map((x) => ({ ...x, pool: POOL })) }, result.object.metadata.annotations));
    await provider.create(d, signal);
    await provider.setState(d, 'Running', await observe(d), signal);
    await until('the example\'s first line', () => (consoleOf(d.hostName).includes('hyperlet-guest: up') ? true : undefined), 120_000, 200);
    await provider.delete(d, signal);
    expect(await provider.observe(d, signal)).to.equal(undefined);
    expect(await virsh('vol-list', POOL)).to.not.include(d.hostName);
  });

  it('observeAll lists every domain with one list call, reading XML only for new ones', async () => {
    const first = await provider.observeAll(signal);
    const ours = [...first.values()].filter((o) => o.hostName.startsWith(PREFIX));
    expect(ours.length).to.be.greaterThan(0);
    const before = client.callCount;
    const second = await provider.observeAll(signal);
    expect(client.callCount - before, 'list + stats, no XML for cached domains').to.equal(2);
    expect([...second.keys()].sort()).to.deep.equal([...first.keys()].sort());
  });
});
