/**
 * The host policy for commands that judge objects without the daemon (`validate --policy`,
 * `diff`): read the file the operator names (or the built-in default), and run loaded objects
 * through the same PolicyGate the reconciler uses, against this host's files and memory.
 */
import { randomUUID } from 'node:crypto';
import { totalmem } from 'node:os';
import { type Admission, PolicyGate } from '../policy/admission.js';
import { DEFAULT_HOST_POLICY, type HostPolicy } from '../policy/host-policy.js';
import { isPolicyFileError, loadPolicyFile, policyProblemLine } from '../policy/policy-loader.js';
import { nodePolicyFs } from '../policy/policy-fs.js';
import type { LoadedObject } from '../sources/manifest-loader.js';
import { type Desired, hostNameOf, specHashOf } from '../store/desired.js';
import { objectKey } from '../store/object-key.js';

/** A policy file that cannot be used: its problem lines, for stderr, and exit code 2. */
export class PolicyOptionError extends Error {
  constructor(readonly lines: readonly string[]) {
    super(lines.join('\n'));
    this.name = 'PolicyOptionError';
  }
}

/** The policy at `path`, or the built-in default when no path was given; throws PolicyOptionError. */
export async function policyOption(path: string | undefined): Promise<HostPolicy> {
  if (path === undefined) return DEFAULT_HOST_POLICY;
  try {
    return await loadPolicyFile(path);
  } catch (err) {
    if (isPolicyFileError(err)) throw new PolicyOptionError(err.problems.map(policyProblemLine));
    throw err;
  }
}

/** What the daemon would make of a loaded object: a Desired of `source` (ids from the state DB when known). */
export function desiredOf(loaded: LoadedObject, known?: { source: string; id: string; generation: number }): Desired {
  const { object, file, document } = loaded;
  const source = known?.source ?? 'dir';
  return {
    key: objectKey(source, object.metadata.namespace, object.kind, object.metadata.name), source, object,
    id: known?.id ?? randomUUID(), generation: known?.generation ?? 1, specHash: specHashOf(object.spec), hostName: hostNameOf(object),
    origin: { file, document },
  };
}

/** Admits each of `objects` among all of them, against this host (real files, real memory). */
export async function admitAll(policy: HostPolicy, objects: readonly Desired[]): Promise<Map<Desired, Admission>> {
  const gate = new PolicyGate({ policy, fs: nodePolicyFs, hostMemoryBytes: totalmem() });
  const verdicts = new Map<Desired, Admission>();
  // As on a fresh host: nobody was admitted before, so shared resources go by key.
  for (const d of objects) verdicts.set(d, await gate.admit(d, { objects, admittedBefore: () => false }));
  return verdicts;
}
