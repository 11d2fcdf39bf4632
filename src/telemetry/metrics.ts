/**
 * Prometheus metrics, named as controller-runtime names them so existing dashboards work:
 * workqueue_* per queue, hyperlet_reconcile_* per controller (kind) and result.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { WorkQueueMetrics } from '../queue/work-queue.js';

/** How a reconcile ended, as the hyperlet_reconcile_total result label (controller-runtime's values plus ours). */
export type ReconcileOutcome = 'success' | 'requeue' | 'requeue_after' | 'error' | 'terminal_error' | 'conflict';

/** The Prometheus registry and every metric hyperlet exports (controller-runtime's names). */
export class Metrics {
  readonly registry = new Registry();
  private readonly depth = new Gauge({ name: 'workqueue_depth', help: 'Current depth of the work queue', labelNames: ['name', 'controller'], registers: [this.registry] });
  private readonly adds = new Counter({ name: 'workqueue_adds_total', help: 'Total adds handled by the work queue', labelNames: ['name', 'controller'], registers: [this.registry] });
  private readonly retries = new Counter({ name: 'workqueue_retries_total', help: 'Total retries handled by the work queue', labelNames: ['name', 'controller'], registers: [this.registry] });
  private readonly queueDuration = new Histogram({
    name: 'workqueue_queue_duration_seconds', help: 'How long an item stays in the work queue before being processed',
    labelNames: ['name', 'controller'], buckets: [0.001, 0.01, 0.1, 1, 10, 60, 300], registers: [this.registry],
  });
  private readonly workDuration = new Histogram({
    name: 'workqueue_work_duration_seconds', help: 'How long processing an item takes',
    labelNames: ['name', 'controller'], buckets: [0.001, 0.01, 0.1, 0.5, 1, 5, 30, 120], registers: [this.registry],
  });
  private readonly reconcileTotal = new Counter({ name: 'hyperlet_reconcile_total', help: 'Reconciles by controller and result', labelNames: ['controller', 'result'], registers: [this.registry] });
  private readonly reconcileErrors = new Counter({ name: 'hyperlet_reconcile_errors_total', help: 'Reconcile errors by controller', labelNames: ['controller'], registers: [this.registry] });
  private readonly reconcileTime = new Histogram({
    name: 'hyperlet_reconcile_time_seconds', help: 'Reconcile duration by controller', labelNames: ['controller'],
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120], registers: [this.registry],
  });
  readonly providerCalls = new Counter({ name: 'hyperlet_provider_calls_total', help: 'Provider calls by provider and method', labelNames: ['provider', 'method'], registers: [this.registry] });
  readonly statusWrites = new Counter({ name: 'hyperlet_status_writes_total', help: 'Status writes by source', labelNames: ['source'], registers: [this.registry] });

  constructor(options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
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

  reconciled(controller: string, result: ReconcileOutcome, seconds: number): void {
    this.reconcileTotal.inc({ controller, result });
    if (result === 'error' || result === 'terminal_error') this.reconcileErrors.inc({ controller });
    this.reconcileTime.observe({ controller }, seconds);
  }
}
