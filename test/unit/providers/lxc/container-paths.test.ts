import { expect } from 'chai';
import { consoleLogPath, containerDir, isHostName } from '../../../../src/providers/lxc/container-paths.js';

describe('isHostName', () => {
  const cases = {
    Plain: { reason: 'a DNS label', name: 'web-1', want: true },
    Namespaced: { reason: 'NAMESPACE.NAME', name: 'team-a.web', want: true },
    Dots: { reason: 'only one dot: two labels', name: 'a.b.c', want: false },
    DotDot: { reason: 'never a parent directory', name: '..', want: false },
    Slash: { reason: 'never a path', name: 'a/b', want: false },
    Dash: { reason: 'never an option to a tool', name: '-n', want: false },
    Upper: { reason: 'labels are lowercase', name: 'Web', want: false },
    Empty: { reason: 'nothing', name: '', want: false },
    Newline: { reason: 'no control characters', name: 'web\n', want: false },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => expect(isHostName(tc.name), tc.reason).to.equal(tc.want));
  }

  it('PathsRefuseEscapes', () => {
    expect(() => containerDir('/var/lib/lxc', '../etc')).to.throw(/^cannot use/);
    expect(consoleLogPath('/var/lib/lxc', 'web')).to.equal('/var/lib/lxc/web/console.log');
  });
});
