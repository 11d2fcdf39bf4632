/**
 * `hyperlet drain NODE` and `hyperlet uncordon NODE`, as kubectl's: drain marks the
 * HypervisorNode unschedulable (spec.unschedulable, a cordon), after which the scheduler places
 * the objects it had placed there elsewhere and their agents move them with their data; objects
 * whose spec.nodeName names the node are listed, never moved (hyperlet never writes spec).
 * uncordon clears the mark. Both are merge patches of the HypervisorNode's spec, nothing else.
 */
import { parseArgs } from 'node:util';
import { CustomObjectsApi, PatchStrategy } from '@kubernetes/client-node';
import { GROUP, KINDS, VERSION, type Kind } from '../api/v1alpha1/group.js';
import { HYPERVISOR_NODE } from '../api/v1alpha1/hypervisor-node.js';
import type { KubeObject } from '../kube/desired-from-kube.js';
import { isNotFound, kubeError, loadKubeConfig, requestOptions } from '../kube/kube-client.js';
import { UsageError } from './usage-error.js';

const HELP = (verb: string): string => `Usage: hyperlet ${verb} NODE [--kubeconfig PATH]

${verb === 'drain'
    ? `Marks HypervisorNode NODE unschedulable: nothing new is placed there, and the objects the scheduler
placed there move to other nodes with their data. Objects whose spec.nodeName is NODE stay; they are
listed so you can edit them.`
    : 'Clears the unschedulable mark hyperlet drain set on HypervisorNode NODE.'}
`;

/** One object on the node and what drain does with it. */
export interface DrainItem { readonly kind: Kind; readonly namespace: string; readonly name: string; readonly moves: boolean }

/** What drain does with each object of `objects` assigned to `node` (pure). */
export function drainPlan(node: string, objects: readonly { kind: Kind; obj: KubeObject }[]): DrainItem[] {
  const items: DrainItem[] = [];
  for (const { kind, obj } of objects) {
    const specNode = (obj.spec as { nodeName?: string } | undefined)?.nodeName;
    const placed = (obj.status as { placement?: { nodeName?: string } } | undefined)?.placement?.nodeName;
    const assigned = specNode ?? placed;
    if (assigned !== node || obj.metadata?.deletionTimestamp !== undefined) continue;
    items.push({ kind, namespace: obj.metadata?.namespace ?? '', name: obj.metadata?.name ?? '', moves: specNode === undefined });
  }
  return items.sort((a, b) => `${a.namespace}/${a.kind}/${a.name}`.localeCompare(`${b.namespace}/${b.kind}/${b.name}`));
}

/** `hyperlet drain` (`cordon` true) or `hyperlet uncordon`: resolves to the exit code. */
export function cordonCommand(cordon: boolean): (args: string[]) => Promise<number> {
  return async (args) => {
    const verb = cordon ? 'drain' : 'uncordon';
    const { values, positionals } = parseArgs({
      args, allowPositionals: true, strict: true, options: { kubeconfig: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    });
    if (values.help === true) {
      process.stdout.write(HELP(verb));
      return 0;
    }
    const node = positionals[0];
    if (node === undefined || positionals.length !== 1) throw new UsageError(`${verb}: expected one NODE (hyperlet ${verb} NODE)`);
    let kubeConfig;
    try {
      kubeConfig = loadKubeConfig(values.kubeconfig);
    } catch (err) {
      throw new UsageError(`--kubeconfig: ${(err as Error).message}`);
    }
    const api = kubeConfig.makeApiClient(CustomObjectsApi);
    try {
      await api.patchClusterCustomObject({
        group: GROUP, version: VERSION, plural: HYPERVISOR_NODE.plural, name: node, body: { spec: { unschedulable: cordon ? true : null } },
      }, requestOptions(undefined, PatchStrategy.MergePatch));
    } catch (err) {
      if (isNotFound(err)) {
        process.stderr.write(`hyperlet ${verb}: no HypervisorNode ${node}\n`);
        return 1;
      }
      throw kubeError(err, `mark HypervisorNode ${node} ${cordon ? 'unschedulable' : 'schedulable'}`);
    }
    process.stdout.write(`hypervisornode/${node} ${cordon ? 'cordoned' : 'uncordoned'}\n`);
    if (!cordon) return 0;
    const objects: { kind: Kind; obj: KubeObject }[] = [];
    for (const kind of Object.keys(KINDS) as Kind[]) {
      try {
        const list = await api.listCustomObjectForAllNamespaces({ group: GROUP, version: VERSION, plural: KINDS[kind].plural }) as { items: KubeObject[] };
        for (const obj of list.items) objects.push({ kind, obj });
      } catch (err) {
        throw kubeError(err, `list ${KINDS[kind].plural}`);
      }
    }
    for (const item of drainPlan(node, objects)) {
      const what = `${KINDS[item.kind].singular}/${item.name} -n ${item.namespace}`;
      process.stdout.write(item.moves
        ? `${what}: moves (placed by the scheduler; it is placed on another node and moved with its data)\n`
        : `${what}: stays (spec.nodeName is ${node}; edit spec.nodeName to move it)\n`);
    }
    return 0;
  };
}
