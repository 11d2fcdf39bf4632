/**
 * A graceful stop does not hold a worker (issue 10, item 6): `hyperlet run` with one worker
 * (`--concurrency 1`, dir source, real LXC in an isolated lxcpath) stops a container whose init
 * traps SIGPWR and so never shuts down, with gracefulStopSeconds 20. During that wait, containers
 * of another namespace are created and reach RUNNING; the stop is forced at the deadline, not
 * before. Then the daemon is killed (failpoint `lxc.stop.requested`) right after asking a second
 * stop, started again, and the deadline it recorded before asking still holds: no early force,
 * no grace started over. Needs root and the LXC packages (`make host`).
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, chmod, mkdir, mkdtemp, readFile, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseInfo } from '../../src/providers/lxc/lxc-tools.js';
import { StateDb } from '../../src/state/state-db.js';
import { until } from '../support/until.js';
import { DaemonProcess, REPO_ROOT, removeLxcTestDir } from './support/crash-daemon.js';

const run = promisify(execFile);
const suffix = randomBytes(2).toString('hex');
const GRACE_SECONDS = 20;
const SLOW_NS = `waits${suffix}-a`;
const OTHER_NS = `waits${suffix}-b`;
const SLOW = 'waits-slow';
const slowHost = `${SLOW_NS}.${SLOW}`;
const others = ['waits-one', 'waits-two', 'waits-three'];

/**
 * An init that never shuts down on the halt signal: it traps it, counts it in /halt-count and goes
 * on. The busybox template sets lxc.signal.halt = SIGUSR1; LXC's default is SIGPWR: both are trapped.
 */
const STUBBORN_INIT = '#!/bin/sh\ntrap \'echo halt >> /halt-count\' USR1 PWR\nwhile :; do sleep 1; done\n';

function manifest(namespace: string, name: string, state: 'Running' | 'Stopped', graceSeconds = GRACE_SECONDS): string {
  return [
    'apiVersion: hyperlet.io/v1alpha1',
    'kind: Container',
    'metadata:',
    `  name: ${name}`,
    `  namespace: ${namespace}`,
    'spec:',
    '  template: busybox',
    `  state: ${state}`,
    `  gracefulStopSeconds: ${graceSeconds}`,
    '  resources: {cpu: 1, memory: 64Mi}',
    '  network: [{type: none}]',
    '',
  ].join('\n');
}

describe('graceful stops hold no worker (one worker, real LXC)', function () {
  this.timeout(600_000);
  let tmp = '';
  let manifests = '';
  let lxcpath = '';
  let statePath = '';
  let daemon: DaemonProcess | undefined;
  let starts = 0;

  const lxc = (tool: string, args: string[]): Promise<{ stdout: string }> => run(tool, ['-P', lxcpath, ...args], { timeout: 60_000 });
  const lxcState = async (host: string): Promise<string | undefined> => {
    try {
      return parseInfo((await lxc('lxc-info', ['-n', host, '-s'])).stdout).state;
    } catch {
      return undefined;
    }
  };
  const waitState = (host: string, want: string, timeoutMs = 120_000): Promise<true> =>
    until(`${host} to be ${want}`, async () => ((await lxcState(host)) === want ? true : undefined), timeoutMs, 100);
  const declare = (namespace: string, name: string, state: 'Running' | 'Stopped', graceSeconds = GRACE_SECONDS): Promise<void> =>
    writeFile(join(manifests, `${namespace}-${name}.yaml`), manifest(namespace, name, state, graceSeconds));
  /** The graceful stop the state DB holds for the slow container (a fresh read-only look each time). */
  const stopDeadline = (): { requestedAtMs: number; deadlineMs: number } | undefined => {
    const db = new StateDb(statePath, { readonly: true });
    try {
      const key = db.listObjects().find((o) => o.namespace === SLOW_NS && o.name === SLOW)?.key;
      return key === undefined ? undefined : db.stopDeadline(key);
    } finally {
      db.close();
    }
  };
  const haltCount = async (): Promise<number> =>
    (await readFile(join(lxcpath, slowHost, 'rootfs', 'halt-count'), 'utf8').catch(() => '')).split('\n').filter((l) => l !== '').length;

  function start(failpoints: readonly string[] = []): DaemonProcess {
    starts += 1;
    return DaemonProcess.start([
      '--source', `dir:${manifests}`, '--lxcpath', lxcpath, '--state', statePath, '--http', 'off',
      '--kinds', 'Container', '--concurrency', '1', '--resync', '10s', '--log-level', 'info',
    ], join(tmp, `daemon-${starts}.log`), failpoints);
  }

  /** Waits until the slow container is STOPPED; resolves to when it was seen RUNNING last and STOPPED first. */
  async function watchStop(): Promise<{ lastRunningMs: number; stoppedMs: number }> {
    let lastRunningMs = Date.now();
    const stoppedMs = await until(`${slowHost} to be stopped`, async () => {
      const now = Date.now();
      const state = await lxcState(slowHost);
      if (state === 'RUNNING') lastRunningMs = now;
      return state === 'STOPPED' ? now : undefined;
    }, 120_000, 100);
    return { lastRunningMs, stoppedMs };
  }

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('the graceful stop e2e test needs root; run make test as root');
    await access(join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js')).catch(() => { throw new Error('dist/ is missing: run make build first'); });
    await access('/usr/share/lxc/templates/lxc-busybox').catch(() => {
      throw new Error('the graceful stop e2e test needs the busybox template: run make host (lxc-templates, busybox-static)');
    });
    tmp = await mkdtemp(join(tmpdir(), 'hyperlet-waits-'));
    // Unprivileged containers' mapped root must pass through the directories above their lxcpath.
    await chmod(tmp, 0o711);
    manifests = join(tmp, 'manifests');
    lxcpath = join(tmp, 'lxc');
    statePath = join(tmp, 'state', 'state.db');
    await mkdir(manifests);
    await mkdir(lxcpath);
    daemon = start();
    // Made stopped, its init replaced by one that ignores the halt signal, then started.
    await declare(SLOW_NS, SLOW, 'Stopped');
    await until(`${slowHost} to be created`, async () => {
      const marker = await readFile(join(lxcpath, slowHost, 'hyperlet.json'), 'utf8').catch(() => '');
      return /"complete":\s*true/.test(marker) && (await lxcState(slowHost)) === 'STOPPED';
    }, 120_000, 100);
    const init = join(lxcpath, slowHost, 'rootfs', 'sbin', 'init');
    await unlink(init);
    await writeFile(init, STUBBORN_INIT, { mode: 0o755 });
    await declare(SLOW_NS, SLOW, 'Running');
    await waitState(slowHost, 'RUNNING');
  });

  afterEach(async function () {
    if (this.currentTest?.state !== 'failed') return;
    for (let i = 1; i <= starts; i++) console.error(`--- daemon-${i}.log ---\n${await readFile(join(tmp, `daemon-${i}.log`), 'utf8').catch(() => '')}`);
    console.error(`--- lxc-info: ${await lxcState(slowHost)}; halt signals: ${await haltCount()}`);
  });

  after(async () => {
    await daemon?.kill();
    await removeLxcTestDir(tmp, lxcpath);
  });

  it('with one worker, creates and starts other namespaces\' containers during the wait, then forces the stop at the deadline', async () => {
    await declare(SLOW_NS, SLOW, 'Stopped');
    const requested = await until('the stop to be asked for', () => stopDeadline(), 60_000, 100);
    expect(requested.deadlineMs - requested.requestedAtMs).to.equal(GRACE_SECONDS * 1000);
    await until('init to get the halt signal', async () => (await haltCount()) >= 1, 30_000, 100);
    for (const name of others) await declare(OTHER_NS, name, 'Running');
    for (const name of others) await waitState(`${OTHER_NS}.${name}`, 'RUNNING');
    const othersRunningMs = Date.now();
    expect(await lxcState(slowHost), 'the stop still waits while the only worker started the others').to.equal('RUNNING');
    await until('status to show when the stop is forced', () => {
      const db = new StateDb(statePath, { readonly: true });
      try {
        const row = db.listObjects().find((o) => o.namespace === SLOW_NS && o.name === SLOW);
        return row?.status?.details?.stopDeadline === new Date(requested.deadlineMs).toISOString();
      } finally {
        db.close();
      }
    }, 10_000, 100);
    const { lastRunningMs, stoppedMs } = await watchStop();
    const facts = {
      othersRunningAfterRequestMs: othersRunningMs - requested.requestedAtMs,
      lastRunningAfterRequestMs: lastRunningMs - requested.requestedAtMs,
      stoppedAfterRequestMs: stoppedMs - requested.requestedAtMs,
      haltSignalsReceived: await haltCount(),
    };
    console.log(`      graceful stop with one worker: ${JSON.stringify(facts)}`);
    expect(facts.othersRunningAfterRequestMs, 'three containers created and started within the grace').to.be.below(GRACE_SECONDS * 1000);
    expect(facts.lastRunningAfterRequestMs, 'not forced before the deadline').to.be.at.least(GRACE_SECONDS * 1000 - 1_000);
    expect(facts.stoppedAfterRequestMs, 'forced at the deadline, within a poll').to.be.within(GRACE_SECONDS * 1000 - 1_000, GRACE_SECONDS * 1000 + 6_000);
    expect(facts.haltSignalsReceived, 'asked again while waiting (every 5 s)').to.be.at.least(2);
    await until('the stop to be forgotten', () => stopDeadline() === undefined, 30_000, 100);
  });

  it('a daemon killed right after asking keeps the deadline: no early force, no new grace', async () => {
    await declare(SLOW_NS, SLOW, 'Running');
    await waitState(slowHost, 'RUNNING');
    await daemon?.kill();
    daemon = start(['lxc.stop.requested']);
    await declare(SLOW_NS, SLOW, 'Stopped');
    await daemon.diedAt('lxc.stop.requested');
    const before = stopDeadline();
    expect(before, 'the deadline was on disk before the request').to.not.equal(undefined);
    const requested = before!;
    // Down for 8 s: a grace started over at the restart would force at 28 s or later, past the bound below.
    await until('8 s to pass with the daemon down', () => Date.now() >= requested.requestedAtMs + 8_000, 30_000, 100);
    daemon = start();
    const restartedMs = Date.now();
    const { lastRunningMs, stoppedMs } = await watchStop();
    const facts = {
      restartedAfterRequestMs: restartedMs - requested.requestedAtMs,
      lastRunningAfterRequestMs: lastRunningMs - requested.requestedAtMs,
      stoppedAfterRequestMs: stoppedMs - requested.requestedAtMs,
    };
    console.log(`      graceful stop across a restart: ${JSON.stringify(facts)}`);
    expect(facts.lastRunningAfterRequestMs, 'not forced before the deadline set before the crash').to.be.at.least(GRACE_SECONDS * 1000 - 1_000);
    expect(facts.stoppedAfterRequestMs, 'forced at that deadline, not a full grace after the restart')
      .to.be.within(GRACE_SECONDS * 1000 - 1_000, GRACE_SECONDS * 1000 + 6_000);
    // Forgotten once the force has returned (the row goes just after the kill, so wait for it).
    await until('the stop to be forgotten', () => stopDeadline() === undefined, 30_000, 100);
  });

  it('killed with the deadline on disk but not asked yet, then killed right after the force: the stop still ends, once', async () => {
    const grace = 6;
    await declare(SLOW_NS, SLOW, 'Running', grace);
    await waitState(slowHost, 'RUNNING');
    await daemon?.kill();
    const signalsBefore = await haltCount();
    daemon = start(['state.stop-deadline']);
    await declare(SLOW_NS, SLOW, 'Stopped', grace);
    await daemon.diedAt('state.stop-deadline');
    const requested = stopDeadline();
    expect(requested?.deadlineMs, 'the deadline is on disk').to.equal((requested?.requestedAtMs ?? 0) + grace * 1000);
    expect(await haltCount(), 'not asked yet: the deadline comes first').to.equal(signalsBefore);
    expect(await lxcState(slowHost)).to.equal('RUNNING');
    daemon = start(['lxc.stop.forced']);
    await daemon.diedAt('lxc.stop.forced');
    const forcedAfterRequestMs = Date.now() - requested!.requestedAtMs;
    expect(await haltCount(), 'asked after the restart').to.be.above(signalsBefore);
    expect(await lxcState(slowHost), 'killed before the daemon died').to.equal('STOPPED');
    expect(stopDeadline(), 'killed before the row went').to.deep.equal(requested);
    daemon = start();
    await until('the stop to be forgotten after the restart', () => stopDeadline() === undefined, 30_000, 100);
    expect(await lxcState(slowHost)).to.equal('STOPPED');
    console.log(`      crash points of a graceful stop: forced and died ${forcedAfterRequestMs} ms after the first deadline write (grace ${grace} s)`);
    expect(forcedAfterRequestMs, 'not forced before the deadline written before the first crash').to.be.at.least(grace * 1000);
  });
});
