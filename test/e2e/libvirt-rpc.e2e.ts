/**
 * Protocol-level tests of the libvirt RPC client against the real libvirtd, on a private
 * test-driver host (test:///PATH/node.xml): handshake, listing, a lifecycle with its events,
 * stats, error mapping and pipelined calls. Needs libvirtd running (scripts/setup-host.sh).
 */
import { expect } from 'chai';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import {
  DomainState, Flags, LibvirtClient, LifecycleEventType, uuidFromBytes, type LifecycleEvent,
} from '../../src/providers/libvirt/libvirt-client.js';
import { isLibvirtError, LibvirtErrorCode } from '../../src/providers/libvirt/libvirt-error.js';

const SOCKET = '/run/libvirt/libvirt-sock';
const logger = pino({ level: 'silent' });

describe('libvirt RPC client against libvirtd (test driver)', function () {
  this.timeout(60_000);
  let dir: string;
  let client: LibvirtClient;
  const events: LifecycleEvent[] = [];

  before(async () => {
    if (!existsSync(SOCKET)) throw new Error(`cannot run: ${SOCKET} is missing; run scripts/setup-host.sh (libvirtd must be running)`);
    dir = mkdtempSync(path.join(os.tmpdir(), 'hyperlet-rpc-e2e-'));
    writeFileSync(path.join(dir, 'node.xml'), '<node/>');
    client = new LibvirtClient({ uri: `test://${path.join(dir, 'node.xml')}`, logger });
    await client.connect();
    client.on('lifecycle', (e) => events.push(e));
  });
  after(async () => {
    await client?.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('opens a session and reads the library version', async () => {
    const v = await client.getLibVersion();
    expect(v).to.be.greaterThanOrEqual(9_000_000);
  });

  it('starts on an empty private host', async () => {
    expect(await client.listAllDomains()).to.deep.equal([]);
  });

  it('runs a lifecycle and delivers its events in order', async () => {
    const name = `hyperlet-e2e-rpc-${process.pid}`;
    const dom = await client.domainDefineXml(`<domain type="test"><name>${name}</name><memory unit="KiB">65536</memory><os><type>hvm</type></os></domain>`);
    expect(dom.name).to.equal(name);
    expect((await client.listAllDomains()).map((d) => d.name)).to.deep.equal([name]);
    await client.domainCreate(dom);
    expect(await client.domainGetState(dom)).to.deep.equal({ state: DomainState.Running, reason: 1 });
    const info = await client.domainGetInfo(dom);
    expect(info.state).to.equal(DomainState.Running);
    expect(info.memoryKiB).to.equal(65536n);
    await client.domainSuspend(dom);
    const stats = await client.getAllDomainStats(Flags.StatsState);
    expect(stats.map((s) => [s.domain.name, s.params.get('state.state')])).to.deep.equal([[name, DomainState.Paused]]);
    await client.domainResume(dom);
    await client.domainDestroy(dom);
    await client.domainUndefine(dom, 0);
    expect(await client.lookupDomainByName(name), 'not found is an answer').to.equal(undefined);
    const deadline = Date.now() + 5_000;
    while (events.length < 6 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(events.map((e) => [e.domain.name, e.event, e.detail])).to.deep.equal([
      [name, LifecycleEventType.Defined, 0], [name, LifecycleEventType.Started, 0], [name, LifecycleEventType.Suspended, 0],
      [name, LifecycleEventType.Resumed, 0], [name, LifecycleEventType.Stopped, 1], [name, LifecycleEventType.Undefined, 0],
    ]);
    expect(uuidFromBytes(events[0]!.domain.uuid)).to.equal(uuidFromBytes(dom.uuid));
  });

  it('maps a call on a missing domain to LibvirtError NoDomain', async () => {
    const err: unknown = await client.domainGetState({ name: 'missing', uuid: Buffer.alloc(16, 1), id: -1 }).then(() => undefined, (e: unknown) => e);
    expect(isLibvirtError(err) && err.code === LibvirtErrorCode.NoDomain && err.isNotFound).to.equal(true);
  });

  it('maps a bad XML to a LibvirtError that is not "not found"', async () => {
    const err: unknown = await client.domainDefineXml('<domain><name>x</name>').then(() => undefined, (e: unknown) => e);
    expect(isLibvirtError(err) && !err.isNotFound && err.code !== 0).to.equal(true);
  });

  it('pipelines many overlapping calls on one socket', async () => {
    const before = client.callCount;
    const versions = await Promise.all(Array.from({ length: 200 }, () => client.getLibVersion()));
    expect(new Set(versions).size).to.equal(1);
    expect(client.callCount - before).to.equal(200);
  });
});
