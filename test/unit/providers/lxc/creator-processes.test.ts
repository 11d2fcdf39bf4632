import { expect } from 'chai';
import { isCreatorOf } from '../../../../src/providers/lxc/creator-processes.js';

describe('isCreatorOf', () => {
  const lxcpath = '/var/lib/lxc';
  const cases = {
    LxcCreate: { reason: 'lxc-create for this container', argv: ['lxc-create', '-P', lxcpath, '-n', 'web', '-t', 'busybox'], want: true },
    LxcCreateFullPath: { reason: 'called by its full path', argv: ['/usr/bin/lxc-create', '-P', lxcpath, '-n', 'web'], want: true },
    Template: {
      reason: 'the template script lxc-create started',
      argv: ['/bin/sh', '/usr/share/lxc/templates/lxc-busybox', '--path=/var/lib/lxc/web', '--name=web', '--rootfs=/var/lib/lxc/web/rootfs'], want: true,
    },
    OtherContainer: { reason: 'another container of the same lxcpath', argv: ['lxc-create', '-P', lxcpath, '-n', 'web-2'], want: false },
    OtherTemplate: { reason: 'a prefix is not a match', argv: ['/bin/sh', 'lxc-busybox', '--path=/var/lib/lxc/web-2'], want: false },
    OtherLxcpath: { reason: 'the same name elsewhere', argv: ['lxc-create', '-P', '/tmp/other', '-n', 'web'], want: false },
    Unrelated: { reason: 'a process that merely mentions the name', argv: ['vim', '/var/lib/lxc', 'web'], want: false },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => expect(isCreatorOf(tc.argv, lxcpath, 'web'), tc.reason).to.equal(tc.want));
  }
});
