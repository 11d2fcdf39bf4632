/**
 * VirtualMachine snapshots as libvirt internal snapshots (qcow2 savevm / qemu-img snapshot),
 * through the RPC client: create, list, revert, delete. hyperlet's own facts (origin, the spec
 * hash) ride in the snapshot's <description>, so a list needs nothing but libvirt.
 *
 * Caveats: QEMU's internal snapshot of a running domain always holds its memory (libvirt refuses
 * an internal disk-only snapshot of a running domain), so such a snapshot is reported with
 * `memory: true` whatever was asked. A stopped domain's snapshot is disk-only; asking it for
 * memory is a TerminalError.
 * Crash consistency: create, revert and delete are one libvirt call each, atomic in libvirtd
 * (SnapshotAtomic), so a kill -9 of hyperlet leaves a snapshot whole or absent. Failpoints:
 * `libvirt.snapshot.taken` (created, not reported yet), `libvirt.snapshot.deleted`,
 * `libvirt.restore.reverted` (reverted, the declared definition and marker not written back yet).
 */
import { XMLParser } from 'fast-xml-parser';
import type { Logger } from 'pino';
import { TerminalError } from '../../shared/errors.js';
import { failpoint } from '../../shared/failpoint.js';
import type { InstanceSnapshot, SnapshotOptions, SnapshotOrigin } from '../provider.js';
import { Flags, type DomainRef, type LibvirtApi, type SnapshotRef } from './libvirt-client.js';
import { isActive } from './domain-state.js';
import { xmlEscape } from './xml-text.js';

const DESCRIPTION_PREFIX = 'hyperlet:';
const ORIGINS: ReadonlySet<string> = new Set(['schedule', 'object', 'request']);

/** The <domainsnapshot> hyperlet asks libvirt for: its name, hyperlet's facts, memory or not. */
export function snapshotXml(name: string, origin: SnapshotOrigin, specHash: string | undefined, memory: boolean): string {
  const facts = `${DESCRIPTION_PREFIX}origin=${origin}${specHash === undefined ? '' : `;specHash=${specHash}`}`;
  return `<domainsnapshot><name>${xmlEscape(name)}</name><description>${xmlEscape(facts)}</description>`
    + `<memory snapshot='${memory ? 'internal' : 'no'}'/></domainsnapshot>`;
}

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@', parseTagValue: false });

/** An InstanceSnapshot from libvirt's <domainsnapshot> description of it. */
export function parseSnapshotXml(xml: string): InstanceSnapshot {
  const doc = (parser.parse(xml) as { domainsnapshot?: Record<string, unknown> }).domainsnapshot;
  if (doc === undefined || typeof doc.name !== 'string') throw new Error('cannot parse snapshot XML: no <domainsnapshot><name>');
  const facts = new Map<string, string>();
  const description = typeof doc.description === 'string' ? doc.description : '';
  if (description.startsWith(DESCRIPTION_PREFIX)) {
    for (const part of description.slice(DESCRIPTION_PREFIX.length).split(';')) {
      const eq = part.indexOf('=');
      if (eq > 0) facts.set(part.slice(0, eq), part.slice(eq + 1));
    }
  }
  const originFact = facts.get('origin') ?? 'request';
  const origin = (ORIGINS.has(originFact) ? originFact : 'request') as SnapshotOrigin;
  const seconds = Number(typeof doc.creationTime === 'string' ? doc.creationTime : '0');
  const state = typeof doc.state === 'string' ? doc.state : '';
  const specHash = facts.get('specHash');
  return {
    name: doc.name, createdAt: new Date(seconds * 1000).toISOString(), origin,
    // libvirt records a snapshot taken with memory by the state the domain was in (running, paused).
    memory: state === 'running' || state === 'paused',
    ...(specHash === undefined ? {} : { specHash }),
  };
}

/** Takes, lists, reverts and deletes internal snapshots of one connection's domains. */
export class LibvirtSnapshots {
  constructor(private readonly client: LibvirtApi, private readonly log: Logger) {}

  /** Snapshot `name` of `dom` (see the file comment for memory); an existing one of that name is returned as it is. */
  async take(dom: DomainRef, name: string, specHash: string | undefined, options: SnapshotOptions): Promise<InstanceSnapshot> {
    // Both asked at once: the client pipelines them on its one connection.
    const [existing, state] = await Promise.all([this.client.lookupDomainSnapshot(dom, name), this.client.domainGetState(dom)]);
    if (existing !== undefined) return this.describe(existing);
    const running = isActive(state.state);
    if (options.memory === true && !running) {
      throw new TerminalError('SnapshotUnsupported', `cannot snapshot the memory of domain ${dom.name}: it is not running`);
    }
    const xml = snapshotXml(name, options.origin ?? 'request', specHash, running);
    const snap = await this.client.domainSnapshotCreateXml(dom, xml, Flags.SnapshotAtomic);
    failpoint('libvirt.snapshot.taken');
    this.log.info({ hostName: dom.name, snapshot: name, memory: running }, 'snapshot taken');
    return this.describe(snap);
  }

  /** The domain's snapshots, oldest first. */
  async list(dom: DomainRef): Promise<InstanceSnapshot[]> {
    const refs = await this.client.domainListAllSnapshots(dom);
    const out = await Promise.all(refs.map((ref) => this.describe(ref)));
    return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.name.localeCompare(b.name));
  }

  /** Reverts `dom` to snapshot `name`; TerminalError SnapshotNotFound when it has none of that name. */
  async revert(dom: DomainRef, name: string): Promise<InstanceSnapshot> {
    const ref = await this.client.lookupDomainSnapshot(dom, name);
    if (ref === undefined) throw new TerminalError('SnapshotNotFound', `cannot restore domain ${dom.name}: it has no snapshot ${name}`);
    const snapshot = await this.describe(ref);
    await this.client.domainRevertToSnapshot(ref, Flags.SnapshotRevertForce);
    failpoint('libvirt.restore.reverted');
    this.log.info({ hostName: dom.name, snapshot: name }, 'snapshot restored');
    return snapshot;
  }

  /** Deletes snapshot `name`; a missing one is success. */
  async delete(dom: DomainRef, name: string): Promise<void> {
    const ref = await this.client.lookupDomainSnapshot(dom, name);
    if (ref !== undefined) await this.client.domainSnapshotDelete(ref);
    failpoint('libvirt.snapshot.deleted');
  }

  private async describe(ref: SnapshotRef): Promise<InstanceSnapshot> {
    return parseSnapshotXml(await this.client.domainSnapshotGetXmlDesc(ref));
  }
}
