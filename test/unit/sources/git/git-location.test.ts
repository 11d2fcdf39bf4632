import { expect } from 'chai';
import { type GitLocation, parseGitLocation } from '../../../../src/sources/git/git-location.js';

const ok: Record<string, { reason: string; in: string; want: GitLocation }> = {
  Path: { reason: 'a plain path', in: '/srv/repo', want: { url: '/srv/repo', subdir: '' } },
  PathBranchSubdir: { reason: 'all three parts', in: '/srv/repo#main//hosts/a', want: { url: '/srv/repo', branch: 'main', subdir: 'hosts/a' } },
  PathSubdirNoBranch: { reason: '"//" after a path starts SUBDIR', in: '/srv/repo//hosts', want: { url: '/srv/repo', subdir: 'hosts' } },
  FileUrl: { reason: 'the "//" of file:// is part of the URL', in: 'file:///srv/repo', want: { url: 'file:///srv/repo', subdir: '' } },
  FileUrlSubdir: { reason: 'a later "//" is SUBDIR', in: 'file:///srv/repo//x/', want: { url: 'file:///srv/repo', subdir: 'x' } },
  Https: { reason: 'https with a branch', in: 'https://git.example.org/infra.git#prod', want: { url: 'https://git.example.org/infra.git', branch: 'prod', subdir: '' } },
  Ssh: { reason: 'ssh with a branch holding "/"', in: 'ssh://git@host/infra.git#release/v1//hosts', want: { url: 'ssh://git@host/infra.git', branch: 'release/v1', subdir: 'hosts' } },
  ScpLike: { reason: 'user@host:path as git takes it', in: 'git@host:infra.git', want: { url: 'git@host:infra.git', subdir: '' } },
};

const bad: Record<string, { reason: string; in: string }> = {
  Empty: { reason: 'no URL', in: '#main' },
  Option: { reason: 'a URL that git would read as an option', in: '--upload-pack=touch /tmp/x' },
  Ext: { reason: 'ext:: runs commands', in: 'ext::sh -c touch% /tmp/pwned' },
  BranchDots: { reason: 'not a branch name', in: '/srv/repo#a..b' },
  BranchOption: { reason: 'a branch read as an option', in: '/srv/repo#-x' },
  SubdirUp: { reason: 'SUBDIR cannot leave the repository', in: '/srv/repo#main//../etc' },
  SubdirNewline: { reason: 'no control characters', in: '/srv/repo#main//a\nb' },
};

describe('parseGitLocation', () => {
  for (const [name, tc] of Object.entries(ok)) it(name, () => expect(parseGitLocation(tc.in), tc.reason).to.deep.equal(tc.want));
  for (const [name, tc] of Object.entries(bad)) it(`refuses ${name}`, () => expect(() => parseGitLocation(tc.in), tc.reason).to.throw(/^cannot use git source/));
});
