import { expect } from 'chai';
import { isLibvirtError, isNotFound } from '../../../../src/providers/libvirt/libvirt-error.js';
import { RpcConnection } from '../../../../src/providers/libvirt/rpc-connection.js';
import { KEEPALIVE_PROGRAM, MessageStatus, MessageType, type RpcMessage } from '../../../../src/providers/libvirt/rpc-framing.js';
import { type RpcStream, STREAM_PAYLOAD_MAX_BYTES } from '../../../../src/providers/libvirt/rpc-stream.js';
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

  describe('streams (DOMAIN_OPEN_CONSOLE)', () => {
    /** Opens a stream on procedure 201; the fake answers the call, sending `early` as stream data first. */
    async function open(early: string[] = []): Promise<{ stream: RpcStream; serial: number }> {
      let serial = 0;
      fake.onMessage = (m, f) => {
        if (m.header.type !== MessageType.Call) return;
        serial = m.header.serial;
        for (const e of early) f.reply(serial, 201, Buffer.from(e), MessageStatus.Continue, MessageType.Stream);
        f.reply(serial, 201, Buffer.alloc(0));
      };
      const stream = await conn.openStream(201, Buffer.alloc(0));
      return { stream, serial };
    }

    const cases: Record<string, { reason: string; early: string[]; then: [status: number, payload: Buffer][]; data: string; err?: RegExp }> = {
      DataThenEnd: {
        reason: 'CONTINUE packets are data in order; OK with no payload is a clean end',
        early: [], then: [[MessageStatus.Continue, Buffer.from('ab')], [MessageStatus.Continue, Buffer.from('c')], [MessageStatus.Ok, Buffer.alloc(0)]],
        data: 'abc',
      },
      DataBeforeTheReply: {
        reason: 'data sent before the call was answered is kept for the stream, before later data',
        early: ['x', 'y'], then: [[MessageStatus.Continue, Buffer.from('z')], [MessageStatus.Ok, Buffer.alloc(0)]], data: 'xyz',
      },
      DaemonError: {
        reason: 'ERROR carries a remote_error: the end says why',
        early: [], then: [[MessageStatus.Continue, Buffer.from('q')], [MessageStatus.Error, remoteError(1, 10, 'internal error: character device console0 is not using a PTY')]],
        data: 'q', err: /not using a PTY/,
      },
    };
    for (const [name, tc] of Object.entries(cases)) {
      it(name, async () => {
        const { stream, serial } = await open(tc.early);
        let data = '';
        stream.on('data', (c) => { data += c.toString(); });
        const ended = new Promise<Error | undefined>((resolve) => stream.once('end', resolve));
        stream.resume();
        for (const [status, payload] of tc.then) fake.reply(serial, 201, payload, status, MessageType.Stream);
        const err = await ended;
        expect(data, tc.reason).to.equal(tc.data);
        if (tc.err === undefined) expect(err, tc.reason).to.equal(undefined);
        else expect(err?.message, tc.reason).to.match(tc.err);
      });
    }

    it('sends writes as STREAM CONTINUE packets of the opening serial and procedure, split at the payload limit, and finish as OK', async () => {
      const { stream, serial } = await open();
      const got: RpcMessage[] = [];
      const done = new Promise<void>((resolve) => {
        fake.onMessage = (m) => { got.push(m); if (m.header.status === MessageStatus.Ok) resolve(); };
      });
      stream.resume();
      stream.write(Buffer.alloc(STREAM_PAYLOAD_MAX_BYTES + 10, 7));
      stream.finish();
      stream.write(Buffer.from('after the end'));
      await done;
      expect(got.map((m) => [m.header.type, m.header.procedure, m.header.serial, m.header.status, m.payload.length])).to.deep.equal([
        [MessageType.Stream, 201, serial, MessageStatus.Continue, STREAM_PAYLOAD_MAX_BYTES],
        [MessageType.Stream, 201, serial, MessageStatus.Continue, 10],
        [MessageType.Stream, 201, serial, MessageStatus.Ok, 0],
      ]);
    });

    it('ends open streams with an error when the connection drops', async () => {
      const { stream } = await open();
      const ended = new Promise<Error | undefined>((resolve) => stream.once('end', resolve));
      stream.resume();
      await fake.stop();
      expect((await ended)?.message).to.match(/connection closed/);
    });

    it('rejects when the daemon refuses to open the stream, and keeps no stream for it', async () => {
      fake.onMessage = (m, f) => f.reply(m.header.serial, 201, remoteError(55, 10, 'Requested operation is not valid: domain is not running'), 1);
      const err: unknown = await conn.openStream(201, Buffer.alloc(0)).then(() => undefined, (e: unknown) => e);
      expect(isLibvirtError(err) && err.message).to.match(/not running/);
    });
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
