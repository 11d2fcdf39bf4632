/**
 * The LXC observer's file reads: only "not there" reads as absent. A read that fails for any other
 * reason (a symlink loop, a directory where a file belongs) throws, so a container is never taken
 * for partial (and cleaned up) or missing because the host could not be read. Faults are real
 * ones made in a temporary directory (as root, permissions cannot fail a read).
 */
import { expect } from 'chai';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { CgroupHost } from '../../../../src/providers/lxc/cgroup-host.js';
import { LxcObserver, exists, isDirectory, readIfExists } from '../../../../src/providers/lxc/lxc-observer.js';
import { LxcTools } from '../../../../src/providers/lxc/lxc-tools.js';

describe('LxcObserver file reads', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'hyperlet-observer-'));
    writeFileSync(join(dir, 'file'), 'text');
    mkdirSync(join(dir, 'sub'));
    symlinkSync(join(dir, 'loop-b'), join(dir, 'loop-a'));
    symlinkSync(join(dir, 'loop-a'), join(dir, 'loop-b'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  // 'throws' stands for a rejection; any other string is the text read.
  type Want = boolean | string | undefined;
  const cases: Record<string, { reason: string; path: string; exists: Want; isDirectory: Want; read: Want }> = {
    File: { reason: 'a file is there and reads', path: 'file', exists: true, isDirectory: false, read: 'text' },
    Directory: { reason: 'a directory is no file to read: EISDIR is no answer', path: 'sub', exists: true, isDirectory: true, read: 'throws' },
    Missing: { reason: 'ENOENT is the one "not there"', path: 'missing', exists: false, isDirectory: false, read: undefined },
    UnderAFile: { reason: 'ENOTDIR: a file stands where a directory would be, so nothing is under it', path: 'file/config', exists: false, isDirectory: false, read: undefined },
    SymlinkLoop: { reason: 'ELOOP says nothing about what is there', path: 'loop-a', exists: 'throws', isDirectory: 'throws', read: 'throws' },
  };
  const outcome = async (call: () => Promise<unknown>): Promise<unknown> => call().catch(() => 'throws');
  for (const [name, tc] of Object.entries(cases)) {
    it(name, async () => {
      const path = join(dir, tc.path);
      expect(await outcome(() => exists(path)), `exists: ${tc.reason}`).to.equal(tc.exists);
      expect(await outcome(() => isDirectory(path)), `isDirectory: ${tc.reason}`).to.equal(tc.isDirectory);
      expect(await outcome(() => readIfExists(path)), `readIfExists: ${tc.reason}`).to.equal(tc.read);
    });
  }

  it('a container config that cannot be read fails the observation instead of reading as a partial container', async () => {
    const observer = new LxcObserver({
      lxcpath: dir, tools: new LxcTools({ logger: pino({ level: 'silent' }) }), logger: pino({ level: 'silent' }),
      cgroup: () => Promise.resolve(new CgroupHost({ version: 2, memoryRoot: '/sys/fs/cgroup', cpuRoot: '/sys/fs/cgroup', freezerRoot: '/sys/fs/cgroup' })),
    });
    mkdirSync(join(dir, 'web', 'config'), { recursive: true }); // a directory where the config file belongs
    mkdirSync(join(dir, 'web', 'rootfs'));
    const err = await observer.describe('web', { state: 'STOPPED', ipv4: [] }).then(() => undefined, (e: unknown) => e);
    expect((err as Error | undefined)?.message).to.match(/^cannot read .*\/web\/config/);
    rmSync(join(dir, 'web', 'config'), { recursive: true });
    const missing = await observer.describe('web', { state: 'STOPPED', ipv4: [] });
    expect(missing?.partial, 'a config that is not there is a partial container').to.equal(true);
  });
});
