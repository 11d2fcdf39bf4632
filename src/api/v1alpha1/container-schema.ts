/** The one JSON Schema of kind Container: ajv validates files with it and the CRD is generated from it. */
import { IPV4_ADDRESS_PATTERN, IPV4_CIDR_PATTERN } from './ipv4-address.js';
import { API_VERSION } from './group.js';
import {
  type JsonSchema, IFNAME_PATTERN, IMAGE_URL_PATTERN, MAC_PATTERN, SAFE_TEXT_PATTERN, absolutePath, commonSpecProperties, environmentSource, objectSchema, quantity,
} from './schema-parts.js';

/** JSON Schema of a Container spec: the one source of truth for validation and the CRD. */
export const containerSpecSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  description: 'Desired state of the Container.',
  properties: {
    state: { type: 'string', enum: ['Running', 'Stopped', 'Frozen'], default: 'Running', description: 'Desired power state.' },
    template: {
      type: 'string', minLength: 1, maxLength: 63, pattern: '^[a-z0-9][a-z0-9_.-]*$',
      description: 'LXC template to create the root filesystem from (busybox works offline). Exactly one of template, rootfs and image.',
    },
    templateArgs: {
      type: 'array',
      maxItems: 64,
      items: { type: 'string', maxLength: 1024, pattern: SAFE_TEXT_PATTERN },
      description: 'Arguments for the template, one per item, passed as they are after "--" (never through a shell), '
        + 'such as [-d, debian, -r, bookworm, -a, amd64] for the download template. Only with template; the options lxc-create '
        + 'gives the template itself (--rootfs, --path, --name, --mapped-uid, --mapped-gid, -p, -n) are refused.',
    },
    rootfs: absolutePath('A prepared root filesystem directory to copy. Exactly one of template, rootfs and image.'),
    image: {
      type: 'object',
      additionalProperties: false,
      required: ['url'],
      description: 'A root filesystem tarball (tar, or tar compressed with gzip, xz or zstd) to make the container from. '
        + 'Downloaded once into the host\'s image cache, unpacked once, and each container gets a copy-on-write clone of it. '
        + 'The host policy decides which URLs are allowed. Exactly one of template, rootfs and image.',
      properties: {
        url: {
          type: 'string', minLength: 8, maxLength: 4096, pattern: IMAGE_URL_PATTERN,
          description: 'Where the tarball is: file:///PATH (inside one of the host policy\'s image directories), or http:// or https:// '
            + '(a host the policy lists in imageHosts). No credentials in the URL.',
        },
        sha256: {
          type: 'string', pattern: '^[0-9a-f]{64}$',
          description: 'The tarball\'s SHA-256 (64 lowercase hex digits). When set, a download that does not match is refused and never used.',
        },
      },
    },
    resources: {
      type: 'object',
      additionalProperties: false,
      description: 'Limits of the container: CPUs, memory and root filesystem size. Absent fields are not limited.',
      properties: {
        cpu: { type: 'integer', minimum: 1, maximum: 128, description: 'Number of CPUs the container may use.' },
        memory: quantity('64Mi', '1Ti', 'Memory limit.'),
        disk: quantity('100Mi', '10Ti', 'Root filesystem size, where the backing store supports it.'),
      },
    },
    network: {
      type: 'array',
      maxItems: 16,
      description: 'Network interfaces, in order (eth0 first). Absent: the host\'s LXC default.',
      items: {
        type: 'object',
        additionalProperties: false,
        description: 'One network interface.',
        properties: {
          type: {
            type: 'string', enum: ['veth', 'none'], default: 'veth',
            description: 'veth joins a host bridge; none gives the container only loopback.',
          },
          bridge: { type: 'string', pattern: IFNAME_PATTERN, description: 'Host bridge the veth joins.' },
          hwaddr: { type: 'string', pattern: MAC_PATTERN, description: 'MAC address of the container side.' },
          ipv4: {
            type: 'string', pattern: IPV4_CIDR_PATTERN,
            description: 'Static IPv4 address with its prefix length (CIDR, e.g. 10.0.3.10/24), set by LXC before init starts. '
              + 'The guest must not run a DHCP client on this NIC (one flushes the address when it starts). Absent: the guest\'s own configuration.',
          },
          gateway: {
            type: 'string', pattern: IPV4_ADDRESS_PATTERN,
            description: 'IPv4 default gateway through this NIC (needs ipv4, inside its subnet).',
          },
        },
      },
    },
    environment: {
      type: 'object',
      maxProperties: 256,
      propertyNames: { maxLength: 255, pattern: '^[A-Za-z_][A-Za-z0-9_]*$' },
      additionalProperties: { type: 'string', maxLength: 4096, pattern: SAFE_TEXT_PATTERN },
      description: 'Environment of the container\'s init. hyperlet never shows the values (keys are shown).',
    },
    environmentFrom: {
      type: 'object',
      maxProperties: 256,
      propertyNames: { maxLength: 255, pattern: '^[A-Za-z_][A-Za-z0-9_]*$' },
      additionalProperties: environmentSource,
      description: 'More environment, each value read when the object is reconciled (valueFrom): {secretKeyRef: {name, key}} '
        + 'from a Secret of the object\'s namespace (kube source) or {file: PATH} from the host\'s secrets directory (dir and git sources). '
        + 'A name may not also be in environment.',
    },
    autostart: { type: 'boolean', default: false, description: 'Start the container when the host boots.' },
    privileged: {
      type: 'boolean',
      description: 'Run without a user namespace, so root in the container is root on the host. Refused unless the host policy '
        + 'allows it for this source and namespace; by default containers run unprivileged.',
    },
    gracefulStopSeconds: {
      type: 'integer', minimum: 0, maximum: 3600, default: 30,
      description: 'How long a stop waits for the container to shut down before it is killed.',
    },
    ...commonSpecProperties,
  },
};

/** JSON Schema of a whole Container object (apiVersion, kind, metadata, spec). */
export const containerSchema: JsonSchema = objectSchema('Container', API_VERSION, containerSpecSchema);
