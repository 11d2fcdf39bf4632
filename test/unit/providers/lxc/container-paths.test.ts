import { expect } from 'chai';
import { basename } from 'node:path';
import {
  consoleLogPath, containerDir, isDebrisEntry, isHostName, stagingDir, trashDir,
} from '../../../../src/providers/lxc/container-paths.js';

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

describe('isDebrisEntry', () => {
  const cases = {
    Staging: { reason: 'what create() prepares a directory under', entry: basename(stagingDir('/l', 'web')), want: true },
    Trash: { reason: 'what delete() moves a directory to', entry: basename(trashDir('/l', 'team.web')), want: true },
    Container: { reason: 'a container is never debris', entry: 'web', want: false },
    OtherHidden: { reason: 'a hidden entry hyperlet did not name stays', entry: '.web.staging', want: false },
    NoName: { reason: 'the middle must be a host name', entry: '..hyperlet-trash', want: false },
    Visible: { reason: 'a visible name could be a container', entry: 'web.hyperlet-trash', want: false },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => expect(isDebrisEntry(tc.entry), tc.reason).to.equal(tc.want));
  }

  it('StagingAndTrashAreBesideTheContainers', () => {
    expect(stagingDir('/var/lib/lxc', 'web')).to.equal('/var/lib/lxc/.web.hyperlet-staging');
    expect(trashDir('/var/lib/lxc', 'web')).to.equal('/var/lib/lxc/.web.hyperlet-trash');
    expect(() => stagingDir('/var/lib/lxc', '../x')).to.throw(/^cannot use/);
  });
});
