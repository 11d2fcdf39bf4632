/**
 * The generated CRDs against a real kube-apiserver: they are accepted and Established, `kubectl
 * get ct|vm|hyperlet` shows the printer columns, and the API server refuses at `kubectl apply`
 * exactly what hyperlet's own validator refuses, with a message naming the field and the rule.
 */
import { expect } from 'chai';
import yaml from 'js-yaml';
import { validateObject } from '../../src/api/v1alpha1/validate.js';
import { KubeTestEnv } from './support/kube-testenv.js';

const NS = `crd-e2e-${process.pid}`;

const container = (name: string, spec: Record<string, unknown>) => ({ apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name, namespace: NS }, spec });
const vm = (name: string, spec: Record<string, unknown>) => ({ apiVersion: 'hyperlet.io/v1alpha1', kind: 'VirtualMachine', metadata: { name, namespace: NS }, spec });

interface Case {
  readonly reason: string;
  readonly doc: Record<string, unknown>;
  /** undefined: valid; otherwise fragments the API server's refusal must contain. */
  readonly refused?: readonly string[];
  /** The one documented difference: the CRD cannot say this (CEL cost), the agent's validator does. */
  readonly agentOnly?: boolean;
}

const cases: Record<string, Case> = {
  MinimalContainer: { reason: 'template alone is enough; defaults fill the rest', doc: container('ok-min', { template: 'busybox' }) },
  FullContainer: {
    reason: 'every field set within its limits',
    doc: container('ok-full', {
      template: 'busybox', state: 'Stopped', nodeName: 'node-a', autostart: true, gracefulStopSeconds: 5,
      resources: { cpu: 2, memory: '256Mi', disk: 1073741824 }, network: [{ type: 'veth', bridge: 'br0', hwaddr: '52:54:00:12:34:56' }, { type: 'none' }],
      environment: { FOO: 'bar', _X1: 'tab\tok' }, updatePolicy: 'Restart', deletionPolicy: 'Orphan',
    }),
  },
  FractionalMinimum: { reason: 'validate.ts rounds a fraction of a byte up, and so does the CEL rule', doc: container('ok-frac', { template: 'busybox', resources: { memory: '67108863.5' } }) },
  TemplateAndRootfs: { reason: 'exactly one of template and rootfs', doc: container('bad-both', { template: 'busybox', rootfs: '/srv/r' }), refused: ['spec', 'exactly one of template, rootfs and image must be set'] },
  NoSource: { reason: 'exactly one of template and rootfs', doc: container('bad-none', {}), refused: ['exactly one of template, rootfs and image must be set'] },
  ImageContainer: {
    reason: 'an image by URL with its digest instead of a template',
    doc: container('ok-image', { image: { url: 'https://images.example/rootfs.tar.xz', sha256: 'a'.repeat(64) } }),
  },
  ImageAndTemplate: {
    reason: 'exactly one of template, rootfs and image',
    doc: container('bad-image-both', { template: 'busybox', image: { url: 'file:///var/cache/hyperlet/images/r.tar' } }),
    refused: ['exactly one of template, rootfs and image must be set'],
  },
  ImageUrlCredentials: {
    reason: 'no credentials in an image URL',
    doc: container('bad-image-cred', { image: { url: 'https://u:p@images.example/r.tar' } }), refused: ['spec.image.url', 'should match'],
  },
  TooManyCpus: { reason: 'cpu 1–128', doc: container('bad-cpu', { template: 'busybox', resources: { cpu: 129 } }), refused: ['spec.resources.cpu', 'less than or equal to 128'] },
  MemoryTooSmall: { reason: 'memory 64Mi–1Ti as a string', doc: container('bad-mem', { template: 'busybox', resources: { memory: '1Ki' } }), refused: ['spec.resources.memory', 'must be between 64Mi and 1Ti'] },
  MemoryBytesTooLarge: { reason: 'memory 64Mi–1Ti as a byte count', doc: container('bad-mem2', { template: 'busybox', resources: { memory: 2 * 2 ** 40 } }), refused: ['spec.resources.memory', 'must be between 64Mi and 1Ti'] },
  DiskTooLarge: { reason: 'disk 100Mi–10Ti', doc: container('bad-disk', { template: 'busybox', resources: { disk: '11Ti' } }), refused: ['spec.resources.disk', 'must be between 100Mi and 10Ti'] },
  NotAQuantity: { reason: 'quantities follow the Kubernetes syntax', doc: container('bad-q', { template: 'busybox', resources: { memory: '1GB' } }), refused: ['spec.resources.memory', 'should match'] },
  MemoryHugeNumber: { reason: '1e30 is no byte count (it used to mean no limit at all)', doc: container('bad-huge', { template: 'busybox', resources: { memory: 1e30 } }), refused: ['spec.resources.memory'] },
  MemoryHugeString: { reason: 'a quantity past 2^53 - 1 bytes', doc: container('bad-huge-s', { template: 'busybox', resources: { memory: '99999999999Ei' } }), refused: ['spec.resources.memory'] },
  CpuHuge: { reason: 'counts are bounded', doc: container('bad-cpu-huge', { template: 'busybox', resources: { cpu: 1e30 } }), refused: ['spec.resources.cpu'] },
  BadEnvKey: { reason: 'environment keys are shell identifiers', doc: container('bad-env', { template: 'busybox', environment: { '1X': 'y' } }), refused: ['spec.environment', 'keys must match'] },
  NewLineInEnv: {
    reason: 'no value may carry a new line into a config file',
    doc: container('bad-nl', { template: 'busybox', environment: { X: 'a\nlxc.hook=evil' } }), refused: ['spec.environment.X', 'should match'],
  },
  EnvFromSecret: {
    reason: 'a value may come from a Secret of the namespace',
    doc: container('ok-secret', { template: 'busybox', environment: { A: 'plain' }, environmentFrom: { B: { secretKeyRef: { name: 'db', key: 'pass.word' } } } }),
  },
  EnvFromFile: { reason: 'the schema allows file references (the kube source refuses them when reconciling)', doc: container('ok-file', { template: 'busybox', environmentFrom: { B: { file: 'db' } } }) },
  EnvFromNothing: { reason: 'a reference names exactly one source', doc: container('bad-from', { template: 'busybox', environmentFrom: { B: {} } }), refused: ['spec.environmentFrom.B', 'should have at least 1 properties'] },
  EnvFromTwo: {
    reason: 'not both a Secret and a file',
    doc: container('bad-from2', { template: 'busybox', environmentFrom: { B: { file: 'x', secretKeyRef: { name: 'a', key: 'b' } } } }), refused: ['spec.environmentFrom.B', 'must have at most 1 items'],
  },
  EnvFromAlsoLiteral: {
    reason: 'one variable, one value',
    doc: container('bad-from3', { template: 'busybox', environment: { B: 'x' }, environmentFrom: { B: { file: 'x' } } }), refused: ['spec.environmentFrom', 'must not also be in environment'],
  },
  EnvFromBadName: { reason: 'names are identifiers', doc: container('bad-from4', { template: 'busybox', environmentFrom: { '1B': { file: 'x' } } }), refused: ['spec.environmentFrom', 'keys must match'] },
  ControlCharInPath: { reason: 'paths exclude control characters (RE2 form of the pattern)', doc: container('bad-path', { rootfs: '/srv/\u0001' }), refused: ['spec.rootfs', 'should match'] },
  NoneWithBridge: { reason: 'type none takes no bridge', doc: container('bad-net', { template: 'busybox', network: [{ type: 'none', bridge: 'br0' }] }), refused: ['spec.network[0]', 'type none takes no bridge or hwaddr'] },
  UnknownField: { reason: 'unknown fields are refused (kubectl strict field validation)', doc: container('bad-field', { template: 'busybox', cpus: 2 }), refused: ['unknown field "spec.cpus"'] },
  BadState: { reason: 'state is an enum', doc: container('bad-state', { template: 'busybox', state: 'Paused' }), refused: ['spec.state', 'Unsupported value'] },
  UppercaseName: { reason: 'names are DNS-1123 labels (they name the instance)', doc: container('Bad-Name', { template: 'busybox' }), refused: ['metadata.name'] },
  DottedName: { reason: 'no dots: NAMESPACE.NAME must be unambiguous on the host', doc: container('a.b', { template: 'busybox' }), refused: ['metadata.name', 'should match'] },
  MinimalVm: { reason: 'resources default to 1 CPU and 512Mi', doc: vm('ok-vm', {}) },
  FullVm: {
    reason: 'direct kernel boot, two disks, a bridge NIC',
    doc: vm('ok-vm-full', {
      hypervisor: 'qemu', resources: { cpu: 2, maxCpu: 4, memory: '1Gi', maxMemory: '2Gi' },
      boot: { kernel: '/boot/vmlinuz', initrd: '/boot/initrd', cmdline: 'console=ttyS0' },
      disks: [{ name: 'root', size: '10Gi' }, { name: 'data', image: '/srv/base.qcow2', bus: 'sata' }], networks: [{ bridge: 'br0', model: 'e1000' }],
    }),
  },
  DuplicateDisks: { reason: 'disk names are unique', doc: vm('bad-dup', { disks: [{ name: 'a', size: '1Gi' }, { name: 'a', size: '1Gi' }] }), refused: ['spec.disks', 'disk names must be unique'] },
  DiskWithoutSizeOrImage: { reason: 'a disk needs a size or an image', doc: vm('bad-disk2', { disks: [{ name: 'a' }] }), refused: ['spec.disks[0]', 'needs a size, an image, or both'] },
  KernelAndDisk: { reason: 'boot from one of kernel and disk', doc: vm('bad-boot', { boot: { kernel: '/k', disk: 'a' }, disks: [{ name: 'a', size: '1Gi' }] }), refused: ['spec.boot', 'exactly one of kernel and disk must be set'] },
  InitrdWithoutKernel: { reason: 'initrd needs kernel', doc: vm('bad-initrd', { boot: { disk: 'a', initrd: '/i' }, disks: [{ name: 'a', size: '1Gi' }] }), refused: ['spec.boot', 'initrd and cmdline need kernel'] },
  BootDiskMissing: { reason: 'boot.disk names a disk', doc: vm('bad-ref', { boot: { disk: 'b' }, disks: [{ name: 'a', size: '1Gi' }] }), refused: ['spec.boot.disk', 'boot.disk must name a disk in spec.disks'] },
  NetworkAndBridge: { reason: 'one of network and bridge', doc: vm('bad-nic', { networks: [{ network: 'default', bridge: 'br0' }] }), refused: ['spec.networks[0]', 'exactly one of network and bridge must be set'] },
  MaxCpuBelowCpu: { reason: 'maxCpu ≥ cpu', doc: vm('bad-maxcpu', { resources: { cpu: 4, maxCpu: 2 } }), refused: ['spec.resources.maxCpu', 'maxCpu must be at least cpu'] },
  MaxMemoryBelowMemory: { reason: 'maxMemory ≥ memory, compared as quantities', doc: vm('bad-maxmem', { resources: { memory: '1Gi', maxMemory: '1000Mi' } }), refused: ['spec.resources.maxMemory', 'maxMemory must be at least memory'] },
  DiskSizeOutOfRange: {
    reason: 'in an array the CRD keeps the pattern only (CEL cost budget); the agent refuses it and reports a problem',
    doc: vm('agent-only', { disks: [{ name: 'a', size: '1Mi' }] }), agentOnly: true,
  },
};

describe('kube CRDs against a real kube-apiserver', function () {
  this.timeout(70 * 60_000); // a fresh machine builds kube-apiserver first
  let env: KubeTestEnv;

  before(async () => {
    env = await KubeTestEnv.start();
    await env.installHyperlet();
    await env.kubectlOk(['create', 'namespace', NS]);
  });
  after(async () => {
    if (env !== undefined) {
      await env.kubectl(['delete', 'containers,virtualmachines', '--all', '-n', NS, '--wait=false']);
      await env.stop();
    }
  });

  it('are Established and served with their short names and category', async () => {
    for (const crd of ['containers.hyperlet.io', 'virtualmachines.hyperlet.io']) {
      const out = await env.kubectlOk(['get', 'crd', crd, '-o', 'jsonpath={.status.conditions[?(@.type=="Established")].status}']);
      expect(out, crd).to.equal('True');
    }
    const resources = await env.kubectlOk(['api-resources', '--api-group=hyperlet.io', '-o', 'wide']);
    expect(resources).to.match(/containers\s+ct\s+hyperlet\.io\/v1alpha1\s+true\s+Container/);
    expect(resources).to.match(/virtualmachines\s+vm,vms\s+hyperlet\.io\/v1alpha1\s+true\s+VirtualMachine/);
    expect(resources).to.include('hyperlet');
  });

  for (const [name, tc] of Object.entries(cases)) {
    it(`${tc.agentOnly === true ? 'leaves to the agent' : tc.refused === undefined ? 'accepts' : 'refuses'} ${name}, as validateObject does`, async () => {
      const agent = validateObject(tc.doc);
      const r = await env.kubectl(['apply', '--dry-run=server', '-f', '-'], { input: yaml.dump(tc.doc) });
      if (tc.agentOnly === true) {
        expect(r.code, `${tc.reason}: ${r.stderr}`).to.equal(0);
        expect(agent.ok, tc.reason).to.equal(false);
        return;
      }
      expect(agent.ok, `${tc.reason}: validateObject ${JSON.stringify(agent)}`).to.equal(tc.refused === undefined);
      if (tc.refused === undefined) {
        expect(r.code, `${tc.reason}: ${r.stderr}`).to.equal(0);
      } else {
        expect(r.code, `${tc.reason}: kubectl accepted it`).not.to.equal(0);
        for (const fragment of tc.refused) expect(r.stderr, tc.reason).to.include(fragment);
      }
    });
  }

  it('kubectl get shows Phase, Node, Placed, CPU, Memory and Age, and the defaults the server applied', async () => {
    const doc = container('columns', { template: 'busybox', nodeName: 'node-a', resources: { cpu: 2, memory: '256Mi' } });
    await env.kubectlOk(['apply', '-f', '-'], { input: yaml.dump(doc) });
    await env.kubectlOk(['patch', 'ct', 'columns', '-n', NS, '--subresource=status', '--type=merge', '-p', '{"status":{"phase":"Running"}}']);
    const table = await env.kubectlOk(['get', 'ct', '-n', NS, 'columns']);
    const [header, row] = table.trim().split('\n');
    expect(header!.split(/\s+/)).to.deep.equal(['NAME', 'PHASE', 'NODE', 'PLACED', 'CPU', 'MEMORY', 'AGE']);
    // PLACED (status.placement.nodeName) is empty for a hand-placed object, so the row's fields close up.
    expect(row!.split(/\s+/).slice(0, 5)).to.deep.equal(['columns', 'Running', 'node-a', '2', '256Mi']);
    const spec = JSON.parse(await env.kubectlOk(['get', 'hyperlet', '-n', NS, '-o', 'json'])) as { items: { spec: Record<string, unknown> }[] };
    expect(spec.items[0]!.spec).to.deep.include({ state: 'Running', updatePolicy: 'Live', deletionPolicy: 'Delete', autostart: false, gracefulStopSeconds: 30 });
    await env.kubectlOk(['delete', 'ct', 'columns', '-n', NS]);
  });
});
