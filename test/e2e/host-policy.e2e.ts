/**
 * The attacks of issue 10, tried as an object author would, against the daemon (dir source, state
 * DB) with real LXC and the real libvirtd. With the default host policy each one is refused with
 * the field named, and the host shows nothing was done: no domain, no pool or volume, no
 * container directory, an unowned container and an unowned domain exactly as they were. Then the
 * same objects, in their safe form (a harmless file in an allowed temporary directory, never
 * /dev/sda), are accepted once a policy file allows them; what no policy may allow stays refused.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Daemon } from '../../src/daemon/daemon.js';
import { loadPolicyFile } from '../../src/policy/policy-loader.js';
import { StateDb } from '../../src/state/state-db.js';
import { silentLogger } from '../../src/telemetry/logger.js';
import { until } from './support/until.js';

const run = promisify(execFile);
const repoRoot = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../..');
const cli = path.join(repoRoot, 'bin', 'hyperlet.js');
const sfx = randomBytes(2).toString('hex');
const n = (what: string): string => `hp${sfx}-${what}`;
const POOL = `hyperlet-e2e-${process.pid}-policy`;
const POOL_DIR = path.join('/var/lib/hyperlet/pools', POOL);

async function virsh(...args: string[]): Promise<string> {
  return (await run('virsh', ['-c', 'qemu:///system', ...args], { timeout: 60_000 })).stdout;
}
const domainExists = (name: string): Promise<boolean> => virsh('dominfo', name).then(() => true, () => false);
const poolExists = (): Promise<boolean> => virsh('pool-info', POOL).then(() => true, () => false);

/** The first real disk of this host (/dev/vda, /dev/sda, /dev/nvme0n1…): the device an attacker wants. */
function hostDisk(): string {
  const disk = readdirSync('/sys/block').find((d) => !/^(loop|ram|zram|dm-|sr|md)/.test(d));
  if (disk === undefined) throw new Error('cannot find a block device in /sys/block to attack');
  return `/dev/${disk}`;
}

const vm = (name: string, spec: string[], meta: string[] = []): string => [
  'apiVersion: hyperlet.io/v1alpha1', 'kind: VirtualMachine', 'metadata:', `  name: ${name}`, ...meta,
  'spec:', '  hypervisor: qemu', '  state: Stopped', '  resources: {cpu: 1, memory: 64Mi}', ...spec.map((l) => `  ${l}`), '',
].join('\n');
const ct = (name: string, spec: string[], meta: string[] = []): string => [
  'apiVersion: hyperlet.io/v1alpha1', 'kind: Container', 'metadata:', `  name: ${name}`, ...meta,
  'spec:', '  network: [{type: none}]', '  gracefulStopSeconds: 1', ...spec.map((l) => `  ${l}`), '',
].join('\n');

interface Row { name: string; namespace: string; status?: { phase?: string; conditions?: { type: string; status: string; reason: string; message: string }[] } }

describe('host policy: the attacks of issue 10 against real LXC and libvirt', function () {
  this.timeout(900_000);
  let tmp = '';
  let manifests = '';
  let lxcpath = '';
  let statePath = '';
  let images = '';
  let daemon: Daemon | undefined;
  let disk = '';
  let unownedCt = '';
  let unownedCtConfig = '';
  let unownedVmXml = '';

  const put = (file: string, text: string): void => writeFileSync(path.join(manifests, file), text);
  const rows = (): Row[] => {
    const db = new StateDb(statePath, { readonly: true });
    try { return db.listObjects(); } finally { db.close(); }
  };
  const ready = (name: string, namespace = 'default') =>
    rows().find((r) => r.name === name && r.namespace === namespace)?.status?.conditions?.find((c) => c.type === 'Ready');
  const audit = (key: string) => {
    const db = new StateDb(statePath, { readonly: true });
    try { return db.auditFor(key, 100); } finally { db.close(); }
  };
  const lxcState = async (name: string): Promise<string> =>
    (await run('lxc-info', ['-P', lxcpath, '-n', name, '-sH'], { timeout: 30_000 }).then((r) => r.stdout.trim(), () => 'MISSING'));
  const start = async (policyFile?: string): Promise<void> => {
    daemon = new Daemon({
      sources: [{ type: 'dir', location: manifests }], statePath, lxcpath, libvirtUri: 'qemu:///system',
      kinds: ['Container', 'VirtualMachine'], node: 'e2e', nodeFilter: false, resyncMs: 2_000,
      concurrency: 4, qps: 100, burst: 100, shutdownTimeoutMs: 30_000,
      ...(policyFile === undefined ? {} : { hostPolicy: await loadPolicyFile(policyFile) }),
    }, silentLogger());
    await daemon.start();
  };

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('the host policy e2e test needs root (lxc-*, libvirtd)');
    if (!existsSync('/run/libvirt/libvirt-sock')) throw new Error('cannot run: /run/libvirt/libvirt-sock is missing; run scripts/setup-host.sh');
    disk = hostDisk();
    tmp = mkdtempSync(path.join(os.tmpdir(), 'hyperlet-policy-e2e-'));
    chmodSync(tmp, 0o711); // unprivileged containers' mapped root passes through it
    for (const d of ['manifests', 'lxc', 'state', 'images', 'scratch']) mkdirSync(path.join(tmp, d));
    manifests = path.join(tmp, 'manifests');
    lxcpath = path.join(tmp, 'lxc');
    statePath = path.join(tmp, 'state', 'state.db');
    images = path.join(tmp, 'images');
    // Harmless stand-ins for the allowed variants: a blank raw disk, a "kernel" that is just a file.
    writeFileSync(path.join(images, 'blank.raw'), Buffer.alloc(1024 * 1024));
    writeFileSync(path.join(images, 'not-a-kernel'), 'harmless\n');
    // A qcow2 inside the allowed directory whose backing file is a host secret (-u: not opened now).
    await run('qemu-img', ['create', '-f', 'qcow2', '-u', '-b', '/etc/shadow', '-F', 'raw', path.join(images, 'evil.qcow2'), '1G'], { timeout: 60_000 });
    // A prepared rootfs, made by the busybox template elsewhere (owned by real root, unshifted).
    await run('lxc-create', ['-P', path.join(tmp, 'scratch'), '-n', 'tree', '-t', 'busybox'], { timeout: 120_000 });
    // An unowned container and an unowned domain, as an operator would have them.
    unownedCt = n('theirs-ct');
    writeFileSync(path.join(tmp, 'base.conf'), 'lxc.net.0.type = empty\n');
    await run('lxc-create', ['-P', lxcpath, '-n', unownedCt, '-t', 'busybox', '-f', path.join(tmp, 'base.conf')], { timeout: 120_000 });
    await run('lxc-start', ['-P', lxcpath, '-n', unownedCt], { timeout: 60_000 });
    unownedCtConfig = readFileSync(path.join(lxcpath, unownedCt, 'config'), 'utf8');
    writeFileSync(path.join(tmp, 'theirs.xml'), `<domain type="qemu"><name>${n('theirs-vm')}</name><memory unit="MiB">64</memory><os><type>hvm</type></os></domain>`);
    await virsh('define', path.join(tmp, 'theirs.xml'));
    unownedVmXml = await virsh('dumpxml', '--inactive', n('theirs-vm'));
  });

  after(async () => {
    await daemon?.stop();
    for (const name of ['vdisk', 'vdev', 'vshadow', 'vkernel', 'vqcow', 'theirs-vm', 'vbig'].map(n)) {
      await virsh('destroy', name).catch(() => undefined);
      await virsh('undefine', name).catch(() => undefined);
    }
    for (const v of await virsh('vol-list', POOL).then((o) => o.split('\n').map((l) => l.trim().split(/\s+/)[0] ?? ''), () => [] as string[])) {
      if (v.startsWith(`hp${sfx}`)) await virsh('vol-delete', v, '--pool', POOL).catch(() => undefined);
    }
    await virsh('pool-destroy', POOL).catch(() => undefined);
    await virsh('pool-undefine', POOL).catch(() => undefined);
    rmSync(POOL_DIR, { recursive: true, force: true });
    for (const dir of [lxcpath, path.join(tmp, 'scratch')]) {
      for (const name of existsSync(dir) ? readdirSync(dir) : []) {
        await run('lxc-stop', ['-P', dir, '-n', name, '-k'], { timeout: 30_000 }).catch(() => undefined);
        await run('lxc-destroy', ['-P', dir, '-n', name], { timeout: 60_000 }).catch(() => undefined);
      }
    }
    for (const f of readdirSync('/var/log/hyperlet/console').filter((f) => f.startsWith(`hp${sfx}`))) rmSync(path.join('/var/log/hyperlet/console', f), { force: true });
    if (tmp !== '') rmSync(tmp, { recursive: true, force: true });
  });

  describe('with the default policy', () => {
    /** Each attack: its file, the object, and the field its refusal must name. */
    const attacks = (): { file: string; name: string; namespace?: string; text: string; field: string; reason?: string }[] => [
      { file: 'vdisk.yaml', name: n('vdisk'), text: vm(n('vdisk'), [`disks: [{name: a, image: /dev/sda, pool: ${POOL}}]`]), field: 'spec.disks[0].image: /dev/sda is not a regular file under an allowed image directory' },
      { file: 'vdev.yaml', name: n('vdev'), text: vm(n('vdev'), [`disks: [{name: a, image: ${disk}, pool: ${POOL}}]`]), field: `spec.disks[0].image: ${disk} is not a regular file under an allowed image directory` },
      { file: 'vshadow.yaml', name: n('vshadow'), text: vm(n('vshadow'), [`disks: [{name: a, image: /etc/shadow, pool: ${POOL}}]`]), field: 'spec.disks[0].image: /etc/shadow is not a regular file' },
      { file: 'vkernel.yaml', name: n('vkernel'), text: vm(n('vkernel'), ['boot: {kernel: /etc/shadow}']), field: 'spec.boot.kernel: /etc/shadow is not a regular file' },
      { file: 'vbig.yaml', name: n('vbig'), text: vm(n('vbig'), []).replace('memory: 64Mi', 'memory: 1Ti'), field: 'spec.resources.memory: 1Ti is more than this host\'s memory', reason: 'QuotaExceeded' },
      { file: 'cetc.yaml', name: n('cetc'), text: ct(n('cetc'), ['rootfs: /etc']), field: 'spec.rootfs: /etc is not a directory under an allowed rootfs directory' },
      { file: 'cproc.yaml', name: n('cproc'), text: ct(n('cproc'), ['rootfs: /proc']), field: 'spec.rootfs: /proc can never be a container rootfs' },
      { file: 'croot.yaml', name: n('croot'), text: ct(n('croot'), ['rootfs: /']), field: 'spec.rootfs: / can never be a container rootfs' },
      { file: 'cpriv.yaml', name: n('cpriv'), text: ct(n('cpriv'), ['template: busybox', 'privileged: true']), field: 'spec.privileged: true is not allowed' },
      { file: 'ctheirs.yaml', name: unownedCt, text: ct(unownedCt, ['template: busybox'], ['  annotations: {hyperlet.io/adopt: "true"}']), field: 'metadata.annotations["hyperlet.io/adopt"]: "true" is not allowed' },
      { file: 'vtheirs.yaml', name: n('theirs-vm'), text: vm(n('theirs-vm'), [], ['  annotations: {hyperlet.io/adopt: "true"}']), field: 'metadata.annotations["hyperlet.io/adopt"]: "true" is not allowed' },
    ];

    before(async () => {
      for (const a of attacks()) put(a.file, a.text);
      put('chuge.yaml', ct(n('chuge'), ['template: busybox', 'resources: {memory: 1e30}']));
      put('cplain.yaml', ct(n('cplain'), ['template: busybox'])); // a harmless object beside them: the daemon does work
      await start();
      await until('every attack judged', async () => (attacks().every((a) => ready(a.name)?.status === 'False') ? true : undefined), 120_000);
      await until('the harmless container running', async () => ((await lxcState(n('cplain'))) === 'RUNNING' ? true : undefined), 120_000);
      await new Promise((r) => setTimeout(r, 5_000)); // a few more resyncs (every 2 s) look at every attack again
    });

    it('refuses each attack with Ready=False, PolicyDenied (or QuotaExceeded for capacity) and the field named, and one Warning', () => {
      for (const a of attacks()) {
        const condition = ready(a.name);
        expect(condition, a.name).to.include({ status: 'False', reason: a.reason ?? 'PolicyDenied' });
        expect(condition?.message, a.name).to.include(a.field);
        const warnings = audit(`dir/default/${a.file.startsWith('v') ? 'VirtualMachine' : 'Container'}/${a.name}`).filter((e) => e.type === 'Warning');
        expect(warnings.map((w) => w.action), `${a.name}: one Warning however many passes`).to.deep.equal([a.reason ?? 'PolicyDenied']);
      }
    });

    it('created nothing: no domain, no pool, no volume, no container directory', async () => {
      for (const name of ['vdisk', 'vdev', 'vshadow', 'vkernel', 'vbig'].map(n)) expect(await domainExists(name), name).to.equal(false);
      expect(await poolExists(), 'the pool the disks name was never even created').to.equal(false);
      expect(existsSync(POOL_DIR)).to.equal(false);
      const dirs = readdirSync(lxcpath).sort();
      expect(dirs, 'only the operator\'s container and the harmless one').to.deep.equal([unownedCt, n('cplain')].sort());
    });

    it('left the unowned container and the unowned domain exactly as they were', async () => {
      expect(await lxcState(unownedCt)).to.equal('RUNNING');
      expect(readFileSync(path.join(lxcpath, unownedCt, 'config'), 'utf8')).to.equal(unownedCtConfig);
      expect(existsSync(path.join(lxcpath, unownedCt, 'hyperlet.json')), 'no ownership marker').to.equal(false);
      expect(await virsh('dumpxml', '--inactive', n('theirs-vm'))).to.equal(unownedVmXml);
      expect((await virsh('domstate', n('theirs-vm'))).trim()).to.equal('shut off');
    });

    it('refuses memory: 1e30 as invalid, naming the field and the rule, and makes nothing', () => {
      const db = new StateDb(statePath, { readonly: true });
      const problems = db.problems().map((p) => p.problem);
      db.close();
      const huge = problems.find((p) => p.name === n('chuge'));
      expect(huge?.path).to.equal('spec.resources.memory');
      expect(huge?.rule).to.equal('safe-integer');
      expect(existsSync(path.join(lxcpath, n('chuge')))).to.equal(false);
    });

    it('gives a container that declares no memory the policy\'s default limit, and runs it unprivileged', async () => {
      const pid = Number((await run('lxc-info', ['-P', lxcpath, '-n', n('cplain'), '-pH'])).stdout.trim());
      expect(readFileSync(`/proc/${pid}/uid_map`, 'utf8').trim().split(/\s+/)).to.deep.equal(['0', '1000000', '65536']);
      const config = readFileSync(path.join(lxcpath, n('cplain'), 'config'), 'utf8');
      expect(config).to.match(/^lxc\.cgroup2?\.memory\.(limit_in_bytes|max) = 536870912$/m);
    });

    it('hyperlet diff shows the same refusals and exits 2', async () => {
      const r = await run(process.execPath, [cli, 'diff', '-f', path.join(manifests, 'vdisk.yaml'), '-f', path.join(manifests, 'cetc.yaml'), '--lxcpath', lxcpath, '--state', statePath], { timeout: 120_000 })
        .then((x) => ({ code: 0, stdout: x.stdout }), (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }));
      expect(r.code).to.equal(2);
      expect(r.stdout).to.include(`VirtualMachine/${n('vdisk')}: refused (PolicyDenied): nothing would be done`);
      expect(r.stdout).to.include('  spec.disks[0].image: /dev/sda is not a regular file under an allowed image directory');
      expect(r.stdout).to.include(`Container/${n('cetc')}: refused (PolicyDenied)`);
      expect(r.stdout).to.include('  spec.rootfs: /etc is not a directory under an allowed rootfs directory');
    });

    after(async () => {
      await daemon?.stop();
      daemon = undefined;
    });
  });

  it('hyperlet run refuses a policy file with a mistake, naming the file, the field and the rule, and starts nothing', async () => {
    const bad = path.join(tmp, 'bad-policy.yaml');
    writeFileSync(bad, 'apiVersion: hyperlet.io/v1alpha1\nkind: HostPolicy\ndefaults:\n  allow: {privileged: yes, adopt: true}\n');
    const r = await run(process.execPath, [cli, 'run', '--policy', bad, '--source', `dir:${manifests}`, '--state', path.join(tmp, 'unused.db'), '--http', 'off'], { timeout: 60_000 })
      .then((x) => ({ code: 0, stderr: x.stderr }), (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }));
    expect(r.code).to.equal(2);
    expect(r.stderr).to.include(`hyperlet run: ${bad}: defaults.allow.privileged: must be boolean (type)`);
    expect(r.stderr).to.include(`hyperlet run: ${bad}: defaults.allow.adopt: unknown field (unknown-field)`);
    expect(existsSync(path.join(tmp, 'unused.db')), 'no state DB: the daemon never started').to.equal(false);
  });

  describe('with a policy file that allows them, in their safe form', () => {
    before(async () => {
      const policy = path.join(tmp, 'policy.yaml');
      writeFileSync(policy, [
        'apiVersion: hyperlet.io/v1alpha1',
        'kind: HostPolicy',
        'defaults:',
        '  containerMemory: 96Mi',
        'scopes:',
        '  - source: dir',
        '    namespace: default',
        `    paths: {images: [${images}], rootfs: [${path.join(tmp, 'scratch')}]}`,
        '    allow: {adoption: true, privileged: true}',
        '  - namespace: never', // even a policy allowing / itself cannot make / or /proc a rootfs
        '    paths: {rootfs: [/]}',
        '',
      ].join('\n'));
      for (const file of readdirSync(manifests)) rmSync(path.join(manifests, file));
      put('vdisk.yaml', vm(n('vdisk'), [`disks: [{name: a, image: ${images}/blank.raw, pool: ${POOL}}]`]));
      put('vkernel.yaml', vm(n('vkernel'), [`boot: {kernel: ${images}/not-a-kernel}`]));
      put('vqcow.yaml', vm(n('vqcow'), [`disks: [{name: a, image: ${images}/evil.qcow2, pool: ${POOL}}]`]));
      put('ctree.yaml', ct(n('ctree'), [`rootfs: ${path.join(tmp, 'scratch', 'tree', 'rootfs')}`]));
      put('cetc.yaml', ct(n('cetc'), ['rootfs: /etc']));
      put('croot.yaml', ct(n('croot'), ['rootfs: /'], ['  namespace: never']));
      put('cproc.yaml', ct(n('cproc'), ['rootfs: /proc'], ['  namespace: never']));
      put('cpriv.yaml', ct(n('cpriv'), ['template: busybox', 'privileged: true']));
      put('ctheirs.yaml', ct(unownedCt, ['template: busybox'], ['  annotations: {hyperlet.io/adopt: "true"}']));
      put('vtheirs.yaml', vm(n('theirs-vm'), [], ['  annotations: {hyperlet.io/adopt: "true"}']));
      await start(policy);
    });

    it('defines the VM whose disk is a harmless file in an allowed directory, with its volume backed by it', async () => {
      await until('the domain defined', async () => ((await domainExists(n('vdisk'))) ? true : undefined), 120_000);
      const vols = (await virsh('vol-list', POOL)).split('\n').filter((l) => l.includes(n('vdisk')));
      expect(vols, 'one volume').to.have.length(1);
      const volume = vols[0]!.trim().split(/\s+/)[0]!;
      expect(await virsh('vol-dumpxml', volume, '--pool', POOL)).to.include(`<path>${images}/blank.raw</path>`);
      await until('Ready', async () => (ready(n('vdisk'))?.status === 'True' ? true : undefined), 60_000);
    });

    it('defines the VM whose kernel is a file in an allowed directory', async () => {
      await until('the domain defined', async () => ((await domainExists(n('vkernel'))) ? true : undefined), 120_000);
      expect(await virsh('dumpxml', n('vkernel'))).to.include(`<kernel>${images}/not-a-kernel</kernel>`);
    });

    it('still refuses a qcow2 in the allowed directory whose backing file is /etc/shadow', async () => {
      await until('refused', async () => (ready(n('vqcow'))?.reason === 'PolicyDenied' ? true : undefined), 60_000);
      expect(ready(n('vqcow'))?.message).to.include(`spec.disks[0].image: ${images}/evil.qcow2 is not a regular file under an allowed image directory (${images}): its backing file /etc/shadow is refused`);
      expect(await domainExists(n('vqcow'))).to.equal(false);
    });

    it('copies an allowed rootfs into an unprivileged container, shifted into its id range', async () => {
      await until('running', async () => ((await lxcState(n('ctree'))) === 'RUNNING' ? true : undefined), 120_000);
      const busybox = statSync(path.join(lxcpath, n('ctree'), 'rootfs', 'bin', 'busybox'));
      expect([busybox.uid, busybox.gid]).to.deep.equal([1_000_000, 1_000_000]);
      const config = readFileSync(path.join(lxcpath, n('ctree'), 'config'), 'utf8');
      expect(config, 'the policy\'s containerMemory: 96Mi').to.match(/^lxc\.cgroup2?\.memory\.(limit_in_bytes|max) = 100663296$/m);
    });

    it('still refuses /etc (outside the allowed rootfs directories), and / and /proc even where / is allowed', async () => {
      await until('judged', async () => (['cetc', 'croot', 'cproc'].every((c) => ready(n(c), c === 'cetc' ? 'default' : 'never')?.status === 'False') ? true : undefined), 60_000);
      expect(ready(n('cetc'))?.message).to.include('spec.rootfs: /etc is not a directory under an allowed rootfs directory');
      expect(ready(n('croot'), 'never')?.message).to.include('spec.rootfs: / can never be a container rootfs');
      expect(ready(n('cproc'), 'never')?.message).to.include('spec.rootfs: /proc can never be a container rootfs');
      for (const host of [n('cetc'), `never.${n('croot')}`, `never.${n('cproc')}`]) expect(existsSync(path.join(lxcpath, host)), host).to.equal(false);
    });

    it('runs the privileged container without a user namespace', async () => {
      await until('running', async () => ((await lxcState(n('cpriv'))) === 'RUNNING' ? true : undefined), 120_000);
      const pid = Number((await run('lxc-info', ['-P', lxcpath, '-n', n('cpriv'), '-pH'])).stdout.trim());
      expect(readFileSync(`/proc/${pid}/uid_map`, 'utf8').trim().split(/\s+/)).to.deep.equal(['0', '0', '4294967295']);
    });

    it('adopts the unowned container and the unowned domain', async () => {
      await until('the container adopted', async () => (existsSync(path.join(lxcpath, unownedCt, 'hyperlet.json')) ? true : undefined), 60_000);
      expect(JSON.parse(readFileSync(path.join(lxcpath, unownedCt, 'hyperlet.json'), 'utf8'))).to.include({ origin: 'adopted' });
      await until('the domain adopted', async () => ((await virsh('dumpxml', '--inactive', n('theirs-vm'))).includes('https://hyperlet.io/v1alpha1') ? true : undefined), 60_000);
    });
  });
});
