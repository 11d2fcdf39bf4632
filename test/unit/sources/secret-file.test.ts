import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isEnvironmentError } from '../../../src/api/v1alpha1/environment.js';
import { MAX_SECRET_FILE_BYTES, readSecretFile } from '../../../src/sources/secret-file.js';

describe('readSecretFile', () => {
  let root: string;
  let secrets: string;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'hyperlet-secretfile-'));
    secrets = join(root, 'secrets');
    mkdirSync(join(secrets, 'app'), { recursive: true });
    writeFileSync(join(secrets, 'db'), 's3cret-db\n');
    writeFileSync(join(secrets, 'app', 'token'), 'tok-123');
    writeFileSync(join(root, 'outside'), 'not-yours\n');
    symlinkSync(join(root, 'outside'), join(secrets, 'escape'));
    symlinkSync('/etc/shadow', join(secrets, 'shadow'));
    symlinkSync('db', join(secrets, 'alias'));
    symlinkSync(root, join(secrets, 'up'));
    writeFileSync(join(secrets, 'big'), 'x'.repeat(MAX_SECRET_FILE_BYTES + 1));
    writeFileSync(join(secrets, 'latin1'), Buffer.from([0x70, 0xe4, 0x73, 0x73]));
    writeFileSync(join(secrets, 'two-lines'), 'a\nlxc.hook.pre-start = /bin/sh\n');
    execFileSync('mkfifo', [join(secrets, 'fifo')]);
    symlinkSync(secrets, join(root, 'linked-secrets'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  const cases: Record<string, { reason: string; dir?: string; file: string; want: string }> = {
    Relative: { reason: 'relative to the secrets directory; the trailing new line of echo is dropped', file: 'db', want: 's3cret-db' },
    Nested: { reason: 'subdirectories are fine', file: 'app/token', want: 'tok-123' },
    AbsoluteInside: { reason: 'an absolute path inside the directory', file: '<secrets>/app/token', want: 'tok-123' },
    SymlinkInside: { reason: 'a link that stays inside (Kubernetes-style ..data links) is followed', file: 'alias', want: 's3cret-db' },
    DirThroughSymlink: { reason: 'the secrets directory itself may be a link', dir: '<root>/linked-secrets', file: 'db', want: 's3cret-db' },
    AbsoluteOutside: { reason: 'any other host file is refused', file: '/etc/shadow', want: 'PolicyDenied' },
    DotDot: { reason: 'no climbing out', file: '../outside', want: 'PolicyDenied' },
    DotDotAbsolute: { reason: 'no climbing out of an absolute path either', file: '<secrets>/../outside', want: 'PolicyDenied' },
    LinkOut: { reason: 'a symlink inside pointing out is an escape', file: 'escape', want: 'PolicyDenied' },
    LinkToShadow: { reason: 'the classic', file: 'shadow', want: 'PolicyDenied' },
    LinkedDirOut: { reason: 'a directory link leading out', file: 'up/outside', want: 'PolicyDenied' },
    Directory: { reason: 'only regular files', file: 'app', want: 'PolicyDenied' },
    Fifo: { reason: 'a FIFO is refused without blocking the reconcile', file: 'fifo', want: 'PolicyDenied' },
    TooBig: { reason: 'a size cap', file: 'big', want: 'PolicyDenied' },
    NotUtf8: { reason: 'text only', file: 'latin1', want: 'PolicyDenied' },
    TwoLines: { reason: 'a second line would become a new LXC config key', file: 'two-lines', want: 'PolicyDenied' },
    Missing: { reason: 'may appear later', file: 'nope', want: 'SecretNotFound' },
    NoDirectory: { reason: 'the operator has not made the directory', dir: '<root>/none', file: 'db', want: 'SecretNotFound' },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, async () => {
      const fill = (s: string): string => s.replace('<secrets>', secrets).replace('<root>', root);
      let got: string | undefined;
      let caught: unknown;
      try {
        got = await readSecretFile(fill(tc.dir ?? secrets), fill(tc.file), 'spec.environment.X');
      } catch (err) {
        caught = err;
      }
      if (tc.want === 'PolicyDenied' || tc.want === 'SecretNotFound') {
        expect(isEnvironmentError(caught) && caught.reason, `${tc.reason}: ${String(caught)} ${got ?? ''}`).to.equal(tc.want);
        expect((caught as Error).message, 'names the field').to.contain('spec.environment.X');
        expect((caught as Error).message, 'never the contents').to.not.match(/not-yours|root:|lxc\.hook/);
        return;
      }
      expect(caught, tc.reason).to.equal(undefined);
      expect(got, tc.reason).to.equal(tc.want);
    });
  }
});
