import { expect } from 'chai';
import { specFields } from '../../../../src/api/v1alpha1/fields.js';
import { deriveMac } from '../../../../src/api/v1alpha1/mac-address.js';
import type { ContainerSpec } from '../../../../src/api/v1alpha1/types.js';
import {
  MANAGED_BEGIN, MANAGED_END, type RenderContext, appliedConfigOf, fieldsFromConfig, formatEntry, liveCgroupSettings, mergeConfig,
  parseConfig, renderManagedConfig, renderRootfsBaseConfig, templateOfConfig, withRootfsPath,
} from '../../../../src/providers/lxc/lxc-config.js';

const base: ContainerSpec = {
  state: 'Running', template: 'busybox', autostart: false, gracefulStopSeconds: 30, updatePolicy: 'Live', deletionPolicy: 'Delete',
};
const ctx = (cgroupVersion: 1 | 2): RenderContext => ({
  lxcpath: '/var/lib/lxc', hostName: 'web', cgroupVersion, consoleLogPath: '/var/lib/lxc/web/console.log', idmap: { hostId: 1_000_000, size: 65_536 },
});
/** The user namespace every container gets unless it is privileged. */
const IDMAP = ['lxc.idmap = u 0 1000000 65536', 'lxc.idmap = g 0 1000000 65536'];
const render = (spec: Partial<ContainerSpec>, version: 1 | 2 = 1): string[] =>
  renderManagedConfig(appliedConfigOf(specFields('Container', { ...base, ...spec })), ctx(version));

interface RenderCase { reason: string; spec: Partial<ContainerSpec>; version: 1 | 2; want: string[] }

describe('renderManagedConfig', () => {
  const cases: Record<string, RenderCase> = {
    MinimalIsIsolated: {
      reason: 'no network declared: an empty network namespace, no bridge needed; the console log always',
      spec: {}, version: 1 as const,
      want: ['lxc.net.0.type = empty', 'lxc.start.auto = 0', 'lxc.console.logfile = /var/lib/lxc/web/console.log', 'lxc.console.size = 1048576', 'lxc.console.rotate = 1', ...IDMAP],
    },
    LimitsOnCgroupV1: {
      reason: 'cgroup v1 hosts take lxc.cgroup.* keys; cpu is a cfs quota of whole periods',
      spec: { resources: { cpu: 2, memory: '256Mi' } }, version: 1 as const,
      want: [
        'lxc.cgroup.cpu.cfs_period_us = 100000', 'lxc.cgroup.cpu.cfs_quota_us = 200000', 'lxc.cgroup.memory.limit_in_bytes = 268435456',
        'lxc.net.0.type = empty', 'lxc.start.auto = 0', 'lxc.console.logfile = /var/lib/lxc/web/console.log', 'lxc.console.size = 1048576', 'lxc.console.rotate = 1', ...IDMAP,
      ],
    },
    LimitsOnCgroupV2: {
      reason: 'unified hosts take lxc.cgroup2.* keys',
      spec: { resources: { cpu: 1, memory: '64Mi' } }, version: 2 as const,
      want: [
        'lxc.cgroup2.cpu.max = 100000 100000', 'lxc.cgroup2.memory.max = 67108864',
        'lxc.net.0.type = empty', 'lxc.start.auto = 0', 'lxc.console.logfile = /var/lib/lxc/web/console.log', 'lxc.console.size = 1048576', 'lxc.console.rotate = 1', ...IDMAP,
      ],
    },
    NoneNetwork: {
      reason: 'type none is an empty network namespace too',
      spec: { network: [{ type: 'none' }] }, version: 1 as const,
      want: ['lxc.net.0.type = empty', 'lxc.start.auto = 0', 'lxc.console.logfile = /var/lib/lxc/web/console.log', 'lxc.console.size = 1048576', 'lxc.console.rotate = 1', ...IDMAP],
    },
    VethOnBridges: {
      reason: 'each veth joins its bridge (lxcbr0 when none is named); none entries take no slot',
      spec: { network: [{ type: 'veth', bridge: 'br-test', hwaddr: '52:54:00:AA:bb:01' }, { type: 'none' }, { type: 'veth' }] }, version: 1 as const,
      want: [
        'lxc.net.0.type = veth', 'lxc.net.0.link = br-test', 'lxc.net.0.flags = up', 'lxc.net.0.name = eth0', 'lxc.net.0.hwaddr = 52:54:00:aa:bb:01',
        'lxc.net.1.type = veth', 'lxc.net.1.link = lxcbr0', 'lxc.net.1.flags = up', 'lxc.net.1.name = eth1',
        'lxc.start.auto = 0', 'lxc.console.logfile = /var/lib/lxc/web/console.log', 'lxc.console.size = 1048576', 'lxc.console.rotate = 1', ...IDMAP,
      ],
    },
    StaticIpv4: {
      reason: 'a static address and gateway are LXC settings of that veth, set before init starts',
      spec: { network: [{ type: 'veth', bridge: 'br-test', hwaddr: '52:54:00:aa:bb:01', ipv4: '10.0.3.10/24', gateway: '10.0.3.1' }] }, version: 1 as const,
      want: [
        'lxc.net.0.type = veth', 'lxc.net.0.link = br-test', 'lxc.net.0.flags = up', 'lxc.net.0.name = eth0', 'lxc.net.0.hwaddr = 52:54:00:aa:bb:01',
        'lxc.net.0.ipv4.address = 10.0.3.10/24 10.0.3.255', 'lxc.net.0.ipv4.gateway = 10.0.3.1',
        'lxc.start.auto = 0', 'lxc.console.logfile = /var/lib/lxc/web/console.log', 'lxc.console.size = 1048576', 'lxc.console.rotate = 1', ...IDMAP,
      ],
    },
    Privileged: {
      reason: 'a privileged container (the policy allowed it) has no user namespace',
      spec: { privileged: true }, version: 1 as const,
      want: ['lxc.net.0.type = empty', 'lxc.start.auto = 0', 'lxc.console.logfile = /var/lib/lxc/web/console.log', 'lxc.console.size = 1048576', 'lxc.console.rotate = 1'],
    },
    EnvironmentAndAutostart: {
      reason: 'one lxc.environment line per variable, sorted; autostart is lxc.start.auto',
      spec: { environment: { ZED: 'last', GREETING: 'hello world = "quoted" # not a comment' }, autostart: true }, version: 1 as const,
      want: [
        'lxc.net.0.type = empty', 'lxc.environment = GREETING=hello world = "quoted" # not a comment', 'lxc.environment = ZED=last',
        'lxc.start.auto = 1', 'lxc.console.logfile = /var/lib/lxc/web/console.log', 'lxc.console.size = 1048576', 'lxc.console.rotate = 1', ...IDMAP,
      ],
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => expect(render(tc.spec, tc.version), tc.reason).to.deep.equal([MANAGED_BEGIN, ...tc.want, MANAGED_END]));
  }
});

describe('config values cannot inject lines', () => {
  const fields = specFields('Container', base);
  const cases = {
    NewlineInEnvironmentValue: {
      reason: 'a value that ends its line could add any key (lxc.hook.pre-start…)',
      fields: { ...fields, environment: JSON.stringify({ A: 'x\nlxc.hook.pre-start = /tmp/evil' }) },
    },
    CarriageReturnInEnvironmentValue: { reason: 'CR ends a line too', fields: { ...fields, environment: JSON.stringify({ A: 'x\rlxc.x = y' }) } },
    NulInEnvironmentValue: { reason: 'NUL truncates the line in C', fields: { ...fields, environment: JSON.stringify({ A: 'x\u0000y' }) } },
    NewlineInEnvironmentName: { reason: 'names are identifiers only', fields: { ...fields, environment: JSON.stringify({ 'A\nlxc.x': 'y' }) } },
    EqualsInEnvironmentName: { reason: 'a name with "=" would shift the value', fields: { ...fields, environment: JSON.stringify({ 'A=B': 'y' }) } },
    NewlineInBridge: { reason: 'bridges are interface names', fields: { ...fields, network: JSON.stringify([{ type: 'veth', bridge: 'br0\nlxc.x' }]) } },
    SpaceInBridge: { reason: 'bridges are interface names', fields: { ...fields, network: JSON.stringify([{ type: 'veth', bridge: 'br0 x' }]) } },
    BadMac: { reason: 'hwaddr is a MAC address', fields: { ...fields, network: JSON.stringify([{ type: 'veth', hwaddr: '52:54:00:12:34:56\n' }]) } },
    Ipv4Injection: { reason: 'ipv4 is an address, never more config', fields: { ...fields, network: JSON.stringify([{ type: 'veth', ipv4: '10.0.3.10/24\nlxc.x = y' }]) } },
    GatewayWithoutIpv4: { reason: 'a gateway needs the address', fields: { ...fields, network: JSON.stringify([{ type: 'veth', gateway: '10.0.3.1' }]) } },
    GatewayOutsideSubnet: {
      reason: 'the gateway is on the NIC\'s subnet', fields: { ...fields, network: JSON.stringify([{ type: 'veth', ipv4: '10.0.3.10/24', gateway: '10.0.4.1' }]) },
    },
    UnknownNetworkType: { reason: 'only veth and none exist', fields: { ...fields, network: JSON.stringify([{ type: 'phys' }]) } },
    FractionalCpu: { reason: 'cpu is a whole number', fields: { ...fields, 'resources.cpu': 1.5 } },
    TextMemory: { reason: 'memory is a byte count', fields: { ...fields, 'resources.memory': '1\nlxc.x = y' } },
    TextAutostart: { reason: 'autostart is a boolean', fields: { ...fields, autostart: '1\nlxc.x = y' } },
    TextPrivileged: { reason: 'privileged is a boolean', fields: { ...fields, privileged: 'no\nlxc.x = y' } },
    BrokenJson: { reason: 'a hand-edited marker is refused, not half-read', fields: { ...fields, environment: '{"A":' } },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => expect(() => renderManagedConfig(appliedConfigOf(tc.fields), ctx(1)), tc.reason).to.throw(/^cannot (render|write)/));
  }

  it('TabsAndSymbolsStayOnTheirLine', () => {
    const tricky = { A: 'tab\there', B: '= # ; \\ " \' $(x) `y`', C: '' };
    const lines = renderManagedConfig(appliedConfigOf({ ...fields, environment: JSON.stringify(tricky) }), ctx(1));
    const env = parseConfig(lines.join('\n')).filter((e) => e.key === 'lxc.environment').map((e) => e.value);
    expect(env, 'each variable is exactly one entry, read back whole').to.deep.equal(['A=tab\there', 'B== # ; \\ " \' $(x) `y`', 'C=']);
  });

  it('LegacyMarkerIsPrivileged', () => {
    const { privileged: _dropped, ...legacy } = fields;
    expect(appliedConfigOf(legacy).privileged, 'a marker from before unprivileged containers: its container has no user namespace').to.equal(true);
    expect(renderManagedConfig(appliedConfigOf(legacy), ctx(1)).some((l) => l.startsWith('lxc.idmap')), 'so no idmap is added to it').to.equal(false);
  });

  it('ConsoleLogCapIsAPowerOfTwo', () => {
    const lines = renderManagedConfig(appliedConfigOf(fields), { ...ctx(1), consoleLogBytes: 65536 });
    expect(lines).to.include.members(['lxc.console.size = 65536', 'lxc.console.rotate = 1']);
    for (const bad of [1000, 2048, 65537]) {
      expect(() => renderManagedConfig(appliedConfigOf(fields), { ...ctx(1), consoleLogBytes: bad }), String(bad)).to.throw(/power of two of at least 4096/);
    }
  });

  it('FormatEntryRefusesLineBreaks', () => {
    expect(() => formatEntry({ key: 'lxc.console.logfile', value: '/x\nlxc.y = z' })).to.throw(/^cannot write lxc.console.logfile/);
    expect(() => renderRootfsBaseConfig('/r\n', 'web', undefined)).to.throw(/^cannot write lxc.rootfs.path/);
  });
});

describe('mergeConfig', () => {
  const template = [
    '# Template used to create this container: /usr/share/lxc/templates/lxc-busybox',
    'lxc.net.0.type = veth',
    'lxc.net.0.link = lxcbr0',
    'lxc.rootfs.path = dir:/var/lib/lxc/web/rootfs',
    'lxc.cgroup.devices.allow = c 1:3 rwm',
    'lxc.uts.name = "web"',
    '',
  ].join('\n');
  const managed = render({ resources: { memory: '128Mi' } });
  const cases = {
    TemplateNetworkReplaced: {
      reason: "the template's copies of managed keys go; devices rules and the rest stay",
      existing: template,
      want: [
        '# Template used to create this container: /usr/share/lxc/templates/lxc-busybox',
        'lxc.rootfs.path = dir:/var/lib/lxc/web/rootfs',
        'lxc.cgroup.devices.allow = c 1:3 rwm',
        'lxc.uts.name = "web"',
        '',
        ...managed,
        '',
      ].join('\n'),
    },
    Idempotent: { reason: 'merging twice changes nothing', existing: mergeConfig(template, managed), want: mergeConfig(template, managed) },
    OldBlockReplaced: {
      reason: 'a previous block is replaced, not appended to',
      existing: mergeConfig(template, render({ resources: { memory: '512Mi' }, environment: { OLD: '1' } })),
      want: mergeConfig(template, managed),
    },
    StrayManagedKeyDropped: {
      reason: 'a managed key added by hand outside the block is drift: dropped',
      existing: `${mergeConfig(template, managed)}lxc.cgroup.memory.limit_in_bytes = 1\nlxc.environment = X=1\n`,
      want: mergeConfig(template, managed),
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => expect(mergeConfig(tc.existing, managed), tc.reason).to.equal(tc.want));
  }
});

describe('fieldsFromConfig', () => {
  const header = '# Template used to create this container: /usr/share/lxc/templates/lxc-busybox\n';
  const cases = {
    RoundTripV1: {
      reason: 'what hyperlet renders reads back as the same flattened fields (except rootfs and disk)',
      spec: { resources: { cpu: 2, memory: '256Mi' }, environment: { B: '2', A: 'x y' }, autostart: true, network: [{ type: 'veth' as const, bridge: 'br1' }] },
      version: 1 as const,
    },
    RoundTripV2: {
      reason: 'the same on cgroup v2',
      spec: { resources: { cpu: 1, memory: '64Mi' } },
      version: 2 as const,
    },
    RoundTripNothing: { reason: 'no limits, no network, no environment', spec: {}, version: 1 as const },
    RoundTripStaticIpv4: {
      reason: 'a static address and gateway read back',
      spec: { network: [{ type: 'veth' as const, bridge: 'br1', hwaddr: '52:54:00:aa:bb:01', ipv4: '10.0.3.10/20', gateway: '10.0.0.1' }] }, version: 2 as const,
    },
    RoundTripPrivileged: { reason: 'no lxc.idmap reads back as privileged', spec: { privileged: true }, version: 1 as const },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const text = mergeConfig(header, render(tc.spec, tc.version));
      const want = specFields('Container', { ...base, ...tc.spec });
      expect(fieldsFromConfig(text, tc.version), tc.reason).to.deep.equal({ ...want, 'resources.disk': null, rootfs: null });
    });
  }

  it('ForeignConfig', () => {
    const text = 'lxc.net.0.type = veth\nlxc.net.0.link = lxcbr0\nlxc.net.0.flags = up\nlxc.environment = PATH\nlxc.start.auto = 0\n';
    expect(fieldsFromConfig(text, 1), 'an inherited variable (no "=") is not reported; no template header is null; no lxc.idmap is privileged').to.deep.equal({
      template: null, templateArgs: null, rootfs: null, image: null, 'resources.cpu': null, 'resources.memory': null, 'resources.disk': null,
      network: JSON.stringify([{ type: 'veth', bridge: 'lxcbr0' }]), environment: '{}', autostart: false, privileged: true,
    });
  });

  it('TemplateOfConfig', () => {
    expect(templateOfConfig(header)).to.equal('busybox');
    expect(templateOfConfig('lxc.uts.name = x\n')).to.equal(null);
  });
});

describe('liveCgroupSettings', () => {
  const cases = {
    V1Both: {
      reason: 'v1: period, quota, limit_in_bytes', change: { cpu: 3, memoryBytes: 268435456 }, version: 1 as const,
      want: [{ key: 'cpu.cfs_period_us', value: '100000' }, { key: 'cpu.cfs_quota_us', value: '300000' }, { key: 'memory.limit_in_bytes', value: '268435456' }],
    },
    V1Lift: {
      reason: 'v1: -1 lifts a limit', change: { cpu: null, memoryBytes: null }, version: 1 as const,
      want: [{ key: 'cpu.cfs_period_us', value: '100000' }, { key: 'cpu.cfs_quota_us', value: '-1' }, { key: 'memory.limit_in_bytes', value: '-1' }],
    },
    V2Both: {
      reason: 'v2: cpu.max and memory.max', change: { cpu: 2, memoryBytes: 67108864 }, version: 2 as const,
      want: [{ key: 'cpu.max', value: '200000 100000' }, { key: 'memory.max', value: '67108864' }],
    },
    V2Lift: {
      reason: 'v2: "max" lifts a limit', change: { memoryBytes: null }, version: 2 as const,
      want: [{ key: 'memory.max', value: 'max' }],
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => expect(liveCgroupSettings(tc.change, tc.version), tc.reason).to.deep.equal(tc.want));
  }
});

describe('renderManagedConfig: derived MACs', () => {
  it('gives a veth without hwaddr the MAC derived from the object id and its index among veths; a declared one stays', () => {
    const fields = specFields('Container', { ...base, network: [{ type: 'veth' }, { type: 'veth', hwaddr: '52:54:00:AA:BB:CC' }] });
    const lines = renderManagedConfig(appliedConfigOf(fields), { ...ctx(1), ownerId: 'id-1' });
    expect(lines).to.include(`lxc.net.0.hwaddr = ${deriveMac('id-1', 0)}`);
    expect(lines).to.include('lxc.net.1.hwaddr = 52:54:00:aa:bb:cc');
    expect(renderManagedConfig(appliedConfigOf(fields), ctx(1)).filter((l) => l.startsWith('lxc.net.0.hwaddr')), 'no id: LXC picks one').to.deep.equal([]);
  });
});

describe('withRootfsPath', () => {
  const cases = {
    ReplacesAndDropsRepeat: {
      reason: 'lxc-create writes the key twice: the first becomes the overlay, the second goes',
      text: 'lxc.include = /c.conf\nlxc.rootfs.path = dir:/l/c/rootfs\nlxc.uts.name = c\nlxc.rootfs.path = dir:/l/c/rootfs\n',
      want: 'lxc.include = /c.conf\nlxc.rootfs.path = overlay:/base:/l/c/rootfs\nlxc.uts.name = c\n',
    },
    AppendsWhenAbsent: {
      reason: 'no rootfs line: one is added at the end',
      text: 'lxc.uts.name = c\n\n',
      want: 'lxc.uts.name = c\nlxc.rootfs.path = overlay:/base:/l/c/rootfs\n',
    },
    KeepsComments: {
      reason: 'a commented-out key is no key',
      text: '# lxc.rootfs.path = dir:/x\nlxc.rootfs.path=dir:/y\n',
      want: '# lxc.rootfs.path = dir:/x\nlxc.rootfs.path = overlay:/base:/l/c/rootfs\n',
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => expect(withRootfsPath(tc.text, 'overlay:/base:/l/c/rootfs'), tc.reason).to.equal(tc.want));
  }
  it('refuses a value that would end the line', () => {
    expect(() => withRootfsPath('', 'overlay:/a\nlxc.hook.pre-start = /evil')).to.throw(/line break/);
  });
});
