/**
 * The only way hyperlet runs the lxc-* tools: argument arrays, never a shell; a timeout on every
 * call; the tool's stderr in the thrown error. Also the parsers for what the tools print.
 */
import { spawn } from 'node:child_process';
import type { Logger } from 'pino';
import type { InstanceState } from '../provider.js';

/** The tools this provider runs. Anything else is refused, so argv[0] never comes from data. */
export type LxcTool =
  | 'lxc-create' | 'lxc-start' | 'lxc-stop' | 'lxc-freeze' | 'lxc-unfreeze' | 'lxc-destroy' | 'lxc-info'
  | 'lxc-ls' | 'lxc-cgroup' | 'lxc-attach' | 'lxc-monitor' | 'cp';

/** The lxc-* tools the provider runs; probe() checks each is installed. */
export const LXC_TOOLS: readonly LxcTool[] = [
  'lxc-create', 'lxc-start', 'lxc-stop', 'lxc-freeze', 'lxc-unfreeze', 'lxc-destroy', 'lxc-info',
  'lxc-ls', 'lxc-cgroup', 'lxc-attach', 'lxc-monitor',
];

/** What a finished call printed. */
export interface ToolOutput {
  readonly stdout: string;
  readonly stderr: string;
  readonly durationMs: number;
}

/** A tool that ran and failed, timed out, or could not be started. The message ends with its stderr. */
export class LxcToolError extends Error {
  readonly isLxcToolError = true;
  constructor(
    readonly tool: LxcTool,
    readonly args: readonly string[],
    /** The exit code; undefined when the tool was killed or never ran. */
    readonly exitCode: number | undefined,
    readonly stderr: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'LxcToolError';
  }
}

/** Whether `err` is an LxcToolError (by brand, across module copies). */
export function isLxcToolError(err: unknown): err is LxcToolError {
  return typeof err === 'object' && err !== null && (err as { isLxcToolError?: unknown }).isLxcToolError === true;
}

/** Per-run options of an lxc-* tool. */
export interface RunOptions {
  readonly signal: AbortSignal;
  /** Overrides the runner's default timeout for this call (lxc-create, a graceful stop). */
  readonly timeoutMs?: number;
}

/**
 * What the LXC provider needs to run a tool, so it can be given one (dependency injection):
 * LxcTools is the real runner, FakeToolRunner the unit tests'. `run` resolves with the output of
 * a call that exited 0; otherwise it throws LxcToolError (exit code, stderr, and a message made
 * by toolFailureMessage) or an AbortError when `signal` fired first.
 */
export interface LxcToolRunner {
  run(tool: LxcTool, args: readonly string[], options: RunOptions): Promise<ToolOutput>;
}

/** How a failed call reads in errors: "cannot run TOOL ARGS: exit code N: STDERR TAIL" (also a timeout or a spawn failure). */
export function toolFailureMessage(
  tool: LxcTool, args: readonly string[], failure: { code?: number | null; timedOutMs?: number; spawnError?: Error; stderr: string },
): string {
  const what = `cannot run ${[tool, ...args].join(' ')}`;
  const tail = lastChars(failure.stderr.trim(), STDERR_IN_MESSAGE_CHARS);
  if (failure.spawnError !== undefined) {
    const notFound = (failure.spawnError as NodeJS.ErrnoException).code === 'ENOENT';
    return `${what}: ${notFound ? `${tool} is not installed (not found in PATH)` : failure.spawnError.message}`;
  }
  if (failure.timedOutMs !== undefined) return `${what}: timed out after ${failure.timedOutMs} ms${tail === '' ? '' : `: ${tail}`}`;
  return `${what}: exit code ${failure.code ?? 'none (killed)'}${tail === '' ? '' : `: ${tail}`}`;
}

/** How lxc-* tools are run. */
export interface LxcToolsOptions {
  readonly logger: Logger;
  /** 30 s: every lxc-* call but create and graceful stop returns in well under a second here. */
  readonly timeoutMs?: number;
  /** Called after every spawn (metrics, benchmarks counting spawns per resync). */
  readonly onCall?: (tool: LxcTool, durationMs: number, ok: boolean) => void;
}

const MAX_OUTPUT_BYTES = 4 * 1024 * 1024;
const STDERR_IN_MESSAGE_CHARS = 2000;

/**
 * Runs lxc-* tools. Each call gets its own process group, so a timeout or an abort kills what
 * the tool started too (lxc-create's template script keeps running when only lxc-create dies).
 */
/** How long to wait for a tool's pipes to close after it exited or was killed. */
const PIPE_GRACE_MS = 1_000;

/** Runs lxc-* tools with argument arrays only (never a shell), bounded in time, errors carrying their stderr. */
export class LxcTools implements LxcToolRunner {
  private readonly log: Logger;
  private readonly timeoutMs: number;
  private readonly onCall: ((tool: LxcTool, durationMs: number, ok: boolean) => void) | undefined;

  constructor(options: LxcToolsOptions) {
    this.log = options.logger.child({ component: 'lxc-tools' });
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.onCall = options.onCall;
  }

  /**
   * Runs `tool` with `args` and resolves with its output when it exits 0. Throws LxcToolError
   * (exit code, timeout, not installed) with the tool's stderr in the message, or an AbortError
   * when `signal` fires first; either way the tool's process group is killed.
   */
  run(tool: LxcTool, args: readonly string[], options: RunOptions): Promise<ToolOutput> {
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const { signal } = options;
    const started = performance.now();
    return new Promise<ToolOutput>((resolve, reject) => {
      if (signal.aborted) {
        reject(abortError(signal));
        return;
      }
      const child = spawn(tool, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let outBytes = 0;
      let errBytes = 0;
      let timedOut = false;
      let settled = false;
      const killGroup = (): void => {
        if (child.pid === undefined) return;
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // The group is already gone: nothing left to kill.
        }
      };
      const onAbort = (): void => killGroup();
      const timer = setTimeout(() => {
        timedOut = true;
        killGroup();
        // Killed, but something may still hold its pipes: give up on them after the grace period.
        setTimeout(() => finish(null), PIPE_GRACE_MS).unref();
      }, timeoutMs);
      signal.addEventListener('abort', onAbort, { once: true });
      child.stdout.on('data', (chunk: Buffer) => {
        outBytes += chunk.length;
        if (outBytes <= MAX_OUTPUT_BYTES) out.push(chunk);
      });
      child.stderr.on('data', (chunk: Buffer) => {
        errBytes += chunk.length;
        if (errBytes <= MAX_OUTPUT_BYTES) err.push(chunk);
      });
      const finish = (code: number | null, spawnError?: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        const durationMs = performance.now() - started;
        const stdout = Buffer.concat(out).toString('utf8');
        const stderr = Buffer.concat(err).toString('utf8');
        const ok = spawnError === undefined && code === 0 && !timedOut && !signal.aborted;
        this.onCall?.(tool, durationMs, ok);
        this.log.debug({ tool, args, code, durationMs: Math.round(durationMs) }, 'tool call');
        if (ok) {
          resolve({ stdout, stderr, durationMs });
          return;
        }
        if (signal.aborted) {
          reject(abortError(signal));
          return;
        }
        const message = toolFailureMessage(tool, args, {
          code, stderr, ...(timedOut ? { timedOutMs: timeoutMs } : {}), ...(spawnError === undefined ? {} : { spawnError }),
        });
        reject(new LxcToolError(tool, args, code ?? undefined, stderr, message, spawnError === undefined ? undefined : { cause: spawnError }));
      };
      child.once('error', (e) => finish(null, e));
      child.once('close', (code) => finish(code));
      // A daemon the tool started in its own session can keep our pipes open forever: once the tool
      // itself has exited, wait a moment for its output, then stop waiting for the pipes.
      child.once('exit', (code) => {
        setTimeout(() => {
          child.stdout.destroy();
          child.stderr.destroy();
          finish(code);
        }, PIPE_GRACE_MS).unref();
      });
    });
  }
}

function lastChars(text: string, n: number): string {
  return text.length <= n ? text : `…${text.slice(text.length - n)}`;
}

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error && reason.name === 'AbortError') return reason;
  const e = new Error('the operation was aborted', { cause: reason });
  e.name = 'AbortError';
  return e;
}

/** LXC's own state names (lxc_state_t), as lxc-ls and lxc-info print them. */
export type LxcState =
  | 'STOPPED' | 'STARTING' | 'RUNNING' | 'STOPPING' | 'ABORTING' | 'FREEZING' | 'FROZEN' | 'THAWED';

/** One row of `lxc-ls --fancy -F name,state,pid,ipv4,ipv6` (or without the ipv6 column). */
export interface LsEntry {
  readonly name: string;
  readonly state: string;
  readonly pid?: number;
  readonly ipv4: readonly string[];
  readonly ipv6: readonly string[];
}

const IPV4_RE = /^[0-9]{1,3}(\.[0-9]{1,3}){3}$/;
const IPV6_RE = /^[0-9a-fA-F:]*:[0-9a-fA-F:.]*$/;

/** The IPv4 and global IPv6 addresses among `tokens` (lxc-ls and lxc-info spellings); link-local fe80::/10 is left out. */
export function splitAddresses(tokens: readonly string[]): { ipv4: string[]; ipv6: string[] } {
  const ipv4: string[] = [];
  const ipv6: string[] = [];
  for (const raw of tokens) {
    const token = raw.replace(/,$/, '').trim();
    if (IPV4_RE.test(token)) ipv4.push(token);
    else if (IPV6_RE.test(token) && !/^fe[89ab]/i.test(token)) ipv6.push(token.toLowerCase());
  }
  return { ipv4, ipv6 };
}

/**
 * Parses `lxc-ls --fancy -F name,state,pid,ipv4`: a header row, then one row per container with
 * '-' for an empty cell. The IPV4 cell is last because it may hold several addresses joined by
 * ", ", so it takes the rest of the row.
 */
export function parseLsFancy(stdout: string): LsEntry[] {
  const entries: LsEntry[] = [];
  for (const line of stdout.split('\n')) {
    const cells = line.trim().split(/\s+/);
    const [name, state, pid, ...rest] = cells;
    if (name === undefined || name === '' || state === undefined) continue;
    if (name === 'NAME' && state === 'STATE') continue;
    const { ipv4, ipv6 } = splitAddresses(rest.join(' ').split(/[\s,]+/));
    const pidNumber = pid === undefined || pid === '-' ? undefined : Number(pid);
    entries.push({
      name,
      state,
      ...(pidNumber !== undefined && Number.isSafeInteger(pidNumber) && pidNumber > 0 ? { pid: pidNumber } : {}),
      ipv4,
      ipv6,
    });
  }
  return entries;
}

/** What `lxc-info -s -p -i` says about one container. */
export interface InfoEntry {
  readonly state?: string;
  readonly pid?: number;
  readonly ipv4: readonly string[];
  readonly ipv6: readonly string[];
}

/** Parses `lxc-info -s -p -i` ("State:  RUNNING", "PID:  123", one "IP:" line per address). */
export function parseInfo(stdout: string): InfoEntry {
  let state: string | undefined;
  let pid: number | undefined;
  const ips: string[] = [];
  for (const line of stdout.split('\n')) {
    const m = /^([A-Za-z ]+):\s*(.*?)\s*$/.exec(line);
    if (m === null) continue;
    const [, key, value = ''] = m;
    if (key === 'State') state = value;
    else if (key === 'PID' && /^[0-9]+$/.test(value)) pid = Number(value);
    else if (key === 'IP') ips.push(value);
  }
  return { ...(state === undefined ? {} : { state }), ...(pid === undefined ? {} : { pid }), ...splitAddresses(ips) };
}

/** Maps LXC's state to the provider's; transitional states settle on their own. */
export function instanceStateOf(lxcState: string | undefined): InstanceState {
  switch (lxcState) {
    case 'STOPPED': return 'Stopped';
    case 'STARTING': return 'Starting';
    case 'RUNNING': return 'Running';
    case 'THAWED': return 'Running';
    case 'STOPPING': return 'Stopping';
    case 'ABORTING': return 'Stopping';
    case 'FROZEN': return 'Frozen';
    default: return 'Unknown'; // FREEZING, or a state this LXC version added
  }
}

/**
 * The reason in an lxc log (`--logfile` at priority ERROR): the message part of each ERROR line,
 * without timestamps and source locations, in order, duplicates dropped, at most `max`.
 * lxc-start's own stderr only says "The container failed to start"; the log says why.
 */
export function summarizeLxcLog(text: string, max = 3): string {
  const messages: string[] = [];
  for (const line of text.split('\n')) {
    // lxc-start NAME 20261122015451.439 ERROR    network - ../src/lxc/network.c:fn:711 - Message
    const m = /\s(?:ERROR|CRIT|ALERT|FATAL)\s+\S+\s+-\s+\S+:\d+\s+-\s+(.*)$/.exec(line);
    const message = m?.[1]?.trim();
    if (message === undefined || message === '' || messages.includes(message)) continue;
    if (/^(To get more details|Additional information can be obtained)/.test(message)) continue;
    messages.push(message);
    if (messages.length >= max) break;
  }
  return messages.join('; ');
}
