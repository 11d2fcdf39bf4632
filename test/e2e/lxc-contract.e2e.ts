/**
 * The provider contract (test/conformance/provider-contract.ts) against LxcProvider and the real
 * lxc-* tools: an isolated lxcpath under /tmp, busybox containers without a network. Needs root
 * and the lxc, lxc-templates and busybox-static packages (`make host`); without them it fails saying so.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import { API_VERSION } from '../../src/api/v1alpha1/group.js';
import { specFields } from '../../src/api/v1alpha1/fields.js';
import type { Container } from '../../src/api/v1alpha1/types.js';
import { validateObject } from '../../src/api/v1alpha1/validate.js';
import { containerDir, markerPath } from '../../src/providers/lxc/container-paths.js';
import { LxcProvider } from '../../src/providers/lxc/lxc-provider.js';
import { LxcTools } from '../../src/providers/lxc/lxc-tools.js';
import { MARKER_VERSION, writeMarker } from '../../src/providers/lxc/ownership-marker.js';
import { type Desired, hostNameOf, specHashOf } from '../../src/store/desired.js';
import { objectKey } from '../../src/store/object-key.js';
import { describeProviderContract } from '../conformance/provider-contract.js';
import { until } from '../support/until.js';

const run = promisify(execFile);
const logger = pino({ level: process.env.HYPERLET_TEST_LOG ?? 'silent' });
const suffix = randomBytes(3).toString('hex');

async function tool(name: string, args: string[]): Promise<string> {
  return (await run(name, args, { timeout: 60_000 })).stdout;
}

/** Pids of processes whose argv holds `command` followed somewhere by every one of `args`. */
async function pidsOf(command: string, args: readonly string[]): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (argv[0]?.endsWith(command) === true && args.every((a) => argv.includes(a))) pids.push(Number(entry));
  }
  return pids;
}

/** Connections lxc-monitord accepted for `lxcpath`: an lxc-monitor is listening once there is one. */
async function monitorConnections(lxcpath: string): Promise<number> {
  const lines = (await readFile('/proc/net/unix', 'utf8')).split('\n');
  // Num RefCount Protocol Flags Type St Inode Path; St 03 is connected, the path is @lxc/HASH/LXCPATH.
  return lines.filter((l) => {
    const cells = l.trim().split(/\s+/);
    return cells[5] === '03' && cells[7]?.endsWith(`/${lxcpath}`) === true;
  }).length;
}

describe('LxcProvider (real lxc-* tools)', function () {
  this.timeout(300_000);
  let lxcpath = '';
  let scratch = '';

  const makeDesired = (label: string): Desired<'Container'> => {
    const result = validateObject({
      apiVersion: API_VERSION, kind: 'Container', metadata: { name: `contract-${label}-${suffix}`, namespace: 'default' },
      // No network and a kill at once: nothing here waits for busybox's init to ignore the halt signal.
      spec: { template: 'busybox', network: [{ type: 'none' }], gracefulStopSeconds: 0 },
    });
    if (!result.ok) throw new Error(`test object invalid: ${JSON.stringify(result.issues)}`);
    const object = result.object as Container;
    return {
      key: objectKey('dir', 'default', 'Container', object.metadata.name), source: 'dir', object,
      id: `contract-${randomBytes(6).toString('hex')}`, generation: 1, specHash: specHashOf(object.spec), hostName: hostNameOf(object),
    };
  };

  before(async () => {
    if (process.getuid?.() !== 0) {
      throw new Error('the LXC e2e tests need root (lxc-start of privileged containers); run make test as root');
    }
    await access('/usr/share/lxc/templates/lxc-busybox').catch(() => {
      throw new Error('the LXC e2e tests need the busybox template: run make host (lxc-templates, busybox-static)');
    });
    lxcpath = await mkdtemp(join(tmpdir(), 'hyperlet-contract-lxc-'));
    scratch = await mkdtemp(join(tmpdir(), 'hyperlet-contract-scratch-'));
    await writeFile(join(scratch, 'empty-net.conf'), 'lxc.net.0.type = empty\n');
  });

  after(async () => {
    for (const name of await readdir(lxcpath).catch(() => [] as string[])) {
      await run('lxc-stop', ['-P', lxcpath, '-n', name, '-k'], { timeout: 30_000 }).catch(() => undefined);
      await run('lxc-destroy', ['-P', lxcpath, '-n', name], { timeout: 60_000 }).catch(() => undefined);
    }
    if (lxcpath !== '') await rm(lxcpath, { recursive: true, force: true });
    if (scratch !== '') await rm(scratch, { recursive: true, force: true });
  });

  describeProviderContract('LxcProvider', () => new LxcProvider({ lxcpath, logger, tools: new LxcTools({ logger }) }), makeDesired, {
    holdState: 'Frozen',
    createUnowned: async (_provider, d) => {
      await tool('lxc-create', ['-P', lxcpath, '-n', d.hostName, '-t', 'busybox', '-f', join(scratch, 'empty-net.conf')]);
    },
    removeUnowned: async (_provider, d) => {
      await run('lxc-stop', ['-P', lxcpath, '-n', d.hostName, '-k']).catch(() => undefined);
      await run('lxc-destroy', ['-P', lxcpath, '-n', d.hostName]).catch(() => undefined);
      await rm(containerDir(lxcpath, d.hostName), { recursive: true, force: true });
    },
    fingerprint: async (_provider, d) => {
      const dir = containerDir(lxcpath, d.hostName);
      return {
        files: (await readdir(dir)).sort(),
        config: await readFile(join(dir, 'config'), 'utf8'),
        marker: await readFile(markerPath(lxcpath, d.hostName), 'utf8').catch(() => null),
        lxc: (await tool('lxc-info', ['-P', lxcpath, '-n', d.hostName, '-s', '-p'])).trim(),
      };
    },
    killedCreates: {
      'lxc-create killed mid-way': {
        seen: 'partial',
        leave: async (provider, d) => {
          // Aborting kills lxc-create's process group and, unlike a failure, leaves the cleanup to the next pass: a killed hyperlet.
          const cut = new AbortController();
          const creating = provider.create(d, cut.signal).then(() => 'created', (err: unknown) => err);
          const running = async (): Promise<true | undefined> =>
            ((await pidsOf('lxc-create', ['-n', d.hostName, lxcpath])).length > 0 ? true : undefined);
          await until('lxc-create to run', running, 30_000, 10);
          cut.abort();
          const outcome = await creating;
          if (outcome === 'created') throw new Error('lxc-create finished before it could be killed');
        },
      },
      'only the directory and its incomplete marker': {
        seen: 'partial',
        leave: async (_provider, d) => {
          await mkdir(containerDir(lxcpath, d.hostName), { mode: 0o770 });
          await writeMarker(markerPath(lxcpath, d.hostName), {
            version: MARKER_VERSION, id: d.id, key: d.key, specHash: d.specHash, fields: specFields('Container', d.object.spec),
            complete: false, origin: 'created', updatedAt: new Date().toISOString(),
          });
        },
      },
    },
    leftovers: async (_provider, d) => [
      ...(await readdir(lxcpath)).filter((entry) => entry.includes(d.hostName)),
      ...(await pidsOf('lxc-create', ['-n', d.hostName, lxcpath])).map((pid) => `lxc-create pid ${pid}`),
    ],
    stopBehindBack: async (_provider, d) => {
      await tool('lxc-stop', ['-P', lxcpath, '-n', d.hostName, '-k']);
    },
    changesReady: async (provider) => {
      await until('lxc-monitor to run', () => provider.monitorPid, 10_000);
      const connected = async (): Promise<true | undefined> => ((await monitorConnections(lxcpath)) > 0 ? true : undefined);
      await until('lxc-monitor to reach lxc-monitord', connected, 10_000, 20);
    },
    changeWithinMs: 5_000,
  });
});
