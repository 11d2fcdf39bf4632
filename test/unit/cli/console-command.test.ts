import { expect } from 'chai';
import { parseEscape, splitAtEscape } from '../../../src/cli/console-command.js';
import { escapeForLxcConsole } from '../../../src/providers/lxc/lxc-console.js';

describe('hyperlet console: escape key', () => {
  const escapes: Record<string, { reason: string; value: string; want: number | RegExp }> = {
    Default: { reason: 'virsh\'s Ctrl-]', value: '^]', want: 0x1d },
    CtrlLetter: { reason: '^b is Ctrl-B', value: '^b', want: 0x02 },
    CtrlUpper: { reason: 'case does not matter', value: '^B', want: 0x02 },
    CtrlUnderscore: { reason: '^_ is 0x1f', value: '^_', want: 0x1f },
    Plain: { reason: 'one ASCII character as it is', value: '~', want: 0x7e },
    TwoChars: { reason: 'more than one character means nothing', value: 'ab', want: /cannot use "ab"/ },
    CaretDigit: { reason: '^1 is no control character', value: '^1', want: /cannot use/ },
    NonAscii: { reason: 'a byte must be one character', value: 'é', want: /cannot use/ },
    Empty: { reason: 'nothing', value: '', want: /cannot use/ },
  };
  for (const [name, tc] of Object.entries(escapes)) {
    it(`parseEscape ${name}`, () => {
      if (typeof tc.want === 'number') expect(parseEscape(tc.value), tc.reason).to.equal(tc.want);
      else expect(() => parseEscape(tc.value), tc.reason).to.throw(tc.want);
    });
  }

  const splits: Record<string, { reason: string; chunk: number[]; forward: number[]; detach: boolean }> = {
    None: { reason: 'no escape: everything goes', chunk: [0x61, 0x0d], forward: [0x61, 0x0d], detach: false },
    Alone: { reason: 'the escape alone detaches, nothing is sent', chunk: [0x1d], forward: [], detach: true },
    After: { reason: 'bytes typed before the escape still go', chunk: [0x61, 0x62, 0x1d, 0x63], forward: [0x61, 0x62], detach: true },
  };
  for (const [name, tc] of Object.entries(splits)) {
    it(`splitAtEscape ${name}`, () => {
      const r = splitAtEscape(Buffer.from(tc.chunk), 0x1d);
      expect([...r.forward], tc.reason).to.deep.equal(tc.forward);
      expect(r.detach, tc.reason).to.equal(tc.detach);
    });
  }

  const lxc: Record<string, { reason: string; input: number[]; want: number[] }> = {
    Plain: { reason: 'no Ctrl-a: unchanged', input: [0x6c, 0x73, 0x0d], want: [0x6c, 0x73, 0x0d] },
    CtrlA: { reason: 'Ctrl-a doubled types one Ctrl-a (lxc-console would read "Ctrl-a q" as quit)', input: [0x01, 0x71], want: [0x01, 0x01, 0x71] },
    Two: { reason: 'each one doubled', input: [0x01, 0x01], want: [0x01, 0x01, 0x01, 0x01] },
  };
  for (const [name, tc] of Object.entries(lxc)) {
    it(`escapeForLxcConsole ${name}`, () => {
      expect([...escapeForLxcConsole(Buffer.from(tc.input))], tc.reason).to.deep.equal(tc.want);
    });
  }
});
