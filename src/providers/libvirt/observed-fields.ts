/**
 * Turns a parsed domain into the flattened fields plan() compares with `specFields('VirtualMachine', spec)`.
 *
 * Scalars (hypervisor, cpu, memory and their maxima) are read from the XML. The list-valued
 * fields (boot, disks, networks) are JSON strings whose exact text depends on the key order of
 * the declared spec, so they are compared in a canonical form instead: when what the domain
 * really has equals what hyperlet last applied (the marker's fields), the marker's exact string
 * is reported; otherwise the observed value is, which then differs from anything declared.
 */
import type { SpecFields } from '../../api/v1alpha1/fields.js';
import { deriveMac, diskNameOfVolume, type ParsedDomain } from './domain-xml.js';

/** Volume capacities in bytes, keyed "pool/volume". */
export type VolumeCapacities = ReadonlyMap<string, number>;

const MiB = 1024 * 1024;

interface CanonicalDisk { name: string; pool: string; bus: string; size: number | null }
interface CanonicalNic { network: string | null; bridge: string | null; mac: string; model: string }
interface CanonicalBoot { kernel: string | null; initrd: string | null; cmdline: string | null; disk: string | null; firmware: string | null }

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const num = (v: unknown): number | null => (typeof v === 'number' ? v : null);
const record = (v: unknown): Record<string, unknown> => (typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : {});

function parseJson(s: SpecFields[string] | undefined): unknown {
  if (typeof s !== 'string') return null;
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}

/** The disk name behind a volume hyperlet named, or the volume name itself. */
function diskNameOf(hostName: string, volume: string): string {
  return diskNameOfVolume(hostName, volume) ?? volume;
}

function observedBoot(p: ParsedDomain, hostName: string): CanonicalBoot {
  const bootDisk = p.disks.find((d) => d.bootOrder === 1);
  return {
    kernel: p.kernel ?? null,
    initrd: p.initrd ?? null,
    cmdline: p.cmdline ?? null,
    disk: p.kernel === undefined && bootDisk?.volume !== undefined ? diskNameOf(hostName, bootDisk.volume) : null,
    firmware: p.firmware ?? null,
  };
}

function declaredBoot(v: unknown): CanonicalBoot {
  const b = record(v);
  return {
    kernel: str(b.kernel), initrd: str(b.initrd), cmdline: str(b.cmdline), disk: b.kernel === undefined ? str(b.disk) : null,
    firmware: b.kernel === undefined && b.firmware === 'uefi' ? 'uefi' : null,
  };
}

function observedDisks(p: ParsedDomain, hostName: string, capacities: VolumeCapacities): CanonicalDisk[] {
  return p.disks.filter((d) => d.volume !== undefined && d.pool !== undefined).map((d) => ({
    name: diskNameOf(hostName, d.volume ?? ''),
    pool: d.pool ?? '',
    bus: d.bus,
    size: capacities.get(`${d.pool ?? ''}/${d.volume ?? ''}`) ?? null,
  }));
}

function declaredDisks(v: unknown): CanonicalDisk[] | undefined {
  if (!Array.isArray(v)) return undefined;
  return v.map((d) => {
    const r = record(d);
    return { name: str(r.name) ?? '', pool: str(r.pool) ?? 'default', bus: str(r.bus) ?? 'virtio', size: num(r.size) };
  });
}

function observedNics(p: ParsedDomain): CanonicalNic[] {
  return p.interfaces.map((i) => ({ network: i.network ?? null, bridge: i.bridge ?? null, mac: i.mac ?? '', model: i.model ?? '' }));
}

function declaredNics(v: unknown, id: string): CanonicalNic[] | undefined {
  if (!Array.isArray(v)) return undefined;
  return v.map((n, i) => {
    const r = record(n);
    return { network: str(r.network), bridge: str(r.bridge), mac: (str(r.mac) ?? deriveMac(id, i)).toLowerCase(), model: str(r.model) ?? 'virtio' };
  });
}

const disksMatch = (declared: CanonicalDisk[], observed: CanonicalDisk[]): boolean =>
  declared.length === observed.length && declared.every((d, i) => {
    const o = observed[i];
    // A declared size is checked against the volume; an absent one took the default size.
    return o !== undefined && d.name === o.name && d.pool === o.pool && d.bus === o.bus && (d.size === null || d.size === o.size);
  });

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/** A memory size equal to the declared one up to libvirt's rounding (KiB, MiB alignment) reports the declared value. */
function memoryField(observed: number, declared: SpecFields[string] | undefined): number {
  return typeof declared === 'number' && Math.abs(observed - declared) < MiB ? declared : observed;
}

/** Fields of `p` flattened like specFields(); `capacities` holds the sizes of its volumes. */
export function observedFieldsOf(p: ParsedDomain, hostName: string, capacities: VolumeCapacities): SpecFields {
  const declared = p.marker?.fields ?? {};
  const id = p.marker?.id ?? p.uuid;

  const boot = observedBoot(p, hostName);
  const bootDeclared = parseJson(declared.boot);
  const bootEmpty = boot.kernel === null && boot.initrd === null && boot.cmdline === null && boot.disk === null && boot.firmware === null;
  const bootField = bootDeclared !== undefined && declared.boot !== undefined && same(declaredBoot(bootDeclared), boot)
    ? declared.boot
    : bootEmpty ? 'null' : JSON.stringify(Object.fromEntries(Object.entries(boot).filter(([, v]) => v !== null)));

  const disks = observedDisks(p, hostName, capacities);
  const disksDeclared = declaredDisks(parseJson(declared.disks));
  const disksField = disksDeclared !== undefined && declared.disks !== undefined && disksMatch(disksDeclared, disks)
    ? declared.disks
    : JSON.stringify(disks);

  const nics = observedNics(p);
  const nicsDeclared = declaredNics(parseJson(declared.networks), id);
  const nicsField = nicsDeclared !== undefined && declared.networks !== undefined && same(nicsDeclared, nics)
    ? declared.networks
    : JSON.stringify(nics.map((n) => ({ ...(n.network === null ? {} : { network: n.network }), ...(n.bridge === null ? {} : { bridge: n.bridge }), mac: n.mac, model: n.model })));

  return {
    hypervisor: p.type,
    'resources.cpu': p.cpu,
    'resources.memory': memoryField(p.memoryBytes, declared['resources.memory']),
    'resources.maxCpu': p.maxCpu,
    'resources.maxMemory': memoryField(p.maxMemoryBytes, declared['resources.maxMemory']),
    boot: bootField ?? null,
    disks: disksField ?? null,
    networks: nicsField ?? null,
    // The seed's content is not read back: a domain with a seed reports the digest last applied.
    cloudInit: p.seedPath === undefined ? null : typeof declared.cloudInit === 'string' ? declared.cloudInit : 'unknown',
  };
}

/**
 * 'live' when a disks change only changes sizes (same disks, names, pools, buses and images):
 * growing is done on the running domain, and shrinking is refused by update() right away
 * instead of after a restart. Anything else about disks needs a restart. Undefined when `from`
 * or `to` cannot be read.
 */
export function disksChangeMode(from: SpecFields[string] | undefined, to: SpecFields[string] | undefined): 'live' | 'restart' | undefined {
  const a = parseJson(from);
  const b = parseJson(to);
  if (!Array.isArray(a) || !Array.isArray(b)) return undefined;
  if (a.length !== b.length) return 'restart';
  const onlySizes = a.every((x, i) => {
    const r = record(x);
    const s = record(b[i]);
    return r.name === s.name && (str(r.pool) ?? 'default') === (str(s.pool) ?? 'default') && (str(r.bus) ?? 'virtio') === (str(s.bus) ?? 'virtio')
      && (str(r.image) === null || str(s.image) === null || r.image === s.image);
  });
  return onlySizes ? 'live' : 'restart';
}
