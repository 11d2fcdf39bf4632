/**
 * Placement: 1,000 objects (containers and VMs, some with a nodeSelector) over 50 simulated
 * HypervisorNodes in one pass of the pure placement (src/scheduler/placement.ts), the work the
 * scheduler does per pass besides its API calls. Target (issue 13): all placed below 5 s.
 * Prints the time, how many were placed, and how evenly (objects per node, min and max).
 */
import { type PlacementNode, type PlacementRequest, placeAll } from '../src/scheduler/placement.js';

const GiB = 2 ** 30;

/** Runs the pass `rounds` times and reports the median. */
export function placementBench(objects = 1_000, nodes = 50, rounds = 5): Record<string, number | string> {
  const hvns: PlacementNode[] = Array.from({ length: nodes }, (_, i) => ({
    name: `placement-node-${String(i).padStart(3, '0')}`,
    ready: i % 25 !== 24,
    labels: { zone: `z${i % 3}` },
    kinds: i % 10 === 0 ? ['Container'] : ['Container', 'VirtualMachine'],
    allocatable: { cpu: 64, memoryBytes: 256 * GiB },
    used: { cpu: i % 7, memoryBytes: (i % 5) * GiB },
  }));
  const requests: PlacementRequest[] = Array.from({ length: objects }, (_, i) => ({
    key: `ns/${i % 4 === 0 ? 'VirtualMachine' : 'Container'}/placement-${i}`,
    kind: i % 4 === 0 ? 'VirtualMachine' : 'Container',
    cpu: 1 + (i % 2),
    memoryBytes: (1 + (i % 4)) * GiB,
    ...(i % 5 === 0 ? { nodeSelector: { zone: `z${i % 3}` } } : {}),
  }));
  const times: number[] = [];
  let results = placeAll(hvns, requests);
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    results = placeAll(hvns, requests);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((a, b) => a - b);
  const perNode = new Map<string, number>();
  for (const r of results) if (r.nodeName !== undefined) perNode.set(r.nodeName, (perNode.get(r.nodeName) ?? 0) + 1);
  const counts = [...perNode.values()];
  const medianMs = times[Math.floor(times.length / 2)] ?? 0;
  return {
    objects, nodes, placed: counts.reduce((a, b) => a + b, 0), nodesUsed: perNode.size,
    minPerNode: Math.min(...counts), maxPerNode: Math.max(...counts),
    medianMs: +medianMs.toFixed(2), targetMs: 5_000, shareOfTarget: +(medianMs / 5_000).toFixed(5),
  };
}
