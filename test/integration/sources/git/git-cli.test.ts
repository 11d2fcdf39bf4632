import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GitCli, isGitError } from '../../../../src/sources/git/git-cli.js';
import { GitRepository } from '../../../../src/sources/git/git-repository.js';

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
});
