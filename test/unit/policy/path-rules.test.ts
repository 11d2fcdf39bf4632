import { expect } from 'chai';
import { checkBackupDir, checkBackupFile, checkImageFile, checkRootfsDir, isInside } from '../../../src/policy/path-rules.js';
import { parseQcow2Header } from '../../../src/policy/qcow2-header.js';
import { FakePolicyFs, qcow2Bytes } from '../../fakes/fake-policy-fs.js';

const IMAGES = '/var/lib/hyperlet/images';
const ROOTFS = '/var/lib/hyperlet/rootfs';

/** A host with the usual suspects and an image directory holding good and bad things. */
function host(): FakePolicyFs {
  return new FakePolicyFs({
    '/dev/sda': { kind: 'block-device' },
    '/dev/null': { kind: 'char-device' },
    '/etc/shadow': { kind: 'file', bytes: new TextEncoder().encode('root:*:19000:0:99999:7:::\n') },
    '/proc/1/root': { kind: 'symlink', target: '/' },
    '/sys/kernel': { kind: 'directory' },
    [`${IMAGES}/base.raw`]: { kind: 'file', bytes: new Uint8Array(512) },
    [`${IMAGES}/base.qcow2`]: { kind: 'file', bytes: qcow2Bytes() },
    [`${IMAGES}/child.qcow2`]: { kind: 'file', bytes: qcow2Bytes({ backing: 'base.qcow2' }) },
    [`${IMAGES}/grandchild.qcow2`]: { kind: 'file', bytes: qcow2Bytes({ version: 2, backing: `${IMAGES}/child.qcow2` }) },
    [`${IMAGES}/evil-backing.qcow2`]: { kind: 'file', bytes: qcow2Bytes({ backing: '/etc/shadow' }) },
    [`${IMAGES}/evil-relative.qcow2`]: { kind: 'file', bytes: qcow2Bytes({ backing: '../../../../etc/shadow' }) },
    [`${IMAGES}/evil-device.qcow2`]: { kind: 'file', bytes: qcow2Bytes({ backing: '/dev/sda' }) },
    [`${IMAGES}/evil-protocol.qcow2`]: { kind: 'file', bytes: qcow2Bytes({ backing: 'nbd:127.0.0.1:10809' }) },
    [`${IMAGES}/evil-json.qcow2`]: { kind: 'file', bytes: qcow2Bytes({ backing: 'json:{"file.filename":"/etc/shadow"}' }) },
    [`${IMAGES}/evil-datafile.qcow2`]: { kind: 'file', bytes: qcow2Bytes({ dataFile: '/dev/sda' }) },
    [`${IMAGES}/good-datafile.qcow2`]: { kind: 'file', bytes: qcow2Bytes({ dataFile: 'base.raw' }) },
    [`${IMAGES}/loop-a.qcow2`]: { kind: 'file', bytes: qcow2Bytes({ backing: 'loop-b.qcow2' }) },
    [`${IMAGES}/loop-b.qcow2`]: { kind: 'file', bytes: qcow2Bytes({ backing: 'loop-a.qcow2' }) },
    [`${IMAGES}/cut.qcow2`]: { kind: 'file', bytes: qcow2Bytes({ backing: 'base.raw' }).subarray(0, 80) },
    [`${IMAGES}/shadow-link`]: { kind: 'symlink', target: '/etc/shadow' },
    [`${IMAGES}/sda-link`]: { kind: 'symlink', target: '/dev/sda' },
    [`${IMAGES}/good-link`]: { kind: 'symlink', target: 'base.raw' },
    [`${IMAGES}/fifo`]: { kind: 'fifo' },
    [`${IMAGES}/socket`]: { kind: 'socket' },
    [`${IMAGES}/subdir`]: { kind: 'directory' },
    [`${IMAGES}-evil/x.raw`]: { kind: 'file' },
    '/srv/images/vm.raw': { kind: 'file' },
    '/var/lib/hyperlet/linked': { kind: 'symlink', target: '/srv/images' },
    [`${ROOTFS}/alpine`]: { kind: 'directory' },
    [`${ROOTFS}/to-root`]: { kind: 'symlink', target: '/' },
    [`${ROOTFS}/to-etc`]: { kind: 'symlink', target: '/etc' },
    [`${ROOTFS}/a-file`]: { kind: 'file' },
  });
}

interface Case { reason: string; path: string; dirs?: string[]; want: RegExp | undefined }

const imageCases: Record<string, Case> = {
  RawImageInside: { reason: 'a regular file inside an allowed directory', path: `${IMAGES}/base.raw`, want: undefined },
  Qcow2WithoutBacking: { reason: 'a qcow2 with nothing behind it', path: `${IMAGES}/base.qcow2`, want: undefined },
  Qcow2RelativeBackingInside: { reason: 'a relative backing name resolves beside the image, inside', path: `${IMAGES}/child.qcow2`, want: undefined },
  Qcow2ChainInside: { reason: 'every link of the chain is checked, and all are inside', path: `${IMAGES}/grandchild.qcow2`, want: undefined },
  Qcow2DataFileInside: { reason: 'an external data file inside is fine', path: `${IMAGES}/good-datafile.qcow2`, want: undefined },
  LinkInsideToInside: { reason: 'a link is judged by where it leads', path: `${IMAGES}/good-link`, want: undefined },
  AllowedDirIsALink: { reason: 'the allowed directory itself may be a link (resolved too)', path: '/var/lib/hyperlet/linked/vm.raw', dirs: ['/var/lib/hyperlet/linked'], want: undefined },
  BlockDevice: { reason: 'the host disk', path: '/dev/sda', want: /^\/dev\/sda is not a regular file under an allowed image directory \(\/var\/lib\/hyperlet\/images\): it is outside them$/ },
  BlockDeviceInAllowedDir: { reason: 'a device is refused even where devices are "allowed"', path: '/dev/sda', dirs: ['/dev'], want: /it is a block device/ },
  CharDevice: { reason: '/dev/null is no image', path: '/dev/null', dirs: ['/dev'], want: /it is a character device/ },
  ShadowFile: { reason: 'a host secret outside the directories', path: '/etc/shadow', want: /^\/etc\/shadow is not a regular file .*: it is outside them$/ },
  LinkEscape: { reason: 'a link inside leading outside', path: `${IMAGES}/shadow-link`, want: /it is outside them \(it resolves to \/etc\/shadow\)/ },
  LinkToDevice: { reason: 'a link to a device', path: `${IMAGES}/sda-link`, want: /resolves to \/dev\/sda/ },
  DotDotEscape: { reason: '.. is resolved before the check', path: `${IMAGES}/../../../../etc/shadow`, want: /outside them/ },
  PrefixIsNotInside: { reason: '/var/lib/hyperlet/images-evil is not inside /var/lib/hyperlet/images', path: `${IMAGES}-evil/x.raw`, want: /outside them/ },
  Fifo: { reason: 'a FIFO would block a reader forever', path: `${IMAGES}/fifo`, want: /it is a FIFO/ },
  Socket: { reason: 'a socket is no image', path: `${IMAGES}/socket`, want: /it is a socket/ },
  Directory: { reason: 'a directory is no image', path: `${IMAGES}/subdir`, want: /it is a directory/ },
  Missing: { reason: 'a path that does not exist', path: `${IMAGES}/nope.raw`, want: /it does not exist/ },
  BackingOutside: { reason: 'a qcow2 reaching /etc/shadow through its backing file', path: `${IMAGES}/evil-backing.qcow2`, want: /its backing file \/etc\/shadow is refused: \/etc\/shadow is outside them/ },
  BackingRelativeEscape: { reason: 'a relative backing name climbing out', path: `${IMAGES}/evil-relative.qcow2`, want: /its backing file \/etc\/shadow is refused/ },
  BackingDevice: { reason: 'a qcow2 over the host disk', path: `${IMAGES}/evil-device.qcow2`, want: /its backing file \/dev\/sda is refused/ },
  BackingProtocol: { reason: 'QEMU reads "nbd:" as a network protocol', path: `${IMAGES}/evil-protocol.qcow2`, want: /is not a plain file name/ },
  BackingJson: { reason: 'QEMU reads "json:{…}" as options naming any file', path: `${IMAGES}/evil-json.qcow2`, want: /is not a plain file name/ },
  DataFileDevice: { reason: 'a v3 external data file on the host disk', path: `${IMAGES}/evil-datafile.qcow2`, want: /its data file \/dev\/sda is refused/ },
  BackingLoop: { reason: 'a loop of backing files ends at the depth limit', path: `${IMAGES}/loop-a.qcow2`, want: /longer than 16/ },
  CutHeader: { reason: 'a header pointing past what was read cannot be checked, so it is refused', path: `${IMAGES}/cut.qcow2`, want: /header cannot be checked/ },
  NothingAllowed: { reason: 'a policy with no image directories allows no image', path: `${IMAGES}/base.raw`, dirs: [], want: /\(none allowed\)/ },
};

const rootfsCases: Record<string, Case> = {
  DirectoryInside: { reason: 'a prepared tree inside an allowed directory', path: `${ROOTFS}/alpine`, want: undefined },
  HostRoot: { reason: 'the host itself', path: '/', want: /^\/ can never be a container rootfs/ },
  HostRootEvenIfAllowed: { reason: '/ is refused whatever the policy says', path: '/', dirs: ['/'], want: /can never be a container rootfs/ },
  Proc: { reason: 'the kernel\'s process interface', path: '/proc', dirs: ['/'], want: /can never be/ },
  ProcChild: { reason: 'below /proc too', path: '/proc/1/root', dirs: ['/'], want: /can never be a container rootfs \(it resolves to \/\)/ },
  Sys: { reason: 'sysfs', path: '/sys/kernel', dirs: ['/'], want: /can never be/ },
  Dev: { reason: 'devices', path: '/dev', dirs: ['/'], want: /can never be/ },
  Etc: { reason: 'a host directory outside the allowed ones', path: '/etc', want: /^\/etc is not a directory under an allowed rootfs directory \(\/var\/lib\/hyperlet\/rootfs\): it is outside them$/ },
  LinkToRoot: { reason: 'a link inside leading to /', path: `${ROOTFS}/to-root`, want: /can never be a container rootfs \(it resolves to \/\)/ },
  LinkToEtc: { reason: 'a link inside leading outside', path: `${ROOTFS}/to-etc`, want: /outside them \(it resolves to \/etc\)/ },
  File: { reason: 'a file is no tree', path: `${ROOTFS}/a-file`, want: /it is a regular file/ },
  Missing: { reason: 'a tree that does not exist', path: `${ROOTFS}/nope`, want: /it does not exist/ },
  AllowedDirItself: { reason: 'the allowed directory holds trees; it is not one', path: ROOTFS, want: /outside them/ },
};

describe('host policy: image paths', () => {
  for (const [name, tc] of Object.entries(imageCases)) {
    it(name, async () => {
      const fs = host();
      const got = await checkImageFile(tc.path, tc.dirs ?? [IMAGES], fs);
      if (tc.want === undefined) expect(got, tc.reason).to.equal(undefined);
      else expect(got, tc.reason).to.match(tc.want);
      for (const opened of fs.opened) expect(opened, 'only regular files are opened').to.not.match(/^\/dev\//);
    });
  }
});

describe('host policy: rootfs paths', () => {
  for (const [name, tc] of Object.entries(rootfsCases)) {
    it(name, async () => {
      const got = await checkRootfsDir(tc.path, tc.dirs ?? [ROOTFS], host());
      if (tc.want === undefined) expect(got, tc.reason).to.equal(undefined);
      else expect(got, tc.reason).to.match(tc.want);
    });
  }
});

describe('isInside', () => {
  const cases: Record<string, { reason: string; path: string; dir: string; want: boolean }> = {
    Child: { reason: 'a child', path: '/a/b', dir: '/a', want: true },
    Itself: { reason: 'a directory is not inside itself', path: '/a', dir: '/a', want: false },
    Sibling: { reason: 'a shared prefix is not a parent', path: '/ab/c', dir: '/a', want: false },
    Root: { reason: 'everything but / is inside /', path: '/x', dir: '/', want: true },
  };
  for (const [name, tc] of Object.entries(cases)) it(name, () => expect(isInside(tc.path, tc.dir), tc.reason).to.equal(tc.want));
});

describe('parseQcow2Header', () => {
  const cases: Record<string, { reason: string; bytes: Uint8Array; want: Record<string, unknown> }> = {
    NotQcow2: { reason: 'raw images have no magic', bytes: new Uint8Array(512), want: { qcow2: false } },
    Empty: { reason: 'an empty file is not qcow2', bytes: new Uint8Array(0), want: { qcow2: false } },
    V3Plain: { reason: 'version 3, nothing behind it', bytes: qcow2Bytes(), want: { qcow2: true, version: 3 } },
    V2Backing: { reason: 'version 2 names its backing file', bytes: qcow2Bytes({ version: 2, backing: 'base.img' }), want: { qcow2: true, version: 2, backingFile: 'base.img' } },
    V3DataFile: { reason: 'version 3 may name an external data file', bytes: qcow2Bytes({ dataFile: '/dev/sdb', backing: 'b' }), want: { qcow2: true, version: 3, dataFile: '/dev/sdb', backingFile: 'b' } },
    Short: { reason: 'magic but no header', bytes: qcow2Bytes().subarray(0, 10), want: { qcow2: true, unreadable: 'the header is cut short' } },
  };
  for (const [name, tc] of Object.entries(cases)) it(name, () => expect(parseQcow2Header(tc.bytes), tc.reason).to.deep.include(tc.want));
});

describe('checkBackupFile', () => {
  const BACKUPS = '/var/lib/hyperlet/backups';
  const fs = (): FakePolicyFs => new FakePolicyFs({
    [`${BACKUPS}/old.tar.zst`]: { kind: 'file' },
    [`${BACKUPS}/fifo`]: { kind: 'fifo' },
    [`${BACKUPS}/out`]: { kind: 'symlink', target: '/etc' },
    [`${BACKUPS}/shadow`]: { kind: 'symlink', target: '/etc/shadow' },
    '/etc/shadow': { kind: 'file' },
    '/tmp/x.tar.zst': { kind: 'file' },
  });
  const cases: Record<string, { reason: string; path: string; mode: 'read' | 'write'; want?: RegExp }> = {
    WriteNew: { reason: 'a new file in the backup directory', path: `${BACKUPS}/web.tar.zst`, mode: 'write' },
    WriteExisting: { reason: 'backups are never overwritten', path: `${BACKUPS}/old.tar.zst`, mode: 'write', want: /exists already/ },
    WriteOutside: { reason: 'a directory the policy does not name', path: '/tmp/web.tar.zst', mode: 'write', want: /outside them/ },
    WriteThroughLink: { reason: 'a link inside leading outside is judged by where it leads', path: `${BACKUPS}/out/passwd`, mode: 'write', want: /resolves to \/etc/ },
    WriteNoDir: { reason: 'the directory must exist', path: `${BACKUPS}/nope/web.tar.zst`, mode: 'write', want: /does not exist/ },
    Relative: { reason: 'a relative path depends on the daemon\'s working directory', path: 'web.tar.zst', mode: 'write', want: /not an absolute path/ },
    ReadFile: { reason: 'an archive in the backup directory', path: `${BACKUPS}/old.tar.zst`, mode: 'read' },
    ReadFifo: { reason: 'never a FIFO', path: `${BACKUPS}/fifo`, mode: 'read', want: /a FIFO/ },
    ReadLinkOut: { reason: 'a link to /etc/shadow is outside', path: `${BACKUPS}/shadow`, mode: 'read', want: /outside them/ },
    ReadOutside: { reason: 'a file outside', path: '/tmp/x.tar.zst', mode: 'read', want: /outside them/ },
    ReadMissing: { reason: 'a missing file', path: `${BACKUPS}/none`, mode: 'read', want: /does not exist/ },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, async () => {
      const got = await checkBackupFile(tc.path, tc.mode, [BACKUPS], fs());
      if (tc.want === undefined) expect(got, tc.reason).to.equal(undefined);
      else expect(got, tc.reason).to.match(tc.want);
    });
  }
});

describe('checkBackupDir', () => {
  const BACKUPS = '/var/lib/hyperlet/backups';
  const fs = (): FakePolicyFs => new FakePolicyFs({
    [`${BACKUPS}/web/x`]: { kind: 'file' },
    [`${BACKUPS}/file`]: { kind: 'file' },
    [`${BACKUPS}/etc-link`]: { kind: 'symlink', target: '/etc' },
    '/etc/passwd': { kind: 'file' },
  });
  const cases: Record<string, { reason: string; path: string; want?: RegExp }> = {
    TheDirItself: { reason: 'the allowed directory itself', path: BACKUPS },
    Inside: { reason: 'a directory inside it', path: `${BACKUPS}/web` },
    Outside: { reason: 'a directory elsewhere', path: '/etc', want: /outside them/ },
    LinkOut: { reason: 'judged by where a link leads', path: `${BACKUPS}/etc-link`, want: /resolves to \/etc/ },
    AFile: { reason: 'a file is no directory', path: `${BACKUPS}/file`, want: /not a directory/ },
    Missing: { reason: 'it must exist', path: `${BACKUPS}/none`, want: /does not exist/ },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, async () => {
      const got = await checkBackupDir(tc.path, [BACKUPS], fs());
      if (tc.want === undefined) expect(got, tc.reason).to.equal(undefined);
      else expect(got, tc.reason).to.match(tc.want);
    });
  }
});
