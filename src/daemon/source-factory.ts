/**
 * Turns `--source` arguments into running sources with their backends. The first source of a
 * type gets the plain id ("dir"), later ones a suffix ("dir-2"): ids are part of every key, so
 * they must stay the same from one start to the next.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { DirSource } from '../sources/dir-source.js';
import { GitSource } from '../sources/git-source.js';
import { parseGitLocation } from '../sources/git/git-location.js';
import type { SourceBackend, SourcePolicy } from '../reconcile/backend.js';
import { type ObjectEvents, withObjectEvents } from '../reconcile/object-events.js';
import type { Source } from '../sources/source.js';
import type { StateDb } from '../state/state-db.js';
import { FileEnvironmentResolver } from '../sources/file-environment-resolver.js';
import { DEFAULT_SECRETS_DIR } from '../sources/secret-file.js';
import { StateStatusWriter } from '../status/state-status-writer.js';
import type { Clock } from '../shared/clock.js';
import type { HostFacts } from '../status/hypervisor-node-status.js';
import type { Desired } from '../store/desired.js';

/** One --source flag, parsed. */
export interface SourceSpec {
  readonly type: 'dir' | 'git' | 'kube';
  /** dir: a path; git: URL[#BRANCH][//SUBDIR]; kube: empty. */
  readonly location: string;
}

/** What every source backend is built with: the state DB, logger, node and policy. */
export interface SourceContext {
  readonly db: StateDb;
  readonly logger: Logger;
  readonly kubeconfig?: string;
  readonly namespace?: string;
  readonly node: string;
  /** Whether --node was given (kube: reconcile only objects placed on this node). */
  readonly nodeFilter: boolean;
  /** Directory beside the state DB; git sources keep their clones under it. */
  readonly stateDir?: string;
  /** --prune and --paused, for every source of this run (default: prune, not paused). */
  readonly policy?: SourcePolicy;
  /** Git sources: poll period, bound per git call, the prune limit and confirmed revisions. */
  readonly git?: GitOptions;
  /** Time for the sources' timers and timestamps (default: the system clock). */
  readonly clock?: Clock;
  /** Where status writes and recorded events are published (notifications, the HTTP event stream). */
  readonly events?: ObjectEvents;
  /** dir and git sources: the directory environmentFrom file references read from (--secrets-dir). */
  readonly secretsDir?: string;
  /**
   * kube, --leader-elect: with a node, the agents elect one to do the once-per-cluster work;
   * without, only the elected replica reconciles and `onLeadershipLost` is called if it loses.
   */
  readonly leaderElect?: boolean;
  readonly onLeadershipLost?: () => void;
  /** kube with a node and leaderElect: the elected agent also runs the scheduler (memory of a container declaring none). */
  readonly scheduler?: { readonly containerMemoryBytes: number };
  /** kube with a node: what the agent publishes in its HypervisorNode, and its heartbeat. */
  readonly inventory?: SourceInventory;
  /** kube with a node: move instances with their data (--peer-token-file): this agent's directory and the shared token. */
  readonly handover?: { readonly dir: string; readonly token: string };
}

/** The daemon's side of a per-node agent's HypervisorNode. */
export interface SourceInventory {
  readonly facts: () => Promise<HostFacts>;
  /** The objects of source `sourceId` (placed on this node). */
  readonly objects: (sourceId: string) => readonly Desired[];
  /** Registers what to call when the store changes. */
  readonly onChange: (listener: () => void) => void;
  readonly labels: Readonly<Record<string, string>>;
  readonly heartbeatMs?: number;
}

/** Flags that apply to every git source. */
export interface GitOptions {
  /** --interval (default 30 s). */
  readonly intervalMs?: number;
  /** Bound on each git call (default 60 s). */
  readonly timeoutMs?: number;
  /** --max-prune: share of a source's objects one commit may delete (default 0.5). */
  readonly maxPruneShare?: number;
  /** --confirm REVISION (repeatable): apply these despite a rewrite or the prune limit. */
  readonly confirm?: readonly string[];
}

/** Parses `dir:PATH`, `git:URL` or `kube`; throws a usage error naming the rule. */
export function parseSourceSpec(arg: string): SourceSpec {
  if (arg === 'kube') return { type: 'kube', location: '' };
  const colon = arg.indexOf(':');
  const type = colon < 0 ? '' : arg.slice(0, colon);
  const location = arg.slice(colon + 1);
  if (type === 'git' && location !== '') {
    parseGitLocation(location); // throws naming the broken part
    return { type, location };
  }
  if (type === 'dir' && location !== '') return { type, location };
  throw new Error(`cannot use --source ${JSON.stringify(arg)}: expected dir:PATH, git:URL[#BRANCH][//SUBDIR] or kube`);
}

/** Makes one backend per spec, with stable ids. */
export function createBackends(specs: readonly SourceSpec[], ctx: SourceContext): Promise<SourceBackend<Source>[]> {
  const seen = new Map<string, number>();
  return Promise.all(specs.map((spec) => {
    const n = (seen.get(spec.type) ?? 0) + 1;
    seen.set(spec.type, n);
    const id = n === 1 ? spec.type : `${spec.type}-${n}`;
    const factory = SOURCE_FACTORIES[spec.type];
    if (factory === undefined) throw new Error(`cannot use source type ${spec.type}: it is not built into this hyperlet`);
    return Promise.resolve(factory(id, spec, ctx)).then((backend) => {
      if (ctx.events === undefined) return backend;
      // The state DB queues writes behind: publish with the write so an outbox row shares its
      // transaction. The API server's writes can fail: publish only what it took.
      return withObjectEvents(backend, ctx.events, spec.type === 'kube' ? 'written' : 'queued');
    });
  }));
}

type SourceFactory = (id: string, spec: SourceSpec, ctx: SourceContext) => SourceBackend<Source> | Promise<SourceBackend<Source>>;

/** Each source type adds its factory here. */
export const SOURCE_FACTORIES: Partial<Record<SourceSpec['type'], SourceFactory>> = {
  dir: (id, spec, ctx) => {
    const log = ctx.logger.child({ source: id });
    const writer = new StateStatusWriter(ctx.db, id, log);
    const source = new DirSource({
      id, path: spec.location, logger: log,
      identify: (key, parts, specHash) => ctx.db.identify(key, parts, specHash),
      fallback: (file) => writer.lastGoodOf(file),
      onProblems: (problems) => ctx.db.setProblems(id, problems),
      clock: ctx.clock,
    });
    return {
      source, statusWriter: writer, recorder: writer, records: writer, environment: new FileEnvironmentResolver(ctx.secretsDir ?? DEFAULT_SECRETS_DIR),
      ...(ctx.policy === undefined ? {} : { policy: ctx.policy }),
    };
  },
  git: (id, spec, ctx) => {
    const log = ctx.logger.child({ source: id });
    const writer = new StateStatusWriter(ctx.db, id, log);
    const git = ctx.git ?? {};
    const source = new GitSource({
      id, location: spec.location, logger: log, db: ctx.db,
      cloneDir: join(ctx.stateDir ?? join(tmpdir(), `hyperlet-${process.pid}`), 'git', id),
      identify: (key, parts, specHash) => ctx.db.identify(key, parts, specHash),
      lastGoodOf: (file) => writer.lastGoodOf(file),
      prune: ctx.policy?.prune ?? true,
      ...(git.intervalMs === undefined ? {} : { intervalMs: git.intervalMs }),
      ...(git.timeoutMs === undefined ? {} : { timeoutMs: git.timeoutMs }),
      ...(git.maxPruneShare === undefined ? {} : { maxPruneShare: git.maxPruneShare }),
      ...(git.confirm === undefined ? {} : { confirm: git.confirm }),
      clock: ctx.clock,
    });
    return {
      source, statusWriter: writer, recorder: writer, records: writer, environment: new FileEnvironmentResolver(ctx.secretsDir ?? DEFAULT_SECRETS_DIR),
      ...(ctx.policy === undefined ? {} : { policy: ctx.policy }),
    };
  },
  kube: async (id, _spec, ctx) => {
    // Loaded only when asked for: the Kubernetes client takes about 0.4 s to load.
    const { createKubeBackend } = await import('./kube-backend.js');
    const backend = createKubeBackend({
      id, logger: ctx.logger, host: ctx.node,
      ...(ctx.kubeconfig !== undefined ? { kubeconfig: ctx.kubeconfig } : {}),
      ...(ctx.namespace !== undefined ? { namespace: ctx.namespace } : {}),
      ...(ctx.nodeFilter ? { node: ctx.node } : {}),
      ...(ctx.nodeFilter && ctx.handover !== undefined ? { handover: { dir: join(ctx.handover.dir, id), token: ctx.handover.token } } : {}),
      ...(ctx.leaderElect !== true ? {} : ctx.nodeFilter
        ? { clusterLeadership: {}, ...(ctx.scheduler !== undefined ? { scheduler: ctx.scheduler } : {}) }
        : { leaderElection: { onStoppedLeading: ctx.onLeadershipLost ?? ((): void => undefined) } }),
      ...(ctx.inventory === undefined || !ctx.nodeFilter ? {} : {
        inventory: {
          facts: ctx.inventory.facts, objects: () => ctx.inventory?.objects(id) ?? [], labels: ctx.inventory.labels,
          ...(ctx.inventory.heartbeatMs !== undefined ? { heartbeatMs: ctx.inventory.heartbeatMs } : {}),
        },
      }),
    });
    const inventory = backend.inventory;
    if (inventory !== undefined) ctx.inventory?.onChange(() => inventory.poke());
    // --paused holds kube objects too; prune does not apply (deleting a resource is explicit).
    return ctx.policy === undefined ? backend : { ...backend, policy: ctx.policy };
  },
};
