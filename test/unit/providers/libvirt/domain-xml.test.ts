import { expect } from 'chai';
import { specFields } from '../../../../src/api/v1alpha1/fields.js';
import type { VirtualMachineSpec } from '../../../../src/api/v1alpha1/types.js';
import {
  buildDomainXml, deriveMac, diskNameOfVolume, parseDomainXml, planDisks, type OwnershipMarker,
} from '../../../../src/providers/libvirt/domain-xml.js';
import { disksChangeMode, observedFieldsOf } from '../../../../src/providers/libvirt/observed-fields.js';
import { xmlEscape } from '../../../../src/providers/libvirt/xml-text.js';

const ID = '3f1c2a9e-5b7d-4c11-9a3e-1d2b3c4d5e6f';

const baseSpec = (over: Partial<VirtualMachineSpec> = {}): VirtualMachineSpec => ({
  state: 'Running', hypervisor: 'qemu', resources: { cpu: 1, memory: '128Mi' }, gracefulStopSeconds: 60,
  updatePolicy: 'Live', deletionPolicy: 'Delete', ...over,
});

const markerOf = (spec: VirtualMachineSpec, over: Partial<OwnershipMarker> = {}): OwnershipMarker => ({
  id: ID, key: 'dir/default/VirtualMachine/vm1', specHash: 'abcdef0123456789', generation: 3,
  fields: specFields('VirtualMachine', spec), volumes: [], annotations: {}, ...over,
});

const build = (spec: VirtualMachineSpec, marker = markerOf(spec), name = 'vm1', consolePath = '/var/log/hyperlet/console/vm1.log'): string =>
  buildDomainXml({ name, uuid: ID, spec, consolePath, marker });

describe('domain XML', () => {
  const nasty = {
    Angle: { reason: 'angle brackets cannot open an element', value: '<devices><disk/></devices>' },
    CdataEnd: { reason: ']]> is escaped like any >', value: 'a]]>b' },
    Amp: { reason: 'entities are not expanded twice', value: 'x &amp; y & z' },
    Quotes: { reason: 'both quote kinds cannot close an attribute', value: `"'><x y='1'>` },
    Whitespace: { reason: 'tab, new line and CR survive (as references)', value: 'a\tb\nc\r d  ' },
    All: { reason: 'everything at once', value: `console=ttyS0 x="<>&]]>'"` },
  };
  for (const [name, tc] of Object.entries(nasty)) {
    it(`round-trips ${name} in cmdline, paths and annotations`, () => {
      const spec = baseSpec({ boot: { kernel: `/k/${tc.value}`, initrd: `/i/${tc.value}`, cmdline: tc.value } });
      const marker = markerOf(spec, { annotations: { 'example.com/note': tc.value }, rebootRequest: tc.value });
      const xml = build(spec, marker, 'vm1', `/c/${tc.value}.log`);
      const p = parseDomainXml(xml);
      expect(p.cmdline, tc.reason).to.equal(tc.value);
      expect(p.kernel, tc.reason).to.equal(`/k/${tc.value}`);
      expect(p.initrd, tc.reason).to.equal(`/i/${tc.value}`);
      expect(p.consolePath, tc.reason).to.equal(`/c/${tc.value}.log`);
      expect(p.marker?.annotations, tc.reason).to.deep.equal({ 'example.com/note': tc.value });
      expect(p.marker?.rebootRequest, tc.reason).to.equal(tc.value);
      expect(p.disks, 'no element was injected').to.deep.equal([]);
      expect(p.interfaces, 'no element was injected').to.deep.equal([]);
    });
  }

  const serials: Record<string, { reason: string; devices: string; want: string | undefined }> = {
    PtyWithLog: {
      reason: 'hyperlet\'s serial: a pty (consoles attach) logged to a file by virtlogd',
      devices: '<serial type="pty"><source path="/dev/pts/7"/><log file="/c/vm1.log" append="on"/><target port="0"/></serial>', want: '/c/vm1.log',
    },
    FileBeforeConsoles: {
      reason: 'a domain defined before consoles existed has a file serial',
      devices: '<serial type="file"><source path="/c/old.log"/><target port="0"/></serial>', want: '/c/old.log',
    },
    PtyWithoutLog: { reason: 'a pty alone is no log (its source is a /dev/pts path)', devices: '<serial type="pty"><source path="/dev/pts/7"/></serial>', want: undefined },
  };
  for (const [name, tc] of Object.entries(serials)) {
    it(`reads the console log path: ${name}`, () => {
      const p = parseDomainXml(`<domain type="qemu"><name>vm1</name><uuid>${ID}</uuid><memory>1024</memory><vcpu>1</vcpu><devices>${tc.devices}</devices></domain>`);
      expect(p.consolePath, tc.reason).to.equal(tc.want);
    });
  }

  it('gives the serial console a pty that virtlogd logs to the console path', () => {
    const xml = build(baseSpec({}), undefined, 'vm1', '/c/vm1.log');
    expect(xml).to.include('<serial type="pty"><log file="/c/vm1.log" append="on"/><target port="0"/></serial>');
  });

  it('refuses a control character XML cannot carry', () => {
    expect(() => xmlEscape('a\u0001b')).to.throw(RangeError);
    expect(() => build(baseSpec({ boot: { kernel: '/k', cmdline: 'a\u0007' } }))).to.throw(RangeError);
  });

  it('carries ownership, the UUID and the applied fields', () => {
    const spec = baseSpec({ resources: { cpu: 1, memory: '128Mi', maxCpu: 2, maxMemory: '256Mi' } });
    const p = parseDomainXml(build(spec));
    expect(p.uuid).to.equal(ID);
    expect(p.type).to.equal('qemu');
    expect(p.marker?.id).to.equal(ID);
    expect(p.marker?.specHash).to.equal('abcdef0123456789');
    expect(p.marker?.generation).to.equal(3);
    expect(p.marker?.fields).to.deep.equal(specFields('VirtualMachine', spec));
    expect([p.cpu, p.maxCpu, p.memoryBytes, p.maxMemoryBytes]).to.deep.equal([1, 2, 128 * 2 ** 20, 256 * 2 ** 20]);
  });

  it('reads the marker whether libvirt prefixed its children (after DOMAIN_SET_METADATA) or not', () => {
    const spec = baseSpec();
    const marker = markerOf(spec, { volumes: [{ pool: 'p', name: 'v' }], annotations: { a: '1' }, rebootRequest: 't' });
    const bare = build(spec, marker);
    const prefixed = bare.replace(/<(\/?)(id|key|specHash|generation|fields|volume|rebootRequest|annotation)\b/g, '<$1hyperlet:$2');
    expect(prefixed).to.not.equal(bare);
    expect(parseDomainXml(prefixed).marker).to.deep.equal(parseDomainXml(bare).marker);
    expect(parseDomainXml(prefixed).marker?.volumes).to.deep.equal([{ pool: 'p', name: 'v' }]);
  });

  it('ignores a hyperlet-looking element in another namespace', () => {
    const xml = build(baseSpec()).replace('xmlns:hyperlet="https://hyperlet.io/v1alpha1"', 'xmlns:hyperlet="https://evil.example/"');
    expect(parseDomainXml(xml).marker).to.equal(undefined);
  });

  it('derives stable, distinct MACs from the id', () => {
    expect(deriveMac(ID, 0)).to.equal(deriveMac(ID, 0));
    expect(deriveMac(ID, 0)).to.not.equal(deriveMac(ID, 1));
    expect(deriveMac(ID, 0)).to.match(/^52:54:00(:[0-9a-f]{2}){3}$/);
  });

  it('names volumes and targets per bus', () => {
    const spec = baseSpec({ disks: [
      { name: 'root', pool: 'default', bus: 'virtio', size: '1Gi' }, { name: 'data', pool: 'p2', bus: 'sata' }, { name: 'logs', pool: 'default', bus: 'virtio' },
    ] });
    expect(planDisks('vm1', spec, ID).map((d) => [d.volume, d.target, d.sizeBytes])).to.deep.equal([
      ['vm1-root-3f1c2a9e.qcow2', 'vda', 2 ** 30], ['vm1-data-3f1c2a9e.qcow2', 'sda', undefined], ['vm1-logs-3f1c2a9e.qcow2', 'vdb', undefined],
    ]);
    expect(diskNameOfVolume('vm1', 'vm1-my-disk-3f1c2a9e.qcow2'), 'disk names may hold dashes').to.equal('my-disk');
    expect(diskNameOfVolume('vm1', 'vm1-data.qcow2'), 'a volume without an id is not one of ours').to.equal(undefined);
    expect(diskNameOfVolume('vm1', 'other-data-3f1c2a9e.qcow2')).to.equal(undefined);
  });

  const refused = {
    MemoryAboveMax: { reason: 'memory above maxMemory', spec: baseSpec({ resources: { cpu: 1, memory: '512Mi', maxMemory: '256Mi' } }) },
    CpuAboveMax: { reason: 'cpu above maxCpu', spec: baseSpec({ resources: { cpu: 4, memory: '128Mi', maxCpu: 2 } }) },
    BootDiskMissing: { reason: 'boot.disk names no disk', spec: baseSpec({ boot: { disk: 'nope' } }) },
    NicBoth: { reason: 'a NIC with network and bridge', spec: baseSpec({ networks: [{ network: 'n', bridge: 'b', model: 'virtio' }] }) },
  };
  for (const [name, tc] of Object.entries(refused)) {
    it(`refuses ${name}`, () => {
      expect(() => build(tc.spec), tc.reason).to.throw(RangeError);
    });
  }
});

describe('observedFieldsOf', () => {
  const withAll = baseSpec({
    resources: { cpu: 1, memory: '128Mi', maxMemory: '256Mi' },
    boot: { cmdline: 'console=ttyS0', kernel: '/boot/k' },
    disks: [{ pool: 'default', name: 'root', bus: 'virtio', size: '1Gi' }],
    networks: [{ model: 'e1000', network: 'isolated' }],
  });
  const caps = new Map([['default/vm1-root-3f1c2a9e.qcow2', 2 ** 30]]);
  const cases = {
    MatchesDeclared: {
      reason: 'a domain built from the spec observes exactly specFields(spec), whatever the key order',
      xml: build(withAll), caps, want: specFields('VirtualMachine', withAll), diff: [] as string[],
    },
    GrownDisk: {
      reason: 'a volume bigger than declared shows up as a disks difference',
      xml: build(withAll), caps: new Map([['default/vm1-root-3f1c2a9e.qcow2', 2 ** 31]]), want: undefined, diff: ['disks'],
    },
    EditedCmdline: {
      reason: 'a cmdline changed behind our back differs',
      xml: build(withAll).replace('console=ttyS0', 'console=tty0'), caps, want: undefined, diff: ['boot'],
    },
    NewMac: {
      reason: 'a MAC changed behind our back differs',
      xml: build(withAll).replace(deriveMac(ID, 0), '52:54:00:00:00:01'), caps, want: undefined, diff: ['networks'],
    },
    LiveMemory: {
      reason: 'memory is read from currentMemory',
      xml: build(withAll).replace(/<currentMemory unit="KiB">\d+</, '<currentMemory unit="KiB">196608<'), caps, want: undefined, diff: ['resources.memory'],
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const got = observedFieldsOf(parseDomainXml(tc.xml), 'vm1', tc.caps);
      const desired = specFields('VirtualMachine', withAll);
      if (tc.want !== undefined) expect(got, tc.reason).to.deep.equal(tc.want);
      const differing = Object.keys(desired).filter((k) => desired[k] !== got[k]);
      expect(differing, tc.reason).to.deep.equal(tc.diff);
    });
  }

  it('reports an unowned domain from its XML alone', () => {
    const xml = `<domain type='kvm'><name>x</name><uuid>${ID}</uuid><memory unit='KiB'>262144</memory><vcpu>2</vcpu><os><type>hvm</type></os><devices/></domain>`;
    const got = observedFieldsOf(parseDomainXml(xml), 'x', new Map());
    expect(got).to.deep.include({ hypervisor: 'kvm', 'resources.cpu': 2, 'resources.memory': 256 * 2 ** 20, boot: 'null', disks: '[]', networks: '[]' });
  });
});

describe('disksChangeMode', () => {
  const d = (size: number, extra: Record<string, unknown> = {}): string => JSON.stringify([{ name: 'root', pool: 'default', bus: 'virtio', size, ...extra }]);
  const cases = {
    Grow: { reason: 'only a size grows: live', from: d(1), to: d(2), want: 'live' },
    Shrink: { reason: 'a shrink is live too, so update() refuses it at once', from: d(2), to: d(1), want: 'live' },
    NewBus: { reason: 'a bus change needs a restart', from: d(1), to: d(1, { bus: 'sata' }), want: 'restart' },
    AddDisk: { reason: 'a new disk needs a restart', from: d(1), to: JSON.stringify([...JSON.parse(d(1)) as unknown[], { name: 'b' }]), want: 'restart' },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => expect(disksChangeMode(tc.from, tc.to), tc.reason).to.equal(tc.want));
  }
});
