/**
 * Domain XML from a VirtualMachine spec, and the live XML parsed back. Every value from the spec
 * is escaped (xml-text.ts), so nothing declared can add an element or an attribute. hyperlet's
 * ownership lives in `<metadata><hyperlet:instance xmlns:hyperlet="https://hyperlet.io/v1alpha1">`:
 * the object's id, key, spec hash, the fields as applied, the volumes hyperlet created, the last
 * reboot request honoured and the object's annotations.
 */
import { XMLParser } from 'fast-xml-parser';
import type { SpecFields } from '../../api/v1alpha1/fields.js';
import { deriveMac } from '../../api/v1alpha1/mac-address.js';
import { parseQuantity } from '../../api/v1alpha1/quantity.js';
import type { VirtualMachineDisk, VirtualMachineSpec } from '../../api/v1alpha1/types.js';
import { xmlEscape } from './xml-text.js';

export { deriveMac } from '../../api/v1alpha1/mac-address.js';

/** The namespace of hyperlet's metadata element, and the prefix it is written with. */
export const HYPERLET_XML_NS = 'https://hyperlet.io/v1alpha1';
/** The XML namespace prefix of hyperlet's ownership marker in domain metadata. */
export const HYPERLET_XML_PREFIX = 'hyperlet';

/** A volume hyperlet created for a domain (deleted with it). */
export interface VolumeName { readonly pool: string; readonly name: string }

/** What hyperlet writes into a domain's metadata. */
export interface OwnershipMarker {
  readonly id: string;
  readonly key: string;
  readonly specHash: string;
  readonly generation: number;
  /** specFields() of the spec last applied: lets observation report exactly what was declared when reality matches it. */
  readonly fields: SpecFields;
  readonly volumes: readonly VolumeName[];
  /** The value of the reboot-request annotation last honoured. */
  readonly rebootRequest?: string;
  /** The value of the restore-request annotation last honoured (or present at create). */
  readonly restoreRequest?: string;
  /** Set between the first define and the end of volume creation: a crash there leaves a partial instance. */
  readonly partial?: boolean;
  readonly annotations: Readonly<Record<string, string>>;
}

/** One disk of the spec with the names hyperlet gives it on the host. */
export interface PlannedDisk {
  readonly disk: VirtualMachineDisk;
  readonly volume: string;
  readonly target: string;
  readonly sizeBytes: number | undefined;
}

/** Everything a domain definition is built from; every value is escaped when written. */
export interface DomainXmlInput {
  readonly name: string;
  /** The object's stable id: the domain UUID. */
  readonly uuid: string;
  readonly spec: VirtualMachineSpec;
  readonly consolePath: string;
  readonly marker: OwnershipMarker;
  /** The NoCloud seed ISO, attached read-only as a cdrom (spec.cloudInit). */
  readonly seedPath?: string;
}

/** The virtio-serial channel qemu-guest-agent listens on (added to every domain). */
export const GUEST_AGENT_CHANNEL = 'org.qemu.guest_agent.0';

const KiB = 1024;

/**
 * The volume name of a disk: HOSTNAME-DISK-ID8.qcow2, ID8 being the first 8 hex digits of the
 * object's id. The id in the name is the volume's ownership mark: a volume so named was made by
 * hyperlet for this object, even when its domain was undefined behind hyperlet's back.
 */
export function volumeNameFor(hostName: string, diskName: string, id: string): string {
  return `${hostName}-${diskName}-${id.replace(/-/g, '').slice(0, 8).toLowerCase()}.qcow2`;
}

/** The disk name in a volume named by volumeNameFor, or undefined for any other volume. */
export function diskNameOfVolume(hostName: string, volume: string): string | undefined {
  const prefix = `${hostName}-`;
  if (!volume.startsWith(prefix)) return undefined;
  const m = /^(.+)-[0-9a-f]{8}\.qcow2$/.exec(volume.slice(prefix.length));
  return m?.[1];
}

const TARGET_PREFIX: Readonly<Record<VirtualMachineDisk['bus'], string>> = { virtio: 'vd', sata: 'sd', scsi: 'sd', ide: 'hd' };

/** Disk target names in declaration order, counted per prefix (vda, vdb, sda…). */
export function planDisks(hostName: string, spec: VirtualMachineSpec, id: string): PlannedDisk[] {
  const used = new Map<string, number>();
  return (spec.disks ?? []).map((disk) => {
    const prefix = TARGET_PREFIX[disk.bus];
    const n = used.get(prefix) ?? 0;
    used.set(prefix, n + 1);
    const size = disk.size === undefined ? undefined : parseQuantity(disk.size);
    return { disk, volume: volumeNameFor(hostName, disk.name, id), target: `${prefix}${String.fromCharCode(97 + n)}`, sizeBytes: size };
  });
}

const kib = (bytes: number): number => Math.ceil(bytes / KiB);

/** The target of the seed cdrom: the first sdX the disks leave free. */
function seedTarget(disks: readonly PlannedDisk[]): string {
  const used = new Set(disks.map((d) => d.target));
  for (let i = 0; i < 26; i++) {
    const t = `sd${String.fromCharCode(97 + i)}`;
    if (!used.has(t)) return t;
  }
  throw new RangeError('cannot attach the cloud-init seed: every sd target is taken');
}

/**
 * The `<hyperlet:instance>` element. Its children carry no prefix: DOMAIN_SET_METADATA puts only
 * the root element in the namespace, so both ways of writing it read back the same. With
 * `forSetMetadata` the root is bare too (libvirt adds the prefix and namespace itself and
 * refuses an element that declares them).
 */
export function buildMarkerXml(m: OwnershipMarker, forSetMetadata = false): string {
  const root = forSetMetadata ? 'instance' : `${HYPERLET_XML_PREFIX}:instance`;
  const lines = [
    forSetMetadata ? `<${root}>` : `<${root} xmlns:${HYPERLET_XML_PREFIX}="${HYPERLET_XML_NS}">`,
    `<id>${xmlEscape(m.id)}</id>`,
    `<key>${xmlEscape(m.key)}</key>`,
    `<specHash>${xmlEscape(m.specHash)}</specHash>`,
    `<generation>${m.generation}</generation>`,
    `<fields>${xmlEscape(JSON.stringify(m.fields))}</fields>`,
    ...m.volumes.map((v) => `<volume pool="${xmlEscape(v.pool)}" name="${xmlEscape(v.name)}"/>`),
    ...(m.rebootRequest === undefined ? [] : [`<rebootRequest>${xmlEscape(m.rebootRequest)}</rebootRequest>`]),
    ...(m.restoreRequest === undefined ? [] : [`<restoreRequest>${xmlEscape(m.restoreRequest)}</restoreRequest>`]),
    ...(m.partial === true ? ['<partial>true</partial>'] : []),
    ...Object.entries(m.annotations).sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([k, v]) => `<annotation name="${xmlEscape(k)}">${xmlEscape(v)}</annotation>`),
    `</${root}>`,
  ];
  return lines.join('');
}

/**
 * The full persistent domain XML for `input`. Throws a RangeError when a value cannot be
 * represented in XML (a control character) or the spec is inconsistent (memory above its maximum).
 */
export function buildDomainXml(input: DomainXmlInput): string {
  const { spec } = input;
  const memoryBytes = parseQuantity(spec.resources.memory);
  const maxMemoryBytes = parseQuantity(spec.resources.maxMemory ?? spec.resources.memory);
  if (memoryBytes === undefined || maxMemoryBytes === undefined) throw new RangeError('cannot read resources.memory as a quantity');
  if (memoryBytes > maxMemoryBytes) throw new RangeError(`cannot set memory ${memoryBytes} above maxMemory ${maxMemoryBytes}`);
  const cpu = spec.resources.cpu;
  const maxCpu = spec.resources.maxCpu ?? cpu;
  if (cpu > maxCpu) throw new RangeError(`cannot set cpu ${cpu} above maxCpu ${maxCpu}`);
  const boot = spec.boot ?? {};
  const disks = planDisks(input.name, spec, input.uuid);
  if (boot.disk !== undefined && !disks.some((d) => d.disk.name === boot.disk)) {
    throw new RangeError(`cannot boot from disk ${JSON.stringify(boot.disk)}: no such disk in spec.disks`);
  }
  const bootFromKernel = boot.kernel !== undefined;
  const uefi = !bootFromKernel && boot.firmware === 'uefi';
  const os = [
    `<type arch="x86_64">hvm</type>`,
    ...(boot.kernel === undefined ? [] : [`<kernel>${xmlEscape(boot.kernel)}</kernel>`]),
    ...(boot.initrd === undefined ? [] : [`<initrd>${xmlEscape(boot.initrd)}</initrd>`]),
    ...(boot.cmdline === undefined ? [] : [`<cmdline>${xmlEscape(boot.cmdline)}</cmdline>`]),
    ...(bootFromKernel || boot.disk !== undefined ? [] : ['<boot dev="hd"/>']),
  ];
  const diskXml = disks.map((d) => [
    `<disk type="volume" device="disk">`,
    `<driver name="qemu" type="qcow2"/>`,
    `<source pool="${xmlEscape(d.disk.pool)}" volume="${xmlEscape(d.volume)}"/>`,
    `<target dev="${d.target}" bus="${d.disk.bus}"/>`,
    ...(!bootFromKernel && boot.disk === d.disk.name ? ['<boot order="1"/>'] : []),
    `</disk>`,
  ].join(''));
  const nicXml = (spec.networks ?? []).map((n, i) => {
    const mac = (n.mac ?? deriveMac(input.uuid, i)).toLowerCase();
    if ((n.network === undefined) === (n.bridge === undefined)) throw new RangeError(`cannot attach networks[${i}]: give exactly one of network and bridge`);
    const source = n.network !== undefined ? `<source network="${xmlEscape(n.network)}"/>` : `<source bridge="${xmlEscape(n.bridge ?? '')}"/>`;
    return `<interface type="${n.network !== undefined ? 'network' : 'bridge'}"><mac address="${xmlEscape(mac)}"/>${source}<model type="${xmlEscape(n.model)}"/></interface>`;
  });
  return [
    `<domain type="${spec.hypervisor === 'kvm' ? 'kvm' : 'qemu'}">`,
    `<name>${xmlEscape(input.name)}</name>`,
    `<uuid>${xmlEscape(input.uuid)}</uuid>`,
    `<description>${xmlEscape(`managed by hyperlet: ${input.marker.key}`)}</description>`,
    `<metadata>${buildMarkerXml(input.marker)}</metadata>`,
    `<memory unit="KiB">${kib(maxMemoryBytes)}</memory>`,
    `<currentMemory unit="KiB">${kib(memoryBytes)}</currentMemory>`,
    `<vcpu placement="static"${cpu === maxCpu ? '' : ` current="${cpu}"`}>${maxCpu}</vcpu>`,
    `<os${uefi ? ' firmware="efi"' : ''}>${os.join('')}</os>`,
    `<features><acpi/><apic/></features>`,
    `<on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>`,
    `<devices>`,
    ...diskXml,
    ...nicXml,
    ...(input.seedPath === undefined ? [] : [[
      `<disk type="file" device="cdrom">`,
      `<driver name="qemu" type="raw"/>`,
      `<source file="${xmlEscape(input.seedPath)}"/>`,
      `<target dev="${seedTarget(disks)}" bus="scsi"/>`,
      `<readonly/>`,
      `</disk>`,
      // virtio-scsi: cloud kernels (linux-image-cloud-amd64) have no AHCI driver for a SATA cdrom.
    ].join(''), '<controller type="scsi" index="0" model="virtio-scsi"/>']),
    `<channel type="unix"><target type="virtio" name="${GUEST_AGENT_CHANNEL}"/></channel>`,
    // A pty serial (interactive: `hyperlet console`) whose output virtlogd also writes to the log
    // file (capped and rotated by virtlogd), so `hyperlet logs` and the dashboard keep working.
    `<serial type="pty"><log file="${xmlEscape(input.consolePath)}" append="on"/><target port="0"/></serial>`,
    `<memballoon model="virtio"/>`,
    `</devices>`,
    `</domain>`,
  ].join('\n');
}

/** A disk as found in domain XML. */
export interface ParsedDisk {
  readonly target: string;
  readonly bus: string;
  readonly pool?: string;
  readonly volume?: string;
  readonly file?: string;
  readonly bootOrder?: number;
}

/** A NIC as found in domain XML. */
export interface ParsedInterface {
  readonly type: string;
  readonly network?: string;
  readonly bridge?: string;
  readonly mac?: string;
  readonly model?: string;
}

/** The parts of a domain's XML hyperlet observes. */
export interface ParsedDomain {
  readonly name: string;
  readonly uuid: string;
  readonly type: string;
  readonly maxMemoryBytes: number;
  readonly memoryBytes: number;
  readonly maxCpu: number;
  readonly cpu: number;
  readonly kernel?: string;
  readonly initrd?: string;
  readonly cmdline?: string;
  readonly disks: readonly ParsedDisk[];
  readonly interfaces: readonly ParsedInterface[];
  readonly consolePath?: string;
  readonly description?: string;
  /** 'uefi' when the domain boots with OVMF (`<os firmware="efi">` or a pflash loader). */
  readonly firmware?: 'uefi';
  /** The file of a read-only cdrom (the cloud-init seed), when there is one. */
  readonly seedPath?: string;
  /** Whether the domain has the qemu-guest-agent channel. */
  readonly guestAgent: boolean;
  /** hyperlet's marker, when the domain carries one in hyperlet's namespace. */
  readonly marker?: OwnershipMarker;
}

type XmlNode = Record<string, unknown>;

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '',
  attributesGroupName: '$',
  textNodeName: '#text',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  htmlEntities: true,
  isArray: (name, jpath) => ['disk', 'interface', 'serial', 'channel'].includes(name) || (typeof jpath === 'string' && /:instance\.(hyperlet:)?(volume|annotation)$/.test(jpath)),
});

const node = (v: unknown): XmlNode | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as XmlNode) : undefined);
const nodes = (v: unknown): XmlNode[] => (Array.isArray(v) ? v.map(node).filter((n): n is XmlNode => n !== undefined) : []);
const attr = (n: XmlNode | undefined, name: string): string | undefined => {
  const a = node(n?.$)?.[name];
  return typeof a === 'string' ? a : undefined;
};
/** Text of an element, whether the parser gave a string or an object with attributes. */
const text = (v: unknown): string | undefined => {
  if (typeof v === 'string') return v;
  const t = node(v)?.['#text'];
  return typeof t === 'string' ? t : node(v) !== undefined ? '' : undefined;
};

const UNIT_FACTORS: Readonly<Record<string, number>> = {
  b: 1, bytes: 1, KB: 1e3, k: KiB, KiB, MB: 1e6, M: KiB ** 2, MiB: KiB ** 2, GB: 1e9, G: KiB ** 3, GiB: KiB ** 3, TB: 1e12, T: KiB ** 4, TiB: KiB ** 4,
};
function memoryOf(v: unknown): number {
  const n = Number(text(v) ?? 0);
  return n * (UNIT_FACTORS[attr(node(v), 'unit') ?? 'KiB'] ?? KiB);
}

function parseMarker(metadata: XmlNode | undefined): OwnershipMarker | undefined {
  const p = HYPERLET_XML_PREFIX;
  const m = node(metadata?.[`${p}:instance`]);
  if (m === undefined || attr(m, `xmlns:${p}`) !== HYPERLET_XML_NS) return undefined;
  // Children come back prefixed after DOMAIN_SET_METADATA and bare after a define: read both.
  const child = (name: string): unknown => m[`${p}:${name}`] ?? m[name];
  const id = text(child('id'));
  if (id === undefined || id === '') return undefined;
  let fields: SpecFields = {};
  try {
    const parsed: unknown = JSON.parse(text(child('fields')) ?? '{}');
    if (node(parsed) !== undefined) fields = parsed as SpecFields;
  } catch {
    // a marker with unreadable fields still says who owns the domain
  }
  const rebootRequest = text(child('rebootRequest'));
  const restoreRequest = text(child('restoreRequest'));
  const volumes = nodes(child('volume')).map((v) => ({ pool: attr(v, 'pool') ?? '', name: attr(v, 'name') ?? '' }));
  const annotations = Object.fromEntries(nodes(child('annotation')).map((a) => [attr(a, 'name') ?? '', text(a) ?? '']));
  return {
    id,
    key: text(child('key')) ?? '',
    specHash: text(child('specHash')) ?? '',
    generation: Number(text(child('generation')) ?? 0),
    fields,
    volumes,
    ...(rebootRequest === undefined ? {} : { rebootRequest }),
    ...(restoreRequest === undefined ? {} : { restoreRequest }),
    ...(text(child('partial')) === 'true' ? { partial: true } : {}),
    annotations,
  };
}

/** Parses domain XML (as libvirt returns it). Throws when it is not a `<domain>` document. */
export function parseDomainXml(xml: string): ParsedDomain {
  const doc = node(parser.parse(xml));
  const domain = node(doc?.domain);
  if (domain === undefined) throw new Error('cannot parse domain XML: no <domain> element');
  const os = node(domain.os);
  const devices = node(domain.devices);
  const vcpu = domain.vcpu;
  const maxCpu = Number(text(vcpu) ?? 1);
  const current = attr(node(vcpu), 'current');
  const disks = nodes(devices?.disk).filter((d) => (attr(d, 'device') ?? 'disk') === 'disk').map((d): ParsedDisk => {
    const source = node(d.source);
    const target = node(d.target);
    const order = attr(node(d.boot), 'order');
    return {
      target: attr(target, 'dev') ?? '',
      bus: attr(target, 'bus') ?? '',
      ...(attr(source, 'pool') === undefined ? {} : { pool: attr(source, 'pool') }),
      ...(attr(source, 'volume') === undefined ? {} : { volume: attr(source, 'volume') }),
      ...(attr(source, 'file') === undefined ? {} : { file: attr(source, 'file') }),
      ...(order === undefined ? {} : { bootOrder: Number(order) }),
    };
  });
  const interfaces = nodes(devices?.interface).map((i): ParsedInterface => {
    const source = node(i.source);
    const r: { type: string; network?: string; bridge?: string; mac?: string; model?: string } = { type: attr(i, 'type') ?? '' };
    // A running network NIC also names its bridge in <source>: only a bridge NIC is "on a bridge".
    const network = r.type === 'network' ? attr(source, 'network') : undefined;
    const bridge = r.type === 'bridge' ? attr(source, 'bridge') : undefined;
    const mac = attr(node(i.mac), 'address');
    const model = attr(node(i.model), 'type');
    if (network !== undefined) r.network = network;
    if (bridge !== undefined) r.bridge = bridge;
    if (mac !== undefined) r.mac = mac.toLowerCase();
    if (model !== undefined) r.model = model;
    return r;
  });
  // A pty serial logs to <log file>; domains defined before consoles had a file serial (<source path>).
  const serials = nodes(devices?.serial);
  const ptyLog = serials.map((s) => attr(node(s.log), 'file')).find((f) => f !== undefined);
  const fileSource = attr(node(serials.find((s) => attr(s, 'type') === 'file')?.source), 'path');
  const cdrom = nodes(devices?.disk).find((d) => attr(d, 'device') === 'cdrom');
  const uefi = attr(os, 'firmware') === 'efi' || attr(node(os?.loader), 'type') === 'pflash';
  const guestAgent = nodes(devices?.channel).some((c) => attr(node(c.target), 'name') === GUEST_AGENT_CHANNEL);
  const marker = parseMarker(node(domain.metadata));
  const r: Record<string, unknown> = {
    name: text(domain.name) ?? '',
    uuid: text(domain.uuid) ?? '',
    type: attr(domain, 'type') ?? '',
    maxMemoryBytes: memoryOf(domain.memory),
    memoryBytes: domain.currentMemory === undefined ? memoryOf(domain.memory) : memoryOf(domain.currentMemory),
    maxCpu,
    cpu: current === undefined ? maxCpu : Number(current),
    disks,
    interfaces,
    guestAgent,
    ...(uefi ? { firmware: 'uefi' } : {}),
  };
  const optional: [string, string | undefined][] = [
    ['kernel', text(os?.kernel)], ['initrd', text(os?.initrd)], ['cmdline', text(os?.cmdline)],
    ['consolePath', ptyLog ?? fileSource], ['description', text(domain.description)],
    ['seedPath', attr(node(cdrom?.source), 'file')],
  ];
  for (const [k, v] of optional) if (v !== undefined) r[k] = v;
  if (marker !== undefined) r.marker = marker;
  return r as unknown as ParsedDomain;
}
