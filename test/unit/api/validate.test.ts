import { expect } from 'chai';
import { validateObject } from '../../../src/api/v1alpha1/validate.js';
import { parseQuantity } from '../../../src/api/v1alpha1/quantity.js';
import { hostNameFor } from '../../../src/api/v1alpha1/host-name.js';

const ct = (spec: Record<string, unknown>, metadata: Record<string, unknown> = { name: 'web' }) =>
  ({ apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata, spec: { template: 'busybox', ...spec } });
const vm = (spec: Record<string, unknown>, metadata: Record<string, unknown> = { name: 'vm1' }) =>
  ({ apiVersion: 'hyperlet.io/v1alpha1', kind: 'VirtualMachine', metadata, spec });

const img = (image: Record<string, unknown>, more: Record<string, unknown> = {}) =>
  ({ apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name: 'web' }, spec: { image, ...more } });

interface Case { reason: string; doc: unknown; want: { path: string; rule: string } | 'valid' }

const cases: Record<string, Case> = {
  MinimalContainer: { reason: 'a template is enough', doc: ct({}), want: 'valid' },
  MinimalVm: { reason: 'every VM field has a default', doc: vm({}), want: 'valid' },
  NotAMapping: { reason: 'a list is not an object', doc: [1, 2], want: { path: '', rule: 'mapping' } },
  ScalarDocument: { reason: 'a string is not an object', doc: 'hello', want: { path: '', rule: 'mapping' } },
  UnknownApiVersion: { reason: 'only hyperlet.io/v1alpha1', doc: { ...ct({}), apiVersion: 'v1' }, want: { path: 'apiVersion', rule: 'api-version' } },
  UnknownKind: { reason: 'only Container and VirtualMachine', doc: { ...ct({}), kind: 'Pod' }, want: { path: 'kind', rule: 'kind' } },
  MissingName: { reason: 'metadata.name is required', doc: ct({}, {}), want: { path: 'metadata.name', rule: 'required' } },
  MissingMetadata: { reason: 'metadata is required, reported as its name', doc: { apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', spec: { template: 'busybox' } }, want: { path: 'metadata.name', rule: 'required' } },
  NameNotDnsLabel: { reason: 'names are DNS-1123 labels', doc: ct({}, { name: 'Web_1' }), want: { path: 'metadata.name', rule: 'pattern' } },
  NameWithDot: { reason: 'dots would make host names collide', doc: ct({}, { name: 'a.b' }), want: { path: 'metadata.name', rule: 'pattern' } },
  SnapshotScheduleValid: {
    reason: 'a cron schedule with retain rules', doc: ct({ template: 'busybox', snapshots: { schedule: '0 */6 * * *', retain: { last: 3, daily: 7 } } }), want: 'valid',
  },
  SnapshotScheduleDoesNotParse: {
    reason: 'a schedule that does not parse is refused at its path', doc: ct({ template: 'busybox', snapshots: { schedule: '0 25 * * *' } }),
    want: { path: 'spec.snapshots.schedule', rule: 'schedule' },
  },
  SnapshotRetainUnknownRule: {
    reason: 'only last, hourly, daily, weekly and monthly', doc: ct({ template: 'busybox', snapshots: { schedule: '@daily', retain: { yearly: 1 } } }),
    want: { path: 'spec.snapshots.retain.yearly', rule: 'unknown-field' },
  },
  NameTooLong: { reason: 'at most 63', doc: ct({}, { name: 'a'.repeat(64) }), want: { path: 'metadata.name', rule: 'maxLength' } },
  NamespaceNotDnsLabel: { reason: 'namespaces are DNS labels too', doc: ct({}, { name: 'web', namespace: 'Prod' }), want: { path: 'metadata.namespace', rule: 'pattern' } },
  UnknownTopField: { reason: 'unknown fields are errors', doc: { ...ct({}), extra: 1 }, want: { path: 'extra', rule: 'unknown-field' } },
  UnknownSpecField: { reason: 'a typo is not silently dropped', doc: ct({ sate: 'Running' }), want: { path: 'spec.sate', rule: 'unknown-field' } },
  UnknownMetadataField: { reason: 'metadata is closed as well', doc: ct({}, { name: 'web', uid: 'x' }), want: { path: 'metadata.uid', rule: 'unknown-field' } },
  BadState: { reason: 'Container states', doc: ct({ state: 'Paused' }), want: { path: 'spec.state', rule: 'enum' } },
  TemplateAndRootfs: { reason: 'exactly one of template and rootfs', doc: ct({ rootfs: '/srv/root' }), want: { path: 'spec', rule: 'one-of' } },
  TemplateArgs: { reason: 'the download template\'s arguments', doc: ct({ template: 'download', templateArgs: ['-d', 'debian', '-r', 'bookworm', '--server', 'images.example', '--no-validate'] }), want: 'valid' },
  TemplateArgsWithoutTemplate: { reason: 'arguments are for a template', doc: img({ url: 'http://a/r.tar' }, { templateArgs: ['-d', 'x'] }), want: { path: 'spec.templateArgs', rule: 'needs-template' } },
  TemplateArgRootfs: { reason: 'lxc-create sets --rootfs itself', doc: ct({ templateArgs: ['--rootfs', '/'] }), want: { path: 'spec.templateArgs[0]', rule: 'template-arg' } },
  TemplateArgRootfsEquals: { reason: 'in its = form too', doc: ct({ templateArgs: ['-d', 'x', '--rootfs=/'] }), want: { path: 'spec.templateArgs[2]', rule: 'template-arg' } },
  TemplateArgPrefix: { reason: 'getopt takes a unique prefix: --root is --rootfs', doc: ct({ templateArgs: ['--root', '/'] }), want: { path: 'spec.templateArgs[0]', rule: 'template-arg' } },
  TemplateArgMapped: { reason: 'and --mapped-u is --mapped-uid', doc: ct({ templateArgs: ['--mapped-u', '0'] }), want: { path: 'spec.templateArgs[0]', rule: 'template-arg' } },
  TemplateArgShortPath: { reason: 'busybox reads -p as its path', doc: ct({ templateArgs: ['-p', '/'] }), want: { path: 'spec.templateArgs[0]', rule: 'template-arg' } },
  TemplateArgCluster: { reason: 'getopt reads -xp as -x -p', doc: ct({ templateArgs: ['-xp/'] }), want: { path: 'spec.templateArgs[0]', rule: 'template-arg' } },
  TemplateArgNewLine: { reason: 'no control characters', doc: ct({ templateArgs: ['a\nb'] }), want: { path: 'spec.templateArgs[0]', rule: 'pattern' } },
  TemplateArgsEndOfOptions: { reason: 'a bare -- only ends the options', doc: ct({ templateArgs: ['--', 'x'] }), want: 'valid' },
  ImageByHttps: { reason: 'a tarball by URL with its digest', doc: img({ url: 'https://images.example/rootfs.tar.xz', sha256: 'a'.repeat(64) }), want: 'valid' },
  ImageByFile: { reason: 'a local tarball, no digest', doc: img({ url: 'file:///var/cache/hyperlet/images/r.tar' }), want: 'valid' },
  ImageAndTemplate: { reason: 'exactly one of template, rootfs and image', doc: ct({ image: { url: 'file:///x/r.tar' } }), want: { path: 'spec', rule: 'one-of' } },
  ImageUrlWithCredentials: {
    reason: 'credentials in a URL would reach status and logs', doc: img({ url: 'https://user:secret@images.example/r.tar' }),
    want: { path: 'spec.image.url', rule: 'pattern' },
  },
  ImageUrlOtherScheme: { reason: 'only file, http and https', doc: img({ url: 'ftp://images.example/r.tar' }), want: { path: 'spec.image.url', rule: 'pattern' } },
  ImageUrlRelativeFile: { reason: 'file URLs name an absolute path', doc: img({ url: 'file://r.tar' }), want: { path: 'spec.image.url', rule: 'pattern' } },
  ImageUrlWithNewLine: { reason: 'no control characters', doc: img({ url: 'http://a/r.tar\nx' }), want: { path: 'spec.image.url', rule: 'pattern' } },
  ImageShaUppercase: { reason: 'lowercase hex, 64 digits', doc: img({ url: 'http://a/r.tar', sha256: 'A'.repeat(64) }), want: { path: 'spec.image.sha256', rule: 'pattern' } },
  ImageWithoutUrl: { reason: 'url is required', doc: img({ sha256: 'a'.repeat(64) }), want: { path: 'spec.image.url', rule: 'required' } },
  ImageUnknownField: { reason: 'image is closed', doc: img({ url: 'http://a/r.tar', format: 'tar' }), want: { path: 'spec.image.format', rule: 'unknown-field' } },
  NeitherTemplateNorRootfs: { reason: 'exactly one of template and rootfs', doc: { ...ct({}), spec: {} }, want: { path: 'spec', rule: 'one-of' } },
  RelativeRootfs: { reason: 'rootfs must be absolute', doc: { ...ct({}), spec: { rootfs: 'srv/root' } }, want: { path: 'spec.rootfs', rule: 'pattern' } },
  TemplateInjection: { reason: 'a template name cannot carry a new line', doc: ct({ template: 'busybox\nlxc.hook=x' }), want: { path: 'spec.template', rule: 'pattern' } },
  CpuZero: { reason: 'cpu 1–128', doc: ct({ resources: { cpu: 0 } }), want: { path: 'spec.resources.cpu', rule: 'minimum' } },
  CpuTooMany: { reason: 'cpu 1–128', doc: ct({ resources: { cpu: 129 } }), want: { path: 'spec.resources.cpu', rule: 'maximum' } },
  CpuFraction: { reason: 'cpu is an integer', doc: ct({ resources: { cpu: 1.5 } }), want: { path: 'spec.resources.cpu', rule: 'type' } },
  MemoryTooSmall: { reason: 'memory from 64Mi', doc: ct({ resources: { memory: '63Mi' } }), want: { path: 'spec.resources.memory', rule: 'x-quantity-range' } },
  MemoryTooBig: { reason: 'memory up to 1Ti', doc: ct({ resources: { memory: '2Ti' } }), want: { path: 'spec.resources.memory', rule: 'x-quantity-range' } },
  MemoryNotAQuantity: { reason: 'a quantity or a byte count', doc: ct({ resources: { memory: 'lots' } }), want: { path: 'spec.resources.memory', rule: 'quantity' } },
  MemoryHuge: { reason: '1e30 is an integer to JSON Schema but no byte count: it used to mean "no limit"', doc: ct({ resources: { memory: 1e30 } }), want: { path: 'spec.resources.memory', rule: 'safe-integer' } },
  MemoryPastSafe: { reason: 'the first integer a double cannot tell from its neighbour', doc: ct({ resources: { memory: 2 ** 53 } }), want: { path: 'spec.resources.memory', rule: 'safe-integer' } },
  MemoryHugeString: { reason: 'a well-formed quantity whose byte count overflows', doc: ct({ resources: { memory: '99999999999Ei' } }), want: { path: 'spec.resources.memory', rule: 'safe-integer' } },
  DiskHugeInList: { reason: 'the same rule inside a list', doc: vm({ disks: [{ name: 'a', size: 1e300 }] }), want: { path: 'spec.disks[0].size', rule: 'safe-integer' } },
  CpuHuge: { reason: 'counts have ranges', doc: ct({ resources: { cpu: 1e30 } }), want: { path: 'spec.resources.cpu', rule: 'maximum' } },
  MemoryAsBytes: { reason: 'a plain byte count is a quantity', doc: ct({ resources: { memory: 268435456 } }), want: 'valid' },
  DriftPolicyReport: { reason: 'Report is a drift policy', doc: ct({ driftPolicy: 'Report' }), want: 'valid' },
  DriftPolicyUnknown: { reason: 'only Correct, Report and Ignore', doc: ct({ driftPolicy: 'Fix' }), want: { path: 'spec.driftPolicy', rule: 'enum' } },
  DependsOnValid: { reason: 'a kind and a name, namespace optional', doc: ct({ dependsOn: [{ kind: 'VirtualMachine', name: 'db' }, { kind: 'Container', name: 'web', namespace: 'prod' }] }), want: 'valid' },
  DependsOnUnknownKind: { reason: 'only the kinds hyperlet serves', doc: ct({ dependsOn: [{ kind: 'Pod', name: 'db' }] }), want: { path: 'spec.dependsOn[0].kind', rule: 'enum' } },
  DependsOnNoName: { reason: 'a reference needs a name', doc: ct({ dependsOn: [{ kind: 'Container' }] }), want: { path: 'spec.dependsOn[0].name', rule: 'required' } },
  DependsOnBadName: { reason: 'names are DNS labels', doc: ct({ dependsOn: [{ kind: 'Container', name: 'DB' }] }), want: { path: 'spec.dependsOn[0].name', rule: 'pattern' } },
  DependsOnExtraField: { reason: 'references are closed', doc: ct({ dependsOn: [{ kind: 'Container', name: 'db', uid: 'x' }] }), want: { path: 'spec.dependsOn[0].uid', rule: 'unknown-field' } },
  DependsOnItself: { reason: 'a self-dependency can never be satisfied', doc: ct({ dependsOn: [{ kind: 'Container', name: 'web' }] }), want: { path: 'spec.dependsOn[0]', rule: 'self-reference' } },
  DependsOnTwice: { reason: 'each target once', doc: ct({ dependsOn: [{ kind: 'Container', name: 'db' }, { kind: 'Container', name: 'db', namespace: 'default' }] }), want: { path: 'spec.dependsOn[1]', rule: 'unique' } },
  DiskTooSmall: { reason: 'disk from 100Mi', doc: ct({ resources: { disk: '99Mi' } }), want: { path: 'spec.resources.disk', rule: 'x-quantity-range' } },
  DiskTooBig: { reason: 'disk up to 10Ti', doc: ct({ resources: { disk: '11Ti' } }), want: { path: 'spec.resources.disk', rule: 'x-quantity-range' } },
  NetworkBadType: { reason: 'veth or none', doc: ct({ network: [{ type: 'macvlan' }] }), want: { path: 'spec.network[0].type', rule: 'enum' } },
  NetworkBadBridge: { reason: 'a bridge is an interface name', doc: ct({ network: [{ bridge: 'br0\nlxc.x=1' }] }), want: { path: 'spec.network[0].bridge', rule: 'pattern' } },
  NetworkBadMac: { reason: 'MAC format', doc: ct({ network: [{ hwaddr: 'zz:00:00:00:00:00' }] }), want: { path: 'spec.network[0].hwaddr', rule: 'pattern' } },
  NetworkNoneWithBridge: { reason: 'none takes no link', doc: ct({ network: [{ type: 'none', bridge: 'br0' }] }), want: { path: 'spec.network[0]', rule: 'none-has-no-link' } },
  NetworkStaticIpv4: {
    reason: 'an address with prefix and a gateway in its subnet', doc: ct({ network: [{ bridge: 'br0', ipv4: '10.0.3.10/24', gateway: '10.0.3.1' }] }), want: 'valid',
  },
  NetworkIpv4NoPrefix: { reason: 'CIDR: the prefix is required', doc: ct({ network: [{ ipv4: '10.0.3.10' }] }), want: { path: 'spec.network[0].ipv4', rule: 'pattern' } },
  NetworkIpv4Octet: { reason: 'octets are 0-255', doc: ct({ network: [{ ipv4: '10.0.300.10/24' }] }), want: { path: 'spec.network[0].ipv4', rule: 'ipv4-cidr' } },
  NetworkIpv4Prefix33: { reason: 'prefix at most 32', doc: ct({ network: [{ ipv4: '10.0.3.10/33' }] }), want: { path: 'spec.network[0].ipv4', rule: 'ipv4-cidr' } },
  NetworkIpv4Slash31: { reason: 'a host needs a subnet of /30 or larger', doc: ct({ network: [{ ipv4: '10.0.3.10/31' }] }), want: { path: 'spec.network[0].ipv4', rule: 'ipv4-cidr' } },
  NetworkIpv4NetworkAddress: { reason: 'the network address is no host', doc: ct({ network: [{ ipv4: '10.0.3.0/24' }] }), want: { path: 'spec.network[0].ipv4', rule: 'ipv4-cidr' } },
  NetworkIpv4Broadcast: { reason: 'the broadcast address is no host', doc: ct({ network: [{ ipv4: '10.0.3.255/24' }] }), want: { path: 'spec.network[0].ipv4', rule: 'ipv4-cidr' } },
  NetworkIpv4Loopback: { reason: '127/8 is no NIC address', doc: ct({ network: [{ ipv4: '127.0.0.2/8' }] }), want: { path: 'spec.network[0].ipv4', rule: 'ipv4-cidr' } },
  NetworkIpv4Twice: {
    reason: 'two NICs, one address', doc: ct({ network: [{ ipv4: '10.0.3.10/24' }, { ipv4: '10.0.3.10/24' }] }), want: { path: 'spec.network[1].ipv4', rule: 'unique' },
  },
  NetworkGatewayNoIpv4: { reason: 'a gateway needs an address', doc: ct({ network: [{ gateway: '10.0.3.1' }] }), want: { path: 'spec.network[0].gateway', rule: 'needs-ipv4' } },
  NetworkGatewayOutside: {
    reason: 'the gateway is inside the subnet', doc: ct({ network: [{ ipv4: '10.0.3.10/24', gateway: '10.0.4.1' }] }), want: { path: 'spec.network[0].gateway', rule: 'gateway' },
  },
  NetworkGatewayIsSelf: {
    reason: 'the gateway is another host', doc: ct({ network: [{ ipv4: '10.0.3.10/24', gateway: '10.0.3.10' }] }), want: { path: 'spec.network[0].gateway', rule: 'gateway' },
  },
  NetworkTwoGateways: {
    reason: 'one default route',
    doc: ct({ network: [{ ipv4: '10.0.3.10/24', gateway: '10.0.3.1' }, { ipv4: '10.0.4.10/24', gateway: '10.0.4.1' }] }),
    want: { path: 'spec.network[1].gateway', rule: 'one-default-route' },
  },
  NetworkNoneWithIpv4: { reason: 'none has no address', doc: ct({ network: [{ type: 'none', ipv4: '10.0.3.10/24' }] }), want: { path: 'spec.network[0]', rule: 'none-has-no-link' } },
  EnvBadKey: { reason: 'environment keys are identifiers', doc: ct({ environment: { '1A': 'x' } }), want: { path: 'spec.environment.1A', rule: 'key-pattern' } },
  EnvKeyWithEquals: { reason: 'a key cannot smuggle a value', doc: ct({ environment: { 'A=B': 'x' } }), want: { path: 'spec.environment.A=B', rule: 'key-pattern' } },
  EnvValueNewline: { reason: 'values without new lines', doc: ct({ environment: { A: 'x\nlxc.hook.pre-start=/bin/sh' } }), want: { path: 'spec.environment.A', rule: 'pattern' } },
  EnvValueNul: { reason: 'values without NUL', doc: ct({ environment: { A: 'x\u0000y' } }), want: { path: 'spec.environment.A', rule: 'pattern' } },
  EnvValueNotString: { reason: 'values are strings', doc: ct({ environment: { A: 1 } }), want: { path: 'spec.environment.A', rule: 'type' } },
  EnvFromSecret: { reason: 'a Secret key of the namespace', doc: ct({ environmentFrom: { A: { secretKeyRef: { name: 'db-creds', key: 'pass_word.1' } } } }), want: 'valid' },
  EnvFromFile: { reason: 'a file of the secrets directory', doc: ct({ environment: { A: 'x' }, environmentFrom: { B: { file: 'db/password' } } }), want: 'valid' },
  EnvFromNothing: { reason: 'a reference names one source', doc: ct({ environmentFrom: { A: {} } }), want: { path: 'spec.environmentFrom.A', rule: 'minProperties' } },
  EnvFromBoth: {
    reason: 'not a Secret and a file at once',
    doc: ct({ environmentFrom: { A: { file: 'x', secretKeyRef: { name: 'a', key: 'b' } } } }), want: { path: 'spec.environmentFrom.A', rule: 'maxProperties' },
  },
  EnvFromAlsoLiteral: { reason: 'one variable, one value', doc: ct({ environment: { A: 'x' }, environmentFrom: { A: { file: 'a' } } }), want: { path: 'spec.environmentFrom.A', rule: 'unique' } },
  EnvFromBadName: { reason: 'names are identifiers here too', doc: ct({ environmentFrom: { 'A=B': { file: 'a' } } }), want: { path: 'spec.environmentFrom.A=B', rule: 'key-pattern' } },
  EnvFromSecretNoKey: { reason: 'a Secret reference names a key', doc: ct({ environmentFrom: { A: { secretKeyRef: { name: 'a' } } } }), want: { path: 'spec.environmentFrom.A.secretKeyRef.key', rule: 'required' } },
  EnvFromSecretBadKey: { reason: 'Secret keys are [-._a-zA-Z0-9]', doc: ct({ environmentFrom: { A: { secretKeyRef: { name: 'a', key: 'a/b' } } } }), want: { path: 'spec.environmentFrom.A.secretKeyRef.key', rule: 'pattern' } },
  EnvFromFileNewline: { reason: 'a path without control characters', doc: ct({ environmentFrom: { A: { file: 'a\nb' } } }), want: { path: 'spec.environmentFrom.A.file', rule: 'pattern' } },
  EnvFromUnknown: { reason: 'only secretKeyRef and file', doc: ct({ environmentFrom: { A: { configMapKeyRef: { name: 'a', key: 'b' } } } }), want: { path: 'spec.environmentFrom.A.configMapKeyRef', rule: 'unknown-field' } },
  AutostartNotBool: { reason: 'a boolean', doc: ct({ autostart: 'yes' }), want: { path: 'spec.autostart', rule: 'type' } },
  NodeNameBad: { reason: 'a DNS subdomain', doc: ct({ nodeName: 'Node_1' }), want: { path: 'spec.nodeName', rule: 'pattern' } },
  UpdatePolicyBad: { reason: 'Live, Restart or Recreate', doc: ct({ updatePolicy: 'Never' }), want: { path: 'spec.updatePolicy', rule: 'enum' } },
  VmBadState: { reason: 'VM states', doc: vm({ state: 'Frozen' }), want: { path: 'spec.state', rule: 'enum' } },
  VmBadHypervisor: { reason: 'kvm or qemu', doc: vm({ hypervisor: 'xen' }), want: { path: 'spec.hypervisor', rule: 'enum' } },
  VmCpuTooMany: { reason: 'cpu 1–128', doc: vm({ resources: { cpu: 200 } }), want: { path: 'spec.resources.cpu', rule: 'maximum' } },
  VmMemoryTooSmall: { reason: 'memory from 64Mi', doc: vm({ resources: { memory: '32Mi' } }), want: { path: 'spec.resources.memory', rule: 'x-quantity-range' } },
  VmMaxCpuBelowCpu: { reason: 'a ceiling below the value', doc: vm({ resources: { cpu: 4, maxCpu: 2 } }), want: { path: 'spec.resources.maxCpu', rule: 'minimum' } },
  VmMaxMemoryBelowMemory: { reason: 'a ceiling below the value', doc: vm({ resources: { memory: '1Gi', maxMemory: '512Mi' } }), want: { path: 'spec.resources.maxMemory', rule: 'minimum' } },
  VmBootKernelAndDisk: { reason: 'one boot method', doc: vm({ boot: { kernel: '/k', disk: 'root' }, disks: [{ name: 'root', size: '1Gi' }] }), want: { path: 'spec.boot', rule: 'one-of' } },
  VmBootCmdlineWithoutKernel: { reason: 'cmdline needs a kernel', doc: vm({ boot: { disk: 'root', cmdline: 'x' }, disks: [{ name: 'root', size: '1Gi' }] }), want: { path: 'spec.boot', rule: 'kernel-only' } },
  VmBootUnknownDisk: { reason: 'boot.disk names a disk', doc: vm({ boot: { disk: 'nope' } }), want: { path: 'spec.boot.disk', rule: 'reference' } },
  VmCmdlineNewline: { reason: 'cmdline without new lines', doc: vm({ boot: { kernel: '/k', cmdline: 'a\nb' } }), want: { path: 'spec.boot.cmdline', rule: 'pattern' } },
  VmCmdlineXmlChars: { reason: 'XML special characters are fine: they are escaped', doc: vm({ boot: { kernel: '/k', cmdline: 'a<b>&c]]>"\'' } }), want: 'valid' },
  VmKernelRelative: { reason: 'absolute paths', doc: vm({ boot: { kernel: 'vmlinuz' } }), want: { path: 'spec.boot.kernel', rule: 'pattern' } },
  VmDiskDuplicate: { reason: 'disk names unique', doc: vm({ disks: [{ name: 'a', size: '1Gi' }, { name: 'a', size: '1Gi' }] }), want: { path: 'spec.disks[1].name', rule: 'unique' } },
  VmDiskNoSize: { reason: 'a disk needs a size or an image', doc: vm({ disks: [{ name: 'a' }] }), want: { path: 'spec.disks[0]', rule: 'size-or-image' } },
  VmDiskTooSmall: { reason: 'disk from 100Mi', doc: vm({ disks: [{ name: 'a', size: '10Mi' }] }), want: { path: 'spec.disks[0].size', rule: 'x-quantity-range' } },
  VmDiskBadBus: { reason: 'known buses', doc: vm({ disks: [{ name: 'a', size: '1Gi', bus: 'usb' }] }), want: { path: 'spec.disks[0].bus', rule: 'enum' } },
  VmDiskBadPool: { reason: 'pools are DNS labels', doc: vm({ disks: [{ name: 'a', size: '1Gi', pool: '../etc' }] }), want: { path: 'spec.disks[0].pool', rule: 'pattern' } },
  VmNicBoth: { reason: 'network or bridge', doc: vm({ networks: [{ network: 'default', bridge: 'br0' }] }), want: { path: 'spec.networks[0]', rule: 'one-of' } },
  VmNicNeither: { reason: 'network or bridge', doc: vm({ networks: [{ model: 'virtio' }] }), want: { path: 'spec.networks[0]', rule: 'one-of' } },
  VmNicBadModel: { reason: 'known models', doc: vm({ networks: [{ network: 'default', model: 'ne2k' }] }), want: { path: 'spec.networks[0].model', rule: 'enum' } },
  VmGracefulNegative: { reason: '0–3600 s', doc: vm({ gracefulStopSeconds: -1 }), want: { path: 'spec.gracefulStopSeconds', rule: 'minimum' } },
  LabelValueBad: { reason: 'label values follow Kubernetes', doc: ct({}, { name: 'web', labels: { app: 'has space' } }), want: { path: 'metadata.labels.app', rule: 'pattern' } },
};

describe('validateObject', () => {
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const r = validateObject(tc.doc);
      if (tc.want === 'valid') {
        expect(r.ok, `${tc.reason}: ${JSON.stringify(r.ok ? '' : r.issues)}`).to.equal(true);
        return;
      }
      expect(r.ok, tc.reason).to.equal(false);
      if (r.ok) return;
      expect(r.issues.map((i) => ({ path: i.path, rule: i.rule })), tc.reason).to.deep.include(tc.want);
    });
  }

  it('applies defaults to a copy and leaves the input alone', () => {
    const doc = ct({});
    const r = validateObject(doc);
    expect(r.ok).to.equal(true);
    if (!r.ok) return;
    expect(r.object.metadata.namespace).to.equal('default');
    expect(r.object.spec).to.include({ state: 'Running', updatePolicy: 'Live', deletionPolicy: 'Delete', autostart: false });
    expect(doc.metadata).to.deep.equal({ name: 'web' });
  });

  it('reports every problem of a document, not only the first', () => {
    const r = validateObject(ct({ state: 'Nope', resources: { cpu: 0 } }, { name: 'BAD' }));
    expect(r.ok).to.equal(false);
    if (!r.ok) expect(r.issues.map((i) => i.path)).to.include.members(['spec.state', 'spec.resources.cpu', 'metadata.name']);
  });
});

describe('quantities and host names', () => {
  const q: Record<string, [string | number, number | undefined]> = {
    Mi: ['512Mi', 512 * 2 ** 20], Gi: ['2Gi', 2 * 2 ** 30], Decimal: ['1G', 1e9], Fraction: ['1.5Ki', 1536],
    Bytes: [1024, 1024], Garbage: ['12 Mi', undefined], Negative: [-1, undefined], Empty: ['', undefined],
    Huge: [1e30, undefined], HugeString: ['99999999999Ei', undefined], LargestSafe: [Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  };
  for (const [name, [input, want]] of Object.entries(q)) it(`parses ${name}`, () => expect(parseQuantity(input)).to.equal(want));
  it('names instances NAME in default and NAMESPACE.NAME elsewhere', () => {
    expect(hostNameFor('default', 'web')).to.equal('web');
    expect(hostNameFor('prod', 'web')).to.equal('prod.web');
  });
});
