/**
 * An agent as `hyperlet run --source kube` wires it (store, kube backend, host policy, reconciler,
 * controller), in this process, with a FakeProvider for Containers: the real reconcile core and
 * the real API server, no hypervisor. Used by the kube flow e2e and the kube benchmark.
 */
import { totalmem } from 'node:os';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { type KubeBackend, createKubeBackend } from '../../../src/daemon/kube-backend.js';
import { PolicyGate } from '../../../src/policy/admission.js';
import { DEFAULT_HOST_POLICY, type HostPolicy } from '../../../src/policy/host-policy.js';
import { nodePolicyFs } from '../../../src/policy/policy-fs.js';
import { RateLimiter } from '../../../src/queue/rate-limiter.js';
import { Controller } from '../../../src/reconcile/controller.js';
import { ObservationCache } from '../../../src/reconcile/observation-cache.js';
import { ProviderHealth } from '../../../src/reconcile/provider-health.js';
import { Reconciler } from '../../../src/reconcile/reconciler.js';
import { DesiredStore } from '../../../src/store/desired-store.js';
import { silentLogger } from '../../../src/telemetry/logger.js';
import { FakeProvider } from '../../fakes/fake-provider.js';

export interface KubeAgent {
  readonly store: DesiredStore;
  readonly backend: KubeBackend;
  readonly provider: FakeProvider<'Container'>;
  readonly controller: Controller;
  /** Stops the controller and the informers (what SIGTERM does). */
  stop(): Promise<void>;
}

export interface KubeAgentOptions {
  readonly kubeConfig: KubeConfig;
  readonly node: string;
  readonly namespace?: string;
  readonly concurrency?: number;
  /** Controller resync period (default 1 h: tests trigger resyncs themselves). */
  readonly resyncMs?: number;
  readonly provider?: FakeProvider<'Container'>;
  readonly logger?: Logger;
  /** The host policy (default: the built-in one, as hyperlet run without --policy). */
  readonly policy?: HostPolicy;
}

export async function startKubeAgent(options: KubeAgentOptions): Promise<KubeAgent> {
  const logger = options.logger ?? silentLogger();
  const abort = new AbortController();
  const store = new DesiredStore();
  const backend = createKubeBackend({
    kubeConfig: options.kubeConfig, node: options.node, logger,
    ...(options.namespace !== undefined ? { namespace: options.namespace } : {}),
  });
  const backends = new Map([[backend.source.id, backend]]);
  const provider = options.provider ?? new FakeProvider('Container');
  const cache = new ObservationCache();
  const health = new ProviderHealth(provider, logger, { retryMs: 0 });
  const policy = new PolicyGate({ policy: options.policy ?? DEFAULT_HOST_POLICY, fs: nodePolicyFs, hostMemoryBytes: totalmem() });
  const reconciler = new Reconciler({ store, backends, provider, cache, health, node: options.node, logger, policy });
  const controller = new Controller({
    kind: 'Container', provider, reconciler, store, backends, cache, health, logger,
    concurrency: options.concurrency ?? 4, resyncMs: options.resyncMs ?? 3_600_000,
    // The daemon's defaults (--qps 10 --burst 100) apply to retries only; keep them.
    rateLimiter: new RateLimiter({ qps: 10, burst: 100 }),
  });
  store.onChange((key) => controller.enqueue(key));
  await backend.source.start(store, abort.signal);
  await controller.start();
  return {
    store, backend, provider, controller,
    stop: async () => {
      await controller.stop(10_000);
      abort.abort();
      await backend.recorder.flush();
    },
  };
}
