import { expect } from 'chai';
import { TAR_BLOCK, TarScanner, parseTarHeader, tarFileHeader, tarFileMember } from '../../../../src/providers/backup/tar-scanner.js';

/** A header block with typeflag `flag` (its checksum recomputed). */
function withFlag(block: Buffer, flag: string): Buffer {
  const out = Buffer.from(block);
  out.write(flag, 156, 'latin1');
  out.write('        ', 148, 'latin1');
  let sum = 0;
  for (const b of out.subarray(0, TAR_BLOCK)) sum += b;
  out.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return out;
}

/** A header whose size field is base-256 (GNU, over 8 GiB). */
function base256(name: string, sizeBytes: number): Buffer {
  const out = tarFileHeader(name, 0, 0);
  out.fill(0, 124, 136);
  out[124] = 0x80;
  let n = sizeBytes;
  for (let i = 135; i > 124; i--) {
    out[i] = n % 256;
    n = Math.floor(n / 256);
  }
  return withFlag(out, '0');
}

describe('TarScanner', () => {
  const cases = {
    MembersAndEnd: {
      reason: 'two members of odd sizes then the end block: headers, data with padding, end; bytes after the end are ignored',
      input: Buffer.concat([tarFileMember('a', Buffer.from('hello'), 0), tarFileMember('b', Buffer.alloc(700, 1), 0), Buffer.alloc(2048)]),
      want: { names: ['a', 'b'], sizes: [5, 700], dataBytes: 512 + 1024, done: true },
    },
    PaxSizeOverride: {
      reason: 'tar puts a size over 8 GiB in the pax header and 0 in the ustar field: the pax size rules',
      input: Buffer.concat([
        withFlag(tarFileHeader('PaxHeaders/big', 19, 0), 'x'),
        Buffer.from('19 size=9663676416\n'.padEnd(512, '\0')),
        tarFileHeader('big', 0, 0),
      ]),
      want: { names: ['PaxHeaders/big', 'big'], sizes: [19, 9663676416], dataBytes: 512, done: false },
    },
    Base256Size: {
      reason: 'GNU tar writes a size over 8 GiB as base-256 with the high bit set',
      input: base256('huge', 2 ** 34 + 5),
      want: { names: ['huge'], sizes: [2 ** 34 + 5], dataBytes: 0, done: false },
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      // Fed in 100-byte chunks: headers and data split across pushes.
      const scanner = new TarScanner();
      const names: string[] = [];
      const sizes: number[] = [];
      let dataBytes = 0;
      for (let at = 0; at < tc.input.length; at += 100) {
        for (const piece of scanner.push(tc.input.subarray(at, at + 100))) {
          if (piece.type === 'header') {
            names.push(piece.header.name);
            sizes.push(piece.header.sizeBytes);
          } else if (piece.type === 'data') dataBytes += piece.bytes.length;
        }
      }
      expect({ names, sizes, dataBytes, done: scanner.done }, tc.reason).to.deep.equal(tc.want);
    });
  }

  it('refuses a block whose checksum is wrong', () => {
    const block = tarFileHeader('a', 1, 0);
    block[0] = 'b'.charCodeAt(0);
    expect(() => parseTarHeader(block)).to.throw(/bad checksum/);
    expect(block.length).to.equal(TAR_BLOCK);
  });
});
