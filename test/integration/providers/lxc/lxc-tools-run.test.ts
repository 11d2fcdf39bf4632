/** LxcTools.run against real processes (cp stands in for an lxc-* tool): errors, timeouts, aborts. */
import { expect } from 'chai';
import pino from 'pino';
import { LxcTools, isLxcToolError } from '../../../../src/providers/lxc/lxc-tools.js';
import { isAbortError } from '../../../../src/shared/errors.js';

const logger = pino({ level: 'silent' });

describe('LxcTools.run', () => {
  const calls: string[] = [];
  const tools = new LxcTools({ logger, timeoutMs: 5_000, onCall: (tool, _ms, ok) => calls.push(`${tool}:${ok}`) });

  it('FailureCarriesStderr', async () => {
    const err: unknown = await tools.run('cp', ['/nonexistent/source-file', '/tmp/'], { signal: AbortSignal.timeout(10_000) }).then(() => undefined, (e: unknown) => e);
    expect(isLxcToolError(err), 'a failed tool throws LxcToolError').to.equal(true);
    if (!isLxcToolError(err)) return;
    expect(err.exitCode).to.equal(1);
    expect(err.message).to.match(/^cannot run cp \/nonexistent\/source-file \/tmp\/: exit code 1: .*No such file or directory/);
  });

  it('SuccessReturnsStdout', async () => {
    const out = await tools.run('cp', ['--version'], { signal: AbortSignal.timeout(10_000) });
    expect(out.stdout).to.match(/cp \(GNU coreutils\)/);
    expect(calls).to.include('cp:true');
  });

  it('TimeoutKillsTheTool', async () => {
    const started = Date.now();
    const err: unknown = await tools.run('cp', ['/dev/zero', '/dev/null'], { signal: AbortSignal.timeout(60_000), timeoutMs: 200 }).then(() => undefined, (e: unknown) => e);
    expect(isLxcToolError(err) && err.message, 'a tool that runs too long is killed and says so').to.match(/timed out after 200 ms/);
    expect(Date.now() - started).to.be.lessThan(5_000);
  });

  it('AbortKillsTheTool', async () => {
    const controller = new AbortController();
    const pending = tools.run('cp', ['/dev/zero', '/dev/null'], { signal: controller.signal });
    setTimeout(() => controller.abort(), 100);
    const err: unknown = await pending.then(() => undefined, (e: unknown) => e);
    expect(isAbortError(err), 'an aborted call rejects with an AbortError').to.equal(true);
  });

  it('AlreadyAbortedSpawnsNothing', async () => {
    const before = calls.length;
    const err: unknown = await tools.run('cp', ['--version'], { signal: AbortSignal.abort() }).then(() => undefined, (e: unknown) => e);
    expect(isAbortError(err)).to.equal(true);
    expect(calls.length, 'no process was started').to.equal(before);
  });
});
