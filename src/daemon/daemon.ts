/**
 * Wiring only: config → sources → store → controllers (queue, reconciler, provider) → status;
 * plus the HTTP server. `stop()` is the graceful shutdown SIGTERM asks for: stop intake, let the
 * steps in flight finish (bounded), flush state, close.
 */
import { randomBytes } from 'node:crypto';
import { totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { ExponentialBackoff } from 'cockatiel';
import type { Logger } from 'pino';
import type { Kind } from '../api/v1alpha1/group.js';
import { KINDS } from '../api/v1alpha1/group.js';
import { PolicyGate } from '../policy/admission.js';
import { DEFAULT_HOST_POLICY, type HostPolicy } from '../policy/host-policy.js';
import { nodePolicyFs } from '../policy/policy-fs.js';
import type { Provider } from '../providers/provider.js';
import { closeProviders, createProviders } from '../providers/registry.js';
import { RateLimiter } from '../queue/rate-limiter.js';
import { Controller } from '../reconcile/controller.js';
import { ObservationCache } from '../reconcile/observation-cache.js';
import { ProviderHealth } from '../reconcile/provider-health.js';
import { dependencyKey } from '../reconcile/dependencies.js';
import { Reconciler } from '../reconcile/reconciler.js';
import { HttpServer, type ReadinessCheck } from '../server/http-server.js';
import { HandoverServer } from '../server/handover-server.js';
import type { KubeHandover } from '../sources/kube-handover.js';
import type { KubeBackend } from './kube-backend.js';
import { WatchStream } from '../server/watch-stream.js';
import { systemClock } from '../shared/clock.js';
import { SnapshotScheduler, backupCopies } from '../reconcile/snapshot-scheduler.js';
import { DaemonObjectViews } from './object-views.js';
import { DaemonDashboard } from './dashboard-data.js';
import { DaemonBackups } from './daemon-backups.js';
import { RequestOverlay } from './request-overlay.js';
import { EventLog } from '../server/dashboard-api.js';
import { DashboardAssets } from '../server/dashboard-assets.js';
import type { WatchEvent } from '../server/watch-stream.js';
import type { AuditEntry } from '../state/state-db.js';
import type { SourceBackend, SourcePolicy } from '../reconcile/backend.js';
import type { Source } from '../sources/source.js';
import { Redactor } from '../shared/redact.js';
import { StateDb } from '../state/state-db.js';
import type { StopDeadlines } from '../reconcile/stop-deadlines.js';
import { ensureApiToken } from '../state/state-dir.js';
import type { Desired } from '../store/desired.js';
import { DesiredStore } from '../store/desired-store.js';
import { parseKey } from '../store/object-key.js';
import type { Clock } from '../shared/clock.js';
import { Notifier } from '../notify/notifier.js';
import { jitteredBackoff } from '../notify/webhook-sink.js';
import { ObjectEvents } from '../reconcile/object-events.js';
import { type HostState, Metrics } from '../telemetry/metrics.js';
import { type GitOptions, type SourceInventory, createBackends, type SourceSpec } from './source-factory.js';
import { agentVersion, nodeLabels, readHostFacts } from './host-facts.js';

/** The HTTP API: where it listens and how it is secured (issue 10). */
export interface HttpConfig {
  readonly host: string;
  readonly port: number;
  /** PEM certificate and key: HTTPS. Required for a non-loopback host. */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer };
  /** Host header names served besides loopback names (--http-host-allow). */
  readonly hostAllow?: readonly string[];
}

/** Everything `hyperlet run` is configured with; the daemon reads it once at start. */
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
  /** host:port and how to secure it, or undefined for no HTTP server. */
  readonly http?: HttpConfig;
  readonly resyncMs: number;
  readonly concurrency: number;
  /** Of `concurrency`, the reconciles one source and namespace may run at once (default concurrency - 1). */
  readonly maxPerScope?: number;
  readonly qps: number;
  readonly burst: number;
  readonly shutdownTimeoutMs: number;
  /** Providers to use instead of the registry's (benchmarks use fakes). */
  readonly providers?: ReadonlyMap<Kind, Provider>;
  /** --prune and --paused for every source (default: prune, not paused). */
  readonly policy?: SourcePolicy;
  /** Git sources: --interval, --max-prune, --confirm. */
  readonly git?: GitOptions;
  /** --policy: what objects may ask of this host (default: DEFAULT_HOST_POLICY, hyperlet's own directories only). */
  readonly hostPolicy?: HostPolicy;
  /** Time for the reconcile core, the state DB and the sources (default: the system clock). */
  readonly clock?: Clock;
  /**
   * The one Redactor of this process (shared with the logger): values read for environmentFrom
   * references are added to it; Events, audit entries, status and HTTP answers pass it.
   */
  readonly redactor?: Redactor;
  /** dir and git sources: where environmentFrom file references are read (--secrets-dir, default /etc/hyperlet/secrets). */
  readonly secretsDir?: string;
  /** Cap of each container's console log before it is rotated (--console-log-size). */
  readonly consoleLogBytes?: number;
  /** Where spec.image tarballs are downloaded and unpacked (--image-cache; default /var/cache/hyperlet/image-cache). */
  readonly imageCacheDir?: string;
  /** Cap of the image cache on disk (--image-cache-max-size); absent: no eviction. */
  readonly imageCacheMaxBytes?: number;
  /** --notify: webhook sinks of CloudEvents, with the HMAC secret and delivery bounds. */
  readonly notify?: NotifyConfig;
  /** --leader-elect (kube source): see SourceContext.leaderElect. */
  readonly leaderElect?: boolean;
  /** Called when a cluster-wide replica loses leadership; `hyperlet run` then exits non-zero. */
  readonly onLeadershipLost?: () => void;
  /** kube with --node: heartbeat Lease renewal period (--heartbeat, default 10 s). */
  readonly heartbeatMs?: number;
  /** --scheduler (kube, --node, --leader-elect): the elected agent also places objects without spec.nodeName. */
  readonly scheduler?: boolean;
  /**
   * --peer-listen, --peer-url, --peer-token-file (kube with --node): move instances with their
   * data between agents; this agent serves the data of instances leaving it on `host:port`,
   * advertises `url` in its HypervisorNode, and presents and accepts `token`.
   */
  readonly peer?: PeerConfig;
}

/** The agent-to-agent handover: where it listens, how others reach it, and the shared token. */
export interface PeerConfig {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  readonly token: string;
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer };
}

/** Where notifications go and how hard to try. */
export interface NotifyConfig {
  readonly urls: readonly string[];
  /** The HMAC-SHA256 key (the content of --notify-secret-file); never logged. */
  readonly secret?: Buffer;
  /** --notify-timeout: bound on one request (default 10 s). */
  readonly timeoutMs?: number;
  /** --notify-max-retry-delay: the longest wait between two attempts (default 60 s). */
  readonly maxRetryDelayMs?: number;
}

/** The running agent: sources, store, one controller per kind, state DB and HTTP server. `start` once, `stop` once. */
export class Daemon {
  readonly store = new DesiredStore();
  readonly metrics = new Metrics();
  readonly controllers = new Map<Kind, Controller>();
  private readonly sourcesAbort = new AbortController();
  /** Every status write and recorded event, for notifications and the HTTP event stream. */
  readonly events: ObjectEvents;
  private notifier: Notifier | undefined;
  private stopEventLog: (() => void) | undefined;
  /** The dashboard's files, read once; undefined (with a warning) when they cannot be found. */
  private dashboardAssets: DashboardAssets | undefined;
  private db: StateDb | undefined;
  private http: HttpServer | undefined;
  private providers = new Map<Kind, Provider>();
  private backends: SourceBackend<Source>[] = [];
  private readonly synced = new Set<string>();
  private healths = new Map<Kind, ProviderHealth>();
  private readonly snapshotSchedulers: SnapshotScheduler[] = [];
  private started = false;

  /** What never leaves this process in the clear (see shared/redact.ts). */
  readonly redactor: Redactor;

  constructor(private readonly config: DaemonConfig, private readonly logger: Logger) {
    this.redactor = config.redactor ?? new Redactor();
    this.events = new ObjectEvents({ onError: (err) => logger.error({ err }, 'an object event listener failed') });
  }

  private handover: KubeHandover | undefined;
  private handoverServer: HandoverServer | undefined;
  /** The bound handover address (--peer-listen), once started. */
  peerAddress: { host: string; port: number } | undefined;

  /** The bound HTTP address, once started. */
  httpAddress: { host: string; port: number } | undefined;

  /** The bearer token of the HTTP API (in the state directory, file api-token), once started. */
  apiToken = '';

  async start(): Promise<void> {
    const { config, logger } = this;
    const clock = config.clock ?? systemClock;
    this.db = new StateDb(config.statePath, { clock });
    const tightened = this.db.stateDir?.tightenedFrom;
    if (tightened !== undefined) logger.warn({ dir: this.db.stateDir?.dir, was: `0${tightened.toString(8)}` }, 'state directory was open to other users; made it 0700');
    this.apiToken = config.statePath === ':memory:' ? randomBytes(32).toString('base64url') : ensureApiToken(config.statePath);
    this.notifier = this.createNotifier(this.db);
    // Sources write through the overlay: requests made through the API are laid over their objects.
    const overlay = new RequestOverlay(this.store, this.db);
    this.backends = await createBackends(config.sources, {
      ...(config.secretsDir === undefined ? {} : { secretsDir: config.secretsDir }),
      db: this.db, logger, node: config.node, nodeFilter: config.nodeFilter, events: this.events,
      ...(config.statePath === ':memory:' ? {} : { stateDir: dirname(config.statePath) }),
      ...(config.policy === undefined ? {} : { policy: config.policy }),
      ...(config.git === undefined ? {} : { git: config.git }),
      clock,
      ...(config.kubeconfig === undefined ? {} : { kubeconfig: config.kubeconfig }),
      ...(config.namespace === undefined ? {} : { namespace: config.namespace }),
      ...(config.leaderElect === true ? { leaderElect: true } : {}),
      ...(config.scheduler === true
        ? { scheduler: { containerMemoryBytes: (config.hostPolicy ?? DEFAULT_HOST_POLICY).defaults.containerMemoryBytes } } : {}),
      ...(config.onLeadershipLost === undefined ? {} : { onLeadershipLost: config.onLeadershipLost }),
      ...(config.nodeFilter && config.sources.some((s) => s.type === 'kube') ? { inventory: await this.inventory() } : {}),
      ...(config.peer === undefined ? {} : { handover: { dir: join(dirname(config.statePath), 'handover'), token: config.peer.token } }),
    });
    const backendsById = new Map(this.backends.map((b) => [b.source.id, b]));
    const hostPolicy = config.hostPolicy ?? DEFAULT_HOST_POLICY;
    const policy = new PolicyGate({
      policy: hostPolicy, fs: nodePolicyFs, hostMemoryBytes: totalmem(),
    });
    logger.info({ policy: hostPolicy.file ?? 'built-in defaults' }, 'host policy');
    this.providers = config.providers === undefined
      ? await createProviders({
        lxcpath: config.lxcpath, libvirtUri: config.libvirtUri, kinds: config.kinds, logger, idmap: hostPolicy.host.idmap, clock,
        ...(config.libvirtSocket === undefined ? {} : { libvirtSocket: config.libvirtSocket }),
        ...(config.consoleLogBytes === undefined ? {} : { consoleLogBytes: config.consoleLogBytes }),
        ...(config.imageCacheDir === undefined ? {} : { imageCacheDir: config.imageCacheDir }),
        ...(config.imageCacheMaxBytes === undefined ? {} : { imageCacheMaxBytes: config.imageCacheMaxBytes }),
      })
      : new Map(config.providers);
    // Moves with data: creating a moved object fetches its data from the old node first.
    for (const backend of this.backends) {
      const handover = (backend as Partial<KubeBackend>).handover;
      if (handover === undefined) continue;
      for (const [kind, provider] of this.providers) this.providers.set(kind, handover.provider(provider));
      handover.enqueue = (d): void => this.controllers.get(d.object.kind)?.enqueue(d.key);
      this.handover = handover;
    }

    for (const [kind, provider] of this.providers) {
      const log = logger.child({ controller: kind, provider: provider.name });
      const cache = new ObservationCache(clock);
      const health = new ProviderHealth(provider, log, { clock });
      this.healths.set(kind, health);
      const reconciler = new Reconciler({
        store: this.store, backends: backendsById, provider, cache, health, node: config.node, logger: log, metrics: this.metrics, clock,
        onReady: (desired) => this.enqueueDependents(desired), redactor: this.redactor, snapshotsOf: (key) => scheduler.snapshotsOf(key), policy,
        stopDeadlines: stopDeadlinesIn(this.db),
      });
      const scheduler = new SnapshotScheduler({
        store: this.store, provider, clock: systemClock, logger: log,
        record: (d, type, reason, message) => backendsById.get(d.source)?.recorder.record(d, type, reason, message),
        onChange: (d) => this.controllers.get(kind)?.enqueue(d.key),
      });
      this.snapshotSchedulers.push(scheduler);
      // spec.backups: the same schedule and retention code, writing archive files instead of snapshots.
      this.snapshotSchedulers.push(new SnapshotScheduler({
        store: this.store, provider, clock: systemClock, logger: log, copies: backupCopies(provider, systemClock),
        record: (d, type, reason, message) => backendsById.get(d.source)?.recorder.record(d, type, reason, message),
      }));
      const controller = new Controller({
        kind, provider, reconciler, store: this.store, backends: backendsById, cache, health, logger: log, metrics: this.metrics,
        concurrency: config.concurrency, resyncMs: config.resyncMs, clock,
        ...(config.maxPerScope === undefined ? {} : { maxPerScope: config.maxPerScope }),
        rateLimiter: new RateLimiter({ qps: config.qps, burst: config.burst, clock }),
      });
      // One debug line per finished pass: tests of a daemon in another process count a key's passes with it.
      controller.queue.onPass((key, event) => { if (event === 'finished') log.debug({ key }, 'pass done'); });
      this.controllers.set(kind, controller);
    }
    this.store.onChange((key) => this.controllers.get(parseKey(key).kind)?.enqueue(key));
    this.metrics.collectFrom(this.hostState(backendsById));

    if (config.http !== undefined) {
      try {
        this.dashboardAssets = new DashboardAssets();
      } catch (err) {
        logger.warn({ err }, 'no dashboard: its files are missing; the API and the event stream are served');
      }
      const { host, port, tls, hostAllow } = config.http;
      const redact = (text: string): string => this.redactor.text(text);
      const views = new DaemonObjectViews(this.store, () => backendsById, this.db, clock);
      const eventLog = new EventLog();
      const db = this.db;
      this.stopEventLog = eventLog.follow(this.events, db.recentAudit(200).map((a) => auditToEvent(a)));
      const dashboardApi = new DaemonDashboard({
        node: config.node, startedAt: new Date(clock.now()).toISOString(), store: this.store, backends: () => this.backends,
        synced: (id) => this.synced.has(id), healths: this.healths, providers: this.providers, views, eventLog, db, redact,
        request: (key, annotation, value) => overlay.request(key, annotation, value, clock.now()), clock,
      });
      const watch = new WatchStream({ events: this.events, views, redact, host: () => dashboardApi.host() });
      this.http = new HttpServer({
        host, port, registry: this.metrics.registry, checks: () => this.checks(), db: this.db, logger, watch,
        refresh: (id) => this.refreshSources(id), token: this.apiToken, redact,
        backups: new DaemonBackups({
          store: this.store, providers: this.providers, policy: hostPolicy, fs: nodePolicyFs, clock, logger,
          record: (d, type, reason, message) => backendsById.get(d.source)?.recorder.record(d, type, reason, message),
        }),
        ...(this.dashboardAssets === undefined ? {} : { dashboard: { assets: this.dashboardAssets, api: dashboardApi } }),
        ...(tls === undefined ? {} : { tls }), ...(hostAllow === undefined ? {} : { hostAllow }),
      });
      const address = await this.http.listen();
      this.httpAddress = { host: address.address, port: address.port };
      logger.info({ address: `${address.address}:${address.port}`, tls: tls !== undefined }, 'serving /healthz /readyz /metrics');
    }

    if (config.peer !== undefined && this.handover !== undefined) {
      const { host, port, token, tls } = config.peer;
      this.handoverServer = new HandoverServer({ host, port, token, service: this.handover, logger, ...(tls === undefined ? {} : { tls }) });
      const address = await this.handoverServer.listen();
      this.peerAddress = { host: address.address, port: address.port };
      logger.info({ address: `${address.address}:${address.port}`, url: config.peer.url }, 'serving the data of instances leaving this node');
    }

    await Promise.all(this.backends.map(async (b) => {
      await b.source.start(overlay, this.sourcesAbort.signal);
      this.synced.add(b.source.id);
      logger.info({ source: b.source.description, objects: this.store.size }, 'source synced');
    }));
    await Promise.all([...this.controllers.values()].map((c) => c.start()));
    for (const s of this.snapshotSchedulers) s.start(this.sourcesAbort.signal);
    this.started = true;
    logger.info({ kinds: [...this.controllers.keys()], node: config.node }, 'hyperlet running');
  }

  /** What /metrics reads at each scrape: objects by their last written status, providers, sources. */
  private hostState(backendsById: ReadonlyMap<string, SourceBackend>): HostState {
    return {
      node: this.config.node,
      objects: () => this.store.list().map((d) => {
        const status = backendsById.get(d.source)?.statusWriter.lastWritten(d.key);
        const isTrue = (type: string): boolean => status?.conditions.some((c) => c.type === type && c.status === 'True') === true;
        const { namespace, name } = parseKey(d.key);
        return {
          source: d.source, namespace, kind: d.object.kind, name, phase: status?.phase ?? 'Pending', ready: isTrue('Ready'), paused: isTrue('Paused'),
        };
      }),
      providers: () => [...this.healths].flatMap(([kind, health]) => {
        const h = health.current;
        return h === undefined ? [] : [{ provider: KINDS[kind].provider, up: h.ok }];
      }),
      sources: () => this.backends.map((b) => ({
        source: b.source.id, synced: this.synced.has(b.source.id), problems: b.source.problems().length, ...b.source.revisionState?.(),
      })),
      controllers: () => [...this.controllers].map(([kind, c]) => ({ controller: kind, lastResyncAtMs: c.lastResyncAt })),
      sinks: () => this.notifier?.states() ?? [],
    };
  }

  /** What a per-node kube agent publishes in its HypervisorNode (providers' health as it is at each publish). */
  private async inventory(): Promise<SourceInventory> {
    const { config } = this;
    const hostPolicy = config.hostPolicy ?? DEFAULT_HOST_POLICY;
    const version = await agentVersion();
    const { kvm } = await readHostFacts(config.lxcpath);
    return {
      facts: async () => ({
        ...(await readHostFacts(config.lxcpath)),
        kinds: config.kinds.map((kind) => ({ kind, up: this.healths.get(kind)?.current?.ok })),
        reservedMemoryBytes: hostPolicy.host.reservedMemoryBytes,
        containerMemoryBytes: hostPolicy.defaults.containerMemoryBytes,
        agentVersion: version,
        ...(config.peer === undefined ? {} : { handoverUrl: config.peer.url }),
      }),
      objects: (sourceId) => this.store.list().filter((d) => d.source === sourceId),
      onChange: (listener) => this.store.onChange(() => listener()),
      labels: nodeLabels(config.node, kvm),
      ...(config.heartbeatMs === undefined ? {} : { heartbeatMs: config.heartbeatMs }),
    };
  }

  /** One sink per --notify URL, started now so no event of the first passes is missed. */
  private createNotifier(db: StateDb): Notifier | undefined {
    const notify = this.config.notify;
    if (notify === undefined || notify.urls.length === 0) return undefined;
    const maxDelay = notify.maxRetryDelayMs ?? 60_000;
    const notifier = new Notifier({
      urls: notify.urls, db, events: this.events, node: this.config.node, metrics: this.metrics, redact: (text) => this.redactor.text(text),
      logger: this.logger.child({ component: 'notify' }),
      ...(notify.secret === undefined ? {} : { secret: notify.secret }),
      sink: {
        ...(notify.timeoutMs === undefined ? {} : { timeoutMs: notify.timeoutMs }),
        backoff: jitteredBackoff(Math.min(500, maxDelay), maxDelay),
        halfOpenAfter: new ExponentialBackoff({ initialDelay: Math.min(5_000, maxDelay), maxDelay }),
      },
    });
    notifier.start();
    this.logger.info({ sinks: notifier.sinks.map((s) => s.label), signed: notify.secret !== undefined }, 'sending notifications');
    return notifier;
  }

  private checks(): ReadinessCheck[] {
    const checks: ReadinessCheck[] = this.backends.map((b) => ({
      name: `source:${b.source.id}`, required: true,
      check: () => {
        const problems = b.source.problems();
        // A summary (git) already says why the latest input is not applied: add only the count.
        const first = b.source.summary === undefined ? `: ${problems[0]?.line ?? ''}` : '';
        const ok = this.synced.has(b.source.id) && (b.source.ready?.() ?? true);
        return { ok, detail: `${b.source.summary?.() ?? b.source.description}${problems.length === 0 ? '' : `; ${problems.length} problem(s)${first}`}` };
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
    await Promise.all(this.snapshotSchedulers.map((s) => s.stopped()));
    await closeProviders(this.providers.values());
    await this.notifier?.stop();
    this.stopEventLog?.();
    await this.http?.close();
    await this.handoverServer?.close();
    this.db?.close();
    this.logger.info('stopped');
  }
}

/** An audit entry as the event stream and the dashboard show events. */
function auditToEvent(a: AuditEntry): WatchEvent {
  const { kind, namespace, name } = parseKey(a.key);
  return {
    time: a.at, type: a.type === 'Warning' ? 'Warning' : 'Normal', reason: a.action, message: a.message,
    involvedObject: { kind, namespace, name, uid: '' },
  };
}

/** The state DB's graceful stops under way, as the reconciler's StopDeadlines: they outlive a restart. */
function stopDeadlinesIn(db: StateDb): StopDeadlines {
  return {
    get: (key) => db.stopDeadline(key),
    set: (key, deadline) => db.setStopDeadline(key, deadline),
    delete: (key) => db.deleteStopDeadline(key),
  };
}
