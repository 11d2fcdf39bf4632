/**
 * Turns `--source` arguments into running sources with their backends. The first source of a
 * type gets the plain id ("dir"), later ones a suffix ("dir-2"): ids are part of every key, so
 * they must stay the same from one start to the next.
 */
import type { Logger } from 'pino';
import { createKubeBackend } from '../kube/kube-backend.js';
import { DirSource } from '../sources/dir-source.js';
import type { SourceBackend } from '../sources/source.js';
import type { StateDb } from '../state/state-db.js';
import { StateStatusWriter } from '../status/state-status-writer.js';

export interface SourceSpec {
  readonly type: 'dir' | 'git' | 'kube';
  /** dir: a path; git: URL[#BRANCH][//SUBDIR]; kube: empty. */
  readonly location: string;
}

export interface SourceContext {
  readonly db: StateDb;
  readonly logger: Logger;
  readonly kubeconfig?: string;
  readonly namespace?: string;
  readonly node: string;
  /** Whether --node was given (kube: reconcile only objects placed on this node). */
  readonly nodeFilter: boolean;
}

/** Parses `dir:PATH`, `git:URL` or `kube`; throws a usage error naming the rule. */
export function parseSourceSpec(arg: string): SourceSpec {
  if (arg === 'kube') return { type: 'kube', location: '' };
  const colon = arg.indexOf(':');
  const type = colon < 0 ? '' : arg.slice(0, colon);
  const location = arg.slice(colon + 1);
  if ((type === 'dir' || type === 'git') && location !== '') return { type, location };
  throw new Error(`cannot use --source ${JSON.stringify(arg)}: expected dir:PATH, git:URL[#BRANCH][//SUBDIR] or kube`);
}

/** Makes one backend per spec, with stable ids. */
export function createBackends(specs: readonly SourceSpec[], ctx: SourceContext): SourceBackend[] {
  const seen = new Map<string, number>();
  return specs.map((spec) => {
    const n = (seen.get(spec.type) ?? 0) + 1;
    seen.set(spec.type, n);
    const id = n === 1 ? spec.type : `${spec.type}-${n}`;
    const factory = SOURCE_FACTORIES[spec.type];
    if (factory === undefined) throw new Error(`cannot use source type ${spec.type}: it is not built into this hyperlet`);
    return factory(id, spec, ctx);
  });
}

type SourceFactory = (id: string, spec: SourceSpec, ctx: SourceContext) => SourceBackend;

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
    });
    return { source, statusWriter: writer, recorder: writer, records: writer };
  },
  kube: (id, _spec, ctx) => createKubeBackend({
    id, logger: ctx.logger, host: ctx.node,
    ...(ctx.kubeconfig !== undefined ? { kubeconfig: ctx.kubeconfig } : {}),
    ...(ctx.namespace !== undefined ? { namespace: ctx.namespace } : {}),
    ...(ctx.nodeFilter ? { node: ctx.node } : {}),
  }),
};
