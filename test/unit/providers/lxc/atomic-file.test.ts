import { expect } from 'chai';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { atomicTempPath, writeFileAtomic } from '../../../../src/providers/lxc/atomic-file.js';

describe('writeFileAtomic', () => {
  let dir = '';
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'hyperlet-atomic-')); });
  afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

  it('TempNameIsHiddenBesideAndHyperlets', () => {
    expect(atomicTempPath('/var/lib/lxc/web/hyperlet.json')).to.equal('/var/lib/lxc/web/.hyperlet.json.hyperlet-tmp');
  });

  it('ReplacesTheFileAndLeavesNoTemporaryFile', async () => {
    const path = join(dir, 'config');
    await writeFileAtomic(path, 'old\n', 0o640, { durable: false });
    await writeFileAtomic(path, 'new\n', 0o640);
    expect(await readFile(path, 'utf8')).to.equal('new\n');
    expect(await readdir(dir)).to.deep.equal(['config']);
  });

  it('ReusesTheTemporaryFileAKilledWriteLeft', async () => {
    // What a process killed between writing and renaming leaves: the next write takes it up.
    const path = join(dir, 'hyperlet.json');
    await writeFile(atomicTempPath(path), '{"half":');
    await writeFileAtomic(path, '{}\n', 0o600, { durable: false });
    expect(await readFile(path, 'utf8')).to.equal('{}\n');
    expect(await readdir(dir)).to.deep.equal(['hyperlet.json']);
  });

  it('FailsNamingThePathAndCleansUp', async () => {
    const path = join(dir, 'missing-dir', 'config');
    let err: unknown;
    await writeFileAtomic(path, 'x', 0o600).catch((e: unknown) => { err = e; });
    expect((err as Error).message).to.equal(`cannot write ${path}`);
    expect(await readdir(dir)).to.deep.equal([]);
  });
});
