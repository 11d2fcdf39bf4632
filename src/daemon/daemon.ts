/**
 * Wiring only: config → sources → store → controllers (queue, reconciler, provider) → status;
 * plus the HTTP server. `stop()` is the graceful shutdown SIGTERM asks for: stop intake, let the
 * steps in flight finish (bounded), flush state, close.
 */
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { Kind } from '../api/v1alpha1/group.js';
import { KINDS } from '../api/v1alpha1/group.js';
import type { Provider } from '../providers/provider.js';
import { closeProviders, createProviders } from '../providers/registry.js';
import { RateLimiter } from '../queue/rate-limiter.js';
import { Controller } from '../reconcile/controller.js';
import { ObservationCache } from '../reconcile/observation-cache.js';
import { ProviderHealth } from '../reconcile/provider-health.js';
import { dependencyKey } from '../reconcile/dependencies.js';
import { Reconciler } from '../reconcile/reconciler.js';
import { HttpServer, type ReadinessCheck } from '../server/http-server.js';
import type { SourceBackend, SourcePolicy } from '../reconcile/backend.js';
import type { Source } from '../sources/source.js';
import { StateDb } from '../state/state-db.js';
import type { Desired } from '../store/desired.js';
import { DesiredStore } from '../store/desired-store.js';
import { parseKey } from '../store/object-key.js';
import { Metrics } from '../telemetry/metrics.js';
import { type GitOptions, createBackends, type SourceSpec } from './source-factory.js';

export interface DaemonConfig {
  readonly sources: readonly SourceSpec[];
  readonly statePath: string;
  readonly lxcpath: string;
  readonly libvirtUri: string;
  readonly libvirtSocket?: string;
  readonly kinds: readonly Kind[];
  readonly node: string;
  /** Whether --node was given explicitly (kube: only objects placed on this node). */
  readonly nodeFilter: boolean;
  readonly kubeconfig?: string;
  readonly namespace?: string;
  /** host:port, or undefined for no HTTP server. */
  readonly http?: { host: string; port: number };
  readonly resyncMs: number;
  readonly concurrency: number;
  readonly qps: number;
  readonly burst: number;
  readonly shutdownTimeoutMs: number;
  /** Providers to use instead of the registry's (benchmarks use fakes). */
  readonly providers?: ReadonlyMap<Kind, Provider>;
  /** --prune and --paused for every source (default: prune, not paused). */
  readonly policy?: SourcePolicy;
  /** Git sources: --interval, --max-prune, --confirm. */
  readonly git?: GitOptions;
}

export class Daemon {
  readonly store = new DesiredStore();
  readonly metrics = new Metrics();
  readonly controllers = new Map<Kind, Controller>();
  private readonly sourcesAbort = new AbortController();
  private db: StateDb | undefined;
  private http: HttpServer | undefined;
  private providers = new Map<Kind, Provider>();
  private backends: SourceBackend<Source>[] = [];
  private readonly synced = new Set<string>();
  private healths = new Map<Kind, ProviderHealth>();
  private started = false;

  constructor(private readonly config: DaemonConfig, private readonly logger: Logger) {}

  /** The bound HTTP address, once started. */
  httpAddress: { host: string; port: number } | undefined;

  async start(): Promise<void> {
    const { config, logger } = this;
    this.db = new StateDb(config.statePath);
    this.backends = await createBackends(config.sources, {
      db: this.db, logger, node: config.node, nodeFilter: config.nodeFilter,
      ...(config.statePath === ':memory:' ? {} : { stateDir: dirname(config.statePath) }),
      ...(config.policy === undefined ? {} : { policy: config.policy }),
      ...(config.git === undefined ? {} : { git: config.git }),
      ...(config.kubeconfig === undefined ? {} : { kubeconfig: config.kubeconfig }),
      ...(config.namespace === undefined ? {} : { namespace: config.namespace }),
    });
    const backendsById = new Map(this.backends.map((b) => [b.source.id, b]));
    this.providers = config.providers === undefined
      ? await createProviders({ lxcpath: config.lxcpath, libvirtUri: config.libvirtUri, kinds: config.kinds, logger, ...(config.libvirtSocket === undefined ? {} : { libvirtSocket: config.libvirtSocket }) })
      : new Map(config.providers);

    for (const [kind, provider] of this.providers) {
      const log = logger.child({ controller: kind, provider: provider.name });
      const cache = new ObservationCache();
      const health = new ProviderHealth(provider, log);
      this.healths.set(kind, health);
      const reconciler = new Reconciler({
        store: this.store, backends: backendsById, provider, cache, health, node: config.node, logger: log, metrics: this.metrics,
        onReady: (d) => this.enqueueDependents(d),
      });
      const controller = new Controller({
        kind, provider, reconciler, store: this.store, backends: backendsById, cache, health, logger: log, metrics: this.metrics,
        concurrency: config.concurrency, resyncMs: config.resyncMs,
        rateLimiter: new RateLimiter({ qps: config.qps, burst: config.burst }),
      });
      // One debug line per finished pass: tests of a daemon in another process count a key's passes with it.
      controller.queue.onPass((key, event) => { if (event === 'finished') log.debug({ key }, 'pass done'); });
      this.controllers.set(kind, controller);
    }
    this.store.onChange((key) => this.controllers.get(parseKey(key).kind)?.enqueue(key));

    if (config.http !== undefined) {
      this.http = new HttpServer({ ...config.http, registry: this.metrics.registry, checks: () => this.checks(), db: this.db, logger, refresh: (id) => this.refreshSources(id) });
      const address = await this.http.listen();
      this.httpAddress = { host: address.address, port: address.port };
      logger.info({ address: `${address.address}:${address.port}` }, 'serving /healthz /readyz /metrics');
    }

    await Promise.all(this.backends.map(async (b) => {
      await b.source.start(this.store, this.sourcesAbort.signal);
      this.synced.add(b.source.id);
      logger.info({ source: b.source.description, objects: this.store.size }, 'source synced');
    }));
    await Promise.all([...this.controllers.values()].map((c) => c.start()));
    this.started = true;
    logger.info({ kinds: [...this.controllers.keys()], node: config.node }, 'hyperlet running');
  }

  private checks(): ReadinessCheck[] {
    const checks: ReadinessCheck[] = this.backends.map((b) => ({
      name: `source:${b.source.id}`, required: true,
      check: () => {
        const problems = b.source.problems();
        // A summary (git) already says why the latest input is not applied: add only the count.
        const first = b.source.summary === undefined ? `: ${problems[0]?.line ?? ''}` : '';
        return { ok: this.synced.has(b.source.id) && (b.source.ready?.() ?? true), detail: `${b.source.summary?.() ?? b.source.description}${problems.length === 0 ? '' : `; ${problems.length} problem(s)${first}`}` };
      },
    }));
    for (const [kind, controller] of this.controllers) {
      checks.push({ name: `controller:${kind}`, required: true, check: () => ({ ok: this.started && controller.lastResyncAt > 0 }) });
      const health = this.healths.get(kind);
      checks.push({
        name: `provider:${KINDS[kind].provider}`, required: false,
        check: () => {
          const h = health?.current;
          return h === undefined ? { ok: false, detail: 'not probed yet' } : h.ok ? { ok: true } : { ok: false, detail: h.reason };
        },
      });
    }
    return checks;
  }

  /** Queues the objects whose dependsOn names `d`: they were waiting for it to be Ready. */
  private enqueueDependents(d: Desired): void {
    for (const o of this.store.list()) {
      if (o.source !== d.source || o.object.spec.dependsOn === undefined) continue;
      if (o.object.spec.dependsOn.some((ref) => dependencyKey(o, ref) === d.key)) this.controllers.get(o.object.kind)?.enqueue(o.key);
    }
  }

  /** The running sources (tests and benchmarks read their state). */
  get sources(): readonly Source[] {
    return this.backends.map((b) => b.source);
  }

  /**
   * Asks sources to look for new input now (SIGHUP; POST /sources/ID/refresh). With `id`, only
   * that source; returns how many sources were asked (0: no such source, or none can refresh).
   */
  refreshSources(id?: string): number {
    let asked = 0;
    for (const b of this.backends) {
      if (id !== undefined && b.source.id !== id) continue;
      if (b.source.refresh === undefined) continue;
      b.source.refresh();
      asked++;
    }
    return asked;
  }

  /** Graceful stop: sources first (no new work), then controllers (drain, bounded), then the rest. */
  async stop(): Promise<void> {
    this.logger.info('shutting down: finishing the steps in flight');
    this.sourcesAbort.abort();
    await Promise.all([...this.controllers.values()].map((c) => c.stop(this.config.shutdownTimeoutMs)));
    await closeProviders(this.providers.values());
    await this.http?.close();
    this.db?.close();
    this.logger.info('stopped');
  }
}
