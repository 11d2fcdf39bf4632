import { expect } from 'chai';
import { parseCgroupLayout, parseCpuMax, parseMemoryLimit, parseProcCgroup } from '../../../../src/providers/lxc/cgroup-host.js';

describe('parseCgroupLayout', () => {
  const hybrid = [
    'tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0',
    'cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0',
    'cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0',
    'cgroup /sys/fs/cgroup/freezer cgroup rw,relatime,freezer 0 0',
    'cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0',
  ].join('\n');
  const cases = {
    HybridIsV1: {
      reason: "this host: controllers on v1 mounts, an empty cgroup2 beside them; LXC uses v1 keys",
      mounts: hybrid, want: { version: 1, memoryRoot: '/sys/fs/cgroup/memory', cpuRoot: '/sys/fs/cgroup/cpu', freezerRoot: '/sys/fs/cgroup/freezer' },
    },
    CombinedCpuMount: {
      reason: 'many distributions mount cpu,cpuacct together',
      mounts: 'cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,cpu,cpuacct 0 0\ncgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0',
      want: { version: 1, memoryRoot: '/sys/fs/cgroup/memory', cpuRoot: '/sys/fs/cgroup/cpu,cpuacct' },
    },
    UnifiedIsV2: {
      reason: 'current distributions: one cgroup2 mount',
      mounts: 'proc /proc proc rw 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0',
      want: { version: 2, memoryRoot: '/sys/fs/cgroup', cpuRoot: '/sys/fs/cgroup', freezerRoot: '/sys/fs/cgroup' },
    },
    NoCgroups: { reason: 'nothing to limit with', mounts: 'proc /proc proc rw 0 0', want: undefined },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => expect(parseCgroupLayout(tc.mounts), tc.reason).to.deep.equal(tc.want));
  }
});

describe('parseProcCgroup', () => {
  const v1 = '9:name=systemd:/lxc.payload.t1\n6:freezer:/lxc.payload.t1\n4:memory:/lxc.payload.t1\n2:cpu,cpuacct:/lxc.payload.t1-1\n0::/lxc.payload.t1\n';
  const cases = {
    V1ByController: { reason: 'v1 paths come from the lines naming the controller', text: v1, version: 1 as const, want: { memory: '/lxc.payload.t1', cpu: '/lxc.payload.t1-1', freezer: '/lxc.payload.t1' } },
    V2Unified: { reason: 'v2 has one line with no controllers', text: '0::/lxc.payload.web\n', version: 2 as const, want: { memory: '/lxc.payload.web', cpu: '/lxc.payload.web', freezer: '/lxc.payload.web' } },
    V1Missing: { reason: 'no memory line: nothing found', text: '0::/x\n', version: 1 as const, want: {} },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => expect(parseProcCgroup(tc.text, tc.version), tc.reason).to.deep.equal(tc.want));
  }
});

describe('limit parsers', () => {
  const memory = {
    Bytes: { reason: 'a limit', text: '268435456\n', want: 268435456 },
    V1Unlimited: { reason: 'v1 prints a huge number for no limit', text: '9223372036854771712\n', want: null },
    V2Max: { reason: 'v2 prints max', text: 'max\n', want: null },
    Garbage: { reason: 'not a limit', text: 'abc', want: undefined },
  };
  for (const [name, tc] of Object.entries(memory)) {
    it(`memory ${name}`, () => expect(parseMemoryLimit(tc.text), tc.reason).to.equal(tc.want));
  }
  const cpu = {
    Quota: { reason: 'quota and period', text: '200000 100000\n', want: { quotaUs: 200000, periodUs: 100000 } },
    Max: { reason: 'no quota', text: 'max 100000\n', want: { quotaUs: null, periodUs: 100000 } },
    Garbage: { reason: 'not cpu.max', text: '1', want: undefined },
  };
  for (const [name, tc] of Object.entries(cpu)) {
    it(`cpu ${name}`, () => expect(parseCpuMax(tc.text), tc.reason).to.deep.equal(tc.want));
  }
});
