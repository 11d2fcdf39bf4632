import { expect } from 'chai';
import { compressionOf, downloadKey, leftoverPid, unpackKey } from '../../../../src/providers/images/image-cache.js';

describe('image cache: compression by magic', () => {
  const cases = {
    Gzip: { reason: 'gzip magic 1f 8b', head: [0x1f, 0x8b, 0x08, 0], want: 'gzip' },
    Xz: { reason: 'xz magic FD 37 7A 58 5A 00', head: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 4], want: 'xz' },
    Zstd: { reason: 'zstd magic 28 B5 2F FD', head: [0x28, 0xb5, 0x2f, 0xfd, 0, 0], want: 'zstd' },
    Bzip2: { reason: 'bzip2 magic BZh', head: [0x42, 0x5a, 0x68, 0x39], want: 'bzip2' },
    PlainTar: { reason: 'a tar header starts with a file name: no magic, tar reads it as it is', head: [0x2e, 0x2f, 0, 0], want: 'none' },
    XzCut: { reason: 'half a magic is no magic', head: [0xfd, 0x37, 0x7a], want: 'none' },
    Empty: { reason: 'an empty file', head: [], want: 'none' },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => expect(compressionOf(Uint8Array.from(tc.head)), tc.reason).to.equal(tc.want));
  }
});

describe('image cache: keys and leftovers', () => {
  const image = { url: 'http://127.0.0.1:8080/r.tar.gz' };
  it('keys a download by its URL and declared digest only, and an unpacked tree by its variant too', () => {
    expect(downloadKey(image)).to.match(/^[0-9a-f]{64}$/);
    expect(downloadKey(image)).to.equal(downloadKey({ ...image }));
    expect(downloadKey({ ...image, sha256: 'a'.repeat(64) }), 'a declared digest is another download').to.not.equal(downloadKey(image));
    expect(downloadKey({ url: `${image.url}?v=2` })).to.not.equal(downloadKey(image));
    expect(unpackKey(image, 'idmap:1000000:65536')).to.not.equal(unpackKey(image, 'privileged'));
    expect(unpackKey(image, 'privileged')).to.not.equal(downloadKey(image));
  });
  const leftovers = {
    Partial: { reason: 'a download cut short', name: `.partial-${'a'.repeat(64)}-4242-1f3a`, want: 4242 },
    Staging: { reason: 'an unpack cut short', name: `.staging-${'b'.repeat(64)}-7-2c`, want: 7 },
    Complete: { reason: 'a complete entry is never a leftover', name: 'a'.repeat(64), want: undefined },
    Foreign: { reason: 'a name hyperlet does not make is never touched', name: '.partial-notes.txt', want: undefined },
    ShortKey: { reason: 'the key must be whole', name: `.partial-${'a'.repeat(63)}-1-1`, want: undefined },
  };
  for (const [name, tc] of Object.entries(leftovers)) it(name, () => expect(leftoverPid(tc.name), tc.reason).to.equal(tc.want));
});
