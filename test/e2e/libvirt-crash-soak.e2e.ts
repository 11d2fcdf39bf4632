/**
 * A random crash soak against the real libvirtd: `hyperlet run` (dir source) converging 4 small
 * VMs (hypervisor qemu, one or two volumes each, waiting in the firmware) is killed with SIGKILL 40
 * times, 0.1 to 1.5 s apart, while the files change now and then (vCPUs, a file removed or put
 * back); then it runs undisturbed and must reach the exact end state (support/libvirt-end-state.ts),
 * and deleting every file must remove every domain and volume it made and nothing else.
 * The seed is printed; HYPERLET_SOAK_SEED=N replays one run. Needs libvirtd (scripts/setup-host.sh).
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DaemonProcess, randomBetween, seededRandom } from './support/crash-daemon.js';
import { type DeclaredVm, LibvirtEndState } from './support/libvirt-end-state.js';
import { waitForEndState } from './support/lxc-end-state.js';

const PREFIX = `hlsoak-${randomBytes(2).toString('hex')}`;
const VMS = 4;
const KILLS = 40;
const n = (i: number): string => `${PREFIX}-${i}`;

describe('crash soak: libvirt (40 kill -9 at random instants, then exact convergence)', function () {
  this.timeout(900_000);
  const seed = Number(process.env.HYPERLET_SOAK_SEED ?? randomBytes(4).readUInt32LE(0));
  const random = seededRandom(seed);
  let tmp = '';
  let manifests = '';
  let daemon: DaemonProcess | undefined;
  let starts = 0;
  let end: LibvirtEndState;
  const specs = new Map<string, DeclaredVm | undefined>();

  function start(): DaemonProcess {
    starts += 1;
    return DaemonProcess.start([
      '--source', `dir:${manifests}`, '--state', join(tmp, 'state', 'state.db'), '--http', 'off', '--lxcpath', join(tmp, 'lxc'),
      '--kinds', 'VirtualMachine', '--resync', '10s', '--log-level', 'info',
    ], join(tmp, `daemon-${starts % 3}.log`));
  }
  const write = async (name: string, spec: DeclaredVm | undefined): Promise<void> => {
    specs.set(name, spec);
    if (spec === undefined) {
      end.declared.delete(name);
      await unlink(join(manifests, `${name}.yaml`)).catch(() => undefined);
    } else {
      end.declared.set(name, spec);
      await writeFile(join(manifests, `${name}.yaml`), end.manifest(name, spec));
    }
  };
  const initial = (i: number): DeclaredVm => ({ cpu: 1, disks: i % 2 === 0 ? ['data'] : ['data', 'logs'] });
  /** One change to the files, chosen by the seed: vCPUs raised, state, or a file removed or put back as first declared. */
  const mutate = async (): Promise<string> => {
    const i = randomBetween(random, 0, VMS - 1);
    const name = n(i);
    const spec = specs.get(name);
    if (spec === undefined) {
      await write(name, initial(i));
      return `${name} put back`;
    }
    const choice = randomBetween(random, 0, 2);
    if (choice === 0 && spec.cpu === 1) {
      await write(name, { ...spec, cpu: 2 });
      return `${name} vCPUs`;
    }
    if (choice <= 1) {
      await write(name, { ...spec, state: spec.state === 'Stopped' ? 'Running' : 'Stopped' });
      return `${name} state`;
    }
    await write(name, undefined);
    return `${name} removed`;
  };

  before(async () => {
    if (!existsSync('/run/libvirt/libvirt-sock')) throw new Error('cannot run: /run/libvirt/libvirt-sock is missing; run scripts/setup-host.sh');
    tmp = await mkdtemp(join(tmpdir(), 'hyperlet-libvirt-soak-'));
    manifests = join(tmp, 'manifests');
    await mkdir(manifests);
    end = new LibvirtEndState(PREFIX, join(tmp, 'state', 'state.db'));
    await end.defineForeignDomain(join(tmp, 'foreign.xml'));
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') console.error(`seed ${seed} (HYPERLET_SOAK_SEED replays it)\n${await daemon?.tail() ?? ''}`);
  });

  after(async () => {
    await daemon?.kill();
    await end.cleanUp();
    if (tmp !== '') await rm(tmp, { recursive: true, force: true });
  });

  it(`converges exactly after ${KILLS} kills at random instants`, async () => {
    for (let i = 0; i < VMS; i++) await write(n(i), initial(i));
    const changes: string[] = [];
    const soakStarted = Date.now();
    for (let kill = 1; kill <= KILLS; kill++) {
      daemon = start();
      await new Promise((r) => setTimeout(r, randomBetween(random, 100, 1_500)));
      await daemon.kill('SIGKILL');
      if (kill === 10) await end.addForeignVolume().catch(() => undefined); // the pool exists by now, or the check waits for it
      if (kill % 8 === 4) changes.push(await mutate());
    }
    const soakMs = Date.now() - soakStarted;
    daemon = start();
    const convergedMs = await waitForEndState(() => end.problems(), 180_000, async () => await daemon?.tail() ?? '');
    for (const name of [...specs.keys()]) await write(name, undefined);
    const deletedMs = await waitForEndState(() => end.problems(), 120_000, async () => await daemon?.tail() ?? '');
    console.log(`      libvirt soak: seed ${seed}, ${KILLS} kills in ${(soakMs / 1000).toFixed(1)} s, changes: ${changes.join(', ')}; `
      + `exact end state ${(convergedMs / 1000).toFixed(1)} s after the last restart, all deleted ${(deletedMs / 1000).toFixed(1)} s after the files went`);
  });
});
