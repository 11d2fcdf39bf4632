/**
 * The only way hyperlet runs `git`: argument arrays, never a shell; a timeout on every call;
 * git's stderr in the thrown error; no prompts (a fetch that needs a password fails instead of
 * hanging), only the transports https, http, ssh, git and file (GIT_ALLOW_PROTOCOL: no `ext::`
 * or other remote helper), no automatic gc that could drop the last applied commit.
 */
import { spawn } from 'node:child_process';

/** git's own words when a call fails, and how it ended. */
export class GitError extends Error {
  readonly isGitError = true;
  constructor(readonly args: readonly string[], readonly exitCode: number | undefined, readonly stderr: string, message: string) {
    super(message);
    this.name = 'GitError';
  }
}

/** Whether `err` is a GitError (by brand, across module copies). */
export function isGitError(err: unknown): err is GitError {
  return typeof err === 'object' && err !== null && (err as { isGitError?: unknown }).isGitError === true;
}

/** Per-call options of one git command. */
export interface GitCallOptions {
  /** Overrides the default timeout (fetches over a slow link). */
  readonly timeoutMs?: number;
  /** Bytes written to git's stdin (cat-file --batch). */
  readonly input?: string;
  /** Exit codes that are answers, not failures (merge-base --is-ancestor says "no" with 1). */
  readonly okCodes?: readonly number[];
  /** Added to git's environment for this call (credentials for a fetch). */
  readonly env?: Readonly<Record<string, string>>;
}

/** What one git command printed. */
export interface GitResult {
  readonly stdout: Buffer;
  readonly stderr: string;
  readonly exitCode: number;
}

const MAX_OUTPUT_BYTES = 256 * 1024 * 1024;
const STDERR_IN_MESSAGE_CHARS = 2000;
/** Settings for every call: they keep a fetch from prompting, running commands or repacking. */
const SAFE_CONFIG = ['-c', 'protocol.ext.allow=never', '-c', 'gc.auto=0', '-c', 'maintenance.auto=false', '-c', 'credential.interactive=never'];

/** Runs git in one repository directory. */
export class GitCli {
  /** git processes started so far (benchmarks check one per idle poll). */
  calls = 0;
  private readonly env: NodeJS.ProcessEnv;

  /** `gitDir` is the bare clone every call works in; `timeoutMs` defaults to 60 s. */
  constructor(private readonly gitDir: string, private readonly timeoutMs = 60_000) {
    this.env = {
      ...process.env,
      GIT_TERMINAL_PROMPT: '0',
      GIT_ASKPASS: 'true', // answer any credential question with nothing, never wait
      SSH_ASKPASS: 'true',
      GIT_SSH_COMMAND: process.env.GIT_SSH_COMMAND ?? 'ssh -o BatchMode=yes',
      GIT_DIR: gitDir,
      LC_ALL: 'C',
      // Transports git may use: no remote helpers (ext::, fd::, hg::…), which could run programs.
      GIT_ALLOW_PROTOCOL: 'https:http:ssh:git:file',
    };
  }

  /**
   * Runs `git ARGS` and resolves when it exits 0 (or with an `okCodes` code). Throws GitError
   * ("cannot git fetch: …" with git's stderr) on any other exit, a timeout or a spawn failure.
   */
  run(args: readonly string[], options: GitCallOptions = {}): Promise<GitResult> {
    const argv = [...SAFE_CONFIG, ...args];
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    this.calls++;
    return new Promise((resolve, reject) => {
      const env = options.env === undefined ? this.env : { ...this.env, ...options.env };
      const child = spawn('git', argv, { env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
      const out: Buffer[] = [];
      let outBytes = 0;
      let stderr = '';
      let done = false;
      const fail = (exitCode: number | undefined, why: string): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        const tail = stderr.trim().slice(-STDERR_IN_MESSAGE_CHARS);
        reject(new GitError(args, exitCode, stderr, `cannot git ${args[0] ?? ''}: ${why}${tail === '' ? '' : `: ${tail}`}`));
      };
      const timer = setTimeout(() => {
        try { process.kill(-(child.pid ?? 0), 'SIGKILL'); } catch { /* already gone */ }
        fail(undefined, `timed out after ${timeoutMs} ms`);
      }, timeoutMs);
      child.stdout.on('data', (chunk: Buffer) => {
        outBytes += chunk.length;
        if (outBytes > MAX_OUTPUT_BYTES) {
          try { process.kill(-(child.pid ?? 0), 'SIGKILL'); } catch { /* already gone */ }
          fail(undefined, `output over ${MAX_OUTPUT_BYTES} bytes`);
          return;
        }
        out.push(chunk);
      });
      child.stderr.on('data', (chunk: Buffer) => {
        if (stderr.length < 64 * 1024) stderr += chunk.toString('utf8');
      });
      child.on('error', (err) => fail(undefined, err.message));
      child.on('close', (code) => {
        if (done) return;
        const exitCode = code ?? -1;
        if (exitCode !== 0 && !(options.okCodes ?? []).includes(exitCode)) {
          fail(exitCode, `exit code ${exitCode}`);
          return;
        }
        done = true;
        clearTimeout(timer);
        resolve({ stdout: Buffer.concat(out), stderr, exitCode });
      });
      child.stdin.on('error', () => undefined); // git may exit before reading everything; close reports it
      child.stdin.end(options.input ?? '');
    });
  }

  /** The directory of the bare clone. */
  get dir(): string {
    return this.gitDir;
  }
}
