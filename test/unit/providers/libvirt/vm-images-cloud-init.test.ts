import { expect } from 'chai';
import { readFileSync, readdirSync } from 'node:fs';
import yaml from 'js-yaml';
import { cloudInitDigest, cloudInitPayloadBytes, cloudInitSeedFiles } from '../../../../src/api/v1alpha1/cloud-init.js';
import { specFields } from '../../../../src/api/v1alpha1/fields.js';
import { redactSpec } from '../../../../src/api/v1alpha1/redact-object.js';
import type { CloudInitSpec, VirtualMachineSpec } from '../../../../src/api/v1alpha1/types.js';
import { validateObject } from '../../../../src/api/v1alpha1/validate.js';
import { isTerminalError } from '../../../../src/shared/errors.js';
import { diskImageInfoOf } from '../../../../src/providers/libvirt/disk-image.js';
import { GUEST_AGENT_CHANNEL, buildDomainXml, parseDomainXml, type OwnershipMarker } from '../../../../src/providers/libvirt/domain-xml.js';
import { GuestAddresses, isShownAddress } from '../../../../src/providers/libvirt/guest-addresses.js';
import { observedFieldsOf } from '../../../../src/providers/libvirt/observed-fields.js';
import { FakeLibvirtClient } from '../../../fakes/fake-libvirt-client.js';
import { FakeClock } from '../../../support/fake-clock.js';

const ID = '3f1c2a9e-5b7d-4c11-9a3e-1d2b3c4d5e6f';
const spec = (over: Partial<VirtualMachineSpec> = {}): VirtualMachineSpec => ({
  state: 'Running', hypervisor: 'qemu', resources: { cpu: 1, memory: '512Mi' }, gracefulStopSeconds: 60,
  updatePolicy: 'Live', deletionPolicy: 'Delete', ...over,
});
const marker = (s: VirtualMachineSpec): OwnershipMarker => ({
  id: ID, key: 'dir/default/VirtualMachine/vm1', specHash: '0123456789abcdef', generation: 1,
  fields: specFields('VirtualMachine', s), volumes: [], annotations: {},
});
const xmlOf = (s: VirtualMachineSpec, seedPath?: string): string =>
  buildDomainXml({ name: 'vm1', uuid: ID, spec: s, consolePath: '/c/vm1.log', marker: marker(s), ...(seedPath === undefined ? {} : { seedPath }) });

describe('VM disk images: qemu-img info read (diskImageInfoOf)', () => {
  const cases: { name: string; reason: string; json: object; bytes: number; standalone: boolean; want?: object; error?: RegExp }[] = [
    { name: 'qcow2', reason: 'a plain qcow2 is used with its virtual size', json: { format: 'qcow2', 'virtual-size': 1610612736 }, bytes: 146e6, standalone: true,
      want: { format: 'qcow2', virtualSizeBytes: 1610612736 } },
    { name: 'raw', reason: 'a raw disk of whole sectors is used', json: { format: 'raw', 'virtual-size': 1048576 }, bytes: 1048576, standalone: true,
      want: { format: 'raw', virtualSizeBytes: 1048576 } },
    { name: 'html', reason: 'a text file qemu-img calls raw is no disk when downloaded', json: { format: 'raw', 'virtual-size': 512 }, bytes: 51, standalone: true,
      error: /no disk image .*51 bytes/ },
    { name: 'local raw', reason: 'a host path keeps the old rule: any raw file', json: { format: 'raw', 'virtual-size': 512 }, bytes: 51, standalone: false,
      want: { format: 'raw', virtualSizeBytes: 512 } },
    { name: 'vmdk', reason: 'only qcow2 and raw are used', json: { format: 'vmdk', 'virtual-size': 1 << 20 }, bytes: 1 << 20, standalone: true,
      error: /format is vmdk; only qcow2 and raw/ },
    { name: 'backing', reason: 'a downloaded image with a backing chain would open a path it names', json: { format: 'qcow2', 'virtual-size': 1 << 30, 'backing-filename': '/etc/shadow' },
      bytes: 1 << 20, standalone: true, error: /names a backing file \(\/etc\/shadow\)/ },
    { name: 'data-file', reason: 'an external data file is refused the same way', json: { format: 'qcow2', 'virtual-size': 1 << 30, 'format-specific': { data: { 'data-file': '/dev/sda' } } },
      bytes: 1 << 20, standalone: true, error: /external data file/ },
  ];
  for (const tc of cases) {
    it(`${tc.name}: ${tc.reason}`, () => {
      const read = (): unknown => diskImageInfoOf(JSON.stringify(tc.json), 'http://x/img', tc.bytes, tc.standalone);
      if (tc.error !== undefined) {
        let err: unknown;
        try { read(); } catch (e) { err = e; }
        expect(isTerminalError(err), tc.reason).to.equal(true);
        expect((err as Error).message).to.match(tc.error);
        expect((err as { reason?: string }).reason).to.equal('InvalidImage');
      } else {
        expect(read(), tc.reason).to.deep.include(tc.want ?? {});
      }
    });
  }
});

describe('cloud-init NoCloud seed files', () => {
  const who = { instanceId: ID, hostName: 'team-a.web1' };
  const cases: { name: string; reason: string; ci: CloudInitSpec; check: (f: ReturnType<typeof cloudInitSeedFiles>) => void }[] = [
    { name: 'defaults', reason: 'instance-id is the object id, local-hostname the instance name made a label, empty cloud-config', ci: {},
      check: (f) => {
        expect(JSON.parse(f['meta-data'])).to.deep.equal({ 'instance-id': ID, 'local-hostname': 'team-a-web1' });
        expect(f['user-data']).to.equal('#cloud-config\n');
        expect(f['network-config']).to.equal(undefined);
      } },
    { name: 'everything', reason: 'hostname, keys and networkConfig land where cloud-init reads them; metaData cannot override hyperlet\'s keys',
      ci: { userData: '#!/bin/sh\necho hi\n', hostname: 'web', sshAuthorizedKeys: ['ssh-ed25519 AAAA k'], networkConfig: 'version: 2\n',
        metaData: { 'instance-id': 'spoofed', zone: 'a' } },
      check: (f) => {
        expect(JSON.parse(f['meta-data'])).to.deep.equal({ 'instance-id': ID, 'local-hostname': 'web', 'public-keys': ['ssh-ed25519 AAAA k'], zone: 'a' });
        expect(f['user-data']).to.equal('#!/bin/sh\necho hi\n');
        expect(f['network-config']).to.equal('version: 2\n');
      } },
  ];
  for (const tc of cases) it(`${tc.name}: ${tc.reason}`, () => tc.check(cloudInitSeedFiles(tc.ci, who)));

  it('digest: equal specs equal, any change another, the user-data never in the fields', () => {
    expect(cloudInitDigest({ metaData: { a: '1', b: '2' } })).to.equal(cloudInitDigest({ metaData: { b: '2', a: '1' } }));
    expect(cloudInitDigest({ userData: 'a' })).to.not.equal(cloudInitDigest({ userData: 'b' }));
    expect(cloudInitDigest(undefined)).to.equal(null);
    const fields = specFields('VirtualMachine', spec({ cloudInit: { userData: 'password: hunter2' } }));
    expect(JSON.stringify(fields)).to.not.include('hunter2');
    expect(fields.cloudInit).to.match(/^[0-9a-f]{16}$/);
  });

  it('counts the payload: user-data, network-config, keys and meta-data', () => {
    expect(cloudInitPayloadBytes({ userData: 'ab', networkConfig: 'c', sshAuthorizedKeys: ['dd'], metaData: { e: 'f' }, hostname: 'g' })).to.equal(8);
  });

  it('redacts userData in what is shown', () => {
    const shown = redactSpec(spec({ cloudInit: { userData: 'password: hunter2', hostname: 'h' } })) as VirtualMachineSpec;
    expect(JSON.stringify(shown)).to.not.include('hunter2');
    expect(shown.cloudInit?.hostname).to.equal('h');
  });
});

describe('VirtualMachine validation of images and cloudInit', () => {
  const doc = (s: Record<string, unknown>): unknown => ({ apiVersion: 'hyperlet.io/v1alpha1', kind: 'VirtualMachine', metadata: { name: 'v' }, spec: s });
  const cases: { name: string; reason: string; spec: Record<string, unknown>; issue?: { path: string; rule: string } }[] = [
    { name: 'url image', reason: 'an https URL with its sha256 is a disk image', spec: { disks: [{ name: 'root', image: 'https://img.example/d.qcow2', sha256: 'a'.repeat(64) }] } },
    { name: 'path image', reason: 'a host path still works', spec: { disks: [{ name: 'root', image: '/var/lib/hyperlet/images/d.qcow2' }] } },
    { name: 'ftp', reason: 'other schemes are refused by the pattern', spec: { disks: [{ name: 'root', image: 'ftp://x/d.qcow2' }] },
      issue: { path: 'spec.disks[0].image', rule: 'pattern' } },
    { name: 'sha on path', reason: 'sha256 is checked on downloads only', spec: { disks: [{ name: 'root', image: '/x.qcow2', sha256: 'a'.repeat(64) }] },
      issue: { path: 'spec.disks[0].sha256', rule: 'url-only' } },
    { name: 'payload', reason: 'the seed payload has one limit over all its parts',
      spec: { cloudInit: { userData: 'x'.repeat(40_000), networkConfig: 'y'.repeat(40_000) } }, issue: { path: 'spec.cloudInit', rule: 'max-size' } },
    { name: 'both user-data', reason: 'userData and userDataFrom exclude each other',
      spec: { cloudInit: { userData: 'a', userDataFrom: { file: 'ud' } } }, issue: { path: 'spec.cloudInit', rule: 'one-of' } },
    { name: 'uefi kernel', reason: 'firmware is for disk boot', spec: { boot: { kernel: '/k', firmware: 'uefi' } },
      issue: { path: 'spec.boot.firmware', rule: 'disk-only' } },
  ];
  for (const tc of cases) {
    it(`${tc.name}: ${tc.reason}`, () => {
      const r = validateObject(doc(tc.spec));
      if (tc.issue === undefined) expect(r.ok, JSON.stringify(r)).to.equal(true);
      else expect(r.ok ? [] : r.issues.map((i) => ({ path: i.path, rule: i.rule }))).to.deep.include(tc.issue);
    });
  }
});

describe('domain XML for cloud-init, firmware and the guest agent', () => {
  it('adds the guest-agent channel to every domain', () => {
    const p = parseDomainXml(xmlOf(spec()));
    expect(p.guestAgent).to.equal(true);
    expect(xmlOf(spec())).to.include(`name="${GUEST_AGENT_CHANNEL}"`);
  });

  it('attaches the seed read-only as a virtio-scsi cdrom on a free sd target', () => {
    const s = spec({ disks: [{ name: 'a', pool: 'default', bus: 'scsi', size: '1Gi' }], cloudInit: { hostname: 'h' } });
    const xml = xmlOf(s, '/var/lib/hyperlet/cloud-init/vm1-3f1c2a9e-cidata.iso');
    expect(xml).to.match(/<disk type="file" device="cdrom"><driver name="qemu" type="raw"\/><source file="[^"]+"\/><target dev="sdb" bus="scsi"\/><readonly\/><\/disk>/);
    expect(xml).to.include('model="virtio-scsi"');
    const p = parseDomainXml(xml);
    expect(p.seedPath).to.equal('/var/lib/hyperlet/cloud-init/vm1-3f1c2a9e-cidata.iso');
    expect(p.disks.map((d) => d.target), 'the cdrom is no disk of the spec').to.deep.equal(['sda']);
    expect(observedFieldsOf(p, 'vm1', new Map()).cloudInit, 'the seed reports the digest applied').to.equal(specFields('VirtualMachine', s).cloudInit);
  });

  const firmware: { name: string; reason: string; boot: VirtualMachineSpec['boot']; efi: boolean }[] = [
    { name: 'bios', reason: 'disk boot defaults to SeaBIOS', boot: { disk: 'root' }, efi: false },
    { name: 'uefi', reason: 'firmware uefi asks libvirt for OVMF', boot: { disk: 'root', firmware: 'uefi' }, efi: true },
    { name: 'kernel', reason: 'direct kernel boot stays', boot: { kernel: '/k' }, efi: false },
  ];
  for (const tc of firmware) {
    it(`${tc.name}: ${tc.reason}, and observation reports the boot field as declared`, () => {
      const s = spec({ boot: tc.boot, disks: [{ name: 'root', pool: 'default', bus: 'virtio', size: '1Gi' }] });
      const xml = xmlOf(s);
      expect(xml.includes('<os firmware="efi">'), tc.reason).to.equal(tc.efi);
      const p = parseDomainXml(xml);
      expect(observedFieldsOf(p, 'vm1', new Map()).boot).to.equal(specFields('VirtualMachine', s).boot);
    });
  }
});

describe('guest addresses (DHCP leases and the agent)', () => {
  it('shows leases of the NIC\'s MAC and the agent\'s addresses without loopback or link-local, cached for the TTL', async () => {
    const client = new FakeLibvirtClient();
    const clock = new FakeClock();
    await client.connect();
    const s = spec({ networks: [{ network: 'hyperlet-net', mac: '52:54:00:00:00:01', model: 'virtio' }] });
    const dom = await client.domainDefineXml(xmlOf(s));
    client.leases.set('hyperlet-net', [
      { iface: 'virbr9', expiryTime: 0, type: 0, mac: '52:54:00:00:00:01', ipAddress: '192.168.210.17', prefix: 24 },
      { iface: 'virbr9', expiryTime: 0, type: 0, mac: '52:54:00:00:00:99', ipAddress: '192.168.210.99', prefix: 24 },
    ]);
    const addresses = new GuestAddresses(client, clock, 5_000);
    const parsed = parseDomainXml(xmlOf(s));
    expect(await addresses.of(dom, parsed), 'the lease of its own MAC only').to.deep.equal(['192.168.210.17']);
    client.agentInterfaces.set('vm1', [
      { name: 'lo', addresses: [{ type: 0, address: '127.0.0.1', prefix: 8 }, { type: 1, address: '::1', prefix: 128 }] },
      { name: 'eth0', hwaddr: '52:54:00:00:00:01', addresses: [{ type: 1, address: 'fd00::5', prefix: 64 }, { type: 1, address: 'fe80::1', prefix: 64 },
        { type: 0, address: '192.168.210.17', prefix: 24 }] },
    ]);
    expect(await addresses.of(dom, parsed), 'cached within the TTL').to.deep.equal(['192.168.210.17']);
    await clock.advance(5_000);
    expect(await addresses.of(dom, parsed), 'IPv4 first, no duplicates').to.deep.equal(['192.168.210.17', 'fd00::5']);
    expect(['10.0.0.1', '169.254.1.1', 'fe80::2', '127.0.0.2'].filter(isShownAddress)).to.deep.equal(['10.0.0.1']);
  });
});

describe('examples/', () => {
  for (const file of readdirSync('examples').filter((f) => f.endsWith('.yaml'))) {
    it(`${file} is a valid object (make run watches the directory)`, () => {
      for (const doc of yaml.loadAll(readFileSync(`examples/${file}`, 'utf8'))) {
        const r = validateObject(doc);
        expect(r.ok ? [] : r.issues, file).to.deep.equal([]);
      }
    });
  }
});
