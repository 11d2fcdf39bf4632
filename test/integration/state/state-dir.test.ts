import { expect } from 'chai';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StateDb } from '../../../src/state/state-db.js';
import { apiTokenPath, ensureApiToken, readApiToken, secureStateDir, secureStateFile } from '../../../src/state/state-dir.js';

const modeOf = (path: string): number => statSync(path).mode & 0o7777;

describe('state directory', () => {
  let root: string;
  beforeEach(() => { root = mkdtempSync(join(tmpdir(), 'hyperlet-statedir-')); });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  const dirCases: Record<string, { reason: string; prepare: (dir: string) => void; want: { mode?: number; error?: RegExp; tightenedFrom?: number } }> = {
    Missing: { reason: 'a new directory is made 0700', prepare: () => undefined, want: { mode: 0o700 } },
    MissingParent: { reason: 'parents are made too; only the state directory itself must be private', prepare: () => undefined, want: { mode: 0o700 } },
    OpenDirectory: {
      reason: 'kubelet makes hostPath directories 0755: hyperlet tightens its own directory',
      prepare: (dir) => { mkdirSync(dir); chmodSync(dir, 0o755); }, want: { mode: 0o700, tightenedFrom: 0o755 },
    },
    WorldWritable: {
      reason: 'a directory others write to cannot be made private without taking it from them',
      prepare: (dir) => { mkdirSync(dir); chmodSync(dir, 0o777); }, want: { error: /other users may write there \(mode 0777\)/ },
    },
    Sticky: { reason: '/tmp-like directories are shared', prepare: (dir) => { mkdirSync(dir); chmodSync(dir, 0o1755); }, want: { error: /mode 01755/ } },
    NotADirectory: { reason: 'a file where the directory should be', prepare: (dir) => writeFileSync(dir, ''), want: { error: /not a directory/ } },
  };
  for (const [name, tc] of Object.entries(dirCases)) {
    it(name, () => {
      const dir = name === 'MissingParent' ? join(root, 'a', 'b', 'state') : join(root, 'state');
      tc.prepare(dir);
      if (tc.want.error !== undefined) {
        expect(() => secureStateDir(join(dir, 'state.db')), tc.reason).to.throw(tc.want.error);
        return;
      }
      const result = secureStateDir(join(dir, 'state.db'));
      expect(modeOf(dir), tc.reason).to.equal(tc.want.mode);
      expect(result.tightenedFrom, tc.reason).to.equal(tc.want.tightenedFrom);
    });
  }

  it('makes files 0600, tightens looser ones and refuses symbolic links', () => {
    const dir = join(root, 'state');
    secureStateDir(join(dir, 'state.db'));
    secureStateFile(join(dir, 'new'));
    expect(modeOf(join(dir, 'new'))).to.equal(0o600);
    writeFileSync(join(dir, 'loose'), 'x', { mode: 0o644 });
    chmodSync(join(dir, 'loose'), 0o644);
    secureStateFile(join(dir, 'loose'));
    expect(modeOf(join(dir, 'loose'))).to.equal(0o600);
    symlinkSync('/etc/passwd', join(dir, 'link'));
    expect(() => secureStateFile(join(dir, 'link'))).to.throw(/symbolic link/);
    expect(modeOf('/etc/passwd'), 'the link target is untouched').to.equal(0o644);
  });

  it('the state DB leaves its directory 0700 and every file in it 0600', () => {
    const dir = join(root, 'state');
    mkdirSync(dir, { mode: 0o755 });
    chmodSync(dir, 0o755);
    const db = new StateDb(join(dir, 'state.db'));
    db.audit('k', 'Normal', 'Created', 'success', 'x');
    db.flush();
    expect(modeOf(dir)).to.equal(0o700);
    const files = readdirSync(dir);
    expect(files).to.include.members(['state.db', 'state.db-wal', 'state.db-shm']);
    for (const f of files) expect(modeOf(join(dir, f)), f).to.equal(0o600);
    db.close();
  });

  it('writes the API token once, 0600, and reads the same one back', () => {
    const statePath = join(root, 'state', 'state.db');
    expect(() => readApiToken(statePath)).to.throw(/no .*api-token .*first start/);
    secureStateDir(statePath);
    const token = ensureApiToken(statePath);
    expect(token).to.match(/^[A-Za-z0-9_-]{43}$/);
    expect(modeOf(apiTokenPath(statePath))).to.equal(0o600);
    expect(ensureApiToken(statePath), 'a restart keeps the token').to.equal(token);
    expect(readApiToken(statePath)).to.equal(token);
    writeFileSync(apiTokenPath(statePath), 'not a token\n');
    expect(() => readApiToken(statePath)).to.throw(/not a token hyperlet wrote/);
  });
});
