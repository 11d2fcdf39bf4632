import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GitCli, isGitError } from '../../../../src/sources/git/git-cli.js';
import { GitRepository, splitCredentials } from '../../../../src/sources/git/git-repository.js';
import { GitHttpServer } from '../../../support/git-http.js';
import { TestRepo } from '../../../support/git-repo.js';

describe('GitCli (real git)', function () {
  this.timeout(20_000);
  let dir: string;
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'hyperlet-gitcli-')); });
  afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

  it('puts git\'s own stderr in the error of a failed call', async () => {
    const repo = new GitRepository(join(dir, 'clone'));
    await repo.ensure();
    let thrown: unknown;
    try { await repo.fetch(join(dir, 'no-such-repo'), 'main'); } catch (err) { thrown = err; }
    expect(isGitError(thrown)).to.equal(true);
    expect((thrown as Error).message).to.match(/^cannot git fetch: exit code 128: .*no-such-repo/s);
  });

  it('kills a fetch that hangs once its timeout is over', async () => {
    const sockets: Socket[] = [];
    const server: Server = createServer((s) => { sockets.push(s); }); // accepts, never answers
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    const repo = new GitRepository(join(dir, 'clone'));
    await repo.ensure();
    const started = Date.now();
    let thrown: unknown;
    try { await repo.fetch(`git://127.0.0.1:${port}/x`, 'main', 500); } catch (err) { thrown = err; }
    expect((thrown as Error).message).to.contain('timed out after 500 ms');
    expect(Date.now() - started).to.be.lessThan(5_000);
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });

  it('treats listed exit codes as answers', async () => {
    const git = new GitCli(join(dir, 'none'));
    const r = await git.run(['rev-parse', '--verify', '--quiet', 'HEAD'], { okCodes: [1, 128] });
    expect(r.exitCode).to.not.equal(0);
    expect(git.calls).to.equal(1);
  });

  it('refuses transports outside https, http, ssh, git and file (GIT_ALLOW_PROTOCOL)', async () => {
    const repo = new GitRepository(join(dir, 'clone'));
    await repo.ensure();
    for (const url of ['fd::0', 'testgit::/tmp/x']) {
      let thrown: unknown;
      try { await repo.fetch(url, 'main', 5_000); } catch (err) { thrown = err; }
      expect((thrown as Error).message, url).to.match(/transport '(fd|testgit)' not allowed/);
    }
  });

  describe('credentials in an http URL', () => {
    let server: GitHttpServer;
    before(async () => {
      const base = await mkdtemp(join(tmpdir(), 'hyperlet-githttp-'));
      const work = await TestRepo.create(join(base, 'work'));
      await work.write('a.yaml', 'x: 1\n');
      await work.commit('one');
      await git(base, 'clone', '--bare', '-q', join(base, 'work'), join(base, 'r.git'));
      server = await GitHttpServer.start(base, { username: 'alice', password: 'pw:with@odd/chars' });
    });
    after(async () => { await server.stop(); });

    it('fetches with them, through the helper, never on the command line', async () => {
      const repo = new GitRepository(join(dir, 'clone'));
      await repo.ensure();
      await repo.fetch(server.url('r.git', `alice:${encodeURIComponent('pw:with@odd/chars')}`), undefined, 20_000);
      expect(await repo.fetchedRevision()).to.match(/^[0-9a-f]{40}$/);
      expect(server.seen.some((r) => r.authorized), 'the server saw the right credentials').to.equal(true);
    });

    it('fails cleanly with wrong ones, without the password in the error or git\'s arguments', async () => {
      const repo = new GitRepository(join(dir, 'clone'));
      await repo.ensure();
      let thrown: unknown;
      try { await repo.fetch(server.url('r.git', 'alice:wrong-secret-1'), undefined, 20_000); } catch (err) { thrown = err; }
      expect(isGitError(thrown)).to.equal(true);
      expect((thrown as Error).message).to.not.contain('wrong-secret-1');
      expect(JSON.stringify((thrown as { args: string[] }).args)).to.not.contain('wrong-secret-1');
    });
  });
});

/** Runs git in `cwd` for test setup. */
async function git(cwd: string, ...args: string[]): Promise<void> {
  const { execFile } = await import('node:child_process');
  await new Promise<void>((resolve, reject) => execFile('git', args, { cwd, timeout: 30_000 }, (err) => (err === null ? resolve() : reject(new Error(err.message)))));
}

describe('splitCredentials', () => {
  const cases: Record<string, { reason: string; url: string; want: { url: string; credentials?: { host: string; username: string; password: string } } | 'error' }> = {
    UserAndPassword: { reason: 'both go to the helper', url: 'https://u:p@git.example.com/r.git', want: { url: 'https://git.example.com/r.git', credentials: { host: 'git.example.com', username: 'u', password: 'p' } } },
    TokenOnly: { reason: 'a token as user name, no password', url: 'https://tok@h/r', want: { url: 'https://h/r', credentials: { host: 'h', username: 'tok', password: '' } } },
    Encoded: { reason: 'percent-encoding is decoded once', url: 'http://a%40b:p%3Aq%2F@h:8080/r', want: { url: 'http://h:8080/r', credentials: { host: 'h:8080', username: 'a@b', password: 'p:q/' } } },
    NoCredentials: { reason: 'nothing to take out', url: 'https://h/r', want: { url: 'https://h/r' } },
    Ssh: { reason: 'an ssh user name is no secret and ssh needs it', url: 'ssh://git@h/r', want: { url: 'ssh://git@h/r' } },
    LocalPath: { reason: 'paths are left alone', url: '/srv/git/r', want: { url: '/srv/git/r' } },
    ControlChar: { reason: 'a new line would end the credential protocol line', url: 'https://u:a%0Ab@h/r', want: 'error' },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      if (tc.want === 'error') {
        expect(() => splitCredentials(tc.url), tc.reason).to.throw(/control character/);
        return;
      }
      expect(splitCredentials(tc.url), tc.reason).to.deep.equal(tc.want);
    });
  }
});
