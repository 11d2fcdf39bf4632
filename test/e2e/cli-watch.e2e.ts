/**
 * The CLI that watches, against one real `hyperlet run` (real LXC busybox containers in a temp
 * lxcpath): `get -w` streaming changes made from outside (lxc-stop) as they happen, `wait` with
 * progress on a real pseudo-terminal (script(1)) and as plain lines in a pipe, completion in real
 * bash and zsh, and the kubectl plugin through kubectl's own plugin mechanism.
 */
import { expect } from 'chai';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, chmod, mkdir, mkdtemp, readdir, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DaemonProcess, cliPath, repoRoot } from './support/daemon-process.js';
import { until } from './support/until.js';

const run = promisify(execFile);
const suffix = randomBytes(2).toString('hex');
const n = (name: string): string => `w${suffix}-${name}`;

const container = (name: string): string => [
  'apiVersion: hyperlet.io/v1alpha1', 'kind: Container', 'metadata:', `  name: ${name}`, 'spec:', '  template: busybox', '  state: Running',
  '  gracefulStopSeconds: 1', '  resources:', '    cpu: 1', '    memory: 64Mi', '  network:', '    - type: none', '',
].join('\n');

interface Line { atMs: number; text: string }

/** A child process whose stdout lines are collected as they come. */
class LineReader {
  readonly lines: { atMs: number; text: string }[] = [];
  /** Everything written to stdout, redraws without newlines included. */
  raw = '';
  stderr = '';
  readonly exited: Promise<number>;
  private partial = '';
  constructor(readonly child: ChildProcess) {
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      this.raw += chunk;
      const parts = (this.partial + chunk).split('\n');
      this.partial = parts.pop() ?? '';
      for (const text of parts) this.lines.push({ atMs: Date.now(), text });
    });
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => { this.stderr += chunk; });
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code ?? -1)));
  }
  /** The first line (after `from`) that `match` accepts, waiting for it. */
  next(what: string, match: (text: string) => boolean, from = 0, timeoutMs = 60_000): Promise<Line & { index: number }> {
    return until(what, () => {
      const index = this.lines.findIndex((l, i) => i >= from && match(l.text));
      return index < 0 ? undefined : { ...this.lines[index]!, index };
    }, timeoutMs, 5);
  }
  stop(): Promise<number> {
    if (this.child.exitCode === null) this.child.kill('SIGINT');
    return this.exited;
  }
}

describe('the CLI that watches: get -w, wait, completion, kubectl plugin', function () {
  this.timeout(300_000);
  let tmp = '';
  let manifests = '';
  let lxcpath = '';
  let statePath = '';
  let pathDir = '';
  let daemon: DaemonProcess | undefined;
  const readers: LineReader[] = [];

  const cli = (args: string[], env: NodeJS.ProcessEnv = process.env): LineReader => {
    const reader = new LineReader(spawn(process.execPath, [cliPath, ...args], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] }));
    readers.push(reader);
    return reader;
  };
  const server = (): string => daemon?.baseUrl ?? '';
  const phaseOf = (line: string): string | undefined =>
    (JSON.parse(line) as { object: { status?: { phase?: string } } }).object.status?.phase;
  const nameOf = (line: string): string => (JSON.parse(line) as { object: { metadata: { name: string } } }).object.metadata.name;
  const env = (): NodeJS.ProcessEnv => ({ ...process.env, PATH: `${join(repoRoot, 'bin')}:${pathDir}:${process.env.PATH ?? ''}` });

  before(async () => {
    if (process.getuid?.() !== 0) throw new Error('needs root (LXC containers)');
    await access('/usr/share/lxc/templates/lxc-busybox').catch(() => { throw new Error('needs the LXC busybox template: run make host'); });
    tmp = await mkdtemp(join(tmpdir(), `hyperlet-ops-watch-${suffix}-`));
    // Unprivileged containers' mapped root must pass through the directories above their lxcpath.
    await chmod(tmp, 0o711);
    manifests = join(tmp, 'manifests');
    lxcpath = join(tmp, 'lxc');
    statePath = join(tmp, 'state', 'state.db');
    pathDir = join(tmp, 'path');
    for (const d of [manifests, lxcpath, pathDir]) await mkdir(d);
    await symlink(cliPath, join(pathDir, 'hyperlet'));
    for (const name of ['a', 'b']) await writeFile(join(manifests, `${name}.yaml`), container(n(name)));
    daemon = await DaemonProcess.start([
      '--source', `dir:${manifests}`, '--lxcpath', lxcpath, '--state', statePath, '--http', '127.0.0.1:0', '--kinds', 'Container',
      '--resync', '30s',
    ], join(tmp, 'daemon.log'));
    await until('the daemon to be ready', async () => ((await daemon!.get('/readyz')).status === 200 ? true : undefined), 60_000);
  });

  afterEach(async function () {
    for (const r of readers.splice(0)) await r.stop();
    if (this.currentTest?.state === 'failed' && daemon !== undefined) console.error(`--- daemon log ---\n${await daemon.logTail(40)}`);
  });

  after(async () => {
    await daemon?.stop('SIGKILL');
    for (const name of await readdir(lxcpath).catch(() => [] as string[])) {
      await run('lxc-stop', ['-P', lxcpath, '-n', name, '-k'], { timeout: 30_000 }).catch(() => undefined);
      await run('lxc-destroy', ['-P', lxcpath, '-n', name], { timeout: 60_000 }).catch(() => undefined);
    }
    if (tmp !== '') await rm(tmp, { recursive: true, force: true });
  });

  it('wait --all shows plain progress lines in a pipe and exits 0 once every container is Ready', async () => {
    const wait = cli(['wait', 'containers', '--all', '--for', 'condition=Ready', '--timeout', '2m', '--server', server()]);
    expect(await wait.exited, wait.stderr).to.equal(0);
    expect(wait.lines.map((l) => l.text).sort())
      .to.deep.equal([`container/default/${n('a')} condition met`, `container/default/${n('b')} condition met`]);
    expect(wait.stderr).to.match(/^waiting for condition Ready=True: [0-2]\/2 containers/m);
    expect(wait.stderr).to.not.include('\r');
  });

  it('wait on a terminal redraws one progress line with a bar until the new container is Ready', async () => {
    const command = [process.execPath, cliPath, 'wait', 'containers', n('c'), '--timeout', '2m', '--server', server()].join(' ');
    const tty = new LineReader(spawn('script', ['-qfec', command, '/dev/null'], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] }));
    readers.push(tty);
    await until('the progress bar at 0/1', () => (tty.raw.includes('[....................] 0/1') ? true : undefined), 30_000);
    await writeFile(join(manifests, 'c.yaml'), container(n('c')));
    expect(await tty.exited, tty.stderr).to.equal(0);
    const text = tty.raw;
    expect(text, 'drawn in place').to.include('\r\x1b[2Kwaiting for condition Ready=True [....................] 0/1 containers 0%');
    expect(text).to.match(new RegExp(`\r${String.fromCharCode(27)}\\[2Kwaiting for condition Ready=True: 1 containers done \\(\\d+s\\)`));
    expect(text).to.include(`container/default/${n('c')} condition met`);
  });

  it('get -w streams a container stopped from outside, then running again after the repair', async () => {
    const watch = cli(['get', 'containers', '-w', '-o', 'json', '--server', server()]);
    for (const name of ['a', 'b', 'c']) await watch.next(`ADDED ${name}`, (t) => t.includes('"type":"ADDED"') && nameOf(t) === n(name));
    const from = watch.lines.length;
    const stoppedAtMs = Date.now();
    await run('lxc-stop', ['-P', lxcpath, '-n', n('a'), '-k'], { timeout: 30_000 });
    const modifiedA = (phase: string) => (t: string): boolean => t.includes('"MODIFIED"') && nameOf(t) === n('a') && phaseOf(t) === phase;
    const stopped = await watch.next('a Stopped', modifiedA('Stopped'), from);
    const running = await watch.next('a Running again', modifiedA('Running'), stopped.index);
    console.log(`      get -w: Stopped shown ${stopped.atMs - stoppedAtMs} ms after lxc-stop, `
      + `Running again ${running.atMs - stoppedAtMs} ms after`);
    expect(watch.child.exitCode, 'still watching').to.equal(null);
  });

  it('get -w prints a table that follows a deletion, and wait --for delete returns once it is gone', async () => {
    const table = cli(['get', 'ct', '-w', '--server', server()]);
    await table.next('the header', (t) => t.startsWith('NAMESPACE'));
    await table.next('the row of c', (t) => t.includes(n('c')) && t.includes('Running'));
    const gone = cli(['wait', 'ct', n('c'), '--for', 'delete', '--timeout', '2m', '--server', server()]);
    await unlink(join(manifests, 'c.yaml'));
    expect(await gone.exited, gone.stderr).to.equal(0);
    expect(gone.lines.map((l) => l.text)).to.deep.equal([`container/default/${n('c')} deleted`]);
    const deleted = await table.next('c Deleted', (t) => t.includes(n('c')) && /\bDeleted\b/.test(t));
    expect(deleted.text.split(/\s{3,}/)[0]).to.equal('default');
  });

  it('completes commands, kinds and object names in real bash and zsh', async () => {
    const bash = await run('bash', ['-c', [
      'source <(hyperlet completion bash)',
      `COMP_WORDS=(hyperlet get ct --state ${statePath} ""); COMP_CWORD=5; _hyperlet; printf '%s\\n' "\${COMPREPLY[@]}"`,
      'COMP_WORDS=(hyperlet wa); COMP_CWORD=1; _hyperlet; printf "%s\\n" "${COMPREPLY[@]}"',
    ].join('\n')], { env: env(), timeout: 30_000 });
    expect(bash.stdout.trim().split('\n')).to.deep.equal([n('a'), n('b'), 'wait']);
    await access('/usr/bin/zsh').catch(() => { throw new Error('zsh is missing: run make host (Debian package zsh)'); });
    const zsh = await run('zsh', ['-fc', [
      'source <(hyperlet completion zsh)',
      'compadd() { [[ $1 == -a ]] && print -l -- "${(@P)2}"; }',
      '_files() { print "<files>"; }',
      `words=(hyperlet describe containers --state ${statePath} ${n('b').slice(0, -1)}); CURRENT=6; _hyperlet`,
      'words=(hyperlet validate -f ""); CURRENT=4; _hyperlet',
    ].join('\n')], { env: env(), timeout: 30_000 });
    expect(zsh.stdout.trim().split('\n')).to.deep.equal([n('a'), n('b'), '<files>']);
  });

  it('runs as a kubectl plugin: listed, called, streaming and completed through kubectl', async () => {
    // kubectl plugin list exits 1 when it warns about a PATH entry that does not exist: its stdout still lists.
    const list = await run('kubectl', ['plugin', 'list'], { env: env(), timeout: 30_000 })
      .catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }));
    expect(list.stdout).to.include(join(repoRoot, 'bin', 'kubectl-hyperlet'));
    const get = await run('kubectl', ['hyperlet', 'get', 'containers', '--state', statePath], { env: env(), timeout: 30_000 });
    expect(get.stdout).to.match(new RegExp(`default\\s+${n('a')}\\s+Running`));
    const help = await run('kubectl', ['hyperlet', '--help'], { env: env(), timeout: 30_000 });
    expect(help.stdout).to.match(/^Usage: kubectl hyperlet COMMAND/);
    const args = ['hyperlet', 'get', 'ct', '-w', '-o', 'json', '--server', server()];
    const watch = new LineReader(spawn('kubectl', args, { env: env(), stdio: ['ignore', 'pipe', 'pipe'] }));
    readers.push(watch);
    await watch.next('ADDED b through kubectl', (t) => t.includes('"ADDED"') && nameOf(t) === n('b'));
    const completion = await run('kubectl', ['__complete', 'hyperlet', 'get', 'ct', '--state', statePath, ''], {
      env: env(), timeout: 30_000,
    });
    expect(completion.stdout.split('\n').filter((l) => l !== '')).to.include.members([n('a'), n('b'), ':4']);
  });
});
