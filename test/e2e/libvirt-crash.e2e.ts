/**
 * Crash points of the libvirt provider, one by one: `hyperlet run` (dir source, the real libvirtd,
 * hypervisor qemu) is started with one failpoint enabled, dies there by SIGKILL, is started again
 * without it, and the exact end state is asserted (support/libvirt-end-state.ts): every declared
 * domain defined once, complete, running, with its declared vCPUs live and persistent; exactly one
 * volume per declared disk and no orphan; the state DB holding exactly the declared objects; a
 * domain and a volume hyperlet does not own untouched. Needs libvirtd (scripts/setup-host.sh).
 */
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DaemonProcess } from './support/crash-daemon.js';
import { type DeclaredVm, LibvirtEndState, virsh } from './support/libvirt-end-state.js';
import { waitForEndState } from './support/lxc-end-state.js';

const PREFIX = `hlcrash-${randomBytes(2).toString('hex')}`;
const n = (letter: string): string => `${PREFIX}-${letter}`;

describe('crash points: libvirt provider (kill -9 exactly there, then restart)', function () {
  this.timeout(900_000);
  let tmp = '';
  let manifests = '';
  let daemon: DaemonProcess | undefined;
  let starts = 0;
  let end: LibvirtEndState;

  function start(failpoints: readonly string[] = []): DaemonProcess {
    starts += 1;
    return DaemonProcess.start([
      '--source', `dir:${manifests}`, '--state', join(tmp, 'state', 'state.db'), '--http', 'off', '--lxcpath', join(tmp, 'lxc'),
      '--kinds', 'VirtualMachine', '--resync', '10s', '--log-level', 'info',
    ], join(tmp, `daemon-${starts}.log`), failpoints);
  }

  const converged = async (): Promise<void> => {
    await waitForEndState(() => end.problems(), 90_000, async () => await daemon?.tail() ?? '');
  };

  /**
   * Runs `change` with the daemon armed at `point`, waits for it to die there, starts it again
   * without failpoints and waits for the exact end state.
   */
  async function crashAt(point: string, change: () => Promise<void>, beforeRestart?: () => Promise<void>): Promise<void> {
    await daemon?.kill();
    daemon = start([point]);
    await change();
    await daemon.diedAt(point);
    await beforeRestart?.();
    daemon = start();
    await converged();
  }

  const declare = async (name: string, spec: DeclaredVm): Promise<void> => {
    end.declared.set(name, spec);
    await writeFile(join(manifests, `${name}.yaml`), end.manifest(name, spec));
  };
  const undeclare = async (name: string): Promise<void> => {
    end.declared.delete(name);
    await unlink(join(manifests, `${name}.yaml`));
  };

  before(async () => {
    if (!existsSync('/run/libvirt/libvirt-sock')) throw new Error('cannot run: /run/libvirt/libvirt-sock is missing; run scripts/setup-host.sh');
    tmp = await mkdtemp(join(tmpdir(), 'hyperlet-libvirt-crash-'));
    manifests = join(tmp, 'manifests');
    await mkdir(manifests);
    end = new LibvirtEndState(PREFIX, join(tmp, 'state', 'state.db'));
    await end.defineForeignDomain(join(tmp, 'foreign.xml'));
    daemon = start();
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') console.error(await daemon?.tail() ?? '');
  });

  after(async () => {
    await daemon?.kill();
    await end.cleanUp();
    if (tmp !== '') await rm(tmp, { recursive: true, force: true });
  });

  it('pool: killed with the pool defined, before it is built and started', async () => {
    await crashAt('libvirt.pool.defined', () => declare(n('a'), { cpu: 1, disks: ['data'] }));
    // From now on a volume hyperlet does not own sits in the pool, beside a domain it does not own.
    await end.addForeignVolume();
  });
  it('create: killed with the domain defined as partial, before its volumes', () =>
    crashAt('libvirt.create.defined', () => declare(n('b'), { cpu: 1, disks: ['data'] })));
  it('create: killed between two volumes', () =>
    crashAt('libvirt.create.volume', () => declare(n('c'), { cpu: 1, disks: ['data', 'logs'] })));
  it('start: killed right after the domain started', () =>
    crashAt('libvirt.start.started', () => declare(n('d'), { cpu: 1, disks: ['data'] })));
  it('update: killed with the definition written, before the live change', () =>
    crashAt('libvirt.update.defined', () => declare(n('a'), { cpu: 2, disks: ['data'] })));
  it('update: killed with the live change made, before the live marker', () =>
    crashAt('libvirt.update.applied', () => declare(n('b'), { cpu: 2, disks: ['data'] })));
  it('update: killed with the volume of an added disk made, then the disk dropped again', () =>
    crashAt('libvirt.update.volume', () => declare(n('a'), { cpu: 2, disks: ['data', 'extra'] }),
      // Nothing but the domain's marker names that volume now; deleting the VM must still remove it.
      () => declare(n('a'), { cpu: 2, disks: ['data'], detached: ['extra'] })));
  it('stop: killed right after asking the guest to shut down (its deadline already stored)', () =>
    crashAt('libvirt.stop.requested', () => declare(n('b'), { cpu: 2, disks: ['data'], state: 'Stopped', gracefulStopSeconds: 5 })));
  it('stop: killed right after forcing the stop at the deadline', () =>
    crashAt('libvirt.stop.forced', () => declare(n('a'), { cpu: 2, disks: ['data'], detached: ['extra'], state: 'Stopped', gracefulStopSeconds: 3 })));
  it('delete: killed with the domain destroyed, before its volumes', () =>
    crashAt('libvirt.delete.destroyed', () => undeclare(n('c'))));
  it('delete: killed with the volumes deleted, before the domain is undefined', () =>
    crashAt('libvirt.delete.volumes-deleted', () => undeclare(n('d'))));

  it('deleting every file removes every domain and volume it made, and nothing else', async () => {
    for (const name of [...end.declared.keys()]) await undeclare(name);
    await converged();
    expect(await virsh('domstate', end.foreignDomain)).to.include('shut off');
  });
});
