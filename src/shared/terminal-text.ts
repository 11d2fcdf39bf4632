/**
 * Text made safe for a terminal: a console log or a commit subject written by someone else must
 * not move the cursor, retitle the window, rewrite the clipboard (OSC 52) or hide earlier lines.
 */

/**
 * ESC sequences: CSI (ESC [ … final byte), OSC / DCS / SOS / PM / APC strings (ended by BEL or
 * ESC \), and two-character escapes; plus the 8-bit C1 forms of CSI and OSC.
 */
// eslint-disable-next-line no-control-regex
const ESCAPE_SEQUENCE = /\u001b\[[0-?]*[ -/]*[@-~]|\u009b[0-?]*[ -/]*[@-~]|(?:\u001b[\]PX^_]|[\u009d\u0090\u0098\u009e\u009f])[^\u0007\u001b\u009c]*(?:\u0007|\u001b\\|\u009c)?|\u001b[ -/]*[0-~]?/g;
/** Control characters left once sequences are gone, except tab, new line and the CR of a CRLF. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]|\r(?!\n)/g;

/**
 * `text` without terminal control sequences and control characters; tab and new line stay, a
 * carriage return stays only before a new line (CRLF console output).
 */
export function stripTerminalControls(text: string): string {
  return text.replace(ESCAPE_SEQUENCE, '').replace(CONTROL, '');
}

/** One line for a table cell: control sequences stripped and any new line or tab shown as a space. */
export function terminalCell(text: string): string {
  return stripTerminalControls(text).replace(/\r?\n|\t/g, ' ');
}

/**
 * stripTerminalControls for a stream: bytes in, safe text out. A UTF-8 character or an escape
 * sequence cut by a chunk boundary is held back until the next chunk completes it (at most
 * MAX_HELD_CHARS, so a lone ESC never holds the stream).
 */
export class TerminalFilter {
  private readonly decoder = new TextDecoder('utf-8');
  private held = '';

  /** The safe text of `chunk` (and of what was held back before it). */
  push(chunk: Uint8Array): string {
    let text = this.held + this.decoder.decode(chunk, { stream: true });
    this.held = '';
    // eslint-disable-next-line no-control-regex
    const tail = /(?:\u001b(?:\[[0-?]*[ -/]*|[\]PX^_][^\u0007\u001b]*|\u001b?)?|\u001b[\]PX^_][^\u0007]*\u001b)$/.exec(text);
    if (tail !== null && tail[0].length <= MAX_HELD_CHARS) {
      this.held = tail[0];
      text = text.slice(0, tail.index);
    }
    return stripTerminalControls(text);
  }

  /** What is left at the end of the stream. */
  end(): string {
    const text = this.held + this.decoder.decode();
    this.held = '';
    return stripTerminalControls(text);
  }
}

/** Longest unfinished escape sequence held back between chunks. */
const MAX_HELD_CHARS = 256;
