/**
 * Notifications end to end: a real `hyperlet run` (real LXC busybox containers in a temp lxcpath)
 * sending CloudEvents to two real HTTP receivers on 127.0.0.1. One stays up; the other is down
 * while the containers are created, the daemon is killed with SIGKILL and restarted, and the
 * receiver then fails with 500s, answers too slowly, flaps, and finally recovers. Every event in
 * the outbox must reach both receivers exactly once per id (they de-duplicate by id), in outbox
 * order per object, signed with the secret, which never appears in the log.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { StateDb } from '../../src/state/state-db.js';
import { DaemonProcess } from './support/daemon-process.js';
import { until } from './support/until.js';
import { type ReceivedEvent, WebhookReceiver } from './support/webhook-receiver.js';

const run = promisify(execFile);
const suffix = randomBytes(2).toString('hex');
const n = (name: string): string => `ops${suffix}-${name}`;

const container = (name: string, extra: string[] = [], template = 'busybox'): string => [
  'apiVersion: hyperlet.io/v1alpha1', 'kind: Container', 'metadata:', `  name: ${name}`, 'spec:', `  template: ${template}`,
  '  state: Running', '  gracefulStopSeconds: 1', '  resources:', '    cpu: 1', '    memory: 64Mi', '  network:', '    - type: none',
  ...extra, '',
].join('\n');

interface OutboxRow { seq: number; id: string; key: string; type: string }

describe('notifications: outbox, retries and circuit breaker against real receivers', function () {
  this.timeout(300_000);
  let tmp = '';
  let lxcpath = '';
  let statePath = '';
  let daemon: DaemonProcess | undefined;
  const secret = Buffer.from(`secret-${randomBytes(8).toString('hex')}`);
  const flaky = new WebhookReceiver(secret);
  const steady = new WebhookReceiver(secret);
  let args: string[] = [];

  const outbox = (): OutboxRow[] => {
    const db = new StateDb(statePath, { readonly: true });
    try {
      return db.outboxAfter(0, 100_000).map((e) => ({ seq: e.seq, id: e.id, key: e.key, type: e.type }));
    } finally {
      db.close();
    }
  };
  const subjectOf = (key: string): string => {
    const [, namespace, kind, name] = key.split('/');
    return `${kind}/${namespace}/${name}`;
  };
  const about = (r: WebhookReceiver, name: string): ReceivedEvent[] => r.events.filter((e) => e.subject === `Container/default/${name}`);
  const typesFor = (r: WebhookReceiver, name: string): string[] => about(r, name).map((e) => e.type);
  const phasesFor = (r: WebhookReceiver, name: string): string[] =>
    about(r, name).filter((e) => e.type.endsWith('phase.changed')).map((e) => e.data.phase as string);

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('needs root (LXC containers)');
    await access('/usr/share/lxc/templates/lxc-busybox').catch(() => { throw new Error('needs the LXC busybox template: run make host'); });
    tmp = await mkdtemp(join(tmpdir(), `hyperlet-ops-notify-${suffix}-`));
    // Unprivileged containers' mapped root must pass through the directories above their lxcpath.
    await chmod(tmp, 0o711);
    lxcpath = join(tmp, 'lxc');
    statePath = join(tmp, 'state', 'state.db');
    await mkdir(lxcpath);
    await mkdir(join(tmp, 'manifests'));
    await writeFile(join(tmp, 'secret'), `${secret.toString('utf8')}\n`);
    await steady.up();
    await flaky.up();
    await flaky.down(); // its port is known, and refused
    args = [
      '--source', `dir:${join(tmp, 'manifests')}`, '--lxcpath', lxcpath, '--state', statePath, '--http', '127.0.0.1:0',
      '--kinds', 'Container',
      '--node', n('node'), '--notify', flaky.url, '--notify', steady.url, '--notify-secret-file', join(tmp, 'secret'),
      '--notify-timeout', '500ms', '--notify-max-retry-delay', '1s', '--resync', '5s',
    ];
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && daemon !== undefined) console.error(`--- daemon log ---\n${await daemon.logTail(60)}`);
  });

  after(async () => {
    await daemon?.stop('SIGKILL');
    await flaky.down();
    await steady.down();
    for (const name of await readdir(lxcpath).catch(() => [] as string[])) {
      await run('lxc-stop', ['-P', lxcpath, '-n', name, '-k'], { timeout: 30_000 }).catch(() => undefined);
      await run('lxc-destroy', ['-P', lxcpath, '-n', name], { timeout: 60_000 }).catch(() => undefined);
    }
    if (tmp !== '') await rm(tmp, { recursive: true, force: true });
  });

  it('every event reaches both receivers once per id, in order per object, across an outage and a kill -9', async () => {
    for (const name of ['a', 'b', 'c']) await writeFile(join(tmp, 'manifests', `${name}.yaml`), container(n(name)));
    await writeFile(join(tmp, 'manifests', 'drift.yaml'), container(n('drift'), ['  driftPolicy: Report']));
    await writeFile(join(tmp, 'manifests', 'broken.yaml'), container(n('broken'), [], 'no-such-template'));
    daemon = await DaemonProcess.start(args, join(tmp, 'daemon-1.log'));

    // The steady receiver hears of every container running and of the broken one failing, while the other is down.
    await until('the steady receiver to see four containers Running and one failure', () => {
      const running = ['a', 'b', 'c', 'drift'].every((x) => phasesFor(steady, n(x)).includes('Running'));
      const failed = typesFor(steady, n('broken')).some((t) => t === 'io.hyperlet.object.failed' || t === 'io.hyperlet.policy.refused');
      return running && failed ? true : undefined;
    }, 120_000);
    expect(flaky.events, 'nothing reached the receiver that is down').to.have.length(0);
    const beforeKill = outbox();
    expect(beforeKill.length).to.be.greaterThan(8);

    await daemon.stop('SIGKILL');
    daemon = await DaemonProcess.start(args, join(tmp, 'daemon-2.log'));

    // Drift after the restart: stopped behind hyperlet's back, reported, left so (driftPolicy Report).
    await run('lxc-stop', ['-P', lxcpath, '-n', n('drift'), '-k'], { timeout: 30_000 });
    const driftSeen = (): true | undefined => (typesFor(steady, n('drift')).includes('io.hyperlet.object.drifted') ? true : undefined);
    await until('the steady receiver to see the drift', driftSeen, 60_000);

    // The flaky receiver comes back, but badly: 500s, then too slow, then flapping, then well.
    await flaky.up();
    const upAtMs = Date.now();
    for (const mode of ['fail', 'slow', 'flap'] as const) {
      flaky.mode = mode;
      await new Promise((r) => setTimeout(r, 1_500));
    }
    flaky.mode = 'ok';
    const recoveredAtMs = Date.now();
    const backlogAtRecovery = outbox().filter((e) => !flaky.ids().has(e.id)).length;
    const deliveredTo = (r: WebhookReceiver): OutboxRow[] | undefined => {
      const rows = outbox();
      return rows.every((e) => r.ids().has(e.id)) ? rows : undefined;
    };
    const firstAll = await until('the flaky receiver to have every event', () => deliveredTo(flaky), 60_000);
    const lastArrivalMs = Math.max(...flaky.events.filter((e) => firstAll.some((row) => row.id === e.id)).map((e) => e.arrivedAtMs));
    await until('the steady receiver to have every event', () => deliveredTo(steady), 60_000);
    // Received ids first, then the outbox: whatever arrived must already be in it.
    const received = [steady, flaky].map((r) => r.ids());
    const all = outbox();
    const want = new Set(all.map((e) => e.id));
    expect(all.length).to.be.at.least(firstAll.length);

    for (const [i, receiver] of [steady, flaky].entries()) {
      const got = received[i] ?? new Set<string>();
      expect(firstAll.filter((e) => !got.has(e.id)).map((e) => e.id), 'ids lost').to.deep.equal([]);
      expect([...got].filter((id) => !want.has(id)), 'ids that are not in the outbox').to.deep.equal([]);
      expect(receiver.stats.badSignatures, 'bad signatures').to.equal(0);
      // In order per object: first arrivals follow outbox order within each subject.
      const seqOf = new Map(all.map((e) => [e.id, e.seq]));
      const bySubject = new Map<string, ReceivedEvent[]>();
      for (const e of receiver.events) bySubject.set(e.subject, [...(bySubject.get(e.subject) ?? []), e]);
      for (const [subject, events] of bySubject) {
        const seqs = events.map((e) => seqOf.get(e.id) ?? -1);
        expect(seqs, `order of ${subject}`).to.deep.equal([...seqs].sort((x, y) => x - y));
        expect(events.map((e) => e.sequence), `sequence attribute of ${subject}`)
          .to.deep.equal(seqs.map((s) => String(s).padStart(20, '0')));
      }
      for (const e of firstAll) expect(receiver.events.find((r) => r.id === e.id)?.subject).to.equal(subjectOf(e.key));
    }
    expect(flaky.stats.answered.get(500) ?? 0, '500s answered').to.be.greaterThan(0);
    expect(flaky.stats.duplicates, 'resent after a timeout or a kill (de-duplicated by id)').to.be.greaterThan(0);
    expect(phasesFor(flaky, n('drift')).slice(-1)).to.deep.equal(['Stopped']);
    expect(typesFor(flaky, n('drift'))).to.include('io.hyperlet.object.drifted');

    const metrics = (await daemon.get('/metrics')).text;
    expect(metrics).to.match(new RegExp(`hyperlet_notify_pending\\{sink="${flaky.url.replace(/[/.]/g, '\\$&')}"\\} 0`));
    const log = (await readFile(join(tmp, 'daemon-1.log'), 'utf8')) + (await readFile(join(tmp, 'daemon-2.log'), 'utf8'));
    expect(log, 'the secret is never logged').to.not.include(secret.toString('utf8'));
    console.log(`      notifications: ${all.length} events (${beforeKill.length} before the kill -9); `
      + `${backlogAtRecovery} still undelivered when the `
      + `flaky receiver recovered, all there ${lastArrivalMs - recoveredAtMs} ms later (${Date.now() - upAtMs} ms after its port opened); `
      + `${flaky.stats.requests} requests, ${flaky.stats.duplicates} duplicates de-duplicated by id`);
  });
});
