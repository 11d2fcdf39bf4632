/**
 * `make bench`: runs every benchmark and prints its figures. Speed targets live here, never in
 * tests. `BENCH=name,name` picks some.
 */
import { gitBench } from './git-bench.js';
import { queueBench } from './queue-bench.js';
import { kubeBench } from './kube-bench.js';
import { reconcileBench } from './reconcile-bench.js';
import { libvirtBench } from './libvirt-bench.js';
import { lxcBench } from './lxc-bench.js';

export const BENCHES: Record<string, () => Promise<Record<string, number | string>>> = {
  queue: queueBench,
  reconcile: () => reconcileBench(),
  libvirt: libvirtBench,
  lxc: () => lxcBench(),
  kube: kubeBench,
  git: () => gitBench(),
};

const only = process.env.BENCH?.split(',').filter((s) => s !== '');
for (const [name, bench] of Object.entries(BENCHES)) {
  if (only !== undefined && !only.includes(name)) continue;
  const figures = await bench();
  process.stdout.write(`${name}: ${JSON.stringify(figures)}\n`);
}
