/**
 * Static IPv4 addresses of container NICs: `ipv4` in CIDR form (10.0.3.10/24) and `gateway` as a
 * plain address. Pure checks that say which rule a value breaks, for validation.
 */

/** Shape of an IPv4 address with an optional /prefix (the schema's pattern; the exact rules are below). */
export const IPV4_CIDR_PATTERN = '^[0-9]{1,3}(\\.[0-9]{1,3}){3}/[0-9]{1,2}$';
/** Shape of a plain IPv4 address. */
export const IPV4_ADDRESS_PATTERN = '^[0-9]{1,3}(\\.[0-9]{1,3}){3}$';

/** An address as a 32-bit unsigned number, or undefined when `text` is no dotted quad (0–255, no leading zeros). */
export function parseIpv4(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255) return undefined;
    n = n * 256 + Number(p);
  }
  return n;
}

/** An address with its prefix length. */
export interface Ipv4Cidr { readonly address: number; readonly prefix: number }

/** Parses "a.b.c.d/n"; undefined when it is not one. */
export function parseIpv4Cidr(text: string): Ipv4Cidr | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const address = parseIpv4(text.slice(0, slash));
  const prefixText = text.slice(slash + 1);
  if (address === undefined || !/^(0|[1-9][0-9]?)$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  return prefix > 32 ? undefined : { address, prefix };
}

const networkOf = (address: number, prefix: number): number => (prefix === 0 ? 0 : Number((BigInt(address) >> BigInt(32 - prefix)) << BigInt(32 - prefix)));

/** What is wrong with `ipv4` as a NIC's static address, or undefined when it is usable. */
export function ipv4CidrProblem(text: string): string | undefined {
  const c = parseIpv4Cidr(text);
  if (c === undefined) return `${JSON.stringify(text)} is not an IPv4 address with a prefix length (e.g. 10.0.3.10/24)`;
  if (c.prefix < 8 || c.prefix > 30) return `prefix /${c.prefix} is out of range: use /8 to /30`;
  const hostBits = 32 - c.prefix;
  const host = c.address - networkOf(c.address, c.prefix);
  if (host === 0) return `${text} is the network address of its subnet, not a host address`;
  if (host === 2 ** hostBits - 1) return `${text} is the broadcast address of its subnet, not a host address`;
  const first = Math.floor(c.address / 2 ** 24);
  if (first === 0 || first === 127 || first >= 224) return `${text} is not a unicast host address (0/8, 127/8, multicast and reserved are refused)`;
  return undefined;
}

/** What is wrong with `gateway` for a NIC whose address is `ipv4` (already valid), or undefined. */
export function gatewayProblem(gateway: string, ipv4: string): string | undefined {
  const g = parseIpv4(gateway);
  if (g === undefined) return `${JSON.stringify(gateway)} is not an IPv4 address (e.g. 10.0.3.1)`;
  const c = parseIpv4Cidr(ipv4);
  if (c === undefined) return undefined; // ipv4's own issue says why
  if (networkOf(g, c.prefix) !== networkOf(c.address, c.prefix)) return `${gateway} is outside the subnet of ipv4 ${ipv4}`;
  if (g === c.address) return `${gateway} is the NIC's own address`;
  return undefined;
}

/** The address of "a.b.c.d/n" without its prefix. */
export function addressOfCidr(text: string): string {
  const slash = text.indexOf('/');
  return slash < 0 ? text : text.slice(0, slash);
}

/** The broadcast address of the subnet of "a.b.c.d/n" (e.g. 10.0.3.255 for 10.0.3.10/24); undefined when it is no CIDR. */
export function broadcastOfCidr(text: string): string | undefined {
  const c = parseIpv4Cidr(text);
  if (c === undefined) return undefined;
  const b = networkOf(c.address, c.prefix) + 2 ** (32 - c.prefix) - 1;
  return [24, 16, 8, 0].map((shift) => Math.floor(b / 2 ** shift) % 256).join('.');
}
