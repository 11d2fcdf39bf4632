import { expect } from 'chai';
import pino from 'pino';
import { LibvirtClient, Proc, type LifecycleEvent } from '../../../../src/providers/libvirt/libvirt-client.js';
import { MessageType, type RpcMessage } from '../../../../src/providers/libvirt/rpc-framing.js';
import { XdrReader, XdrWriter } from '../../../../src/providers/libvirt/xdr.js';
import { FakeLibvirtd } from './fake-libvirtd.js';

const logger = pino({ level: 'silent' });

/** Answers the handshake and event registration like libvirtd does for root; counts registrations. */
function scriptHandshake(fake: FakeLibvirtd, state: { registrations: number; uris: (string | undefined)[] }): void {
  fake.onMessage = (m: RpcMessage, f) => {
    const { serial, procedure } = m.header;
    switch (procedure) {
      case Proc.AuthList: f.reply(serial, procedure, new XdrWriter().array([0], (w, v) => w.int(v)).toBuffer()); break;
      case Proc.ConnectOpen: state.uris.push(new XdrReader(m.payload).optional((r) => r.string())); f.reply(serial, procedure, Buffer.alloc(0)); break;
      case Proc.ConnectDomainEventCallbackRegisterAny: f.reply(serial, procedure, new XdrWriter().int(100 + ++state.registrations).toBuffer()); break;
      default: f.reply(serial, procedure, Buffer.alloc(0));
    }
  };
}

const lifecycle = (callbackId: number, name: string, event: number): Buffer =>
  new XdrWriter().int(callbackId).string(name).fixedOpaque(Buffer.alloc(16, 7)).int(-1).int(event).int(0).toBuffer();

const waitUntil = async (what: string, check: () => boolean): Promise<void> => {
  const deadline = Date.now() + 3_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('LibvirtClient', () => {
  let fake: FakeLibvirtd;
  let client: LibvirtClient;
  const state = { registrations: 0, uris: [] as (string | undefined)[] };
  beforeEach(async () => {
    state.registrations = 0;
    state.uris = [];
    fake = new FakeLibvirtd();
    await fake.start();
    scriptHandshake(fake, state);
    client = new LibvirtClient({ socketPath: fake.socketPath, uri: 'test:///x', logger, reconnectInitialMs: 10, reconnectMaxMs: 50 });
  });
  afterEach(async () => {
    await client.close();
    await fake.stop();
  });

  it('does AUTH_LIST, CONNECT_OPEN with the URI, then registers one lifecycle callback', async () => {
    await client.connect();
    expect(fake.received.map((m) => m.header.procedure)).to.deep.equal([Proc.AuthList, Proc.ConnectOpen, Proc.ConnectDomainEventCallbackRegisterAny]);
    expect(state.uris).to.deep.equal(['test:///x']);
    const reg = new XdrReader(fake.received[2]!.payload);
    expect([reg.int(), reg.uint()], 'eventID 0 (lifecycle), no domain filter').to.deep.equal([0, 0]);
  });

  it('delivers lifecycle events of its own callback only', async () => {
    await client.connect();
    const got: LifecycleEvent[] = [];
    client.on('lifecycle', (e) => got.push(e));
    fake.reply(1, Proc.DomainEventCallbackLifecycle, lifecycle(999, 'stranger', 2), 0, MessageType.Message);
    fake.reply(1, Proc.DomainEventCallbackLifecycle, lifecycle(101, 'vm1', 5), 0, MessageType.Message);
    await waitUntil('the event', () => got.length > 0);
    expect(got.map((e) => [e.domain.name, e.event, e.domain.id])).to.deep.equal([['vm1', 5, -1]]);
  });

  it('reconnects after the daemon drops it, registers again and says so', async () => {
    await client.connect();
    let disconnected = 0;
    client.on('disconnected', () => disconnected++);
    const reconnected = new Promise<void>((resolve) => client.once('reconnected', resolve));
    fake.dropClient();
    await reconnected;
    expect(disconnected).to.equal(1);
    expect(state.registrations).to.equal(2);
    expect(client.connected).to.equal(true);
    const got: string[] = [];
    client.on('lifecycle', (e) => got.push(e.domain.name));
    fake.reply(1, Proc.DomainEventCallbackLifecycle, lifecycle(101, 'old-callback', 2), 0, MessageType.Message);
    fake.reply(1, Proc.DomainEventCallbackLifecycle, lifecycle(102, 'vm2', 2), 0, MessageType.Message);
    await waitUntil('the event on the new callback', () => got.length > 0);
    expect(got).to.deep.equal(['vm2']);
  });

  it('fails calls at once while disconnected, with a transient (code 0) error', async () => {
    await client.connect();
    fake.onMessage = () => undefined; // the daemon stops answering the reconnect
    fake.dropClient();
    await waitUntil('the drop', () => !client.connected);
    const err: unknown = await client.getLibVersion().then(() => undefined, (e: unknown) => e);
    expect((err as { code?: number }).code).to.equal(0);
    expect((err as Error).message).to.match(/^cannot call procedure 157: not connected/);
  });

  it('turns not-found into undefined for lookups', async () => {
    await client.connect();
    fake.onMessage = (m, f) => f.reply(m.header.serial, m.header.procedure,
      new XdrWriter().int(42).int(10).optional('Domain not found', (w, s) => w.string(s)).int(2).uint(0).uint(0).uint(0).uint(0).int(0).int(0).uint(0).toBuffer(), 1);
    expect(await client.lookupDomainByName('nope')).to.equal(undefined);
  });
});
