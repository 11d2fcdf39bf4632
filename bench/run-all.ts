/**
 * `make bench`: runs every benchmark and prints its figures. Speed targets live here, never in
 * tests. `BENCH=name,name` picks some. Each benchmark runs in a process of its own, so memory
 * figures count only what that benchmark loads and keeps.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

type Bench = () => Promise<Record<string, number | string>>;

export const BENCHES: Record<string, () => Promise<Bench>> = {
  queue: async () => (await import('./queue-bench.js')).queueBench,
  policy: async () => { const { policyBench } = await import('./policy-bench.js'); return () => policyBench(); },
  reconcile: async () => { const { reconcileBench } = await import('./reconcile-bench.js'); return () => reconcileBench(); },
  libvirt: async () => (await import('./libvirt-bench.js')).libvirtBench,
  lxc: async () => { const { lxcBench } = await import('./lxc-bench.js'); return () => lxcBench(); },
  kube: async () => (await import('./kube-bench.js')).kubeBench,
  'kube-lxc': async () => (await import('./kube-lxc-bench.js')).kubeLxcBench,
  git: async () => { const { gitBench } = await import('./git-bench.js'); return () => gitBench(); },
  placement: async () => { const { placementBench } = await import('./placement-bench.js'); return () => Promise.resolve(placementBench()); },
  scheduler: async () => (await import('./scheduler-bench.js')).schedulerBench,
  snapshot: async () => { const { snapshotBench } = await import('./snapshot-bench.js'); return () => snapshotBench(); },
  vmsnapshot: async () => { const { vmSnapshotBench } = await import('./vm-snapshot-bench.js'); return () => vmSnapshotBench(); },
  backup: async () => { const { backupBench } = await import('./backup-bench.js'); return () => backupBench(); },
  image: async () => { const { imageBench } = await import('./image-bench.js'); return () => imageBench(); },
  vmimage: async () => { const { vmImageBench } = await import('./vm-image-bench.js'); return () => vmImageBench(); },
};

const one = process.argv[2];
if (one !== undefined) {
  const load = BENCHES[one];
  if (load === undefined) throw new Error(`unknown benchmark ${one}; known: ${Object.keys(BENCHES).join(', ')}`);
  const figures = await (await load())();
  process.stdout.write(`${one}: ${JSON.stringify(figures)}\n`);
} else {
  const only = process.env.BENCH?.split(',').filter((s) => s !== '');
  for (const name of Object.keys(BENCHES)) {
    if (only !== undefined && !only.includes(name)) continue;
    execFileSync(process.execPath, [fileURLToPath(import.meta.url), name], { stdio: 'inherit' });
  }
}
