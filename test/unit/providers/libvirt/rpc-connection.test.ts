import { expect } from 'chai';
import { isLibvirtError, isNotFound } from '../../../../src/providers/libvirt/libvirt-error.js';
import { RpcConnection } from '../../../../src/providers/libvirt/rpc-connection.js';
import { KEEPALIVE_PROGRAM, MessageType, type RpcMessage } from '../../../../src/providers/libvirt/rpc-framing.js';
import { XdrWriter } from '../../../../src/providers/libvirt/xdr.js';
import { FakeLibvirtd } from './fake-libvirtd.js';

const remoteError = (code: number, domain: number, message: string): Buffer =>
  new XdrWriter().int(code).int(domain).optional(message, (w, s) => w.string(s)).int(2)
    .uint(0).uint(0).uint(0).uint(0).int(0).int(0).uint(0).toBuffer();

describe('RpcConnection', () => {
  let fake: FakeLibvirtd;
  let conn: RpcConnection;
  beforeEach(async () => {
    fake = new FakeLibvirtd();
    await fake.start();
    conn = await RpcConnection.open(fake.socketPath, 2_000, { callTimeoutMs: 2_000 });
  });
  afterEach(async () => {
    conn.close();
    await fake.stop();
  });

  it('matches replies to calls by serial when they come back out of order', async () => {
    fake.onMessage = (_m, f) => {
      if (f.received.length < 3) return;
      for (const m of [...f.received].reverse()) f.reply(m.header.serial, m.header.procedure, new XdrWriter().uint(m.header.procedure * 10).toBuffer());
    };
    const results = await Promise.all([1, 2, 3].map(async (p) => (await conn.call(p, Buffer.alloc(0))).readUInt32BE(0)));
    expect(results).to.deep.equal([10, 20, 30]);
    expect(new Set(fake.received.map((m) => m.header.serial)).size, 'serials are unique').to.equal(3);
  });

  it('maps an ERROR reply to a LibvirtError with code, domain and isNotFound', async () => {
    fake.onMessage = (m, f) => f.reply(m.header.serial, m.header.procedure, remoteError(42, 10, 'Domain not found: no domain with matching name'), 1);
    const err: unknown = await conn.call(23, Buffer.alloc(0)).then(() => undefined, (e: unknown) => e);
    expect(isLibvirtError(err)).to.equal(true);
    expect(isNotFound(err)).to.equal(true);
    if (!isLibvirtError(err)) return;
    expect(err.code).to.equal(42);
    expect(err.domain).to.equal(10);
    expect(err.procedure).to.equal(23);
    expect(err.message).to.match(/^Domain not found/);
  });

  it('routes type-2 messages to events even when they carry the serial of a pending call', async () => {
    const events: [number, string][] = [];
    conn.on('event', (proc, payload) => events.push([proc, payload.toString()]));
    fake.onMessage = (m, f) => {
      f.reply(1, 318, Buffer.from('evnt'), 0, MessageType.Message); // serial 1, as libvirtd sends events
      setTimeout(() => f.reply(m.header.serial, m.header.procedure, Buffer.from('done')), 20);
    };
    const reply = await conn.call(5, Buffer.alloc(0));
    expect(fake.received[0]?.header.serial).to.equal(1);
    expect(reply.toString(), 'the event did not settle the call').to.equal('done');
    expect(events).to.deep.equal([[318, 'evnt']]);
  });

  it('answers a keepalive PING with a PONG', async () => {
    const pong = new Promise<RpcMessage>((resolve) => { fake.onMessage = (m) => { if (m.header.program === KEEPALIVE_PROGRAM) resolve(m); }; });
    fake.reply(0, 1, Buffer.alloc(0), 0, MessageType.Message, KEEPALIVE_PROGRAM);
    const m = await pong;
    expect(m.header.procedure).to.equal(2);
    expect(m.header.type).to.equal(MessageType.Message);
  });

  it('keeps at most 5 calls in flight and sends the rest as slots free up', async () => {
    let maxSeen = 0;
    let answered = 0;
    const outstanding: RpcMessage[] = [];
    fake.onMessage = (m, f) => {
      outstanding.push(m);
      maxSeen = Math.max(maxSeen, outstanding.length);
      setTimeout(() => {
        const next = outstanding.shift();
        if (next !== undefined) { answered++; f.reply(next.header.serial, next.header.procedure, Buffer.alloc(0)); }
      }, 5);
    };
    await Promise.all(Array.from({ length: 12 }, (_, i) => conn.call(i + 1, Buffer.alloc(0))));
    expect(answered).to.equal(12);
    expect(maxSeen).to.equal(5);
  });

  it('fails pending calls with a transport LibvirtError (code 0) when the socket drops', async () => {
    fake.onMessage = (_m, f) => f.dropClient();
    const err: unknown = await conn.call(9, Buffer.alloc(0)).then(() => undefined, (e: unknown) => e);
    expect(isLibvirtError(err) && err.code === 0 && !err.isNotFound).to.equal(true);
    const again: unknown = await conn.call(9, Buffer.alloc(0)).then(() => undefined, (e: unknown) => e);
    expect(isLibvirtError(again), 'later calls fail at once').to.equal(true);
  });

  it('fails a call the daemon never answers after its timeout', async () => {
    const err: unknown = await conn.call(9, Buffer.alloc(0), { timeoutMs: 50 }).then(() => undefined, (e: unknown) => e);
    expect(isLibvirtError(err)).to.equal(true);
    expect((err as Error).message).to.match(/no reply in 50 ms/);
  });
});
