import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { shiftedId } from '../../../../src/providers/lxc/id-shift.js';
import { ensureSubordinateRange, parseSubordinateIds, planSubordinateRange } from '../../../../src/providers/lxc/subordinate-ids.js';

const range = { hostId: 1_000_000, size: 65_536 };

describe('subordinate id ranges', () => {
  const cases: Record<string, { reason: string; text: string; want: string }> = {
    Empty: { reason: 'no file or no entries: add root\'s', text: '', want: 'append' },
    RootCovers: { reason: 'an entry of root covering the range is enough', text: 'root:1000000:65536\n', want: 'present' },
    RootCoversWider: { reason: 'a wider range of root covers it too', text: 'root:100000:1000000000\n', want: 'present' },
    UidZeroCovers: { reason: 'root may be written as 0', text: '0:1000000:65536\n', want: 'present' },
    RootPartial: { reason: 'a part is not enough: add the whole', text: 'root:1000000:1000\n', want: 'append' },
    UserElsewhere: { reason: 'useradd\'s ranges below do not overlap', text: 'alice:100000:65536\nbob:165536:65536\n', want: 'append' },
    UserOverlaps: { reason: 'another owner holding part of the range is a conflict', text: 'alice:100000:65536\nmallory:1050000:65536\n', want: 'conflict' },
    TouchesEnd: { reason: 'a range ending right where ours starts does not overlap', text: 'carol:934464:65536\n', want: 'append' },
    Comments: { reason: 'comments and junk are skipped', text: '# root:1000000:65536\nnot a line\n', want: 'append' },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => expect(planSubordinateRange(parseSubordinateIds(tc.text), range).action, tc.reason).to.equal(tc.want));
  }

  it('names the conflicting line and owner', () => {
    const plan = planSubordinateRange(parseSubordinateIds('alice:100000:65536\nmallory:1050000:65536\n'), range);
    expect(plan).to.deep.equal({ action: 'conflict', entry: { owner: 'mallory', start: 1050000, count: 65536, line: 2 } });
  });

  describe('ensureSubordinateRange on a file', () => {
    let dir = '';
    beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'hyperlet-subid-')); });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it('creates the file, then leaves it alone (idempotent)', async () => {
      const file = join(dir, 'subuid');
      expect(await ensureSubordinateRange(file, range)).to.equal(true);
      expect(await ensureSubordinateRange(file, range)).to.equal(false);
      expect(readFileSync(file, 'utf8')).to.equal('root:1000000:65536\n');
    });

    it('appends on a line of its own, keeping what was there', async () => {
      const file = join(dir, 'subgid');
      writeFileSync(file, 'alice:100000:65536');
      await ensureSubordinateRange(file, range);
      expect(readFileSync(file, 'utf8')).to.equal('alice:100000:65536\nroot:1000000:65536\n');
    });

    it('refuses an overlap and writes nothing', async () => {
      const file = join(dir, 'subuid');
      writeFileSync(file, 'mallory:1000000:10\n');
      const err = await ensureSubordinateRange(file, range).then(() => undefined, (e: unknown) => e as Error);
      expect(err?.message).to.match(/^cannot map unprivileged containers onto ids 1000000-1065535: .*subuid line 1 gives 1000000-1000009 to mallory/);
      expect(readFileSync(file, 'utf8')).to.equal('mallory:1000000:10\n');
    });
  });
});

describe('shiftedId', () => {
  const cases: Record<string, { reason: string; id: number; want: number }> = {
    Root: { reason: 'container root is the first id of the range', id: 0, want: 1_000_000 },
    User: { reason: 'ids keep their offset', id: 1000, want: 1_001_000 },
    Last: { reason: 'the last id of the range', id: 65_535, want: 1_065_535 },
    Past: { reason: 'an id past the range becomes its last (nobody), never a host id outside it', id: 100_000, want: 1_065_535 },
  };
  for (const [name, tc] of Object.entries(cases)) it(name, () => expect(shiftedId(tc.id, range), tc.reason).to.equal(tc.want));
});
