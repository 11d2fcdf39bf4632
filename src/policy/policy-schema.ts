/**
 * The JSON Schema of a host policy file (kind HostPolicy). ajv validates files with it before
 * policy-loader.ts turns them into a HostPolicy; every field is optional except apiVersion and
 * kind, and what a file leaves out keeps its built-in default (host-policy.ts).
 */
import { QUANTITY_PATTERN } from '../api/v1alpha1/quantity.js';

type JsonSchema = Record<string, unknown>;

/** The apiVersion a policy file declares. */
export const POLICY_API_VERSION = 'hyperlet.io/v1alpha1';
/** The kind a policy file declares. */
export const POLICY_KIND = 'HostPolicy';

/** An absolute path without control characters, '.' or '..' parts, or a trailing slash. */
const DIRECTORY_PATTERN = '^/$|^(/(?!\\.\\.?(/|$))[^/\\u0000-\\u001f\\u007f]+)+$';
/** A name or a glob of names (`*` for any run of characters) for templates, bridges, networks, pools, sources, namespaces. */
const NAME_GLOB_PATTERN = '^[A-Za-z0-9_.*-]{1,253}$';

const quantity = (description: string): JsonSchema => ({
  anyOf: [{ type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER }, { type: 'string', pattern: QUANTITY_PATTERN }],
  description,
});
const count = (maximum: number, description: string): JsonSchema => ({ type: 'integer', minimum: 0, maximum, description });
const list = (items: JsonSchema, description: string): JsonSchema => ({ type: 'array', maxItems: 256, items, description });
const directories = (description: string): JsonSchema => list({ type: 'string', maxLength: 4096, pattern: DIRECTORY_PATTERN }, description);
const names = (description: string): JsonSchema => list({ type: 'string', pattern: NAME_GLOB_PATTERN }, description);
/** A host name, IPv4 or [IPv6] address, with an optional port, or a glob of them (`*` for any run of characters). */
const HOST_GLOB_PATTERN = '^[A-Za-z0-9_.*:\\[\\]-]{1,261}$';

/** The rule fields shared by `defaults` and each entry of `scopes`. */
const ruleProperties: Record<string, JsonSchema> = {
  paths: {
    type: 'object',
    additionalProperties: false,
    properties: {
      images: directories('Directories VM disk images, kernels and initrds may come from.'),
      rootfs: directories('Directories a container rootfs may be copied from.'),
      backups: directories('Directories backup archives may be written to and restored from (hyperlet backup, restore --from, spec.backups).'),
    },
  },
  templates: names('LXC templates allowed.'),
  imageHosts: list(
    { type: 'string', pattern: HOST_GLOB_PATTERN },
    'Hosts container images may be downloaded from over http or https, as written in the URL (host or host:port; globs).',
  ),
  allow: {
    type: 'object',
    additionalProperties: false,
    properties: {
      adoption: { type: 'boolean', description: 'The hyperlet.io/adopt annotation may take over an instance hyperlet did not create.' },
      orphan: { type: 'boolean', description: 'deletionPolicy Orphan may leave an instance behind.' },
      privileged: { type: 'boolean', description: 'A container may run without a user namespace (spec.privileged: true).' },
    },
  },
  bridges: names('Host bridges a container veth or a VM NIC may join.'),
  networks: names('libvirt networks a VM NIC may join.'),
  pools: names('libvirt storage pools VM disks may live in.'),
  quota: {
    type: 'object',
    additionalProperties: false,
    properties: {
      objects: count(1_000_000, 'Objects per source and namespace.'),
      cpu: count(1_000_000, 'CPUs per source and namespace (VMs count maxCpu).'),
      memory: quantity('Memory per source and namespace (VMs count maxMemory).'),
      disk: quantity('Disk per source and namespace (VM disks, container resources.disk).'),
    },
  },
  limits: {
    type: 'object',
    additionalProperties: false,
    properties: {
      cpu: count(1_000_000, 'CPUs of one object.'),
      memory: quantity('Memory of one object.'),
      disk: quantity('Disk of one object (all its disks).'),
      gracefulStopSeconds: count(3600, 'The longest spec.gracefulStopSeconds an object may ask for.'),
    },
  },
  containerMemory: quantity('Memory limit of a container that declares none.'),
};

/** The JSON Schema every policy file is validated against (ajv). */
export const policySchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['apiVersion', 'kind'],
  properties: {
    apiVersion: { type: 'string', const: POLICY_API_VERSION },
    kind: { type: 'string', const: POLICY_KIND },
    host: {
      type: 'object',
      additionalProperties: false,
      properties: {
        idmap: {
          type: 'object',
          additionalProperties: false,
          required: ['hostId', 'size'],
          properties: {
            hostId: {
              type: 'integer', minimum: 65_536, maximum: 4_294_967_294 - 65_536,
              description: 'First host uid and gid of the range (above the ids of host users).',
            },
            size: { type: 'integer', minimum: 65_536, maximum: 1_000_000_000, description: 'How many ids (at least 65536).' },
          },
        },
        reservedMemory: quantity('Host memory no VM may claim.'),
      },
    },
    defaults: { type: 'object', additionalProperties: false, properties: ruleProperties },
    scopes: {
      type: 'array',
      maxItems: 1024,
      items: {
        type: 'object',
        additionalProperties: false,
        properties: {
          source: {
            type: 'string', pattern: NAME_GLOB_PATTERN, description: 'Source id ("dir", "git", "git-2", "kube") or a glob; default *.',
          },
          namespace: { type: 'string', pattern: NAME_GLOB_PATTERN, description: 'Namespace or a glob; default *.' },
          ...ruleProperties,
        },
      },
    },
  },
};
