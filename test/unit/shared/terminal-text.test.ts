import { expect } from 'chai';
import { TerminalFilter, stripTerminalControls, terminalCell } from '../../../src/shared/terminal-text.js';

describe('stripTerminalControls', () => {
  const cases: Record<string, { reason: string; text: string; want: string }> = {
    PlainText: { reason: 'ordinary text, tabs and new lines pass', text: 'a\tb\nc\n', want: 'a\tb\nc\n' },
    Colors: { reason: 'SGR color sequences go', text: '\u001b[31mred\u001b[0m', want: 'red' },
    CursorMoves: { reason: 'cursor movement and erase could hide earlier lines', text: 'ok\u001b[1A\u001b[2Kfake', want: 'okfake' },
    WindowTitle: { reason: 'OSC 0 retitles the window; ended by BEL', text: '\u001b]0;pwned\u0007after', want: 'after' },
    Clipboard: { reason: 'OSC 52 writes the clipboard; ended by ESC \\', text: 'x\u001b]52;c;ZWNobyBoaQ==\u001b\\y', want: 'xy' },
    UnterminatedOsc: { reason: 'an OSC never ended swallows the rest, not the terminal', text: 'x\u001b]0;title', want: 'x' },
    C1Csi: { reason: 'the 8-bit CSI is a sequence too', text: 'a\u009b2Jb', want: 'ab' },
    DeviceControl: { reason: 'DCS strings go', text: 'a\u001bPq#0;2;0;0;0\u001b\\b', want: 'ab' },
    BareControls: { reason: 'bell, backspace, NUL and DEL go', text: 'a\u0007b\bc\u0000d\u007fe', want: 'abcde' },
    CarriageReturn: { reason: 'a lone CR rewrites the line; the CR of CRLF stays', text: 'secret\rpublic\r\nnext', want: 'secretpublic\r\nnext' },
    LoneEscape: { reason: 'a trailing ESC is dropped', text: 'end\u001b', want: 'end' },
  };
  for (const [name, tc] of Object.entries(cases)) it(name, () => expect(stripTerminalControls(tc.text), tc.reason).to.equal(tc.want));

  it('makes a table cell one line', () => {
    expect(terminalCell('fix:\u001b[2J\tthe\nthing\r\n')).to.equal('fix: the thing ');
  });
});

describe('TerminalFilter', () => {
  const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
  const cases: Record<string, { reason: string; chunks: Uint8Array[]; want: string }> = {
    WholeSequences: { reason: 'sequences inside one chunk go', chunks: [enc('a\u001b[31mb\u001b[0m\n')], want: 'ab\n' },
    SplitCsi: { reason: 'a CSI cut after its parameters is completed by the next chunk, then removed', chunks: [enc('a\u001b[3'), enc('1mb')], want: 'ab' },
    SplitAfterEsc: { reason: 'a chunk ending in ESC waits for the next byte', chunks: [enc('a\u001b'), enc('[2Jb')], want: 'ab' },
    SplitOsc: { reason: 'an OSC title cut in the middle still goes whole', chunks: [enc('a\u001b]0;ti'), enc('tle\u0007b')], want: 'ab' },
    SplitUtf8: { reason: 'a multi-byte character cut in two is kept whole', chunks: [new Uint8Array([0x61, 0xc3]), new Uint8Array([0xa4, 0x62])], want: 'aäb' },
    LoneEscAtEnd: { reason: 'an ESC at the very end of the stream is dropped, not printed', chunks: [enc('end\u001b')], want: 'end' },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const f = new TerminalFilter();
      const out = tc.chunks.map((c) => f.push(c)).join('') + f.end();
      expect(out, tc.reason).to.equal(tc.want);
    });
  }
});
