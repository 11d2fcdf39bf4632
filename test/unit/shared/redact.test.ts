import { expect } from 'chai';
import { REDACTED, Redactor, hasUrlCredentials, redactUrlCredentials } from '../../../src/shared/redact.js';

describe('redactUrlCredentials', () => {
  const cases: Record<string, { reason: string; text: string; want: string }> = {
    UserAndPassword: {
      reason: 'user:password@ is a credential as a whole',
      text: 'git:https://alice:s3cret@git.example.com/repo.git#main',
      want: `git:https://${REDACTED}@git.example.com/repo.git#main`,
    },
    TokenAsUser: {
      reason: 'a token is often given as the user name alone',
      text: 'https://ghp_abcdef0123@github.com/o/r',
      want: `https://${REDACTED}@github.com/o/r`,
    },
    UnescapedAtInPassword: {
      reason: 'git and curl end the userinfo at the last @ before the host: none of the password may stay',
      text: 'http://bob:p@ss@127.0.0.1:8080/r.git',
      want: `http://${REDACTED}@127.0.0.1:8080/r.git`,
    },
    InsideGitStderr: {
      reason: 'git quotes the URL in its errors',
      text: "fatal: unable to access 'https://u:pw@127.0.0.1:1/r/': Failed to connect",
      want: `fatal: unable to access 'https://${REDACTED}@127.0.0.1:1/r/': Failed to connect`,
    },
    InsideJson: {
      reason: 'a JSON string ends at the quote: the text after it is not userinfo',
      text: '{"url":"https://u:pw@h/r","x":"a@b"}',
      want: `{"url":"https://${REDACTED}@h/r","x":"a@b"}`,
    },
    SeveralUrls: {
      reason: 'every URL of a line is scrubbed',
      text: 'from ssh://git:k@h1/a to https://t@h2/b',
      want: `from ssh://${REDACTED}@h1/a to https://${REDACTED}@h2/b`,
    },
    AtInPathIsNotUserinfo: {
      reason: 'an @ after the first / belongs to the path',
      text: 'https://host/users/@me and mail a@b.c',
      want: 'https://host/users/@me and mail a@b.c',
    },
    NoCredentials: {
      reason: 'plain URLs and scp-like git locations stay as they are',
      text: 'git://127.0.0.1:9418/r and git@github.com:o/r.git',
      want: 'git://127.0.0.1:9418/r and git@github.com:o/r.git',
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      expect(redactUrlCredentials(tc.text), tc.reason).to.equal(tc.want);
      expect(hasUrlCredentials(tc.text), tc.reason).to.equal(tc.want !== tc.text);
    });
  }
});

describe('Redactor', () => {
  const secret = 'hunter2-"quoted"\\x';
  const cases: Record<string, { reason: string; secrets: string[]; text: string; want: string }> = {
    RawValue: {
      reason: 'a secret in free text is replaced',
      secrets: ['s3cr3t-value'], text: 'lxc-start: bad line lxc.environment = DB=s3cr3t-value', want: `lxc-start: bad line lxc.environment = DB=${REDACTED}`,
    },
    JsonEscaped: {
      reason: 'a log line is JSON: the secret appears escaped there',
      secrets: [secret], text: JSON.stringify({ msg: `x ${secret} y` }), want: JSON.stringify({ msg: `x ${REDACTED} y` }),
    },
    NestedJson: {
      reason: 'JSON inside a JSON string (a status in a log line) escapes twice',
      secrets: [secret], text: JSON.stringify({ status: JSON.stringify({ m: secret }) }), want: JSON.stringify({ status: JSON.stringify({ m: REDACTED }) }),
    },
    LongestFirst: {
      reason: 'a secret that contains another is replaced whole, leaving no tail',
      secrets: ['abcd', 'abcdefgh'], text: 'v=abcdefgh w=abcd', want: `v=${REDACTED} w=${REDACTED}`,
    },
    ShortValuesNotSearched: {
      reason: 'values under MIN_SECRET_CHARS would blank out unrelated words',
      secrets: ['1', 'on'], text: 'replicas 1 on', want: 'replicas 1 on',
    },
    RegexCharacters: {
      reason: 'secrets are matched literally, never as patterns',
      secrets: ['a.b*c(d)'], text: 'a.b*c(d) axbbbcd', want: `${REDACTED} axbbbcd`,
    },
    UrlsToo: {
      reason: 'the URL rule applies with or without secrets',
      secrets: [], text: 'https://u:p@h/r', want: `https://${REDACTED}@h/r`,
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const r = new Redactor();
      for (const s of tc.secrets) r.add(s);
      expect(r.text(tc.text), tc.reason).to.equal(tc.want);
    });
  }

  it('picks up a secret added after a first use', () => {
    const r = new Redactor();
    expect(r.text('token-1234')).to.equal('token-1234');
    r.add('token-1234');
    expect(r.text('token-1234')).to.equal(REDACTED);
    expect(r.size).to.equal(1);
  });
});
