/**
 * Host policy admission cost: every object of a host judged among all of them, as one resync
 * does (the reconciler admits each key once per pass). 1,000 objects in 10 namespaces: half
 * containers (a quarter with a declared MAC), half VMs with a NIC (derived MAC) and a kernel in
 * hyperlet's guest cache when it exists (a real realpath and read of the file). Prints admits/s
 * and how many were refused (quotas and MACs must refuse none here).
 */
import { totalmem } from 'node:os';
import { API_VERSION } from '../src/api/v1alpha1/group.js';
import { validateObject } from '../src/api/v1alpha1/validate.js';
import { PolicyGate } from '../src/policy/admission.js';
import { DEFAULT_HOST_POLICY } from '../src/policy/host-policy.js';
import { nodePolicyFs } from '../src/policy/policy-fs.js';
import { type Desired, hostNameOf, specHashOf } from '../src/store/desired.js';
import { objectKey } from '../src/store/object-key.js';

function desired(i: number): Desired {
  const namespace = `ns-${i % 10}`;
  const name = `obj-${i}`;
  const hex = (n: number): string => n.toString(16).padStart(2, '0');
  const network = i % 4 === 0 ? [{ type: 'veth', hwaddr: `02:00:00:00:${hex(i >> 8)}:${hex(i & 255)}` }] : [{ type: 'none' }];
  const spec = i % 2 === 0
    ? { template: 'busybox', resources: { cpu: 1, memory: '128Mi' }, network }
    : { hypervisor: 'qemu', resources: { cpu: 1, memory: '256Mi' }, networks: [{ network: 'default' }], boot: { kernel: '/var/cache/hyperlet/guest/vmlinuz' } };
  const kind = i % 2 === 0 ? 'Container' : 'VirtualMachine';
  const result = validateObject({ apiVersion: API_VERSION, kind, metadata: { name, namespace }, spec });
  if (!result.ok) throw new Error(`bench object invalid: ${JSON.stringify(result.issues)}`);
  const object = result.object;
  return {
    key: objectKey('dir', namespace, object.kind, name), source: 'dir', object, id: `id-${i}`, generation: 1,
    specHash: specHashOf(object.spec), hostName: hostNameOf(object),
  };
}

export async function policyBench(count = 1_000): Promise<Record<string, number | string>> {
  const objects = Array.from({ length: count }, (_, i) => desired(i));
  const gate = new PolicyGate({ policy: DEFAULT_HOST_POLICY, fs: nodePolicyFs, hostMemoryBytes: totalmem() });
  const context = { objects, admittedBefore: () => true };
  let refused = 0;
  const started = process.hrtime.bigint();
  for (const d of objects) if (!(await gate.admit(d, context)).allowed) refused++;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { objects: count, seconds: +seconds.toFixed(3), admitsPerSecond: Math.round(count / seconds), msPerAdmit: +((seconds * 1000) / count).toFixed(3), refused };
}
