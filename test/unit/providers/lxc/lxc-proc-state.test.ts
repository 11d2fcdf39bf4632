import { expect } from 'chai';
import { commandSocketName, lxcStateFromFreezer, monitorTitle, parseAbstractSockets, parseChildren } from '../../../../src/providers/lxc/lxc-proc-state.js';

describe('lxc-proc-state', () => {
  const unix = [
    'Num       RefCount Protocol Flags    Type St Inode Path',
    '00000000cabe34af: 00000002 00000000 00010000 0001 01 480350 @/tmp/lxc/q10/command',
    '000000002f603fa8: 00000002 00000000 00000000 0002 01 479903',
    '0000000069bbb3b4: 00000003 00000000 00000000 0001 03 478508 /run/systemd/notify',
    '0000000069bbb3b5: 00000003 00000000 00000000 0001 03 478509 @/var/lib/lxc/team-a.db/command',
  ].join('\n');

  const sockets = {
    Abstract: { reason: 'a running container owns its command socket', name: '@/tmp/lxc/q10/command', want: true },
    Namespaced: { reason: 'dots in host names', name: '@/var/lib/lxc/team-a.db/command', want: true },
    PathSocket: { reason: 'filesystem sockets are not abstract', name: '/run/systemd/notify', want: false },
    Missing: { reason: 'a stopped container has none', name: '@/tmp/lxc/q1/command', want: false },
  };
  for (const [name, tc] of Object.entries(sockets)) {
    it(`parseAbstractSockets ${name}`, () => expect(parseAbstractSockets(unix).has(tc.name), tc.reason).to.equal(tc.want));
  }

  it('commandSocketName', () => {
    expect(commandSocketName('/var/lib/lxc/', 'web'), 'a trailing slash is not doubled').to.equal('@/var/lib/lxc/web/command');
    expect(commandSocketName(`/${'x'.repeat(95)}`, 'web'), 'LXC hashes names that do not fit: unknown').to.equal(undefined);
  });

  it('monitorTitle', () => {
    expect(monitorTitle('/tmp/lxc/', 'p0')).to.equal('[lxc monitor] /tmp/lxc p0');
  });

  const children = {
    One: { reason: "a monitor's one child is the container's init", text: '7190 ', want: [7190] },
    Several: { reason: 'space separated', text: '1 22 333\n', want: [1, 22, 333] },
    None: { reason: 'no children', text: '', want: [] },
  };
  for (const [name, tc] of Object.entries(children)) {
    it(`parseChildren ${name}`, () => expect(parseChildren(tc.text), tc.reason).to.deep.equal(tc.want));
  }

  const freezer = {
    V1Thawed: { reason: 'v1 running', text: 'THAWED\n', version: 1 as const, want: 'RUNNING' },
    V1Frozen: { reason: 'v1 frozen', text: 'FROZEN\n', version: 1 as const, want: 'FROZEN' },
    V1Freezing: { reason: 'v1 on its way', text: 'FREEZING\n', version: 1 as const, want: 'FREEZING' },
    V2Frozen: { reason: 'v2 cgroup.events', text: 'populated 1\nfrozen 1\n', version: 2 as const, want: 'FROZEN' },
    V2Running: { reason: 'v2 cgroup.events', text: 'populated 1\nfrozen 0\n', version: 2 as const, want: 'RUNNING' },
    Garbage: { reason: 'unknown text is no answer', text: 'x', version: 1 as const, want: undefined },
  };
  for (const [name, tc] of Object.entries(freezer)) {
    it(`lxcStateFromFreezer ${name}`, () => expect(lxcStateFromFreezer(tc.text, tc.version), tc.reason).to.equal(tc.want));
  }
});
