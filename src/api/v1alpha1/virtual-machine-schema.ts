/** The one JSON Schema of kind VirtualMachine: ajv validates files with it and the CRD is generated from it. */
import { API_VERSION } from './group.js';
import {
  type JsonSchema, ABSOLUTE_PATH_PATTERN, IFNAME_PATTERN, IMAGE_URL_PATTERN, MAC_PATTERN, SAFE_TEXT_PATTERN, commonSpecProperties, dnsLabel,
  environmentSource, absolutePath, objectSchema, quantity,
} from './schema-parts.js';

/** Largest cloud-init seed payload (user-data, network-config and meta-data together), in bytes. */
export const MAX_CLOUD_INIT_BYTES = 64 * 1024;

/** JSON Schema of a VirtualMachine spec: the one source of truth for validation and the CRD. */
export const virtualMachineSpecSchema: JsonSchema = {
  type: 'object',
  additionalProperties: false,
  description: 'Desired state of the VirtualMachine.',
  properties: {
    state: { type: 'string', enum: ['Running', 'Stopped', 'Paused'], default: 'Running', description: 'Desired power state.' },
    hypervisor: { type: 'string', enum: ['kvm', 'qemu'], default: 'kvm', description: 'kvm (hardware) or qemu (software emulation).' },
    resources: {
      type: 'object',
      default: {},
      additionalProperties: false,
      description: 'Virtual CPUs and memory of the guest, with the ceilings live changes may reach.',
      properties: {
        cpu: { type: 'integer', minimum: 1, maximum: 128, default: 1, description: 'Virtual CPUs.' },
        memory: { ...quantity('64Mi', '1Ti', 'Guest memory.'), default: '512Mi' },
        maxCpu: { type: 'integer', minimum: 1, maximum: 128, description: 'Ceiling for live vCPU changes (default: cpu).' },
        maxMemory: quantity('64Mi', '1Ti', 'Ceiling for live memory changes (default: memory).'),
      },
    },
    boot: {
      type: 'object',
      additionalProperties: false,
      description: 'How the guest boots: a kernel (with initrd and command line) or one of its disks. Exactly one of kernel and disk.',
      properties: {
        kernel: absolutePath('Kernel image for direct boot.'),
        initrd: absolutePath('Initial ramdisk for direct boot.'),
        cmdline: { type: 'string', maxLength: 4096, pattern: SAFE_TEXT_PATTERN, description: 'Kernel command line.' },
        disk: dnsLabel('Name of the disk (in disks) to boot from.'),
        firmware: {
          type: 'string', enum: ['bios', 'uefi'],
          description: 'Firmware when booting from a disk: bios (SeaBIOS, the default) or uefi (OVMF, where the host has it installed).',
        },
      },
    },
    disks: {
      type: 'array',
      maxItems: 26,
      description: 'Disks, each a volume in a libvirt storage pool, attached in order.',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name'],
        description: 'One disk: a volume made with a size, from a backing image, or both.',
        properties: {
          name: dnsLabel('Disk name, unique in this VM; the volume is named after the VM and the disk.'),
          size: quantity('100Mi', '10Ti', 'Volume capacity; may grow, never shrink.'),
          pool: { ...dnsLabel('Storage pool holding the volume.'), default: 'default' },
          bus: { type: 'string', enum: ['virtio', 'sata', 'scsi', 'ide'], default: 'virtio', description: 'Bus the disk is attached to.' },
          image: {
            type: 'string', minLength: 1, maxLength: 4096,
            pattern: `^(${ABSOLUTE_PATH_PATTERN.slice(1, -1)}|${IMAGE_URL_PATTERN.slice(1, -1)})$`,
            description: 'Backing image (qcow2 or raw, detected from its content) the volume starts from, as a copy-on-write layer: '
              + 'a host path, or a URL (file:///, http://, https://) downloaded once into the image cache.',
          },
          sha256: {
            type: 'string', pattern: '^[0-9a-f]{64}$',
            description: 'The SHA-256 of the image a URL names (64 lowercase hex digits): a download that does not match is refused.',
          },
        },
      },
    },
    networks: {
      type: 'array',
      maxItems: 16,
      description: 'Network interfaces, in order.',
      items: {
        type: 'object',
        additionalProperties: false,
        description: 'One network interface, on a libvirt network or a host bridge.',
        properties: {
          network: dnsLabel('libvirt network to attach to. Exactly one of network and bridge.'),
          bridge: { type: 'string', pattern: IFNAME_PATTERN, description: 'Host bridge to attach to.' },
          mac: { type: 'string', pattern: MAC_PATTERN, description: 'MAC address; derived from the object id when absent.' },
          model: { type: 'string', enum: ['virtio', 'e1000', 'rtl8139'], default: 'virtio', description: 'Emulated NIC model.' },
        },
      },
    },
    cloudInit: {
      type: 'object',
      additionalProperties: false,
      description: 'First-boot configuration for cloud-init, attached read-only as a NoCloud seed (an ISO labelled cidata). '
        + `user-data, network-config and meta-data together may hold at most ${MAX_CLOUD_INIT_BYTES} bytes. A changed seed takes effect at the next start.`,
      properties: {
        userData: { type: 'string', maxLength: MAX_CLOUD_INIT_BYTES, description: 'The user-data document (#cloud-config or a script). Never shown by hyperlet.' },
        userDataFrom: { ...environmentSource, description: 'user-data read at reconcile time: a Secret key (kube) or a secrets-directory file (dir, git).' },
        sshAuthorizedKeys: {
          type: 'array', maxItems: 64, description: 'SSH public keys for the default user (meta-data public-keys).',
          items: { type: 'string', minLength: 1, maxLength: 8192, pattern: SAFE_TEXT_PATTERN },
        },
        hostname: dnsLabel('Host name cloud-init gives the guest (meta-data local-hostname); default: the instance name.'),
        networkConfig: { type: 'string', maxLength: MAX_CLOUD_INIT_BYTES, description: 'A network-config document (version 1 or 2).' },
        metaData: {
          type: 'object', maxProperties: 64, additionalProperties: { type: 'string', maxLength: 4096, pattern: SAFE_TEXT_PATTERN },
          description: 'Extra meta-data keys; instance-id and local-hostname are set by hyperlet.',
        },
      },
    },
    gracefulStopSeconds: {
      type: 'integer', minimum: 0, maximum: 3600, default: 60,
      description: 'How long a stop waits for the guest to power off (ACPI) before it is destroyed.',
    },
    ...commonSpecProperties,
  },
};

/** JSON Schema of a whole VirtualMachine object (apiVersion, kind, metadata, spec). */
export const virtualMachineSchema: JsonSchema = objectSchema('VirtualMachine', API_VERSION, virtualMachineSpecSchema);
