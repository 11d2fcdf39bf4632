/**
 * `hyperlet scheduler`: the once-per-cluster work without an agent (the Deployment in
 * manifests/): campaigns for the Lease hyperlet-system/hyperlet-cluster, the same one agents
 * started with --leader-elect campaign for, and while it leads runs the scheduler (placement,
 * evictions from cordoned and lost nodes) and the node lifecycle check (Ready=Unknown when a
 * heartbeat Lease expires). Serves /healthz on --health-listen for the Deployment's probe.
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { ClusterLeadership } from '../kube/cluster-leadership.js';
import { loadKubeConfig, shareConnections } from '../kube/kube-client.js';
import { KubeLeaseClient, LeaderElector } from '../kube/leader-election.js';
import { KubeScheduler } from '../scheduler/kube-scheduler.js';
import { NodeLifecycle } from '../status/node-lifecycle.js';
import { createLogger } from '../telemetry/logger.js';
import { UsageError, parseDurationMs } from './usage-error.js';

/** The help text of `hyperlet scheduler`. */
export const SCHEDULER_HELP = `Usage: hyperlet scheduler [flags]

Runs only the leader-elected scheduler and node lifecycle check (no agent, no hypervisor).

  --kubeconfig PATH      kubeconfig (default in-cluster or ~/.kube/config)
  --namespace NS         place objects of this namespace only (default all)
  --lease-namespace NS   where the election and heartbeat Leases live (default hyperlet-system)
  --node-check DURATION  how often heartbeat Leases are checked (default 5s)
  --lease-duration D     the election Lease's duration (default 15s; renew deadline 2/3 of it)
  --container-memory Q   memory counted for a container that declares none (default 512Mi, the policy default)
  --health-listen H:P    serve /healthz here (default 127.0.0.1:9441; "off" disables)
  --log-level LEVEL      trace|debug|info|warn|error (default info)
`;

/** --health-listen: HOST:PORT or off. /healthz tells nothing secret, so any address may serve it without TLS. */
export function parseHealthListen(value: string): { host: string; port: number } | undefined {
  if (value === 'off') return undefined;
  const m = /^(.*):([0-9]{1,5})$/.exec(value);
  const port = Number(m?.[2]);
  if (m === null || port > 65535) throw new UsageError(`--health-listen: expected HOST:PORT or off (is ${JSON.stringify(value)})`);
  return { host: (m[1] ?? '').replace(/^\[(.*)\]$/, '$1') || '0.0.0.0', port };
}

/** `hyperlet scheduler`: runs until SIGTERM or SIGINT and resolves to the exit code. */
export async function schedulerCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args, allowPositionals: false, strict: true,
    options: {
      kubeconfig: { type: 'string' }, namespace: { type: 'string' }, 'lease-namespace': { type: 'string' },
      'node-check': { type: 'string' }, 'lease-duration': { type: 'string' }, 'container-memory': { type: 'string' },
      'health-listen': { type: 'string' }, 'log-level': { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    process.stdout.write(SCHEDULER_HELP);
    return 0;
  }
  const level = values['log-level'] ?? 'info';
  if (!['trace', 'debug', 'info', 'warn', 'error', 'silent'].includes(level)) throw new UsageError(`--log-level: unknown level ${JSON.stringify(level)}`);
  const logger = createLogger({ level: level as 'info' });
  const leaseNamespace = values['lease-namespace'] ?? 'hyperlet-system';
  const leaseDurationMs = parseDurationMs('--lease-duration', values['lease-duration'] ?? '15s');
  if (leaseDurationMs < 3_000) throw new UsageError('--lease-duration: must be at least 3s');
  const memory = values['container-memory'];
  const { parseQuantity } = await import('../api/v1alpha1/quantity.js');
  const containerMemoryBytes = memory === undefined ? undefined : parseQuantity(memory);
  if (memory !== undefined && containerMemoryBytes === undefined) throw new UsageError(`--container-memory: not a quantity: ${JSON.stringify(memory)}`);
  const health = parseHealthListen(values['health-listen'] ?? '127.0.0.1:9441');
  let kubeConfig;
  try {
    kubeConfig = shareConnections(loadKubeConfig(values.kubeconfig));
  } catch (err) {
    throw new UsageError(`--kubeconfig: ${(err as Error).message}`);
  }
  const leadership = new ClusterLeadership({
    elector: new LeaderElector({
      lease: new KubeLeaseClient(kubeConfig, leaseNamespace, 'hyperlet-cluster'),
      identity: `scheduler-${hostname()}_${randomUUID().slice(0, 8)}`,
      logger, leaseDurationMs, renewDeadlineMs: Math.round((leaseDurationMs * 2) / 3), retryPeriodMs: Math.max(500, Math.round(leaseDurationMs / 7)),
    }),
    logger,
    tasks: [
      new NodeLifecycle({ kubeConfig, logger, leaseNamespace, periodMs: parseDurationMs('--node-check', values['node-check'] ?? '5s') }),
      new KubeScheduler({
        kubeConfig, logger, ...(values.namespace === undefined ? {} : { namespace: values.namespace }),
        ...(containerMemoryBytes === undefined ? {} : { containerMemoryBytes }),
      }),
    ],
  });
  const abort = new AbortController();
  const server = health === undefined ? undefined : createServer((req, res) => {
    const ok = req.url === '/healthz' || req.url === '/readyz';
    res.writeHead(ok ? 200 : 404, { 'content-type': 'text/plain' });
    res.end(ok ? `ok (leading: ${String(leadership.isLeader)})\n` : 'not found\n');
  });
  if (server !== undefined && health !== undefined) {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(health.port, health.host, () => resolve());
    });
  }
  const stop = (signal: string): void => {
    logger.info({ signal }, 'signal received: stepping down');
    abort.abort();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  logger.info({ leaseNamespace }, 'hyperlet scheduler running: campaigning for hyperlet-cluster');
  await leadership.run(abort.signal);
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server === undefined ? resolve() : server.close(() => resolve())));
  logger.info('stopped');
  logger.flush();
  return 0;
}
