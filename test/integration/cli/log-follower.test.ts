/** LogFollower on real files renamed the way virtlogd (NAME.log -> NAME.log.0) and hyperlet (NAME -> NAME.1) rotate. */
import { expect } from 'chai';
import { appendFileSync, mkdtempSync, readFileSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LogFollower } from '../../../src/cli/log-follower.js';

describe('LogFollower (real files)', () => {
  let dir = '';
  let out = '';
  const copyRange = async (file: string, start: number, end: number): Promise<void> => {
    out += readFileSync(file).subarray(start, end + 1).toString();
  };
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'hyperlet-follow-'));
    out = '';
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  type Step = (log: string, rotated: string) => void;
  const cases: Record<string, { reason: string; steps: Step[]; want: string }> = {
    Appends: {
      reason: 'each copy prints what was appended, once',
      steps: [(l) => appendFileSync(l, 'b'), (l) => appendFileSync(l, 'cd')], want: 'abcd',
    },
    Rotation: {
      reason: 'bytes written just before the rename are read from the rotated part, then the new file from its start',
      steps: [(l, r) => { appendFileSync(l, 'b'); renameSync(l, r); writeFileSync(l, 'c'); }, (l) => appendFileSync(l, 'd')], want: 'abcd',
    },
    RotationNewFileLater: {
      reason: 'a copy between the rename and the new file waits for it',
      steps: [(l, r) => { appendFileSync(l, 'b'); renameSync(l, r); }, (l) => writeFileSync(l, 'c')], want: 'abc',
    },
    Truncated: {
      reason: 'a file seen truncated in place is read again from its start',
      steps: [(l) => truncateSync(l, 0), (l) => appendFileSync(l, 'xy')], want: 'axy',
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, async () => {
      const log = path.join(dir, 'vm.log');
      const rotated = `${log}.0`;
      writeFileSync(log, 'a');
      const f = new LogFollower(log, rotated, copyRange);
      await f.copy();
      for (const step of tc.steps) {
        step(log, rotated);
        await f.copy();
      }
      expect(out, tc.reason).to.equal(tc.want);
    });
  }
});
