/**
 * A graceful stop of a VM does not hold a worker (issue 10, item 6): the daemon (dir source, one
 * worker: concurrency 1) against the real libvirtd stops a domain that sits in the firmware, which
 * never answers the ACPI power button, with gracefulStopSeconds 20. During that wait, VMs of
 * another namespace are defined and reach "running"; the domain is destroyed at the deadline,
 * not before. Needs libvirtd and QEMU (`make host`).
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Daemon } from '../../src/daemon/daemon.js';
import { StateDb } from '../../src/state/state-db.js';
import { silentLogger } from '../../src/telemetry/logger.js';
import { until } from '../support/until.js';

const run = promisify(execFile);
const suffix = randomBytes(2).toString('hex');
const GRACE_SECONDS = 20;
const SLOW_NS = `waits${suffix}-vma`;
const OTHER_NS = `waits${suffix}-vmb`;
const SLOW = 'waits-vm-slow';
const OTHERS = ['waits-vm-one', 'waits-vm-two'];
const ALL_DOMAINS = [`${SLOW_NS}.${SLOW}`, ...OTHERS.map((name) => `${OTHER_NS}.${name}`)];

async function virsh(...args: string[]): Promise<string> {
  return (await run('virsh', ['-c', 'qemu:///system', ...args], { timeout: 60_000 })).stdout;
}
const domState = async (domain: string): Promise<string> => (await virsh('domstate', domain).catch(() => 'missing\n')).trim();

/** A VM with no disk and no kernel: it runs in the firmware, which ignores ACPI shutdown. */
function manifest(namespace: string, name: string, state: 'Running' | 'Stopped'): string {
  return [
    'apiVersion: hyperlet.io/v1alpha1',
    'kind: VirtualMachine',
    `metadata: {name: ${name}, namespace: ${namespace}}`,
    'spec:',
    '  hypervisor: qemu',
    `  state: ${state}`,
    '  resources: {cpu: 1, memory: 64Mi}',
    `  gracefulStopSeconds: ${GRACE_SECONDS}`,
    '',
  ].join('\n');
}

describe('graceful VM stops hold no worker (one worker, real libvirtd)', function () {
  this.timeout(600_000);
  let dir = '';
  let daemon: Daemon | undefined;
  const statePath = (): string => path.join(dir, 'state', 'state.db');
  const declare = (namespace: string, name: string, state: 'Running' | 'Stopped'): void =>
    writeFileSync(path.join(dir, 'manifests', `${namespace}-${name}.yaml`), manifest(namespace, name, state));
  const stopDeadline = (): { requestedAtMs: number; deadlineMs: number } | undefined => {
    const db = new StateDb(statePath(), { readonly: true });
    try {
      const key = db.listObjects().find((o) => o.namespace === SLOW_NS && o.name === SLOW)?.key;
      return key === undefined ? undefined : db.stopDeadline(key);
    } finally {
      db.close();
    }
  };

  before(async () => {
    if (!existsSync('/run/libvirt/libvirt-sock')) throw new Error('cannot run: /run/libvirt/libvirt-sock is missing; run scripts/setup-host.sh');
    dir = mkdtempSync(path.join(os.tmpdir(), 'hyperlet-waits-vm-'));
    mkdirSync(path.join(dir, 'manifests'));
    daemon = new Daemon({
      sources: [{ type: 'dir', location: path.join(dir, 'manifests') }], statePath: statePath(), lxcpath: '/nonexistent',
      libvirtUri: 'qemu:///system', kinds: ['VirtualMachine'], node: 'e2e', nodeFilter: false, resyncMs: 30_000,
      concurrency: 1, qps: 100, burst: 100, shutdownTimeoutMs: 30_000,
    }, silentLogger());
    await daemon.start();
    declare(SLOW_NS, SLOW, 'Running');
    await until('the slow VM to run', async () => (await domState(ALL_DOMAINS[0]!)) === 'running', 120_000, 100);
  });

  after(async () => {
    await daemon?.stop();
    for (const domain of ALL_DOMAINS) {
      await virsh('destroy', domain).catch(() => undefined);
      await virsh('undefine', domain).catch(() => undefined);
    }
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  it('defines and starts other namespaces\' VMs during the wait, then destroys the domain at the deadline', async () => {
    const slow = ALL_DOMAINS[0]!;
    declare(SLOW_NS, SLOW, 'Stopped');
    const requested = await until('the stop to be asked for', () => stopDeadline(), 60_000, 100);
    expect(requested.deadlineMs - requested.requestedAtMs).to.equal(GRACE_SECONDS * 1000);
    for (const name of OTHERS) declare(OTHER_NS, name, 'Running');
    for (const domain of ALL_DOMAINS.slice(1)) await until(`${domain} to run`, async () => (await domState(domain)) === 'running', 60_000, 100);
    const othersRunningMs = Date.now();
    expect(await domState(slow), 'the stop still waits while the only worker started the others').to.equal('running');
    let lastRunningMs = Date.now();
    const stoppedMs = await until(`${slow} to be shut off`, async () => {
      const now = Date.now();
      const state = await domState(slow);
      if (state === 'running') lastRunningMs = now;
      return state === 'shut off' ? now : undefined;
    }, 60_000, 100);
    const reason = (await virsh('domstate', slow, '--reason')).trim();
    const facts = {
      othersRunningAfterRequestMs: othersRunningMs - requested.requestedAtMs,
      lastRunningAfterRequestMs: lastRunningMs - requested.requestedAtMs,
      stoppedAfterRequestMs: stoppedMs - requested.requestedAtMs,
      reason,
    };
    console.log(`      graceful VM stop with one worker: ${JSON.stringify(facts)}`);
    expect(facts.othersRunningAfterRequestMs, 'two VMs defined and started within the grace').to.be.below(GRACE_SECONDS * 1000);
    expect(facts.lastRunningAfterRequestMs, 'not destroyed before the deadline').to.be.at.least(GRACE_SECONDS * 1000 - 1_000);
    expect(facts.stoppedAfterRequestMs, 'destroyed at the deadline, within a poll')
      .to.be.within(GRACE_SECONDS * 1000 - 1_000, GRACE_SECONDS * 1000 + 6_000);
    expect(reason, 'destroyed, not shut down by the guest').to.equal('shut off (destroyed)');
    await until('the stop to be forgotten', () => stopDeadline() === undefined, 30_000, 100);
  });
});
