import { expect } from 'chai';
import { MessageDecoder, MessageType, REMOTE_PROGRAM, encodeMessage, type MessageHeader } from '../../../../src/providers/libvirt/rpc-framing.js';

const header = (serial: number, procedure = 1): MessageHeader => ({ program: REMOTE_PROGRAM, version: 1, procedure, type: MessageType.Call, serial, status: 0 });

describe('RPC framing', () => {
  it('encodes the length counting itself and the 24-byte header', () => {
    const frame = encodeMessage(header(7, 66), Buffer.from('abcd'));
    expect(frame.length).to.equal(32);
    expect(frame.readUInt32BE(0)).to.equal(32);
    expect(frame.readUInt32BE(4)).to.equal(REMOTE_PROGRAM);
    expect(frame.readInt32BE(12)).to.equal(66);
    expect(frame.readUInt32BE(20)).to.equal(7);
  });

  const a = encodeMessage(header(1), Buffer.from('aaaa'));
  const b = encodeMessage(header(2), Buffer.alloc(0));
  const both = Buffer.concat([a, b]);
  const cases = {
    Whole: { reason: 'two frames in one chunk give two messages', chunks: [both] },
    ByteByByte: { reason: 'any split, down to single bytes, gives the same messages', chunks: [...both].map((x) => Buffer.from([x])) },
    SplitHeader: { reason: 'a split inside the length and header is held until complete', chunks: [both.subarray(0, 3), both.subarray(3, 30), both.subarray(30)] },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const d = new MessageDecoder();
      const got = tc.chunks.flatMap((c) => d.push(c));
      expect(got.map((m) => m.header.serial), tc.reason).to.deep.equal([1, 2]);
      expect(got[0]?.payload.toString(), tc.reason).to.equal('aaaa');
      expect(got[1]?.payload.length, tc.reason).to.equal(0);
      expect(d.bufferedBytes).to.equal(0);
    });
  }

  it('rejects a length that cannot be a frame', () => {
    const bad = Buffer.alloc(28);
    bad.writeUInt32BE(10, 0);
    expect(() => new MessageDecoder().push(bad)).to.throw(RangeError);
    const huge = Buffer.alloc(4);
    huge.writeUInt32BE(17_000_000, 0);
    expect(() => new MessageDecoder().push(huge)).to.throw(RangeError);
  });
});
