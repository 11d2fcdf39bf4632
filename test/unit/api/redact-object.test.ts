import { expect } from 'chai';
import { describeEnvironmentChange, redactFieldValue, redactObject } from '../../../src/api/v1alpha1/redact-object.js';
import { checkedEnvironmentValue, environmentReferences, isEnvironmentError, withEnvironmentValues } from '../../../src/api/v1alpha1/environment.js';
import type { HyperletObject } from '../../../src/api/v1alpha1/types.js';
import { REDACTED } from '../../../src/shared/redact.js';

const ref = { secretKeyRef: { name: 'db', key: 'password' } };
const object = (environment?: Record<string, unknown>, environmentFrom?: Record<string, unknown>): HyperletObject => ({
  apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name: 'web', namespace: 'default' },
  spec: {
    template: 'busybox', state: 'Running', updatePolicy: 'Live', deletionPolicy: 'Delete', autostart: false, gracefulStopSeconds: 30,
    ...(environment === undefined ? {} : { environment }), ...(environmentFrom === undefined ? {} : { environmentFrom }),
  },
} as HyperletObject);

describe('redactObject', () => {
  const cases: Record<string, { reason: string; env: Record<string, unknown> | undefined; from?: Record<string, unknown>; want: Record<string, unknown> | undefined }> = {
    LiteralValues: { reason: 'keys stay, values go', env: { A: 'hunter2', B: '' }, want: { A: REDACTED, B: REDACTED } },
    References: { reason: 'a reference names where the secret is, not the secret: shown', env: { A: 'x' }, from: { P: ref }, want: { A: REDACTED } },
    NoEnvironment: { reason: 'nothing to hide', env: undefined, want: undefined },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const input = object(tc.env, tc.from);
      const before = JSON.stringify(input);
      const out = redactObject(input);
      expect((out.spec as { environment?: unknown }).environment, tc.reason).to.deep.equal(tc.want);
      expect((out.spec as { environmentFrom?: unknown }).environmentFrom, tc.reason).to.deep.equal(tc.from);
      expect(JSON.stringify(input), 'the input is not changed').to.equal(before);
      expect(out.spec.state).to.equal('Running');
    });
  }
});

describe('redactFieldValue and describeEnvironmentChange', () => {
  const cases: Record<string, { reason: string; path: string; value: string | number | null; want: string | number | null }> = {
    Environment: { reason: 'flattened environment JSON keeps keys', path: 'environment', value: JSON.stringify({ A: 's3cret', B: 'x' }), want: JSON.stringify({ A: REDACTED, B: REDACTED }) },
    NotJson: { reason: 'anything unreadable is hidden whole', path: 'environment', value: 'A=s3cret', want: REDACTED },
    OtherField: { reason: 'other fields are not secret', path: 'resources.memory', value: 268435456, want: 268435456 },
  };
  for (const [name, tc] of Object.entries(cases)) it(name, () => expect(redactFieldValue(tc.path, tc.value), tc.reason).to.equal(tc.want));

  it('names changed keys, never values', () => {
    const text = describeEnvironmentChange(JSON.stringify({ A: 'old-secret', B: 'same', C: 'gone' }), JSON.stringify({ A: 'new-secret', B: 'same', D: 'new' }));
    expect(text).to.equal('added D; changed A; removed C');
    expect(text).to.not.match(/secret|same|gone|new-/);
  });
});

describe('environment references', () => {
  it('lists references in key order and fills values into a copy', () => {
    const o = object({ M: 'plain' }, { Z: { file: 'z' }, A: ref });
    expect(environmentReferences(o).map((r) => r.name)).to.deep.equal(['A', 'Z']);
    const filled = withEnvironmentValues(o, { A: 'a-value', Z: 'z-value' });
    expect((filled.spec as { environment: unknown }).environment).to.deep.equal({ Z: 'z-value', A: 'a-value', M: 'plain' });
    expect(filled.spec, 'what the instance gets has no references left').to.not.have.property('environmentFrom');
    expect(environmentReferences(o), 'the input keeps its references').to.have.length(2);
  });

  // want: the value passed on, or 'PolicyDenied' for a refusal.
  const values: Record<string, { reason: string; raw: string; want: string }> = {
    Plain: { reason: 'as written', raw: 'pa ss\tword', want: 'pa ss\tword' },
    TrailingNewline: { reason: 'echo adds one new line: dropped', raw: 'password\n', want: 'password' },
    TrailingCrlf: { reason: 'a CRLF file ending too', raw: 'password\r\n', want: 'password' },
    TwoNewlines: { reason: 'only one is dropped; the other would break the config line', raw: 'password\n\n', want: 'PolicyDenied' },
    InnerNewline: { reason: 'a second line would become a new LXC config key', raw: 'a\nlxc.hook.pre-start=/bin/sh', want: 'PolicyDenied' },
    Nul: { reason: 'NUL cannot be in an environment', raw: 'a\u0000b', want: 'PolicyDenied' },
    TooLong: { reason: 'the same 4096 limit as a written value', raw: 'x'.repeat(4097), want: 'PolicyDenied' },
  };
  for (const [name, tc] of Object.entries(values)) {
    it(`checks a value read: ${name}`, () => {
      if (tc.want !== 'PolicyDenied') {
        expect(checkedEnvironmentValue('spec.environment.A', tc.raw, 'file x'), tc.reason).to.equal(tc.want);
        return;
      }
      let caught: unknown;
      try { checkedEnvironmentValue('spec.environment.A', tc.raw, 'file x'); } catch (err) { caught = err; }
      expect(isEnvironmentError(caught) && caught.reason, tc.reason).to.equal('PolicyDenied');
      expect((caught as Error).message, 'the message names the field, never the value').to.contain('spec.environment.A').and.not.contain('lxc.hook');
    });
  }
});
