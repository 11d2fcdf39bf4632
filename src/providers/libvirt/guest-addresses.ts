/**
 * The addresses of a running domain, as status shows them: the DHCP leases of the libvirt
 * networks its NICs are on (matched by MAC), and, when the guest runs qemu-guest-agent on the
 * channel hyperlet adds, what the agent reports (loopback and link-local left out). Looked up at
 * most once per `ttlMs` per domain (observation runs often; addresses change rarely), and never
 * fails an observation: a lookup that fails gives what the other source had.
 */
import type { Clock } from '../../shared/clock.js';
import type { ParsedDomain } from './domain-xml.js';
import { Flags, uuidFromBytes, type DomainRef, type LibvirtApi } from './libvirt-client.js';

/** Whether `address` is worth showing (not loopback, not link-local). */
export function isShownAddress(address: string): boolean {
  const a = address.toLowerCase();
  return !(a.startsWith('127.') || a === '::1' || a.startsWith('fe80:') || a.startsWith('169.254.'));
}

/** Addresses of running domains, from DHCP leases and the guest agent (see the file's doc). */
export class GuestAddresses {
  private readonly known = new Map<string, { addresses: string[]; atMs: number }>();

  constructor(private readonly client: LibvirtApi, private readonly clock: Clock, private readonly ttlMs = 5_000) {}

  /** The addresses of running domain `dom` (parsed: its XML), IPv4 first, without duplicates. */
  async of(dom: DomainRef, parsed: ParsedDomain): Promise<string[]> {
    const uuid = uuidFromBytes(dom.uuid);
    const cached = this.known.get(uuid);
    if (cached !== undefined && this.clock.now() - cached.atMs < this.ttlMs) return cached.addresses;
    const found = new Set<string>();
    for (const nic of parsed.interfaces) {
      if (nic.network === undefined || nic.mac === undefined) continue;
      try {
        const net = await this.client.lookupNetwork(nic.network);
        if (net === undefined) continue;
        for (const lease of await this.client.networkGetDhcpLeases(net, nic.mac)) found.add(lease.ipAddress);
      } catch {
        // a network without DHCP or gone meanwhile: no lease to show
      }
    }
    if (parsed.guestAgent) {
      try {
        for (const iface of await this.client.domainInterfaceAddresses(dom, Flags.AddressesFromAgent, 2_000)) {
          for (const a of iface.addresses) if (isShownAddress(a.address)) found.add(a.address);
        }
      } catch {
        // no agent running in the guest (yet): the leases are all there is
      }
    }
    const addresses = [...found].sort((a, b) => Number(a.includes(':')) - Number(b.includes(':')) || (a < b ? -1 : a > b ? 1 : 0));
    this.known.set(uuid, { addresses, atMs: this.clock.now() });
    return addresses;
  }

  /** Drops what is known of `dom` (deleted, or restarted: its leases change). */
  forget(dom: DomainRef): void {
    this.known.delete(uuidFromBytes(dom.uuid));
  }
}
