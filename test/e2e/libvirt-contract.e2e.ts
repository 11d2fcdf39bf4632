/**
 * The provider contract (test/conformance/provider-contract.ts) against LibvirtProvider and the
 * real libvirtd (qemu:///system, `hypervisor: qemu`): domains with one empty 100 MiB qcow2 disk
 * and no kernel, which reach "running" in the firmware, in a storage pool of their own. Every
 * domain, volume and pool is named hyperlet-contract-PID… and removed in after().
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import type { VirtualMachine } from '../../src/api/v1alpha1/types.js';
import { validateObject } from '../../src/api/v1alpha1/validate.js';
import { LibvirtClient } from '../../src/providers/libvirt/libvirt-client.js';
import { LibvirtProvider } from '../../src/providers/libvirt/libvirt-provider.js';
import { type Desired, hostNameOf, specHashOf } from '../../src/store/desired.js';
import { objectKey } from '../../src/store/object-key.js';
import { describeProviderContract } from '../conformance/provider-contract.js';

const run = promisify(execFile);
const PREFIX = `hyperlet-contract-${process.pid}`;
const POOL = PREFIX;
const POOL_ROOT = '/var/lib/hyperlet/pools';
const CONSOLE_DIR = '/var/log/hyperlet/console';
const logger = pino({ level: process.env.HYPERLET_TEST_LOG ?? 'silent' });

async function virsh(...args: string[]): Promise<string> {
  try {
    return (await run('virsh', ['-c', 'qemu:///system', ...args], { timeout: 60_000 })).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`cannot run virsh ${args.join(' ')}: ${e.stderr ?? e.message}`);
  }
}

/**
 * Runs create of `d` on a LibvirtProvider whose connection refuses the `nth` call of `method`
 * (that call never reaches libvirtd), as a hyperlet killed just before it would leave the host.
 */
async function cutCreate(d: Desired<'VirtualMachine'>, method: 'domainDefineXml' | 'storageVolCreateXml', nth: number): Promise<void> {
  const client = new LibvirtClient({ logger });
  let calls = 0;
  const cutting = new Proxy(client, {
    get(target, prop, receiver): unknown {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      const fn = value as (...args: unknown[]) => unknown;
      if (prop !== method) return fn.bind(target);
      return async (...args: unknown[]) => {
        calls += 1;
        if (calls === nth) throw new Error(`killed before ${method} #${nth}`);
        return fn.apply(target, args);
      };
    },
  });
  const provider = new LibvirtProvider({ logger, client: cutting, consoleDir: CONSOLE_DIR, poolRoot: POOL_ROOT });
  try {
    const outcome = await provider.create(d, AbortSignal.timeout(60_000)).then(() => 'created', (err: unknown) => err);
    if (outcome === 'created' || calls < nth) throw new Error(`create of ${d.hostName} never reached ${method} #${nth}`);
  } finally {
    await provider.close();
  }
}

describe('LibvirtProvider against qemu:///system', function () {
  this.timeout(300_000);
  let scratch = '';
  /** The connection of the provider under test, kept for what the helpers read through it. */
  const clients: LibvirtClient[] = [];
  const hostNames = new Set<string>();

  const makeDesired = (label: string): Desired<'VirtualMachine'> => {
    const result = validateObject({
      apiVersion: 'hyperlet.io/v1alpha1', kind: 'VirtualMachine', metadata: { name: `${PREFIX}-${label}`, namespace: 'default' },
      // Firmware only, stopped by destroy at once: no guest, no waiting.
      spec: {
        hypervisor: 'qemu', resources: { cpu: 1, memory: '64Mi' }, gracefulStopSeconds: 0,
        disks: [{ name: 'data', pool: POOL, size: '100Mi' }],
      },
    });
    if (!result.ok) throw new Error(`test object invalid: ${JSON.stringify(result.issues)}`);
    const object = result.object as VirtualMachine;
    const d: Desired<'VirtualMachine'> = {
      key: objectKey('dir', 'default', 'VirtualMachine', object.metadata.name), source: 'dir', object,
      id: randomUUID(), generation: 1, specHash: specHashOf(object.spec), hostName: hostNameOf(object),
    };
    hostNames.add(d.hostName);
    return d;
  };

  const volumesOf = async (hostName: string): Promise<string[]> => {
    const listed = await virsh('vol-list', '--pool', POOL).catch(() => ''); // no pool yet: no volumes
    return listed.split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter((v) => v.startsWith(`${hostName}-`));
  };

  before(async () => {
    if (!existsSync('/run/libvirt/libvirt-sock')) {
      throw new Error('cannot run: /run/libvirt/libvirt-sock is missing; run scripts/setup-host.sh');
    }
    scratch = await mkdtemp(path.join(tmpdir(), 'hyperlet-contract-libvirt-'));
  });

  after(async () => {
    for (const name of hostNames) {
      await virsh('destroy', name).catch(() => undefined);
      await virsh('undefine', name).catch(() => undefined);
      rmSync(path.join(CONSOLE_DIR, `${name}.log`), { force: true });
    }
    for (const vol of (await virsh('vol-list', '--pool', POOL).catch(() => '')).split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '')) {
      if (vol.startsWith(PREFIX)) await virsh('vol-delete', '--pool', POOL, vol).catch(() => undefined);
    }
    await virsh('pool-destroy', POOL).catch(() => undefined);
    await virsh('pool-undefine', POOL).catch(() => undefined);
    rmSync(path.join(POOL_ROOT, POOL), { recursive: true, force: true });
    if (scratch !== '') await rm(scratch, { recursive: true, force: true });
    for (const c of clients) await c.close();
  });

  const makeProvider = (): LibvirtProvider => {
    const client = new LibvirtClient({ logger });
    clients.push(client);
    return new LibvirtProvider({ logger, client, consoleDir: CONSOLE_DIR, poolRoot: POOL_ROOT });
  };

  describeProviderContract('LibvirtProvider', makeProvider, makeDesired, {
    holdState: 'Paused',
    createUnowned: async (_provider, d) => {
      const file = path.join(scratch, `${d.hostName}.xml`);
      const xml = `<domain type="qemu"><name>${d.hostName}</name><memory unit="KiB">65536</memory>`
        + '<os><type arch="x86_64">hvm</type></os></domain>';
      await writeFile(file, xml);
      await virsh('define', file);
    },
    removeUnowned: async (_provider, d) => {
      await virsh('destroy', d.hostName).catch(() => undefined);
      await virsh('undefine', d.hostName).catch(() => undefined);
    },
    fingerprint: async (_provider, d) => ({
      xml: await virsh('dumpxml', '--inactive', d.hostName),
      state: (await virsh('domstate', d.hostName)).trim(),
      volumes: await volumesOf(d.hostName),
    }),
    killedCreates: {
      'a domain defined without its volume': { seen: 'partial', leave: (_provider, d) => cutCreate(d, 'storageVolCreateXml', 1) },
      'its volume made, the domain still marked partial': { seen: 'partial', leave: (_provider, d) => cutCreate(d, 'domainDefineXml', 2) },
      'a volume of its own left without a domain': {
        seen: 'nothing',
        leave: async (_provider, d) => {
          // What a domain undefined behind hyperlet's back leaves: the object's volume, named with its id.
          await cutCreate(d, 'domainDefineXml', 2);
          await virsh('undefine', d.hostName);
        },
      },
    },
    leftovers: async (_provider, d) => [
      ...((await virsh('domstate', d.hostName).then(() => true, () => false)) ? [`domain ${d.hostName}`] : []),
      ...(await volumesOf(d.hostName)).map((v) => `volume ${v}`),
    ],
    stopBehindBack: async (_provider, d) => {
      await virsh('destroy', d.hostName);
    },
    changeWithinMs: 5_000,
  });
});
