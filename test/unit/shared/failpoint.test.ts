import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FAILPOINTS_ENV, failpoint, parseFailpoints } from '../../../src/shared/failpoint.js';

const moduleUrl = new URL('../../../src/shared/failpoint.js', import.meta.url).href;

/** Runs a node process that passes failpoints `a` then `b`, printing each name after passing it. */
function runPast(env: string | undefined): Promise<{ signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  const script = `const { failpoint } = await import(${JSON.stringify(moduleUrl)});
for (const name of ['a', 'b']) { failpoint(name); process.stdout.write(name + '\\n'); }`;
  const childEnv = { ...process.env };
  delete childEnv[FAILPOINTS_ENV];
  if (env !== undefined) childEnv[FAILPOINTS_ENV] = env;
  return new Promise((resolve) => {
    const child = execFile(process.execPath, ['--input-type=module', '-e', script], { env: childEnv, cwd: join(dirname(fileURLToPath(import.meta.url))) },
      (_err, stdout, stderr) => resolve({ signal: child.signalCode, stdout, stderr }));
  });
}

describe('parseFailpoints', () => {
  const cases = {
    Unset: { reason: 'no variable: nothing enabled', value: undefined, want: [] },
    Empty: { reason: 'an empty variable: nothing enabled', value: '', want: [] },
    List: { reason: 'comma-separated names, blanks trimmed', value: ' lxc.create.placed, state.remembered ,', want: ['lxc.create.placed', 'state.remembered'] },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => expect([...parseFailpoints(tc.value)], tc.reason).to.deep.equal(tc.want));
  }
});

describe('failpoint', () => {
  it('InertUnlessEnabled', () => {
    // This test process runs without HYPERLET_FAILPOINTS naming it: passing one does nothing.
    expect(() => failpoint('test.never-enabled')).not.to.throw();
  });

  const cases = {
    Disabled: { reason: 'without the variable both points pass', env: undefined, signal: null, stdout: 'a\nb\n' },
    Other: { reason: 'a point not listed passes', env: 'c', signal: null, stdout: 'a\nb\n' },
    KilledThere: { reason: 'the listed point kills with SIGKILL before anything after it runs', env: 'b', signal: 'SIGKILL', stdout: 'a\n' },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, async () => {
      const r = await runPast(tc.env);
      expect(r.signal, tc.reason).to.equal(tc.signal);
      expect(r.stdout, tc.reason).to.equal(tc.stdout);
      if (tc.signal !== null) expect(r.stderr).to.include(`failpoint ${tc.env}: killing the process`);
    });
  }
});
