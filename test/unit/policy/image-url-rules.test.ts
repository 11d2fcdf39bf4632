import { expect } from 'chai';
import { checkImageUrl, filePathOfUrl } from '../../../src/policy/image-url-rules.js';
import { FakePolicyFs } from '../../fakes/fake-policy-fs.js';

const IMAGES = '/var/cache/hyperlet/images';

function host(): FakePolicyFs {
  return new FakePolicyFs({
    [`${IMAGES}/busybox.tar.gz`]: { kind: 'file', bytes: new Uint8Array([0x1f, 0x8b, 8, 0]) },
    [`${IMAGES}/with space.tar`]: { kind: 'file' },
    [`${IMAGES}/shadow-link`]: { kind: 'symlink', target: '/etc/shadow' },
    [`${IMAGES}/dir`]: { kind: 'directory' },
    '/etc/shadow': { kind: 'file' },
    '/dev/sda': { kind: 'block-device' },
  });
}

interface Case { reason: string; url: string; hosts?: string[]; want: undefined | { rule: string; says: string } }

const cases: Record<string, Case> = {
  FileInsideImageDirs: { reason: 'a regular file under an image directory', url: `file://${IMAGES}/busybox.tar.gz`, want: undefined },
  FileEscaped: { reason: 'percent-escapes are decoded before the path is judged', url: `file://${IMAGES}/with%20space.tar`, want: undefined },
  FileOutside: { reason: 'a host secret is outside the image directories', url: 'file:///etc/shadow', want: { rule: 'paths.images', says: 'outside them' } },
  FileDotDot: { reason: '.. is resolved by URL parsing, then judged', url: `file://${IMAGES}/../../../../etc/shadow`, want: { rule: 'paths.images', says: 'outside' } },
  FileLinkOut: { reason: 'a link inside leading outside is judged by its target', url: `file://${IMAGES}/shadow-link`, want: { rule: 'paths.images', says: 'resolves to /etc/shadow' } },
  FileDevice: { reason: 'a device is no image', url: 'file:///dev/sda', want: { rule: 'paths.images', says: 'outside' } },
  FileDirectory: { reason: 'a directory is no tarball', url: `file://${IMAGES}/dir`, want: { rule: 'paths.images', says: 'a directory' } },
  FileMissing: { reason: 'a missing file is reported as such', url: `file://${IMAGES}/nope.tar`, want: { rule: 'paths.images', says: 'does not exist' } },
  FileRemoteHost: { reason: 'file://HOST/ names another machine', url: `file://elsewhere${IMAGES}/busybox.tar.gz`, want: { rule: 'paths.images', says: 'does not name a file' } },
  HttpNoHostsByDefault: { reason: 'no image host is allowed unless the operator lists it', url: 'http://127.0.0.1:8080/r.tar', want: { rule: 'imageHosts', says: 'none allowed' } },
  HttpListed: { reason: 'a listed host:port', url: 'http://127.0.0.1:8080/r.tar', hosts: ['127.0.0.1:8080'], want: undefined },
  HttpAnyPort: { reason: 'a glob over the port', url: 'https://127.0.0.1:4443/r.tar', hosts: ['127.0.0.1:*'], want: undefined },
  HttpOtherPort: { reason: 'host:port is matched as written', url: 'http://127.0.0.1:9/r.tar', hosts: ['127.0.0.1:8080'], want: { rule: 'imageHosts', says: '127.0.0.1:9 is not' } },
  HttpDefaultPort: { reason: 'a host without port matches the URL without one', url: 'https://images.example/r.tar.xz', hosts: ['images.example'], want: undefined },
  HttpLookalike: { reason: 'a glob is anchored at both ends', url: 'https://images.example.evil/r.tar', hosts: ['images.example'], want: { rule: 'imageHosts', says: 'not an allowed' } },
  Credentials: { reason: 'credentials never pass', url: 'https://u:p@images.example/r.tar', hosts: ['*'], want: { rule: 'imageHosts', says: 'credentials' } },
  OtherScheme: { reason: 'only file, http and https', url: 'ftp://images.example/r.tar', hosts: ['*'], want: { rule: 'imageHosts', says: 'ftp URLs are not allowed' } },
};

describe('image URL rules', () => {
  for (const [name, tc] of Object.entries(cases)) {
    it(name, async () => {
      const got = await checkImageUrl(tc.url, { imageDirs: [IMAGES], imageHosts: tc.hosts ?? [] }, host());
      if (tc.want === undefined) {
        expect(got, tc.reason).to.equal(undefined);
        return;
      }
      expect(got?.rule, tc.reason).to.equal(tc.want.rule);
      expect(got?.message, tc.reason).to.contain(tc.want.says);
    });
  }

  it('reads the path of local file URLs only', () => {
    expect(filePathOfUrl('file:///a/b%20c')).to.equal('/a/b c');
    expect(filePathOfUrl('file://localhost/a')).to.equal('/a');
    expect(filePathOfUrl('file://other/a')).to.equal(undefined);
    expect(filePathOfUrl('http://a/b')).to.equal(undefined);
  });
});
