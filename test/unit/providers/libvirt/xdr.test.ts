import { expect } from 'chai';
import { XdrReader, XdrWriter } from '../../../../src/providers/libvirt/xdr.js';

describe('XdrWriter / XdrReader', () => {
  const cases = {
    Int: {
      reason: 'a signed int is 4 bytes big-endian, two complement',
      write: (w: XdrWriter) => w.int(-2),
      bytes: 'fffffffe',
      read: (r: XdrReader) => r.int(),
      value: -2 as unknown,
    },
    Uint: {
      reason: 'an unsigned int is 4 bytes big-endian',
      write: (w: XdrWriter) => w.uint(0x20008086),
      bytes: '20008086',
      read: (r: XdrReader) => r.uint(),
      value: 0x20008086,
    },
    Hyper: {
      reason: 'a hyper is 8 bytes',
      write: (w: XdrWriter) => w.uhyper(9000000n),
      bytes: '0000000000895440',
      read: (r: XdrReader) => r.uhyper(),
      value: 9000000n,
    },
    StringPadded: {
      reason: 'a string is a length, the bytes and zero padding to 4',
      write: (w: XdrWriter) => w.string('abcde'),
      bytes: '000000056162636465000000',
      read: (r: XdrReader) => r.string(),
      value: 'abcde',
    },
    StringAligned: {
      reason: 'a string whose length is a multiple of 4 gets no padding',
      write: (w: XdrWriter) => w.string('abcd'),
      bytes: '0000000461626364',
      read: (r: XdrReader) => r.string(),
      value: 'abcd',
    },
    Utf8: {
      reason: 'the length counts UTF-8 bytes, not characters',
      write: (w: XdrWriter) => w.string('é'),
      bytes: '00000002c3a90000',
      read: (r: XdrReader) => r.string(),
      value: 'é',
    },
    FixedUuid: {
      reason: 'remote_uuid is opaque[16]: no length prefix',
      write: (w: XdrWriter) => w.fixedOpaque(Buffer.alloc(16, 0xab)),
      bytes: 'ab'.repeat(16),
      read: (r: XdrReader) => r.fixedOpaque(16).toString('hex'),
      value: 'ab'.repeat(16),
    },
    OptionalAbsent: {
      reason: 'an absent optional is a single 0 word',
      write: (w: XdrWriter) => w.optional<string>(undefined, (x, s) => x.string(s)),
      bytes: '00000000',
      read: (r: XdrReader) => r.optional((x) => x.string()),
      value: undefined,
    },
    OptionalPresent: {
      reason: 'a present optional is 1 then the value',
      write: (w: XdrWriter) => w.optional('qemu:///system', (x, s) => x.string(s)),
      bytes: '00000001' + '0000000e' + Buffer.from('qemu:///system').toString('hex') + '0000',
      read: (r: XdrReader) => r.optional((x) => x.string()),
      value: 'qemu:///system',
    },
    Array: {
      reason: 'an array is a count then the elements',
      write: (w: XdrWriter) => w.array([1, 2, 3], (x, v) => x.int(v)),
      bytes: '00000003000000010000000200000003',
      read: (r: XdrReader) => r.array((x) => x.int(), 10),
      value: [1, 2, 3],
    },
    Double: {
      reason: 'a double is 8 bytes IEEE 754 big-endian',
      write: (w: XdrWriter) => w.double(1.5),
      bytes: '3ff8000000000000',
      read: (r: XdrReader) => r.double(),
      value: 1.5,
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const w = new XdrWriter(2); // tiny initial size: exercises growth
      tc.write(w);
      const buf = w.toBuffer();
      expect(buf.toString('hex'), tc.reason).to.equal(tc.bytes);
      const r = new XdrReader(buf);
      expect(tc.read(r), tc.reason).to.deep.equal(tc.value);
      expect(r.remaining, 'everything consumed').to.equal(0);
    });
  }

  const errors = {
    Truncated: { reason: 'a string longer than the data is a RangeError', bytes: '0000000a6162', read: (r: XdrReader) => r.string() },
    ArrayTooLong: { reason: 'an array above its limit is a RangeError', bytes: '00000005', read: (r: XdrReader) => r.array((x) => x.int(), 4) },
    BadOptional: { reason: 'an optional flag other than 0/1 is a RangeError', bytes: '00000002', read: (r: XdrReader) => r.optional((x) => x.int()) },
    ShortInt: { reason: 'an int needs 4 bytes', bytes: '0000', read: (r: XdrReader) => r.int() },
  };
  for (const [name, tc] of Object.entries(errors)) {
    it(`rejects ${name}`, () => {
      expect(() => tc.read(new XdrReader(Buffer.from(tc.bytes, 'hex'))), tc.reason).to.throw(RangeError);
    });
  }

  it('refuses numbers that do not fit', () => {
    expect(() => new XdrWriter().int(2 ** 31)).to.throw(RangeError);
    expect(() => new XdrWriter().uint(-1)).to.throw(RangeError);
    expect(() => new XdrWriter().int(1.5)).to.throw(RangeError);
  });
});
