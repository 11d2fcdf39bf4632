import { expect } from 'chai';
import { parseBootTime, parseStartTicks, processStartTime } from '../../../../src/providers/lxc/process-start-time.js';

describe('process start time', () => {
  const fields = (comm: string): string => `42 (${comm}) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 2048 10 18446744073709551615`;
  const cases = {
    Plain: { reason: 'field 22 after the command', stat: fields('init'), want: 123456 },
    SpacesAndParens: { reason: 'a command may hold spaces and ")"', stat: fields('a) b (c'), want: 123456 },
    Truncated: { reason: 'not a stat line', stat: '42 init', want: undefined },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => expect(parseStartTicks(tc.stat), tc.reason).to.equal(tc.want));
  }

  it('BootTime', () => {
    expect(parseBootTime('cpu  1 2 3\nbtime 1795300000\nprocesses 9\n')).to.equal(1795300000);
    expect(parseBootTime('cpu 1\n')).to.equal(undefined);
  });

  it('OwnProcessStartedInThePast', async () => {
    const started = await processStartTime(process.pid);
    expect(started, 'this test process has a start time').to.be.a('string');
    const ageMs = Date.now() - Date.parse(started ?? '');
    expect(ageMs).to.be.within(-1_000, 3_600_000);
  });
});
