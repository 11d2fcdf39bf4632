/** `hyperlet run`: the daemon. With no flags it serves ./examples with the state DB in ./.hyperlet. */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import type { Kind } from '../api/v1alpha1/group.js';
import { isKind } from '../api/v1alpha1/group.js';
import { parseQuantity } from '../api/v1alpha1/quantity.js';
import { resolve as resolvePath } from 'node:path';
import { Daemon, type HttpConfig, type NotifyConfig, type PeerConfig } from '../daemon/daemon.js';
import { parseNotifyUrl } from '../notify/notifier.js';
import { parseSourceSpec } from '../daemon/source-factory.js';
import { hostOf, isLoopback } from '../server/host-check.js';
import { DEFAULT_STATE_PATH } from '../state/state-dir.js';
import { Redactor } from '../shared/redact.js';
import { DEFAULT_SECRETS_DIR } from '../sources/secret-file.js';
import { createLogger } from '../telemetry/logger.js';
import { PolicyOptionError, policyOption } from './policy-check.js';
import { UsageError, parseDurationMs, parsePositiveInt } from './usage-error.js';

/** The help text of `hyperlet run`. */
export const RUN_HELP = `Usage: hyperlet run [flags]

Keeps the LXC containers and libvirt VMs on this host as declared.

  --source SRC          dir:PATH | git:URL[#BRANCH][//SUBDIR] | kube  (repeatable; default dir:./examples)
  --state PATH          state DB for dir and git sources (default ./.hyperlet/state.db); its directory
                        is made 0700 and holds the API token (api-token)
  --secrets-dir DIR     dir and git sources: the only directory environmentFrom {file: PATH} reads
                        (default /etc/hyperlet/secrets)
  --lxcpath PATH        LXC's container directory (default /var/lib/lxc)
  --console-log-size N  cap of each container's console log before LXC rotates it to NAME.1
                        (power of two, default 1Mi; VM serial logs are capped by virtlogd)
  --image-cache DIR     where spec.image tarballs are downloaded and unpacked once
                        (default /var/cache/hyperlet/image-cache)
  --image-cache-max-size Q  cap of that cache on disk (e.g. 20Gi): least recently used images no
                        container uses are removed beyond it (default: no cap)
  --libvirt-uri URI     libvirt connection (default qemu:///system)
  --libvirt-socket PATH libvirtd's socket (default /run/libvirt/libvirt-sock)
  --kinds LIST          kinds to reconcile (default Container,VirtualMachine)
  --node NAME           this host's node name (default the hostname; kube: only objects with spec.nodeName NAME,
                        or placed on NAME by the scheduler when spec.nodeName is unset)
  --kubeconfig PATH     kube source: kubeconfig (default in-cluster or ~/.kube/config)
  --namespace NS        kube source: watch one namespace only
  --leader-elect        kube source: campaign for a Lease in hyperlet-system. With --node (the DaemonSet),
                        the elected agent also does the once-per-cluster work (Lease hyperlet-cluster);
                        without --node, only the elected replica reconciles (Lease hyperlet-agent) and
                        an agent that loses leadership exits with status 1
  --scheduler           kube source with --node and --leader-elect: the elected agent also places objects
                        without spec.nodeName on Ready HypervisorNodes (capacity, spec.nodeSelector, kind,
                        least allocated first) and records the node in status.placement.nodeName
  --heartbeat DURATION  kube source with --node: how often the agent renews its heartbeat Lease
                        (hyperlet-system/hyperlet-node-NODE, valid 4 times as long; default 10s) and
                        publishes its HypervisorNode (capacity, allocated, kinds, Ready) when it changed
  --peer-listen HOST:PORT  kube source with --node: serve the data of instances that leave this node to the
                        agent of their new node (moves with data; see README). Needs --peer-url and
                        --peer-token-file; a non-loopback HOST serves HTTPS with --tls-cert and --tls-key
  --peer-url URL        how other agents reach --peer-listen (published in this node's HypervisorNode)
  --peer-token-file PATH  the bearer token every agent's handover server accepts (the same file on every node)
  --http HOST:PORT      /healthz /readyz /metrics and the read API (default 127.0.0.1:9440; "off" disables).
                        POST routes need the token the daemon writes beside the state DB (api-token);
                        a non-loopback HOST needs --tls-cert and --tls-key, and the token on every route
  --http-host-allow NAME  also answer requests whose Host header is NAME (repeatable; loopback names
                        and the bound address always work; others are refused against DNS rebinding)
  --tls-cert FILE --tls-key FILE  serve HTTPS with this PEM certificate and key
  --resync DURATION     full resync period (default 60s)
  --concurrency N       reconciles at once per kind (default 4)
  --max-per-scope N     of those, at most N for one source and namespace (default concurrency - 1: one
                        worker is always free for others; N = concurrency lets one namespace use all)
  --qps N --burst N     retry rate limit across keys (default 10, 100)
  --shutdown-timeout D  how long SIGTERM waits for steps in flight (default 30s)
  --log-level LEVEL     trace|debug|info|warn|error (default info)
  --policy FILE         host policy: which host paths, templates, bridges, pools, privileges and quotas
                        objects may use (default: built-in, hyperlet's own directories only; see
                        README "Security model"; check a file with hyperlet validate --policy FILE)

Notifications (CloudEvents 1.0, structured JSON, POSTed; see README):
  --notify URL          send phase changes, failures, drift and policy refusals to this webhook
                        (repeatable; each URL has its own durable queue, retries and circuit breaker)
  --notify-secret-file PATH
                        sign every body with HMAC-SHA256 of this file's content
                        (header X-Hyperlet-Signature: sha256=HEX)
  --notify-timeout D    bound on one delivery attempt (default 10s)
  --notify-max-retry-delay D
                        longest wait between two attempts (default 60s)

GitOps (every source of this run):
  --interval DURATION   git: how often to fetch (default 30s; also on SIGHUP and POST /sources/ID/refresh)
  --prune=true|false    delete the instances of objects removed from the source (default true;
                        one object opts out with the annotation hyperlet.io/prune: disabled)
  --max-prune SHARE     hold back a commit deleting more than this share of a source's objects
                        (default 50%; e.g. 25%, 0.25, 100% for no limit)
  --confirm REVISION    apply this commit despite the prune limit or a rewritten history (repeatable)
  --paused              observe and report only: no changes at all (one object: hyperlet.io/paused: "true")
`;

/** Parses "50%", "0.5" or "1": a share between 0 and 1. */
export function parseShare(flag: string, value: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)(%?)$/.exec(value.trim());
  const n = m === null ? Number.NaN : Number(m[1]) / (m[2] === '%' ? 100 : 1);
  if (!(n >= 0 && n <= 1)) throw new UsageError(`${flag}: expected a share such as 50% or 0.5 (is ${JSON.stringify(value)})`);
  return n;
}

function atLeast(flag: string, ms: number, minMs: number): number {
  if (ms < minMs) throw new UsageError(`${flag}: must be at least ${minMs} ms (is ${ms} ms)`);
  return ms;
}

function parseBool(flag: string, value: string): boolean {
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw new UsageError(`${flag}: expected true or false (is ${JSON.stringify(value)})`);
}

/** Parses --image-cache-max-size: a quantity of bytes (0 keeps only what is in use or just used). */
function parseImageCacheMaxSize(value: string): number {
  const bytes = parseQuantity(value);
  if (bytes === undefined || !Number.isSafeInteger(bytes)) {
    throw new UsageError(`--image-cache-max-size: expected a size such as 20Gi or 500Mi (is ${JSON.stringify(value)})`);
  }
  return bytes;
}

/** Parses --console-log-size: a quantity that is a power of two of at least 4Ki (LXC's rule). */
export function parseConsoleLogSize(value: string): number {
  const bytes = parseQuantity(value);
  if (bytes === undefined || !Number.isSafeInteger(bytes) || bytes < 4096 || (bytes & (bytes - 1)) !== 0) {
    throw new UsageError(`--console-log-size: expected a power of two of at least 4Ki, such as 64Ki or 1Mi (is ${JSON.stringify(value)})`);
  }
  return bytes;
}

/** Parses --http and its TLS and Host flags; refuses a non-loopback address without TLS. */
export function parseHttp(value: string, flags: { tlsCert?: string; tlsKey?: string; hostAllow?: readonly string[] } = {}): HttpConfig | undefined {
  if (value === 'off') return undefined;
  const m = /^(.*):([0-9]+)$/.exec(value);
  if (m === null) throw new UsageError(`--http: expected HOST:PORT or off (is ${JSON.stringify(value)})`);
  const host = (m[1] ?? '').replace(/^\[(.*)\]$/, '$1') || '127.0.0.1';
  const port = Number(m[2]);
  if (port > 65535) throw new UsageError(`--http: port ${port} is out of range`);
  if ((flags.tlsCert === undefined) !== (flags.tlsKey === undefined)) throw new UsageError('--tls-cert and --tls-key go together');
  if (!isLoopback(host) && flags.tlsCert === undefined) {
    throw new UsageError(`--http ${value}: ${host} is not a loopback address; serving it needs TLS (--tls-cert FILE --tls-key FILE), or bind to 127.0.0.1`);
  }
  for (const name of flags.hostAllow ?? []) {
    if (hostOf(name) === undefined || (name.includes(':') && !name.startsWith('['))) throw new UsageError(`--http-host-allow: ${JSON.stringify(name)} is not a host name or address (no port)`);
  }
  const read = (flag: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new UsageError(`${flag}: cannot read ${path}: ${(err as Error).message}`);
    }
  };
  return {
    host, port,
    ...(flags.tlsCert === undefined || flags.tlsKey === undefined ? {} : { tls: { cert: read('--tls-cert', flags.tlsCert), key: read('--tls-key', flags.tlsKey) } }),
    ...(flags.hostAllow === undefined || flags.hostAllow.length === 0 ? {} : { hostAllow: flags.hostAllow }),
  };
}

/** --peer-listen, --peer-url and --peer-token-file (all or none; kube with --node); the token is read here, once. */
export function parsePeer(values: {
  'peer-listen'?: string; 'peer-url'?: string; 'peer-token-file'?: string; 'tls-cert'?: string; 'tls-key'?: string;
}, kubeWithNode: boolean): PeerConfig | undefined {
  const given = (['peer-listen', 'peer-url', 'peer-token-file'] as const).filter((f) => values[f] !== undefined);
  if (given.length === 0) return undefined;
  if (given.length < 3) throw new UsageError('--peer-listen, --peer-url and --peer-token-file go together');
  if (!kubeWithNode) throw new UsageError('--peer-listen needs --source kube and --node (moves happen between per-node agents)');
  const listen = parseHttp(values['peer-listen'] ?? '', {
    ...(values['tls-cert'] === undefined ? {} : { tlsCert: values['tls-cert'] }),
    ...(values['tls-key'] === undefined ? {} : { tlsKey: values['tls-key'] }),
  });
  if (listen === undefined) throw new UsageError('--peer-listen: expected HOST:PORT');
  const url = values['peer-url'] ?? '';
  if (!/^https?:\/\/[^\s/?#]+\/?$/.test(url)) throw new UsageError(`--peer-url: expected http(s)://HOST:PORT (is ${JSON.stringify(url)})`);
  const file = values['peer-token-file'] ?? '';
  let token: string;
  try {
    token = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new UsageError(`--peer-token-file: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  if (token.length < 16) throw new UsageError(`--peer-token-file: ${file} must hold a token of at least 16 characters`);
  return { host: listen.host, port: listen.port, url, token, ...(listen.tls === undefined ? {} : { tls: listen.tls }) };
}

/** --notify and its companions; the secret file is read here, once, and never printed. */
function parseNotify(values: {
  notify?: string[]; 'notify-secret-file'?: string; 'notify-timeout'?: string; 'notify-max-retry-delay'?: string;
}): NotifyConfig | undefined {
  const urls = values.notify ?? [];
  if (urls.length === 0) {
    const companions = ['notify-secret-file', 'notify-timeout', 'notify-max-retry-delay'] as const;
    const stray = companions.find((f) => values[f] !== undefined);
    if (stray !== undefined) throw new UsageError(`--${stray} needs --notify URL`);
    return undefined;
  }
  const parsed = urls.map((u) => {
    try {
      return parseNotifyUrl(u);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  });
  let secret: Buffer | undefined;
  const secretFile = values['notify-secret-file'];
  if (secretFile !== undefined) {
    try {
      secret = Buffer.from(readFileSync(secretFile, 'utf8').replace(/\r?\n$/, ''), 'utf8');
    } catch (err) {
      throw new UsageError(`--notify-secret-file: cannot read ${secretFile}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    if (secret.length === 0) throw new UsageError(`--notify-secret-file: ${secretFile} is empty`);
  }
  const timeout = values['notify-timeout'];
  const maxDelay = values['notify-max-retry-delay'];
  return {
    urls: parsed,
    ...(secret === undefined ? {} : { secret }),
    ...(timeout === undefined ? {} : { timeoutMs: atLeast('--notify-timeout', parseDurationMs('--notify-timeout', timeout), 10) }),
    ...(maxDelay === undefined ? {} : {
      maxRetryDelayMs: atLeast('--notify-max-retry-delay', parseDurationMs('--notify-max-retry-delay', maxDelay), 10),
    }),
  };
}

/** `hyperlet run`: parses flags, runs the daemon until SIGTERM or SIGINT and resolves to the exit code. */
export async function runCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args, allowPositionals: false, strict: true,
    options: {
      source: { type: 'string', multiple: true }, state: { type: 'string' }, lxcpath: { type: 'string' },
      'libvirt-uri': { type: 'string' }, 'libvirt-socket': { type: 'string' }, kinds: { type: 'string' },
      node: { type: 'string' }, kubeconfig: { type: 'string' }, namespace: { type: 'string' }, http: { type: 'string' },
      resync: { type: 'string' }, concurrency: { type: 'string' }, 'max-per-scope': { type: 'string' }, qps: { type: 'string' },
      burst: { type: 'string' },
      'shutdown-timeout': { type: 'string' }, 'log-level': { type: 'string' }, help: { type: 'boolean', short: 'h' },
      interval: { type: 'string' }, prune: { type: 'string' }, 'max-prune': { type: 'string' },
      confirm: { type: 'string', multiple: true }, paused: { type: 'boolean' },
      notify: { type: 'string', multiple: true }, 'notify-secret-file': { type: 'string' }, 'notify-timeout': { type: 'string' },
      'notify-max-retry-delay': { type: 'string' }, 'console-log-size': { type: 'string' },
      'image-cache': { type: 'string' }, 'image-cache-max-size': { type: 'string' },
      'secrets-dir': { type: 'string' }, 'http-host-allow': { type: 'string', multiple: true }, 'tls-cert': { type: 'string' }, 'tls-key': { type: 'string' },
      policy: { type: 'string' }, 'leader-elect': { type: 'boolean' }, heartbeat: { type: 'string' }, scheduler: { type: 'boolean' },
      'peer-listen': { type: 'string' }, 'peer-url': { type: 'string' }, 'peer-token-file': { type: 'string' },
    },
  });
  if (values.help === true) {
    process.stdout.write(RUN_HELP);
    return 0;
  }
  const kinds = (values.kinds ?? 'Container,VirtualMachine').split(',').map((k) => k.trim());
  const badKind = kinds.find((k) => !isKind(k));
  if (badKind !== undefined) throw new UsageError(`--kinds: unknown kind ${JSON.stringify(badKind)}; use Container, VirtualMachine`);
  let sources;
  try {
    sources = (values.source ?? ['dir:./examples']).map(parseSourceSpec);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const level = values['log-level'] ?? 'info';
  if (!['trace', 'debug', 'info', 'warn', 'error', 'silent'].includes(level)) throw new UsageError(`--log-level: unknown level ${JSON.stringify(level)}`);
  let hostPolicy;
  try {
    hostPolicy = await policyOption(values.policy);
  } catch (err) {
    if (!(err instanceof PolicyOptionError)) throw err;
    for (const line of err.lines) process.stderr.write(`hyperlet run: ${line}\n`);
    return 2;
  }
  const notify = parseNotify(values);
  const leaderElect = values['leader-elect'] === true;
  if (leaderElect && !sources.some((s) => s.type === 'kube')) throw new UsageError('--leader-elect needs --source kube');
  const scheduler = values.scheduler === true;
  if (scheduler && (!leaderElect || values.node === undefined)) {
    throw new UsageError('--scheduler needs --source kube, --node and --leader-elect (the elected agent runs it)');
  }
  const peer = parsePeer(values, sources.some((s) => s.type === 'kube') && values.node !== undefined);
  let leadershipLost = false;
  // One Redactor for the whole process: the logger writes through it, the daemon feeds it secrets.
  const redactor = new Redactor();
  const logger = createLogger({ level: level as 'info', redact: (line) => redactor.text(line) });
  const concurrency = parsePositiveInt('--concurrency', values.concurrency ?? '4');
  const maxPerScope = values['max-per-scope'] === undefined ? undefined : parsePositiveInt('--max-per-scope', values['max-per-scope']);
  if (maxPerScope !== undefined && maxPerScope > concurrency) {
    throw new UsageError(`--max-per-scope: must be at most --concurrency (${concurrency}) (is ${maxPerScope})`);
  }
  const daemon = new Daemon({
    hostPolicy,
    sources,
    statePath: values.state ?? DEFAULT_STATE_PATH,
    redactor,
    secretsDir: resolvePath(values['secrets-dir'] ?? DEFAULT_SECRETS_DIR),
    ...(values['console-log-size'] === undefined ? {} : { consoleLogBytes: parseConsoleLogSize(values['console-log-size']) }),
    lxcpath: values.lxcpath ?? '/var/lib/lxc',
    ...(values['image-cache'] === undefined ? {} : { imageCacheDir: resolvePath(values['image-cache']) }),
    ...(values['image-cache-max-size'] === undefined ? {} : { imageCacheMaxBytes: parseImageCacheMaxSize(values['image-cache-max-size']) }),
    libvirtUri: values['libvirt-uri'] ?? 'qemu:///system',
    ...(values['libvirt-socket'] === undefined ? {} : { libvirtSocket: values['libvirt-socket'] }),
    kinds: kinds as Kind[],
    node: values.node ?? hostname(),
    nodeFilter: values.node !== undefined,
    ...(values.kubeconfig === undefined ? {} : { kubeconfig: values.kubeconfig }),
    ...(values.namespace === undefined ? {} : { namespace: values.namespace }),
    http: parseHttp(values.http ?? '127.0.0.1:9440', {
      ...(values['tls-cert'] === undefined ? {} : { tlsCert: values['tls-cert'] }),
      ...(values['tls-key'] === undefined ? {} : { tlsKey: values['tls-key'] }),
      ...(values['http-host-allow'] === undefined ? {} : { hostAllow: values['http-host-allow'] }),
    }),
    resyncMs: parseDurationMs('--resync', values.resync ?? '60s'),
    concurrency,
    ...(maxPerScope === undefined ? {} : { maxPerScope }),
    qps: parsePositiveInt('--qps', values.qps ?? '10'),
    burst: parsePositiveInt('--burst', values.burst ?? '100'),
    shutdownTimeoutMs: parseDurationMs('--shutdown-timeout', values['shutdown-timeout'] ?? '30s'),
    policy: { prune: parseBool('--prune', values.prune ?? 'true'), paused: values.paused === true },
    ...(notify === undefined ? {} : { notify }),
    ...(values.heartbeat === undefined ? {} : {
      heartbeatMs: atLeast('--heartbeat', parseDurationMs('--heartbeat', values.heartbeat), 250),
    }),
    ...(scheduler ? { scheduler: true } : {}),
    ...(peer === undefined ? {} : { peer }),
    ...(leaderElect ? {
      leaderElect: true,
      onLeadershipLost: () => {
        leadershipLost = true;
        stop('leadership lost');
      },
    } : {}),
    git: {
      intervalMs: atLeast('--interval', parseDurationMs('--interval', values.interval ?? '30s'), 100),
      maxPruneShare: parseShare('--max-prune', values['max-prune'] ?? '50%'),
      confirm: (values.confirm ?? []).map((c) => {
        if (!/^[0-9a-fA-F]{7,64}$/.test(c)) throw new UsageError(`--confirm: expected a commit id of at least 7 hex digits (is ${JSON.stringify(c)})`);
        return c.toLowerCase();
      }),
    },
  }, logger);

  let stopping: Promise<void> | undefined;
  const stop = (sig: string): void => {
    if (stopping !== undefined) return;
    logger.info({ signal: sig }, 'signal received');
    stopping = daemon.stop();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    logger.info({ signal: 'SIGHUP' }, 'signal received: refreshing sources');
    daemon.refreshSources();
  });
  try {
    await daemon.start();
  } catch (err) {
    logger.fatal({ err }, 'cannot start');
    await daemon.stop().catch(() => undefined);
    logger.flush();
    return 1;
  }
  await new Promise<void>((resolve) => {
    const wait = setInterval(() => {
      if (stopping !== undefined) {
        clearInterval(wait);
        void stopping.then(resolve, resolve);
      }
    }, 100);
  });
  logger.flush();
  return leadershipLost ? 1 : 0;
}
