/**
 * `hyperlet console` and `hyperlet logs` against real instances. A VM (the test guest of
 * scripts/build-test-guest.sh, with an /init appended to its initramfs that runs a shell on ttyS0)
 * gets a pty serial console that virtlogd also logs: the CLI attaches on pipes through libvirt's
 * console stream, runs a command in the guest's shell, detaches with Ctrl-]; `hyperlet logs --kind
 * vm` then prints the same session from the log file. A busybox container (its console's askfirst
 * shell) is driven the same way through lxc-console, with a configured escape key. A domain and a
 * container hyperlet does not manage are refused. Needs libvirtd, virtlogd, QEMU and LXC (`make host`).
 */
import { expect } from 'chai';
import { type ChildProcessWithoutNullStreams, execFile, spawn, spawnSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import pino from 'pino';
import { API_VERSION } from '../../src/api/v1alpha1/group.js';
import type { Container, VirtualMachine, VirtualMachineSpec } from '../../src/api/v1alpha1/types.js';
import { validateObject } from '../../src/api/v1alpha1/validate.js';
import { LibvirtClient } from '../../src/providers/libvirt/libvirt-client.js';
import { LibvirtProvider } from '../../src/providers/libvirt/libvirt-provider.js';
import { LxcProvider } from '../../src/providers/lxc/lxc-provider.js';
import { LxcTools } from '../../src/providers/lxc/lxc-tools.js';
import { type Desired, hostNameOf, specHashOf } from '../../src/store/desired.js';
import { objectKey } from '../../src/store/object-key.js';
import { until } from '../support/until.js';

const run = promisify(execFile);
const logger = pino({ level: process.env.HYPERLET_TEST_LOG ?? 'silent' });
const signal = new AbortController().signal;
const sfx = randomBytes(3).toString('hex');
const VM = `console-vm-${sfx}`;
const CT = `console-ct-${sfx}`;
const repoRoot = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../..');
const cli = path.join(repoRoot, 'bin', 'hyperlet.js');

/** The guest's /init for this test: a shell on the serial console, forever. */
const CONSOLE_INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "hyperlet-guest: console up" > /dev/ttyS0
while true; do setsid sh -c 'exec sh -i </dev/ttyS0 >/dev/ttyS0 2>&1'; done
`;

/** A running `hyperlet console` with its output so far. */
interface Attached { child: ChildProcessWithoutNullStreams; out(): string; err(): string; exit: Promise<number | null> }

function attach(args: string[]): Attached {
  const child = spawn(process.execPath, [cli, 'console', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => { out += c.toString('utf8'); });
  child.stderr.on('data', (c: Buffer) => { err += c.toString('utf8'); });
  const exit = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  return { child, out: () => out, err: () => err, exit };
}

/** Types `line` every poll until the console shows `expected` (the shell may not be up yet). */
async function typeUntil(a: Attached, line: string, expected: string, timeoutMs: number): Promise<void> {
  await until(`the console to show ${expected}`, () => {
    if (a.out().includes(expected)) return true;
    a.child.stdin.write(line);
    return undefined;
  }, timeoutMs, 1_500);
}

async function hyperlet(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [cli, ...args], { timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('hyperlet console and logs', function () {
  this.timeout(600_000);

  describe('a VM serial console', () => {
    let dir = '';
    let provider: LibvirtProvider;
    let client: LibvirtClient;
    let d: Desired<'VirtualMachine'>;
    const stranger = `console-stranger-${sfx}`;

    before(async () => {
      if (!existsSync('/run/libvirt/libvirt-sock')) throw new Error('cannot run: /run/libvirt/libvirt-sock is missing; run scripts/setup-host.sh');
      const { stdout } = await run('bash', [path.resolve(repoRoot, 'scripts/build-test-guest.sh')], { timeout: 600_000 });
      const guest = stdout.trim().split('\n').pop() ?? '';
      dir = mkdtempSync(path.join(tmpdir(), 'hyperlet-console-e2e-'));
      chmodSync(dir, 0o755);
      // An initramfs may be several cpio archives one after the other; the later /init wins.
      writeFileSync(path.join(dir, 'init'), CONSOLE_INIT, { mode: 0o755 });
      const cpio = spawnSync('cpio', ['-o', '-H', 'newc', '--quiet'], { cwd: dir, input: 'init\n' });
      if (cpio.status !== 0) throw new Error(`cannot make the console initramfs: ${cpio.stderr.toString()}`);
      writeFileSync(path.join(dir, 'initrd.img'), Buffer.concat([readFileSync(path.join(guest, 'initrd.img')), gzipSync(cpio.stdout)]), { mode: 0o644 });
      client = new LibvirtClient({ logger });
      provider = new LibvirtProvider({ logger, client });
      await provider.probe(signal);
      const spec: VirtualMachineSpec = {
        state: 'Running', hypervisor: 'qemu', resources: { cpu: 1, memory: '128Mi' }, gracefulStopSeconds: 0, updatePolicy: 'Live', deletionPolicy: 'Delete',
        boot: { kernel: path.join(guest, 'vmlinuz'), initrd: path.join(dir, 'initrd.img'), cmdline: 'console=ttyS0 quiet' },
      };
      const object: VirtualMachine = { apiVersion: API_VERSION, kind: 'VirtualMachine', metadata: { name: VM, namespace: 'default' }, spec };
      d = { key: objectKey('dir', 'default', 'VirtualMachine', VM), source: 'dir', object, id: randomUUID(), generation: 1, specHash: specHashOf(spec), hostName: hostNameOf(object) };
      await provider.create(d, signal);
      const observed = await provider.observe(d, signal);
      if (observed === undefined) throw new Error('the domain was not created');
      await provider.setState(d, 'Running', observed, signal);
    });

    after(async () => {
      await provider?.delete(d, signal).catch((err: unknown) => console.error(`cleanup: cannot delete ${VM}: ${String(err)}`));
      const dom = await client?.lookupDomainByName(stranger).catch(() => undefined);
      if (dom !== undefined) await client.domainUndefine(dom, 0).catch(() => undefined);
      await provider?.close();
      if (dir !== '') rmSync(dir, { recursive: true, force: true });
    });

    it('attaches on pipes, runs a command in the guest shell and detaches with Ctrl-]', async () => {
      const a = attach([VM, '--kind', 'vm']);
      try {
        // $((6*7)) is computed by the guest's shell: the echo of what we typed cannot match.
        await typeUntil(a, 'echo console-$((6*7))-ok\r', 'console-42-ok', 180_000);
        a.child.stdin.write(Buffer.from([0x1d]));
        expect(await a.exit, a.err()).to.equal(0);
      } finally {
        a.child.kill();
      }
      expect(a.err()).to.include(`Connected to ${VM}`);
    });

    it('logs --kind vm prints the serial log, which the console session went to as well', async () => {
      const r = await hyperlet(['logs', VM, '--kind', 'vm']);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).to.include('hyperlet-guest: console up');
      expect(r.stdout).to.include('console-42-ok');
    });

    it('a second session with --force takes the console; the guest still answers', async () => {
      const first = attach([VM, '--kind', 'vm']);
      await until('the first session to attach', () => (first.err().includes('Connected') ? true : undefined), 30_000, 100);
      const second = attach([VM, '--kind', 'vm', '--force', '--escape', '^b']);
      try {
        await typeUntil(second, 'echo second-$((7*7))\r', 'second-49', 60_000);
        expect(await first.exit, 'the first session ends when its console is taken').to.equal(1);
        second.child.stdin.write(Buffer.from([0x02]));
        expect(await second.exit, second.err()).to.equal(0);
      } finally {
        first.child.kill();
        second.child.kill();
      }
    });

    it('refuses a domain hyperlet does not manage', async () => {
      await client.domainDefineXml(`<domain type="qemu"><name>${stranger}</name><memory unit="KiB">65536</memory><vcpu>1</vcpu>`
        + '<os><type arch="x86_64">hvm</type></os><devices><serial type="pty"><target port="0"/></serial></devices></domain>');
      const r = await hyperlet(['console', stranger, '--kind', 'vm']);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.include('hyperlet does not manage it');
    });
  });

  describe('a container console', () => {
    let lxcpath = '';
    let provider: LxcProvider;
    let d: Desired<'Container'>;
    const stranger = `console-plain-${sfx}`;

    before(async () => {
      lxcpath = mkdtempSync(path.join(tmpdir(), 'hyperlet-console-lxc-'));
      chmodSync(lxcpath, 0o711);
      provider = new LxcProvider({ lxcpath, logger, tools: new LxcTools({ logger }) });
      const result = validateObject({
        apiVersion: API_VERSION, kind: 'Container', metadata: { name: CT, namespace: 'default' },
        spec: { template: 'busybox', state: 'Running', gracefulStopSeconds: 0, network: [{ type: 'none' }] },
      });
      if (!result.ok) throw new Error(`test object invalid: ${JSON.stringify(result.issues)}`);
      const object = result.object as Container;
      d = { key: objectKey('dir', 'default', 'Container', CT), source: 'dir', object, id: randomUUID(), generation: 1, specHash: specHashOf(object.spec), hostName: hostNameOf(object) };
      await provider.create(d, signal);
      const observed = await provider.observe(d, signal);
      if (observed === undefined) throw new Error('the container was not created');
      await provider.setState(d, 'Running', observed, signal);
    });

    after(async () => {
      await provider?.delete(d, signal).catch((err: unknown) => console.error(`cleanup: cannot delete ${CT}: ${String(err)}`));
      await run('lxc-destroy', ['-P', lxcpath, '-n', stranger, '-f']).catch(() => undefined);
      provider?.close();
      if (lxcpath !== '') rmSync(lxcpath, { recursive: true, force: true });
    });

    it('attaches on pipes, runs a command in the console shell and detaches with the configured escape', async () => {
      const a = attach([CT, '--lxcpath', lxcpath, '--escape', '^b']);
      try {
        // The console's shell is busybox "askfirst": Enter activates it, then it runs what we type.
        await typeUntil(a, '\recho ct-$((6*7))-ok\r', 'ct-42-ok', 60_000);
        a.child.stdin.write(Buffer.from([0x02]));
        expect(await a.exit, a.err()).to.equal(0);
      } finally {
        a.child.kill();
      }
      const logs = await hyperlet(['logs', CT, '--lxcpath', lxcpath]);
      expect(logs.code, logs.stderr).to.equal(0);
      expect(logs.stdout, 'the console log has the session too').to.include('ct-42-ok');
    });

    it('refuses a container hyperlet does not manage, and one that does not exist', async () => {
      await run('lxc-create', ['-P', lxcpath, '-n', stranger, '-t', 'busybox'], { timeout: 120_000 });
      const r = await hyperlet(['console', stranger, '--lxcpath', lxcpath, '--kind', 'ct']);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.include('hyperlet does not manage it');
      const missing = await hyperlet(['console', `console-none-${sfx}`, '--lxcpath', lxcpath, '--kind', 'ct']);
      expect(missing.code).to.equal(1);
      expect(missing.stderr).to.include('does not exist');
    });
  });
});
