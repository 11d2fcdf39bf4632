/**
 * Placement: which node each object without a node goes to. Pure and deterministic, so it is
 * table-tested and benchmarked on its own; the scheduler (kube-scheduler.ts) feeds it what it
 * reads from the API server and writes back what it decides.
 *
 * Rules, in the order a node is checked (like kube-scheduler's filters, then one score):
 * - the node is Ready and not cordoned (spec.unschedulable, hyperlet drain);
 * - it runs the object's kind (its HypervisorNode's kinds);
 * - its labels match every key of the object's nodeSelector;
 * - the object's cpu and memory fit in allocatable less what is already used there, counting the
 *   objects this pass has placed before it (in the order given);
 * - of the nodes that pass, the least allocated wins (the mean of the used shares of cpu and
 *   memory, before the object), ties broken by name.
 * An object that fits nowhere gets a message like a Pod's: "0/2 nodes: 1 insufficient memory, 1
 * did not match nodeSelector" (a node counts once for each rule it fails, Ready aside).
 */

/** One node as placement sees it. */
export interface PlacementNode {
  readonly name: string;
  readonly ready: boolean;
  /** Cordoned (hyperlet drain): takes nothing new. */
  readonly unschedulable?: boolean;
  readonly labels: Readonly<Record<string, string>>;
  /** Kinds the node's agent reconciles. */
  readonly kinds: readonly string[];
  readonly allocatable: { readonly cpu: number; readonly memoryBytes: number };
  /** Already used: what the node reports or what the scheduler counts, whichever is more. */
  readonly used: { readonly cpu: number; readonly memoryBytes: number };
}

/** One object to place. */
export interface PlacementRequest {
  /** Identifies the object in the result (e.g. namespace/kind/name). */
  readonly key: string;
  readonly kind: string;
  readonly cpu: number;
  readonly memoryBytes: number;
  readonly nodeSelector?: Readonly<Record<string, string>>;
}

/** The decision for one object. */
export type PlacementResult =
  | { readonly key: string; readonly nodeName: string }
  | { readonly key: string; readonly nodeName?: undefined; readonly message: string };

const REASONS = ['not ready', 'unschedulable', 'does not run the kind', 'did not match nodeSelector', 'insufficient cpu', 'insufficient memory'] as const;
type Reason = (typeof REASONS)[number];

/** Why `node` cannot take `req` given `used`; empty when it can. */
function misfits(node: PlacementNode, used: { cpu: number; memoryBytes: number }, req: PlacementRequest): Reason[] {
  if (!node.ready) return ['not ready'];
  if (node.unschedulable === true) return ['unschedulable'];
  const out: Reason[] = [];
  if (!node.kinds.includes(req.kind)) out.push('does not run the kind');
  for (const [k, v] of Object.entries(req.nodeSelector ?? {})) {
    if (node.labels[k] !== v) {
      out.push('did not match nodeSelector');
      break;
    }
  }
  if (used.cpu + req.cpu > node.allocatable.cpu) out.push('insufficient cpu');
  if (used.memoryBytes + req.memoryBytes > node.allocatable.memoryBytes) out.push('insufficient memory');
  return out;
}

const share = (used: number, total: number): number => (total > 0 ? used / total : used > 0 ? 1 : 0);

/** The "0/N nodes: ..." message for an object no node took. */
function unschedulableMessage(total: number, counts: ReadonlyMap<Reason, number>): string {
  if (total === 0) return '0/0 nodes: no HypervisorNode is registered';
  const parts = REASONS.filter((r) => (counts.get(r) ?? 0) > 0).map((r) => `${counts.get(r) ?? 0} ${r}`);
  return `0/${total} nodes: ${parts.join(', ')}`;
}

/**
 * Places `requests` in order on `nodes`; each placement counts against its node for the requests
 * after it. Returns one result per request, in the same order.
 */
export function placeAll(nodes: readonly PlacementNode[], requests: readonly PlacementRequest[]): PlacementResult[] {
  const sorted = [...nodes].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const used = new Map(sorted.map((n) => [n.name, { cpu: n.used.cpu, memoryBytes: n.used.memoryBytes }]));
  return requests.map((req) => {
    let best: { node: PlacementNode; score: number } | undefined;
    const counts = new Map<Reason, number>();
    for (const node of sorted) {
      const u = used.get(node.name) ?? { cpu: 0, memoryBytes: 0 };
      const why = misfits(node, u, req);
      if (why.length > 0) {
        for (const r of why) counts.set(r, (counts.get(r) ?? 0) + 1);
        continue;
      }
      const score = (share(u.cpu, node.allocatable.cpu) + share(u.memoryBytes, node.allocatable.memoryBytes)) / 2;
      // Strictly less: among equal scores the first by name (the order of `sorted`) stays.
      if (best === undefined || score < best.score) best = { node, score };
    }
    if (best === undefined) return { key: req.key, message: unschedulableMessage(sorted.length, counts) };
    const u = used.get(best.node.name);
    if (u !== undefined) {
      u.cpu += req.cpu;
      u.memoryBytes += req.memoryBytes;
    }
    return { key: req.key, nodeName: best.node.name };
  });
}
