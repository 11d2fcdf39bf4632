/**
 * Reads the facts a per-node agent publishes in its HypervisorNode: cores, memory, the size of
 * the filesystem holding the lxcpath, whether /dev/kvm exists, and hyperlet's version; plus the
 * labels the agent owns on that object.
 */
import { access, readFile, statfs } from 'node:fs/promises';
import { availableParallelism, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';

const PACKAGE_JSON = fileURLToPath(new URL('../../../package.json', import.meta.url));

/** hyperlet's version from package.json ("unknown" when it cannot be read). */
export async function agentVersion(): Promise<string> {
  try {
    const version = (JSON.parse(await readFile(PACKAGE_JSON, 'utf8')) as { version?: unknown }).version;
    return typeof version === 'string' ? version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Cores, memory, the lxcpath's filesystem size (0 when it cannot be read) and /dev/kvm. */
export async function readHostFacts(lxcpath: string, kvmDevice = '/dev/kvm'): Promise<{
  cpus: number; memoryBytes: number; diskBytes: number; kvm: boolean;
}> {
  const disk = await statfs(lxcpath).then((s) => s.blocks * s.bsize, () => 0);
  const kvm = await access(kvmDevice).then(() => true, () => false);
  return { cpus: availableParallelism(), memoryBytes: totalmem(), diskBytes: disk, kvm };
}

/** The labels an agent sets on its HypervisorNode (Kubernetes' well-known names where they exist). */
export function nodeLabels(node: string, kvm: boolean): Record<string, string> {
  const arch = ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x' } as Record<string, string>)[process.arch] ?? process.arch;
  return { 'kubernetes.io/hostname': node.slice(0, 63), 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': arch, 'hyperlet.io/kvm': String(kvm) };
}
