/**
 * Real git repositories for tests: a work tree with real commits, and `git daemon` serving a
 * directory of repositories on 127.0.0.1 only. Every call is git itself, argument arrays, bounded.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Runs git in `cwd`; rejects with git's stderr. */
export async function git(cwd: string, ...args: string[]): Promise<string> {
  try {
    const { stdout } = await run('git', args, { cwd, timeout: 30_000, env: { ...process.env, GIT_TERMINAL_PROMPT: '0', LC_ALL: 'C' } });
    return stdout.trim();
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`cannot git ${args.join(' ')}: ${e.stderr ?? e.message}`);
  }
}

/** A repository with a work tree on branch main, committed to directly (a push, as seen by a follower). */
export class TestRepo {
  private constructor(readonly dir: string) {}

  static async create(dir: string): Promise<TestRepo> {
    await mkdir(dir, { recursive: true });
    await git(dir, 'init', '-q', '-b', 'main');
    await git(dir, 'config', 'user.email', 'test@hyperlet.invalid');
    await git(dir, 'config', 'user.name', 'hyperlet test');
    await git(dir, 'config', 'commit.gpgsign', 'false');
    return new TestRepo(dir);
  }

  async write(path: string, text: string): Promise<void> {
    await mkdir(dirname(join(this.dir, path)), { recursive: true });
    await writeFile(join(this.dir, path), text);
  }

  async remove(path: string): Promise<void> {
    await rm(join(this.dir, path), { force: true });
  }

  /** Commits everything in the work tree (additions and removals); returns the commit id. */
  async commit(message: string): Promise<string> {
    await git(this.dir, 'add', '-A');
    await git(this.dir, 'commit', '-q', '--allow-empty', '-m', message);
    return this.head();
  }

  head(): Promise<string> {
    return git(this.dir, 'rev-parse', 'HEAD');
  }

  /** Moves main back to `revision` (the first half of a force-push). */
  async resetHard(revision: string): Promise<void> {
    await git(this.dir, 'reset', '-q', '--hard', revision);
  }
}

/** A Container manifest. */
export function containerYaml(name: string, spec: Record<string, unknown> = {}, annotations?: Record<string, string>): string {
  const doc = { apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name, ...(annotations === undefined ? {} : { annotations }) }, spec: { template: 'busybox', ...spec } };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** `git daemon` serving every repository under `baseDir` read-only on 127.0.0.1. */
export class GitDaemon {
  private constructor(private readonly child: ChildProcess, readonly port: number) {}

  static async start(baseDir: string): Promise<GitDaemon> {
    const port = await freePort();
    const child = spawn('git', ['daemon', '--reuseaddr', '--export-all', '--informative-errors', `--base-path=${baseDir}`, '--listen=127.0.0.1', `--port=${port}`, baseDir], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => { stderr += c.toString(); });
    const until = Date.now() + 10_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`cannot start git daemon: exited ${child.exitCode}: ${stderr}`);
      try {
        await git(baseDir, 'ls-remote', `git://127.0.0.1:${port}/nonexistent-probe`);
      } catch (err) {
        // An answer (even "not exported") means it listens; a refused connection means not yet.
        if (!/Connection refused|unable to connect/i.test((err as Error).message)) break;
      }
      if (Date.now() > until) throw new Error(`cannot start git daemon: not listening after 10 s: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return new GitDaemon(child, port);
  }

  url(repo: string): string {
    return `git://127.0.0.1:${this.port}/${repo}`;
  }

  stop(): Promise<void> {
    if (this.child.exitCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      this.child.once('exit', () => resolve());
      this.child.kill('SIGTERM');
    });
  }
}
