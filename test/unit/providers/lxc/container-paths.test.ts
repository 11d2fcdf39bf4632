import { expect } from 'chai';
import { basename } from 'node:path';
import {
  consoleLogPath, containerDir, isHostName, leftoverDir, parseLeftover,
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

describe('parseLeftover', () => {
  const id = '0f6c2a8e-3b1d-4c7e-9a55-2d4e8f1b6c03';
  const cases = {
    Staging: { reason: 'what create() prepares a directory under', entry: basename(leftoverDir('/l', 'web', id, 'staging')), want: { hostName: 'web', ownerId: id, kind: 'staging' } },
    Trash: { reason: 'what delete() moves a directory to, namespaced', entry: basename(leftoverDir('/l', 'team.web', id, 'trash')), want: { hostName: 'team.web', ownerId: id, kind: 'trash' } },
    Container: { reason: 'a container is never a leftover', entry: 'web', want: undefined },
    OtherHidden: { reason: 'a hidden entry hyperlet did not name stays', entry: '.web.staging', want: undefined },
    NoId: { reason: 'without the owner id it is nobody\'s', entry: '.web.hyperlet-trash', want: undefined },
    NoName: { reason: 'the name must be a host name', entry: `.-x.${id}.hyperlet-trash`, want: undefined },
    Visible: { reason: 'a visible name could be a container', entry: `web.${id}.hyperlet-trash`, want: undefined },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const got = parseLeftover(tc.entry);
      expect(got === undefined ? undefined : { hostName: got.hostName, ownerId: got.ownerId, kind: got.kind }, tc.reason).to.deep.equal(tc.want);
    });
  }

  it('LeftoversAreBesideTheContainers', () => {
    expect(leftoverDir('/var/lib/lxc', 'web', id, 'staging')).to.equal(`/var/lib/lxc/.web.${id}.hyperlet-staging`);
    expect(() => leftoverDir('/var/lib/lxc', '../x', id, 'trash')).to.throw(/^cannot use/);
    expect(() => leftoverDir('/var/lib/lxc', 'web', '../x', 'trash')).to.throw(/^cannot use/);
  });
});
