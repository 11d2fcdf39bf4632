/**
 * Progress of a long CLI operation (waiting for objects, pulling an image, a backup, a restore,
 * a drain): on a terminal, one line redrawn in place with a bar, the count, the elapsed time and
 * what is happening; anywhere else (a pipe, a log, CI), plain lines, one each time the count or
 * the step changes, so a log reads as a history and never fills with redraws.
 *
 * Guarantees: on a terminal, at most one redraw per `redrawMs` (the last state is always drawn
 * by `finish`); lines never exceed the terminal's width; `finish` leaves the cursor on a fresh line.
 */
import { type Clock, systemClock } from '../shared/clock.js';

/** Where progress is written: a terminal when `isTTY` is true. */
export interface ProgressStream {
  readonly isTTY?: boolean;
  readonly columns?: number;
  write(text: string): unknown;
}

/** Where progress goes, what it says and how often it may redraw. */
export interface ProgressOptions {
  readonly stream: ProgressStream;
  /** What is being done ("waiting for Ready", "pulling debian-12"). */
  readonly label: string;
  /** The count at which the operation is done; without it only the count and the step show. */
  readonly total?: number;
  /** "objects", "MiB": the unit of the count. */
  readonly unit?: string;
  readonly clock?: Clock;
  /** Least time between two redraws on a terminal (default 100 ms). */
  readonly redrawMs?: number;
}

const BAR_WIDTH = 20;

/** One long operation's progress line (see the module comment); `finish` once at the end. */
export class Progress {
  private readonly clock: Clock;
  private readonly startedAtMs: number;
  private done = 0;
  private total: number | undefined;
  private step = '';
  private lastPlain = '';
  private lastDrawMs = Number.NEGATIVE_INFINITY;
  private pending: unknown;
  private finished = false;

  constructor(private readonly options: ProgressOptions) {
    this.clock = options.clock ?? systemClock;
    this.startedAtMs = this.clock.now();
    this.total = options.total;
  }

  /** Whether progress redraws one line (a terminal) or writes plain lines. */
  get interactive(): boolean {
    return this.options.stream.isTTY === true;
  }

  /** Sets the count (and the total, when it became known) and what is happening now. */
  update(done: number, step = this.step, total = this.total): void {
    if (this.finished) return;
    this.done = done;
    this.step = step;
    this.total = total;
    if (!this.interactive) {
      const line = this.plainLine();
      if (line !== this.lastPlain) this.options.stream.write(`${line}\n`);
      this.lastPlain = line;
      return;
    }
    const wait = this.lastDrawMs + (this.options.redrawMs ?? 100) - this.clock.now();
    if (wait <= 0) this.draw();
    else this.pending ??= this.clock.setTimeout(() => this.draw(), wait);
  }

  /** Ends the progress with a last line saying how it ended. */
  finish(outcome: string): void {
    if (this.finished) return;
    this.finished = true;
    this.clock.clearTimeout(this.pending);
    const line = `${this.options.label}: ${outcome} (${this.elapsed()})`;
    this.options.stream.write(this.interactive ? `\r\x1b[2K${this.fit(line)}\n` : `${line}\n`);
  }

  private draw(): void {
    this.pending = undefined;
    this.lastDrawMs = this.clock.now();
    this.options.stream.write(`\r\x1b[2K${this.fit(this.ttyLine())}`);
  }

  private ttyLine(): string {
    const total = this.total;
    const filled = total === undefined || total <= 0 ? 0 : Math.round((BAR_WIDTH * Math.min(this.done, total)) / total);
    const bar = total === undefined || total <= 0 ? '' : ` [${'#'.repeat(filled).padEnd(BAR_WIDTH, '.')}]`;
    const percent = total === undefined || total <= 0 ? '' : ` ${Math.floor((100 * Math.min(this.done, total)) / total)}%`;
    return `${this.options.label}${bar} ${this.count()}${percent} ${this.elapsed()}${this.step === '' ? '' : `  ${this.step}`}`;
  }

  private plainLine(): string {
    return `${this.options.label}: ${this.count()}${this.step === '' ? '' : ` ${this.step}`}`;
  }

  private count(): string {
    const unit = this.options.unit === undefined ? '' : ` ${this.options.unit}`;
    return this.total === undefined ? `${this.done}${unit}` : `${this.done}/${this.total}${unit}`;
  }

  private elapsed(): string {
    const s = Math.floor((this.clock.now() - this.startedAtMs) / 1000);
    return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  }

  private fit(line: string): string {
    // A pseudo-terminal without a size (script(1), some CI runners) says 0 columns: assume 80.
    const reported = this.options.stream.columns ?? 0;
    const columns = reported >= 20 ? reported : 80;
    return line.length < columns ? line : `${line.slice(0, Math.max(0, columns - 2))}…`;
  }
}
