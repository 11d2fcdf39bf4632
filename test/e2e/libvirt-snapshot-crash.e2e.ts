/**
 * Crash points of libvirt snapshots, restores and adoption, one by one: `hyperlet run` (dir
 * source, the real libvirtd, hypervisor qemu) is started with one failpoint enabled, dies there by
 * SIGKILL, is started again without it, and the exact end state is asserted
 * (support/libvirt-end-state.ts): every declared domain defined once, complete, running, with its
 * declared vCPUs; exactly one volume per declared disk and no orphan; exactly the snapshots
 * expected; a restore request recorded in the marker (acted on once); the state DB holding exactly
 * the declared objects; a domain hyperlet does not own untouched. Needs libvirtd.
 */
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DaemonProcess } from './support/crash-daemon.js';
import { type DeclaredVm, LibvirtEndState, virsh } from './support/libvirt-end-state.js';
import { waitForEndState } from './support/lxc-end-state.js';

const PREFIX = `hlrestore-${randomBytes(2).toString('hex')}`;
const n = (letter: string): string => `${PREFIX}-${letter}`;
const SNAP = 'hyperlet.io/snapshot-request';
const RESTORE = 'hyperlet.io/restore-request';
const MARKER_NS = 'https://hyperlet.io/v1alpha1';

describe('crash points: libvirt snapshots, restores and adoption (kill -9 exactly there, then restart)', function () {
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
      '--kinds', 'VirtualMachine', '--resync', '10s', '--log-level', 'info', '--policy', join(tmp, 'policy.yaml'),
    ], join(tmp, `daemon-${starts}.log`), failpoints);
  }

  const converged = async (): Promise<void> => {
    await waitForEndState(() => end.problems(), 120_000, async () => await daemon?.tail() ?? '');
  };

  async function crashAt(point: string, change: () => Promise<void>): Promise<void> {
    await daemon?.kill();
    daemon = start([point]);
    await change();
    await daemon.diedAt(point);
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
  const lastLog = (): Promise<string> => readFile(join(tmp, `daemon-${starts}.log`), 'utf8');

  before(async () => {
    if (!existsSync('/run/libvirt/libvirt-sock')) throw new Error('cannot run: /run/libvirt/libvirt-sock is missing; run scripts/setup-host.sh');
    tmp = await mkdtemp(join(tmpdir(), 'hyperlet-libvirt-restore-crash-'));
    manifests = join(tmp, 'manifests');
    await mkdir(manifests);
    // The adopt crash point needs adoption, which the default host policy refuses.
    await writeFile(join(tmp, 'policy.yaml'), 'apiVersion: hyperlet.io/v1alpha1\nkind: HostPolicy\ndefaults:\n  allow: {adoption: true}\n');
    end = new LibvirtEndState(PREFIX, join(tmp, 'state', 'state.db'));
    await end.defineForeignDomain(join(tmp, 'foreign.xml'));
    await declare(n('a'), { cpu: 1, disks: ['data'], snapshots: [] });
    daemon = start();
    await converged();
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') console.error(await daemon?.tail() ?? '');
  });

  after(async () => {
    await daemon?.kill();
    await end.cleanUp();
    if (tmp !== '') await rm(tmp, { recursive: true, force: true });
  });

  it('snapshot: killed with the snapshot created, before it is reported: it is not taken twice', async () => {
    await crashAt('libvirt.snapshot.taken', () => declare(n('a'), { cpu: 1, disks: ['data'], annotations: { [SNAP]: 's1' }, snapshots: ['s1'] }));
    expect(await lastLog(), 'the restarted daemon found it and took none').to.not.contain('"msg":"snapshot taken"');
  });

  const restoreCases: [string, string, string][] = [
    ['killed with the domain reverted, before the declared definition and marker are written back', 'libvirt.restore.reverted', 's1@1'],
    ['killed with the marker recording the request, before the step returns', 'libvirt.restore.marked', 's1@2'],
  ];
  for (const [what, point, request] of restoreCases) {
    it(`restore: ${what}`, async () => {
      await crashAt(point, () => declare(n('a'), {
        cpu: 1, disks: ['data'], annotations: { [SNAP]: 's1', [RESTORE]: request }, snapshots: ['s1'],
      }));
      expect(await virsh('dumpxml', '--inactive', n('a')), 'the request recorded, so acted on once').to.match(new RegExp(`restoreRequest>${request}<`));
    });
  }

  it('prune: killed with a pruned snapshot deleted, before the pruning is recorded', async () => {
    // Two scheduled snapshots from last year (their creation time redefined): at start one run is
    // due, then both old ones are pruned (retain last 1); the daemon dies after the first deletion.
    for (const [snapshot, at] of [['auto-20251101t000000z', '2025-11-01T00:00:00Z'], ['auto-20251102t000000z', '2025-11-02T00:00:00Z']] as const) {
      await virsh('snapshot-create-as', n('a'), snapshot, '--description', 'hyperlet:origin=schedule');
      const xml = (await virsh('snapshot-dumpxml', n('a'), snapshot)).replace(/<creationTime>\d+<\/creationTime>/, `<creationTime>${Date.parse(at) / 1000}</creationTime>`);
      await writeFile(join(tmp, 'snapshot.xml'), xml);
      await virsh('snapshot-create', n('a'), join(tmp, 'snapshot.xml'), '--redefine');
    }
    await crashAt('libvirt.snapshot.deleted', () => declare(n('a'), {
      cpu: 1, disks: ['data'], annotations: { [SNAP]: 's1', [RESTORE]: 's1@2' }, snapshotsSpec: '{schedule: "@every 1h", retain: {last: 1}}',
      snapshots: ['s1', 'auto-'],
    }));
  });

  it('adopt: killed with the marker written on a domain hyperlet did not create', async () => {
    await declare(n('b'), { cpu: 1, disks: ['data'] });
    await converged();
    // Make it a domain hyperlet does not own: its marker gone (live and persistent), the daemon down meanwhile.
    await daemon?.kill();
    await virsh('metadata', n('b'), MARKER_NS, '--remove', '--live');
    await virsh('metadata', n('b'), MARKER_NS, '--remove', '--config');
    expect(await virsh('dumpxml', n('b'))).to.not.contain(MARKER_NS);
    await crashAt('libvirt.adopt.marked', () => declare(n('b'), { cpu: 1, disks: ['data'], annotations: { 'hyperlet.io/adopt': 'true' } }));
    // Its volume is named with the object's id (hyperlet made it before the marker went): it goes with the VM.
  });

  it('deleting every file removes every domain (with its snapshots) and the volumes it made, and nothing else', async () => {
    for (const name of [...end.declared.keys()]) await undeclare(name);
    await converged();
    expect(await virsh('domstate', end.foreignDomain)).to.include('shut off');
  });
});
