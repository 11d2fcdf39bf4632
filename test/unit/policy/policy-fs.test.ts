import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nodePolicyFs } from '../../../src/policy/policy-fs.js';

describe('nodePolicyFs (the real file system)', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'hyperlet-policy-fs-'));
    writeFileSync(join(dir, 'image.raw'), 'QFI\u00fbhello');
    symlinkSync(join(dir, 'image.raw'), join(dir, 'link'));
    symlinkSync('/etc/hostname', join(dir, 'outside'));
    execFileSync('mkfifo', [join(dir, 'fifo')]);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const cases: Record<string, { reason: string; path: () => string; kind: string | undefined; bytes?: number }> = {
    RegularFile: { reason: 'a regular file is read', path: () => join(dir, 'image.raw'), kind: 'file', bytes: 10 },
    Link: { reason: 'O_NOFOLLOW: a link is reported, never followed', path: () => join(dir, 'link'), kind: 'symlink', bytes: 0 },
    Fifo: { reason: 'a FIFO is reported without blocking on it', path: () => join(dir, 'fifo'), kind: 'fifo', bytes: 0 },
    CharDevice: { reason: '/dev/null is a device, not opened', path: () => '/dev/null', kind: 'char-device', bytes: 0 },
    Directory: { reason: 'a directory is no file', path: () => dir, kind: 'directory', bytes: 0 },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, async () => {
      expect(await nodePolicyFs.kindOf(tc.path()), tc.reason).to.equal(tc.kind);
      const head = await nodePolicyFs.readHead(tc.path(), 4096);
      expect(head.kind, tc.reason).to.equal(tc.kind);
      expect(head.bytes.length, tc.reason).to.equal(tc.bytes);
    });
  }

  it('realpath resolves links and says undefined for what does not exist', async () => {
    expect(await nodePolicyFs.realpath(join(dir, 'link'))).to.equal(join(dir, 'image.raw'));
    expect(await nodePolicyFs.realpath(join(dir, 'missing'))).to.equal(undefined);
    expect(await nodePolicyFs.realpath(join(dir, 'image.raw', 'below'))).to.equal(undefined);
    expect(await nodePolicyFs.kindOf(join(dir, 'missing'))).to.equal(undefined);
  });
});
