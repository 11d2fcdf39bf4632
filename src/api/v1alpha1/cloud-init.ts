/**
 * The NoCloud seed of a VirtualMachine's spec.cloudInit: the three documents cloud-init reads from
 * a volume labelled `cidata` (user-data, meta-data, network-config), their size, and a digest that
 * changes exactly when they do (the field plan() compares, so the user-data itself never sits in
 * the domain's metadata, in status or in the state DB).
 */
import { createHash } from 'node:crypto';
import type { CloudInitSpec } from './types.js';

/** The files of a NoCloud seed, by their names on the volume. */
export interface CloudInitSeedFiles {
  readonly 'user-data': string;
  readonly 'meta-data': string;
  readonly 'network-config'?: string;
}

/** What the seed is made for: the object's id (instance-id) and the instance's name (the default host name). */
export interface CloudInitIdentity {
  readonly instanceId: string;
  readonly hostName: string;
}

/** The bytes the declared parts of `ci` take (user-data, network-config, meta-data values, keys): what the size limit counts. */
export function cloudInitPayloadBytes(ci: CloudInitSpec): number {
  const len = (s: string | undefined): number => (s === undefined ? 0 : Buffer.byteLength(s, 'utf8'));
  return len(ci.userData) + len(ci.networkConfig) + len(ci.hostname)
    + (ci.sshAuthorizedKeys ?? []).reduce((n, k) => n + len(k), 0)
    + Object.entries(ci.metaData ?? {}).reduce((n, [k, v]) => n + len(k) + len(v), 0);
}

/** A host name fit for local-hostname: the instance name with dots (namespace.name) turned into dashes, at most 63 characters. */
function defaultHostname(hostName: string): string {
  return hostName.replace(/[^a-z0-9-]/gi, '-').slice(0, 63).replace(/-+$/, '') || 'guest';
}

/**
 * The seed files for `ci` (its userData already read when it came from userDataFrom). meta-data is
 * written as JSON (which YAML reads): metaData first, then instance-id, local-hostname and
 * public-keys, which hyperlet owns.
 */
export function cloudInitSeedFiles(ci: CloudInitSpec, who: CloudInitIdentity): CloudInitSeedFiles {
  const meta: Record<string, unknown> = {
    ...(ci.metaData ?? {}),
    'instance-id': who.instanceId,
    'local-hostname': ci.hostname ?? defaultHostname(who.hostName),
    ...(ci.sshAuthorizedKeys === undefined || ci.sshAuthorizedKeys.length === 0 ? {} : { 'public-keys': ci.sshAuthorizedKeys }),
  };
  return {
    'user-data': ci.userData ?? '#cloud-config\n',
    'meta-data': `${JSON.stringify(meta, null, 1)}\n`,
    ...(ci.networkConfig === undefined ? {} : { 'network-config': ci.networkConfig }),
  };
}

/**
 * A digest of the declared spec.cloudInit (first 16 hex digits of a SHA-256): equal specs give
 * equal digests, any change gives another. A userDataFrom reference is hashed as the reference.
 */
export function cloudInitDigest(ci: CloudInitSpec | undefined): string | null {
  if (ci === undefined) return null;
  const canonical = JSON.stringify([
    ci.userData ?? null, ci.userDataFrom ?? null, ci.sshAuthorizedKeys ?? [], ci.hostname ?? null, ci.networkConfig ?? null,
    Object.entries(ci.metaData ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  ]);
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}
