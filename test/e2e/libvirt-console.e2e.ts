/**
 * VM serial console logs are capped and rotated (issue 10, resource hygiene): the LibvirtProvider
 * gives each domain a file serial console, which libvirt opens through virtlogd (qemu.conf
 * stdio_handler "logd", the default), so virtlogd's max_size and max_backups apply. A real guest
 * (scripts/build-test-guest.sh, type qemu) booted with every kernel debug message on fills its
 * console past the cap; the log rotates to NAME.log.0 and no part grows past max_size. Deleting
 * the domain removes every part. Needs libvirtd, virtlogd and QEMU (`make host`).
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import type { VirtualMachine, VirtualMachineSpec } from '../../src/api/v1alpha1/types.js';
import { LibvirtClient } from '../../src/providers/libvirt/libvirt-client.js';
import { LibvirtProvider } from '../../src/providers/libvirt/libvirt-provider.js';
import { type Desired, hostNameOf, specHashOf } from '../../src/store/desired.js';
import { objectKey } from '../../src/store/object-key.js';
import { until } from './support/until.js';

const run = promisify(execFile);
const logger = pino({ level: process.env.HYPERLET_TEST_LOG ?? 'silent' });
const signal = new AbortController().signal;
const NAME = `hyperlet-secrets-console-${process.pid}`;

/** virtlogd's max_size: from its config when set there, else libvirt's default (2 MiB). */
function virtlogdMaxBytes(): number {
  const conf = existsSync('/etc/libvirt/virtlogd.conf') ? readFileSync('/etc/libvirt/virtlogd.conf', 'utf8') : '';
  const m = /^\s*max_size\s*=\s*([0-9]+)/m.exec(conf);
  return m === null ? 2 * 1024 * 1024 : Number(m[1]);
}

/** Pids of processes named `comm` (read from /proc, no tool). */
function pidsOf(comm: string): number[] {
  return readdirSync('/proc').filter((e) => /^[0-9]+$/.test(e)).filter((pid) => {
    try { return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === comm; } catch { return false; }
  }).map(Number);
}

/** Whether process `pid` has `file` open. */
function holdsOpen(pid: number, file: string): boolean {
  try {
    return readdirSync(`/proc/${pid}/fd`).some((fd) => { try { return readlinkSync(`/proc/${pid}/fd/${fd}`) === file; } catch { return false; } });
  } catch {
    return false;
  }
}

describe('VM serial console logs are capped and rotated by virtlogd', function () {
  this.timeout(600_000);
  let consoleDir = '';
  let provider: LibvirtProvider;
  let d: Desired<'VirtualMachine'>;

  before(async () => {
    if (!existsSync('/run/libvirt/libvirt-sock')) throw new Error('cannot run: /run/libvirt/libvirt-sock is missing; run scripts/setup-host.sh');
    if (pidsOf('virtlogd').length === 0) throw new Error('cannot run: virtlogd is not running; run scripts/setup-host.sh');
    const { stdout } = await run('bash', [path.resolve('scripts/build-test-guest.sh')], { timeout: 600_000 });
    const dir = stdout.trim().split('\n').pop() ?? '';
    consoleDir = mkdtempSync(path.join(tmpdir(), 'hyperlet-console-e2e-'));
    provider = new LibvirtProvider({ logger, client: new LibvirtClient({ logger }), consoleDir });
    await provider.probe(signal);
    // Every kernel debug message on the serial console: about 1 MB per boot under TCG.
    const spec: VirtualMachineSpec = {
      state: 'Running', hypervisor: 'qemu', resources: { cpu: 1, memory: '128Mi' }, gracefulStopSeconds: 0, updatePolicy: 'Live', deletionPolicy: 'Delete',
      boot: { kernel: path.join(dir, 'vmlinuz'), initrd: path.join(dir, 'initrd.img'), cmdline: 'console=ttyS0 ignore_loglevel initcall_debug dyndbg="+p"' },
    };
    const object: VirtualMachine = { apiVersion: 'hyperlet.io/v1alpha1', kind: 'VirtualMachine', metadata: { name: NAME, namespace: 'default' }, spec };
    d = { key: objectKey('dir', 'default', 'VirtualMachine', NAME), source: 'dir', object, id: randomUUID(), generation: 1, specHash: specHashOf(spec), hostName: hostNameOf(object) };
  });

  after(async () => {
    await provider?.delete(d, signal).catch((err: unknown) => console.error(`cleanup: cannot delete ${NAME}: ${String(err)}`));
    await provider?.close();
    if (consoleDir !== '') rmSync(consoleDir, { recursive: true, force: true });
  });

  it('writes the console through virtlogd, rotates it at max_size, and removes every part with the domain', async () => {
    await provider.create(d, signal);
    const observed = await provider.observe(d, signal);
    if (observed === undefined) throw new Error('the domain was not created');
    await provider.setState(d, 'Running', observed, signal);
    const log = path.join(consoleDir, `${NAME}.log`);
    await until('the serial log to fill', () => (existsSync(log) && statSync(log).size > 10_000 ? true : undefined), 120_000, 500);
    expect(pidsOf('virtlogd').some((pid) => holdsOpen(pid, log)), 'virtlogd writes the file (so its caps apply)').to.equal(true);
    expect(pidsOf('qemu-system-x86').some((pid) => holdsOpen(pid, log)), 'QEMU does not hold it (it writes to virtlogd)').to.equal(false);

    const max = virtlogdMaxBytes();
    const rotated = `${log}.0`;
    // Each boot writes about 1 MB: reset the guest until the log has rotated (max_size 2 MiB: 2 to 4 boots).
    for (let boot = 0; boot < 8 && !existsSync(rotated); boot++) {
      const before = statSync(log).size;
      await run('virsh', ['-c', 'qemu:///system', 'reset', NAME], { timeout: 60_000 });
      await until('the next boot to write', () => (existsSync(rotated) || statSync(log).size > before + 100_000 ? true : undefined), 120_000, 500);
      await until('the boot to settle', async () => {
        const a = existsSync(rotated) ? -1 : statSync(log).size;
        await new Promise((r) => setTimeout(r, 2_000));
        return existsSync(rotated) || statSync(log).size === a ? true : undefined;
      }, 120_000, 0);
    }
    expect(existsSync(rotated), `rotated to ${rotated}`).to.equal(true);
    for (const part of readdirSync(consoleDir)) expect(statSync(path.join(consoleDir, part)).size, part).to.be.at.most(max);

    await provider.delete(d, signal);
    expect(readdirSync(consoleDir).filter((f) => f.startsWith(NAME)), 'no part left').to.deep.equal([]);
  });
});
