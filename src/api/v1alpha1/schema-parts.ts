/**
 * Building blocks shared by the kinds' JSON Schemas. Every string that can reach an LXC config
 * file, a command line or domain XML is constrained here so it cannot carry a new line, key or
 * element: names are DNS-1123 labels, paths and free text exclude control characters.
 */
import { QUANTITY_PATTERN } from './quantity.js';

/** A JSON Schema document or fragment, as ajv and the CRD generator take it. */
export type JsonSchema = Record<string, unknown>;

/** DNS-1123 label: lowercase alphanumerics and '-', starting and ending alphanumeric, at most 63. */
export const DNS_LABEL_PATTERN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
/** DNS-1123 subdomain (node names): labels joined by dots, at most 253. */
export const DNS_SUBDOMAIN_PATTERN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
/** Text without control characters except tab: no new line, NUL or escape can pass. */
export const SAFE_TEXT_PATTERN = '^[^\\u0000-\\u0008\\u000a-\\u001f\\u007f]*$';
/** An absolute path without control characters. */
export const ABSOLUTE_PATH_PATTERN = '^/[^\\u0000-\\u001f\\u007f]*$';
/** A Linux network interface name (bridges): at most 15 characters, no '/' or spaces. */
export const IFNAME_PATTERN = '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$';
/** A unicast-capable MAC address in colon form. */
export const MAC_PATTERN = '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$';

/**
 * An image URL: file:// with an absolute path, or http(s) with a host and no user information
 * (credentials would end up in status, logs and the cache key), no white space or control characters.
 */
export const IMAGE_URL_PATTERN = '^(file:///|https?://[^/@?#\\s\\u0000-\\u001f\\u007f]+(/|$))[^\\s\\u0000-\\u001f\\u007f]*$';

/** A Kubernetes Secret data key: alphanumerics, '-', '_' and '.'. */
export const SECRET_KEY_PATTERN = '^[-._a-zA-Z0-9]+$';
/** A path without control characters, absolute or relative (to the secrets directory). */
export const SECRET_FILE_PATTERN = '^[^\\u0000-\\u001f\\u007f]+$';

/**
 * Where one environment value comes from (Kubernetes' EnvVarSource, the part under `valueFrom`):
 * exactly one of a Secret key (kube source) and a file of the host's secrets directory (dir and
 * git sources). Read when the object is reconciled, so the secret never sits in the object, in
 * Git or in the state DB.
 */
export const environmentSource: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  maxProperties: 1,
  properties: {
    secretKeyRef: {
      type: 'object',
      additionalProperties: false,
      required: ['name', 'key'],
      description: 'kube source: a key of a Secret in the object\'s namespace.',
      properties: {
        name: { type: 'string', minLength: 1, maxLength: 253, pattern: DNS_SUBDOMAIN_PATTERN, description: 'Name of the Secret.' },
        key: { type: 'string', minLength: 1, maxLength: 253, pattern: SECRET_KEY_PATTERN, description: 'Key in the Secret\'s data.' },
      },
    },
    file: {
      type: 'string', minLength: 1, maxLength: 4096, pattern: SECRET_FILE_PATTERN,
      description: 'dir and git sources: a file in the host\'s secrets directory (--secrets-dir), relative to it or absolute inside it.',
    },
  },
};

/** Schema of a DNS-1123 label string (at most 63 characters) with `description`. */
export const dnsLabel = (description: string): JsonSchema => ({
  type: 'string', minLength: 1, maxLength: 63, pattern: DNS_LABEL_PATTERN, description,
});

/** Schema of an absolute host path (at most 4096 characters) with `description`. */
export const absolutePath = (description: string): JsonSchema => ({
  type: 'string', minLength: 1, maxLength: 4096, pattern: ABSOLUTE_PATH_PATTERN, description,
});

/**
 * A Kubernetes quantity (string such as "512Mi", or a byte count) within a range.
 * `x-quantity-range` is checked by validate.ts and turned into a CEL rule in the CRDs. A byte
 * count must be a safe integer: `1e30` is an integer to JSON Schema, but not a number of bytes.
 * No `type`: int-or-string, as Kubernetes' own quantities in CRDs. `kubectl explain` then prints
 * `<Object>` for it (its template reads only `type`; kubernetes/kubernetes#130946), so the
 * description says what it is. `type: string` would fix that line but makes server-side apply
 * (Flux, `kubectl apply --server-side`) refuse integers: "expected string, got int" (tried).
 */
export const quantity = (minimum: string, maximum: string, description: string): JsonSchema => ({
  'x-kubernetes-int-or-string': true,
  anyOf: [{ type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER }, { type: 'string', pattern: QUANTITY_PATTERN }],
  'x-quantity-range': { minimum, maximum },
  description: `${description} An int-or-string quantity, ${minimum} to ${maximum}: a byte count such as 268435456, or a string `
    + 'with a suffix (Ki, Mi, Gi, Ti: powers of 1024; k, M, G, T: of 1000) such as 512Mi or 2Gi.',
});

const labelKey = '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$';

/** The part of Kubernetes ObjectMeta that files may set. */
export const objectMeta: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  description: 'Standard object metadata: name, namespace, labels and annotations.',
  properties: {
    name: dnsLabel('Name of the object, unique per kind and namespace; also names the instance on the host.'),
    namespace: { ...dnsLabel('Namespace of the object.'), default: 'default' },
    labels: {
      type: 'object',
      maxProperties: 64,
      description: 'Key/value pairs to select and group objects (Kubernetes label syntax).',
      propertyNames: { maxLength: 317, pattern: labelKey },
      additionalProperties: { type: 'string', maxLength: 63, pattern: '^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$' },
    },
    annotations: {
      type: 'object',
      maxProperties: 64,
      description: 'Key/value notes; hyperlet reads hyperlet.io/paused, hyperlet.io/adopt and hyperlet.io/prune.',
      propertyNames: { maxLength: 317, pattern: labelKey },
      additionalProperties: { type: 'string', maxLength: 65536 },
    },
  },
};

/** Fields every kind's spec shares. */
export const commonSpecProperties: Record<string, JsonSchema> = {
  nodeName: {
    type: 'string', maxLength: 253, pattern: DNS_SUBDOMAIN_PATTERN,
    description: 'The host that runs this instance (kube mode: the agent started with --node NAME). Without it, the scheduler '
      + '(hyperlet run --scheduler) places the object and records the node in status.placement.nodeName; this field, when set, wins.',
  },
  nodeSelector: {
    type: 'object',
    maxProperties: 32,
    description: 'Kube mode: the scheduler places the object only on a HypervisorNode whose labels hold every key with this value '
      + '(ignored when spec.nodeName is set).',
    propertyNames: { maxLength: 317, pattern: labelKey },
    additionalProperties: { type: 'string', maxLength: 63 },
  },
  updatePolicy: {
    type: 'string', enum: ['Live', 'Restart', 'Recreate'], default: 'Live',
    description: 'How far hyperlet may go to apply a change: Live changes only; also restart; also re-create.',
  },
  evictionPolicy: {
    type: 'string', enum: ['Move', 'Recreate'],
    description: 'Kube mode, when the object leaves its node: Move (the default) stops the instance and carries its data to the new '
      + 'node, and waits for a lost node to come back; Recreate (no local data worth keeping) starts afresh on the new node and '
      + 'is placed elsewhere by the scheduler when its node is lost (NodeLost).',
  },
  deletionPolicy: {
    type: 'string', enum: ['Delete', 'Orphan'], default: 'Delete',
    description: 'Delete removes the instance with the object; Orphan leaves it on the host.',
  },
  driftPolicy: {
    type: 'string', enum: ['Correct', 'Report', 'Ignore'], default: 'Correct',
    description: 'What to do when the instance changes behind hyperlet\'s back after it matched: Correct puts it back; Report shows the drift (condition Drifted) and leaves it; Ignore leaves it silently.',
  },
  snapshots: {
    type: 'object',
    additionalProperties: false,
    required: ['schedule'],
    description: 'Scheduled snapshots of the instance, taken by the daemon and pruned by the retain rules; listed in status.snapshots.',
    properties: {
      schedule: {
        type: 'string', minLength: 1, maxLength: 128, pattern: SAFE_TEXT_PATTERN,
        description: 'When to snapshot: a 5-field cron expression in UTC (minute hour day-of-month month day-of-week; *, N, A-B, */S, lists), '
          + 'a macro (@hourly, @daily, @weekly, @monthly, @yearly) or "@every DURATION" (such as 30m, 6h, 1h30m; at least 1m). '
          + 'A run missed while the daemon was down runs once when it starts, never as a burst.',
      },
      retain: {
        type: 'object',
        additionalProperties: false,
        description: 'Which scheduled snapshots to keep (Proxmox prune rules, UTC periods): a snapshot is kept if any rule keeps it; '
          + 'with no rule, all are kept. Snapshots taken on request are never pruned.',
        properties: {
          last: { type: 'integer', minimum: 0, maximum: 1000, description: 'Keep the newest N snapshots.' },
          hourly: { type: 'integer', minimum: 0, maximum: 1000, description: 'Keep the newest snapshot of each of the last N hours that have one.' },
          daily: { type: 'integer', minimum: 0, maximum: 1000, description: 'Keep the newest snapshot of each of the last N days that have one.' },
          weekly: { type: 'integer', minimum: 0, maximum: 1000, description: 'Keep the newest snapshot of each of the last N ISO weeks that have one.' },
          monthly: { type: 'integer', minimum: 0, maximum: 1000, description: 'Keep the newest snapshot of each of the last N months that have one.' },
        },
      },
    },
  },
  backups: {
    type: 'object',
    additionalProperties: false,
    required: ['schedule', 'directory'],
    description: 'Scheduled backups of the instance (portable archives, hyperlet backup), written by the daemon into a directory the host policy allows (paths.backups) and pruned by the retain rules.',
    properties: {
      directory: {
        type: 'string', minLength: 2, maxLength: 1024, pattern: ABSOLUTE_PATH_PATTERN,
        description: 'Absolute directory the archives are written to (HOSTNAME.auto-UTCTIME.tar.zst); it must lie under paths.backups of the host policy.',
      },
      schedule: {
        type: 'string', minLength: 1, maxLength: 128, pattern: SAFE_TEXT_PATTERN,
        description: 'When to back up: a 5-field cron expression in UTC (minute hour day-of-month month day-of-week; *, N, A-B, */S, lists), '
          + 'a macro (@hourly, @daily, @weekly, @monthly, @yearly) or "@every DURATION" (such as 30m, 6h, 1h30m; at least 1m). '
          + 'A run missed while the daemon was down runs once when it starts, never as a burst.',
      },
      retain: {
        type: 'object',
        additionalProperties: false,
        description: 'Which scheduled backups to keep (Proxmox prune rules, UTC periods): a snapshot is kept if any rule keeps it; '
          + 'with no rule, all are kept. Backups made with hyperlet backup are never pruned.',
        properties: {
          last: { type: 'integer', minimum: 0, maximum: 1000, description: 'Keep the newest N snapshots.' },
          hourly: { type: 'integer', minimum: 0, maximum: 1000, description: 'Keep the newest snapshot of each of the last N hours that have one.' },
          daily: { type: 'integer', minimum: 0, maximum: 1000, description: 'Keep the newest snapshot of each of the last N days that have one.' },
          weekly: { type: 'integer', minimum: 0, maximum: 1000, description: 'Keep the newest snapshot of each of the last N ISO weeks that have one.' },
          monthly: { type: 'integer', minimum: 0, maximum: 1000, description: 'Keep the newest snapshot of each of the last N months that have one.' },
        },
      },
    },
  },
  dependsOn: {
    type: 'array',
    maxItems: 64,
    description: 'Objects of the same source that must be Ready before this one is created or started; this one is deleted before them.',
    items: {
      type: 'object',
      additionalProperties: false,
      required: ['kind', 'name'],
      description: 'A reference to an object of the same source.',
      properties: {
        kind: { type: 'string', enum: ['Container', 'VirtualMachine'], description: 'Kind of the object depended on.' },
        name: dnsLabel('Name of the object depended on.'),
        namespace: dnsLabel('Its namespace (default: this object\'s namespace).'),
      },
    },
  },
};

/** The whole object of one kind: Kubernetes shape around that kind's spec schema. */
export function objectSchema(kind: string, apiVersion: string, spec: JsonSchema): JsonSchema {
  return {
    type: 'object',
    additionalProperties: false,
    required: ['apiVersion', 'kind', 'metadata', 'spec'],
    description: kindDescription(kind),
    properties: {
      apiVersion: { type: 'string', const: apiVersion, description: API_VERSION_DESCRIPTION },
      kind: { type: 'string', const: kind, description: KIND_DESCRIPTION },
      metadata: objectMeta,
      spec,
      status: { type: 'object', description: STATUS_DESCRIPTION },
    },
  };
}

/** What `kubectl explain KIND` says about each kind. */
export function kindDescription(kind: string): string {
  return kind === 'Container'
    ? 'Container is an LXC container that hyperlet creates, keeps as declared and reports on.'
    : 'VirtualMachine is a libvirt domain (KVM or QEMU) that hyperlet creates, keeps as declared and reports on.';
}

/** Kubernetes' own wording for the type fields every object has. */
export const API_VERSION_DESCRIPTION = 'The versioned schema of this object: hyperlet.io/v1alpha1.';
/** The description of `kind`, in Kubernetes' wording. */
export const KIND_DESCRIPTION = 'The kind of this object, in CamelCase.';
/** The description of `status`: who writes it and where it is kept. */
export const STATUS_DESCRIPTION =
  'What hyperlet observes and did, written by the agent (status subresource) or kept in the state DB; never set by authors.';
