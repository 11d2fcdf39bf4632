/**
 * Prometheus metrics, named as controller-runtime names them so existing dashboards work:
 * workqueue_* per queue, hyperlet_reconcile_* per controller (kind) and result. The host's state
 * (objects, providers, sources, this node) is read at scrape time from `HostState`, so a series
 * never outlives what it describes: the alert rules in monitoring/ and the Grafana dashboard
 * query these names, and test/e2e/monitoring.e2e.ts checks that a running daemon exports them.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { WorkQueueMetrics } from '../queue/work-queue.js';

/** One object as the metrics see it (what its last written status says). */
export interface ObjectSample {
  readonly source: string;
  readonly namespace: string;
  readonly kind: string;
  readonly name: string;
  readonly phase: string;
  readonly ready: boolean;
  /** Changes are stopped on purpose (annotation or --paused): not-Ready alerts leave it out. */
  readonly paused: boolean;
}

/** One source's revision state; git sources have revisions, dir and kube sources only `synced`. */
export interface SourceSample {
  readonly source: string;
  readonly synced: boolean;
  readonly problems: number;
  /** The newest revision seen is not the one in force (held back by a rule, or unreadable). */
  readonly behind?: boolean;
  readonly lastAppliedAtMs?: number;
  readonly lastSuccessfulFetchAtMs?: number;
}

/** What the daemon knows about this host, read at every scrape. */
export interface HostState {
  readonly node: string;
  objects(): Iterable<ObjectSample>;
  providers(): Iterable<{ readonly provider: string; readonly up: boolean }>;
  sources(): Iterable<SourceSample>;
  controllers(): Iterable<{ readonly controller: string; readonly lastResyncAtMs: number }>;
  /** Notification sinks (--notify): events not yet delivered and the circuit breaker's state. */
  sinks?(): Iterable<{ readonly sink: string; readonly pending: number; readonly circuit: 'closed' | 'open' | 'halfOpen' }>;
}

const OBJECT_LABELS = ['source', 'namespace', 'kind', 'name'] as const;
const objectLabels = (o: ObjectSample) => ({ source: o.source, namespace: o.namespace, kind: o.kind, name: o.name });

/** The gauges read from HostState at scrape time: name, help, labels, and how to fill them. */
const HOST_GAUGES: readonly {
  readonly name: string;
  readonly help: string;
  readonly labels: readonly string[];
  readonly fill: (g: Gauge, host: HostState) => void;
}[] = [
  {
    name: 'hyperlet_object_ready', help: 'Whether the object\'s Ready condition is True (1) or not (0)', labels: OBJECT_LABELS,
    fill: (g, host) => { for (const o of host.objects()) g.set(objectLabels(o), o.ready ? 1 : 0); },
  },
  {
    name: 'hyperlet_object_paused', help: 'Objects whose changes are stopped on purpose (1); absent otherwise', labels: OBJECT_LABELS,
    fill: (g, host) => { for (const o of host.objects()) if (o.paused) g.set(objectLabels(o), 1); },
  },
  {
    name: 'hyperlet_objects', help: 'Objects by kind, phase and Ready', labels: ['kind', 'phase', 'ready'],
    fill: (g, host) => { for (const o of host.objects()) g.inc({ kind: o.kind, phase: o.phase, ready: String(o.ready) }); },
  },
  {
    name: 'hyperlet_provider_up', help: 'Whether the provider (lxc, libvirt) answered its last probe (1) or not (0)', labels: ['provider'],
    fill: (g, host) => { for (const p of host.providers()) g.set({ provider: p.provider }, p.up ? 1 : 0); },
  },
  {
    name: 'hyperlet_source_synced', help: 'Whether the source has listed its objects once (1) or not yet (0)', labels: ['source'],
    fill: (g, host) => { for (const s of host.sources()) g.set({ source: s.source }, s.synced ? 1 : 0); },
  },
  {
    name: 'hyperlet_source_problems',
    help: 'Problems in the source\'s input (broken files, invalid objects, failed fetches)', labels: ['source'],
    fill: (g, host) => { for (const s of host.sources()) g.set({ source: s.source }, s.problems); },
  },
  {
    name: 'hyperlet_source_revision_behind', help: 'Whether the newest revision seen is not the one in force (1) or is (0); git sources',
    labels: ['source'],
    fill: (g, host) => { for (const s of host.sources()) if (s.behind !== undefined) g.set({ source: s.source }, s.behind ? 1 : 0); },
  },
  {
    name: 'hyperlet_source_last_applied_timestamp_seconds', help: 'When the revision in force was applied (Unix time); git sources',
    labels: ['source'],
    fill: (g, host) => {
      for (const s of host.sources()) if (s.lastAppliedAtMs !== undefined) g.set({ source: s.source }, s.lastAppliedAtMs / 1000);
    },
  },
  {
    name: 'hyperlet_source_last_successful_fetch_timestamp_seconds',
    help: 'When the source last fetched without error (Unix time, to the minute while idle); git sources', labels: ['source'],
    fill: (g, host) => {
      for (const s of host.sources()) {
        if (s.lastSuccessfulFetchAtMs !== undefined) g.set({ source: s.source }, s.lastSuccessfulFetchAtMs / 1000);
      }
    },
  },
  {
    name: 'hyperlet_controller_last_resync_timestamp_seconds', help: 'When the controller last finished a full resync (Unix time)',
    labels: ['controller'],
    fill: (g, host) => {
      for (const c of host.controllers()) if (c.lastResyncAtMs > 0) g.set({ controller: c.controller }, c.lastResyncAtMs / 1000);
    },
  },
  {
    name: 'hyperlet_notify_pending', help: 'Notifications in the outbox not yet delivered to the sink', labels: ['sink'],
    fill: (g, host) => { for (const s of host.sinks?.() ?? []) g.set({ sink: s.sink }, s.pending); },
  },
  {
    name: 'hyperlet_notify_circuit_open', help: 'Whether the sink\'s circuit breaker is open or half-open (1) or closed (0)',
    labels: ['sink'],
    fill: (g, host) => { for (const s of host.sinks?.() ?? []) g.set({ sink: s.sink }, s.circuit === 'closed' ? 0 : 1); },
  },
  {
    name: 'hyperlet_node_info', help: 'This daemon\'s node (always 1): join on instance, or find nodes that went silent', labels: ['node'],
    fill: (g, host) => { g.set({ node: host.node }, 1); },
  },
];

/** How a reconcile ended, as the hyperlet_reconcile_total result label (controller-runtime's values plus ours). */
export type ReconcileOutcome = 'success' | 'requeue' | 'requeue_after' | 'error' | 'terminal_error' | 'conflict';

/** The Prometheus registry and every metric hyperlet exports (controller-runtime's names). */
export class Metrics {
  readonly registry = new Registry();
  private readonly depth = new Gauge({
    name: 'workqueue_depth', help: 'Current depth of the work queue', labelNames: ['name', 'controller'], registers: [this.registry],
  });
  private readonly adds = new Counter({
    name: 'workqueue_adds_total',
    help: 'Total adds handled by the work queue', labelNames: ['name', 'controller'], registers: [this.registry],
  });
  private readonly retries = new Counter({
    name: 'workqueue_retries_total',
    help: 'Total retries handled by the work queue', labelNames: ['name', 'controller'], registers: [this.registry],
  });
  private readonly queueDuration = new Histogram({
    name: 'workqueue_queue_duration_seconds', help: 'How long an item stays in the work queue before being processed',
    labelNames: ['name', 'controller'], buckets: [0.001, 0.01, 0.1, 1, 10, 60, 300], registers: [this.registry],
  });
  private readonly workDuration = new Histogram({
    name: 'workqueue_work_duration_seconds', help: 'How long processing an item takes',
    labelNames: ['name', 'controller'], buckets: [0.001, 0.01, 0.1, 0.5, 1, 5, 30, 120], registers: [this.registry],
  });
  private readonly reconcileTotal = new Counter({
    name: 'hyperlet_reconcile_total',
    help: 'Reconciles by controller and result', labelNames: ['controller', 'result'], registers: [this.registry],
  });
  private readonly reconcileErrors = new Counter({
    name: 'hyperlet_reconcile_errors_total', help: 'Reconcile errors by controller', labelNames: ['controller'], registers: [this.registry],
  });
  private readonly reconcileTime = new Histogram({
    name: 'hyperlet_reconcile_time_seconds', help: 'Reconcile duration by controller', labelNames: ['controller'],
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120], registers: [this.registry],
  });
  readonly providerCalls = new Counter({
    name: 'hyperlet_provider_calls_total',
    help: 'Provider calls by provider and method', labelNames: ['provider', 'method'], registers: [this.registry],
  });
  readonly statusWrites = new Counter({
    name: 'hyperlet_status_writes_total', help: 'Status writes by source', labelNames: ['source'], registers: [this.registry],
  });
  private readonly notifyEvents = new Counter({
    name: 'hyperlet_notify_events_total', help: 'Notifications put in the outbox, by CloudEvents type', labelNames: ['type'],
    registers: [this.registry],
  });
  private readonly notifyDeliveries = new Counter({
    name: 'hyperlet_notify_deliveries_total', help: 'Delivery attempts by sink and result (delivered, failed, rejected)',
    labelNames: ['sink', 'result'], registers: [this.registry],
  });
  private readonly notifyDelay = new Histogram({
    name: 'hyperlet_notify_delivery_delay_seconds', help: 'From the event to its delivery to the sink (retries and outages included)',
    labelNames: ['sink'], buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600, 3600], registers: [this.registry],
  });
  private readonly notifyDroppedTotal = new Counter({
    name: 'hyperlet_notify_dropped_total', help: 'Undelivered notifications dropped because the outbox was full',
    registers: [this.registry],
  });
  private host: HostState | undefined;

  constructor(options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
    this.hostGauges();
  }

  /** Reads `host` at every scrape from now on (the daemon calls it once it is wired). */
  collectFrom(host: HostState): void {
    this.host = host;
  }

  /** Gauges filled from `this.host` when scraped; before collectFrom they export no samples. */
  private hostGauges(): void {
    const read = (): HostState | undefined => this.host;
    for (const def of HOST_GAUGES) {
      new Gauge({
        name: def.name, help: def.help, labelNames: [...def.labels], registers: [this.registry],
        collect() {
          this.reset();
          const host = read();
          if (host !== undefined) def.fill(this, host);
        },
      });
    }
  }

  /** Hooks for one work queue. */
  forQueue(controller: string): WorkQueueMetrics {
    const labels = { name: controller, controller };
    return {
      depth: (n) => this.depth.set(labels, n),
      added: () => this.adds.inc(labels),
      retried: () => this.retries.inc(labels),
      queued: (s) => this.queueDuration.observe(labels, s),
      worked: (s) => this.workDuration.observe(labels, s),
    };
  }

  /** A notification of `type` went into the outbox. */
  notifyEnqueued(type: string): void {
    this.notifyEvents.inc({ type });
  }

  /** One delivery attempt to `sink`; `delaySeconds` (delivered only) is from the event to now. */
  notifyDelivered(sink: string, result: 'delivered' | 'failed' | 'rejected', delaySeconds?: number): void {
    this.notifyDeliveries.inc({ sink, result });
    if (delaySeconds !== undefined) this.notifyDelay.observe({ sink }, Math.max(0, delaySeconds));
  }

  /** `n` undelivered notifications were dropped (outbox full). */
  notifyDropped(n: number): void {
    this.notifyDroppedTotal.inc(n);
  }

  reconciled(controller: string, result: ReconcileOutcome, seconds: number): void {
    this.reconcileTotal.inc({ controller, result });
    if (result === 'error' || result === 'terminal_error') this.reconcileErrors.inc({ controller });
    this.reconcileTime.observe({ controller }, seconds);
  }
}
