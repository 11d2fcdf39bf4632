/**
 * State-change hints from one long-lived `lxc-monitor -P LXCPATH -n '.*'` child, fanned out to
 * every consumer of changes().
 *
 * Guarantees: each consumer gets the host names of containers whose state changed, each name at
 * most once while it waits to be read; consecutive repeats of a state (lxc-monitor prints FROZEN
 * twice) are dropped. When the child dies it is restarted with backoff, and every container
 * under the lxcpath is then reported once, since events were lost meanwhile.
 * Caveats: a hint, not a log. Events before the child has connected to lxc-monitord are lost;
 * a periodic resync covers them. The child has no timeout: it is meant to live as long as a
 * consumer listens, and is killed when the last one leaves.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import type { Clock } from '../../shared/clock.js';
import { systemClock } from '../../shared/clock.js';

/** One state change lxc-monitor printed. `EXITED` stands for "exited with status [N]". */
export interface MonitorEvent {
  readonly name: string;
  readonly state: string;
}

/** Parses a line such as `'web' changed state to [RUNNING]` or `'web' exited with status [0]`. */
export function parseMonitorLine(line: string): MonitorEvent | undefined {
  const changed = /^'(.+)' changed state to \[([A-Z]+)\]\s*$/.exec(line);
  if (changed?.[1] !== undefined && changed[2] !== undefined) return { name: changed[1], state: changed[2] };
  const exited = /^'(.+)' exited with status \[(-?[0-9]+)\]\s*$/.exec(line);
  if (exited?.[1] !== undefined) return { name: exited[1], state: 'EXITED' };
  return undefined;
}

/**
 * Drops an event that repeats the last state seen for its container; returns whether to pass it
 * on. Clear it when events may have been missed, so the next state always passes.
 */
export class StateDeduplicator {
  private readonly last = new Map<string, string>();

  admit(event: MonitorEvent): boolean {
    if (this.last.get(event.name) === event.state) return false;
    this.last.set(event.name, event.state);
    return true;
  }

  clear(): void {
    this.last.clear();
  }
}

/** Which lxcpath to follow and how. */
export interface LxcMonitorOptions {
  readonly lxcpath: string;
  readonly logger: Logger;
  /** Every container name under the lxcpath: reported after a restart, when events were missed. */
  readonly listNames: () => Promise<readonly string[]>;
  /** First restart delay; doubles per quick failure up to restartMaxMs. 200 ms–10 s. */
  readonly restartMinMs?: number;
  readonly restartMaxMs?: number;
  /** Time for restart delays (default: the system clock). */
  readonly clock?: Clock;
}

interface Subscriber {
  readonly pending: Set<string>;
  wake: (() => void) | undefined;
  closed: boolean;
}

/** A child that lived this long was healthy: its next failure starts the backoff afresh. */
const HEALTHY_AFTER_MS = 30_000;

/** Runs lxc-monitor while anyone listens, restarting it when it dies (see file comment). */
export class LxcMonitor {
  private readonly log: Logger;
  private readonly subscribers = new Set<Subscriber>();
  private readonly dedup = new StateDeduplicator();
  private readonly restartMinMs: number;
  private readonly restartMaxMs: number;
  private child: ChildProcess | undefined;
  private restartTimer: unknown;
  private readonly clock: Clock;
  private failures = 0;
  private startedAt = 0;
  private startCount = 0;
  private closed = false;

  constructor(private readonly options: LxcMonitorOptions) {
    this.log = options.logger.child({ component: 'lxc-monitor', lxcpath: options.lxcpath });
    this.clock = options.clock ?? systemClock;
    this.restartMinMs = options.restartMinMs ?? 200;
    this.restartMaxMs = options.restartMaxMs ?? 10_000;
  }

  /** The pid of the current lxc-monitor child, if one runs. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** How many times a child was started (1 + restarts). */
  get starts(): number {
    return this.startCount;
  }

  /**
   * Host names of containers that changed state, until `signal` fires. The first consumer
   * starts the child; the last one to leave stops it.
   */
  async *changes(signal: AbortSignal): AsyncGenerator<string> {
    const sub: Subscriber = { pending: new Set(), wake: undefined, closed: false };
    this.subscribers.add(sub);
    if (this.closed) sub.closed = true;
    else if (this.child === undefined && this.restartTimer === undefined) this.spawnChild();
    const onAbort = (): void => sub.wake?.();
    signal.addEventListener('abort', onAbort);
    try {
      while (!signal.aborted && !sub.closed) {
        const next = sub.pending.values().next();
        if (next.done === true) {
          await new Promise<void>((resolve) => {
            sub.wake = resolve;
          });
          sub.wake = undefined;
          continue;
        }
        sub.pending.delete(next.value);
        yield next.value;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.subscribers.delete(sub);
      if (this.subscribers.size === 0) this.stop();
    }
  }

  private publish(name: string): void {
    for (const sub of this.subscribers) {
      sub.pending.add(name);
      sub.wake?.();
    }
  }

  private spawnChild(): void {
    this.startCount += 1;
    this.startedAt = this.clock.now();
    const child = spawn('lxc-monitor', ['-P', this.options.lxcpath, '-n', '.*'], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString('utf8')).slice(-2000);
    });
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const event = parseMonitorLine(line);
      if (event !== undefined && this.dedup.admit(event)) this.publish(event.name);
    });
    let gone = false;
    const onGone = (how: string): void => {
      if (gone) return;
      gone = true;
      lines.close();
      if (this.child === child) this.child = undefined;
      if (this.subscribers.size === 0 || this.closed) return; // stopped on purpose
      const lived = this.clock.now() - this.startedAt;
      this.failures = lived > HEALTHY_AFTER_MS ? 1 : this.failures + 1;
      const delayMs = Math.min(this.restartMaxMs, this.restartMinMs * 2 ** (this.failures - 1));
      this.log.warn({ how, stderr: stderr.trim(), delayMs }, 'lxc-monitor ended; restarting it');
      this.restartTimer = this.clock.setTimeout(() => {
        this.restartTimer = undefined;
        if (this.subscribers.size === 0) return;
        this.dedup.clear();
        this.spawnChild();
        this.resyncAll();
      }, delayMs);
    };
    child.once('error', (err) => onGone(`cannot run lxc-monitor: ${err.message}`));
    child.once('close', (code, sig) => onGone(`exit code ${code ?? 'none'}, signal ${sig ?? 'none'}`));
  }

  private resyncAll(): void {
    this.options.listNames().then(
      (names) => names.forEach((n) => this.publish(n)),
      (err: unknown) => this.log.warn({ err }, 'cannot list containers after an lxc-monitor restart'),
    );
  }

  /** Kills the child and ends every consumer's stream, for good; for shutdown. */
  close(): void {
    this.closed = true;
    for (const sub of this.subscribers) sub.closed = true;
    this.stop();
    for (const sub of this.subscribers) sub.wake?.();
  }

  private stop(): void {
    if (this.restartTimer !== undefined) this.clock.clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    const child = this.child;
    this.child = undefined;
    child?.kill('SIGTERM');
    this.dedup.clear();
  }
}
