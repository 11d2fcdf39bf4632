/**
 * The daemon's HTTP endpoints, on 127.0.0.1 unless told otherwise: /healthz (the process
 * answers), /readyz (per-check JSON; 503 until every source has listed and every controller has
 * resynced once), /metrics (Prometheus text), and a read API over the state DB for dir and git
 * sources: /apis/hyperlet.io/v1alpha1/{containers,virtualmachines}[?phase=&labelSelector=&limit=&continue=]
 * and /apis/hyperlet.io/v1alpha1/namespaces/NS/{plural}[/NAME]; /sources (per-source state: git
 * revisions and problems) and POST /sources/ID/refresh (look for new input now); GET
 * /api/v1/watch, the event stream (watch-stream.ts).
 *
 * Guarantees (the trust boundary of issue 10):
 * - A request whose Host is not a loopback name, the bound address or an allowed name is refused
 *   with 421 before anything else (DNS rebinding); a malformed target is a 400, never a 500.
 * - Every mutating route needs `Authorization: Bearer TOKEN` (401 otherwise); bound to a
 *   non-loopback address, every route does, and the server refuses to exist without TLS.
 * - Headers must arrive within `headersTimeoutMs`, the whole request within `requestTimeoutMs`;
 *   at most `maxConnections` sockets at once; bodies over `maxBodyBytes` (or chunked) get 413.
 * - Every response body passes `redact` (environment secrets, URL credentials).
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { KINDS, type Kind } from '../api/v1alpha1/group.js';
import type { StateDb } from '../state/state-db.js';
import { isAllowedHost, isLoopback } from './host-check.js';
import { queryObjects, rowToObject } from './object-query.js';
import { parseRequestTarget } from './request-target.js';
import type { WatchStream } from './watch-stream.js';
import type { DashboardApi } from './dashboard-api.js';
import { type BackupApi, serveBackupRun } from './backup-api.js';
import type { DashboardAssets } from './dashboard-assets.js';

/** One /readyz check: its name, whether it gates readiness, and how to run it. */
export interface ReadinessCheck {
  readonly name: string;
  /** Whether readiness depends on it; informational checks (a provider that is down) never fail /readyz. */
  readonly required: boolean;
  check(): { ok: boolean; detail?: string };
}

/** Where the HTTP server listens and what it serves. */
export interface HttpServerOptions {
  readonly host: string;
  readonly port: number;
  readonly registry: Registry;
  readonly checks: () => readonly ReadinessCheck[];
  readonly db?: StateDb;
  readonly logger: Logger;
  /** POST /sources/ID/refresh: asks that source to look for new input now; returns how many were asked. */
  readonly refresh?: (sourceId: string) => number;
  /** GET /api/v1/watch: the event stream. */
  readonly watch?: WatchStream;
  /** The dashboard: its files (/, /ui/...) and what it reads (/api/v1/host, events, objects). */
  readonly dashboard?: { readonly assets: DashboardAssets; readonly api: DashboardApi };
  /** Backups and restores from archives (server/backup-api.ts). */
  readonly backups?: BackupApi;
  /** The bearer token mutating routes (and every route on a non-loopback bind) require. */
  readonly token: string;
  /** Certificate and key (PEM): serve HTTPS. Required when `host` is not loopback. */
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer };
  /** Host names served besides loopback names and the bound address (--http-host-allow). */
  readonly hostAllow?: readonly string[];
  /** Applied to every response body: the daemon's Redactor.text. */
  readonly redact?: (text: string) => string;
  /** Open sockets at once (default 128). */
  readonly maxConnections?: number;
  /** Time for a client to send its headers (default 10 s) and its whole request (default 30 s). */
  readonly headersTimeoutMs?: number;
  readonly requestTimeoutMs?: number;
  /** Largest request body accepted (default 64 KiB); no route reads one today. */
  readonly maxBodyBytes?: number;
}

const PLURAL_TO_KIND = new Map<string, Kind>(Object.entries(KINDS).map(([kind, k]) => [k.plural, kind as Kind]));

/** Header bytes per request: Node's default (16 KiB), stated. */
const MAX_HEADER_BYTES = 16 * 1024;

/** Whether the bearer token in `header` is `token`, compared in constant time. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer ([A-Za-z0-9._~+/=-]+)$/.exec(header ?? '');
  if (m === null || token === '') return false;
  const a = Buffer.from(m[1] ?? '', 'utf8');
  const b = Buffer.from(token, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Serves /healthz, /readyz, /metrics and the read API on loopback by default; `close` stops it. */
export class HttpServer {
  private readonly server: Server;
  /** Every route needs the token: the server is reachable from other machines. */
  private readonly tokenForReads: boolean;
  private readonly redact: (text: string) => string;
  private boundAddress: string | undefined;

  /** Throws "cannot serve ..." when bound to a non-loopback address without TLS. */
  constructor(private readonly options: HttpServerOptions) {
    this.tokenForReads = !isLoopback(options.host);
    if (this.tokenForReads && options.tls === undefined) {
      throw new Error(`cannot serve HTTP on ${options.host}, which is not a loopback address, without TLS: pass --tls-cert and --tls-key, or bind to 127.0.0.1`);
    }
    this.redact = options.redact ?? ((t) => t);
    const handler = (req: IncomingMessage, res: ServerResponse): void => {
      this.route(req, res).catch((err: unknown) => {
        options.logger.error({ err, method: req.method }, 'http handler failed');
        if (!res.headersSent) this.send(res, 500, { error: 'internal error' });
        else res.destroy();
      });
    };
    const headersTimeout = options.headersTimeoutMs ?? 10_000;
    const serverOptions = {
      maxHeaderSize: MAX_HEADER_BYTES, requestTimeout: options.requestTimeoutMs ?? 30_000, headersTimeout,
      // Node checks the timeouts every 30 s by default: a slow client could hold a socket that long.
      connectionsCheckingInterval: Math.min(1_000, headersTimeout),
    };
    this.server = options.tls === undefined
      ? createHttpServer(serverOptions, handler)
      : createHttpsServer({ ...serverOptions, cert: options.tls.cert, key: options.tls.key, minVersion: 'TLSv1.2' }, handler);
    this.server.maxConnections = options.maxConnections ?? 128;
    this.server.keepAliveTimeout = 5_000;
    this.server.on('clientError', (_err, socket) => {
      // Malformed requests, header overflows and timeouts: answer 400 when the socket still can.
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      else socket.destroy();
    });
  }

  /** Whether this server speaks TLS. */
  get secure(): boolean {
    return this.options.tls !== undefined;
  }

  /** Listens; resolves with the bound address (port 0 picks a free one). */
  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.host, () => {
        const address = this.server.address() as AddressInfo;
        this.boundAddress = address.address;
        resolve(address);
      });
    });
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!isAllowedHost(req.headers.host, { names: this.options.hostAllow ?? [], ...(this.boundAddress === undefined ? {} : { boundAddress: this.boundAddress }) })) {
      return this.send(res, 421, { error: 'this server answers only to its loopback names and the names it is configured with (--http-host-allow)' });
    }
    const length = Number(req.headers['content-length'] ?? '0');
    if (req.headers['transfer-encoding'] !== undefined || !Number.isSafeInteger(length) || length > (this.options.maxBodyBytes ?? 64 * 1024)) {
      res.setHeader('connection', 'close');
      return this.send(res, 413, { error: 'request body too large (no route takes a body)' });
    }
    const target = parseRequestTarget(req.url);
    if (!target.ok) return this.send(res, target.status, { error: target.error });
    const { segments, query } = target;
    const reading = req.method === 'GET' || req.method === 'HEAD';
    // The dashboard's files hold no data: served to anyone who passed the Host check, so a browser
    // can load the page and then send the token with its own requests.
    const assets = this.options.dashboard?.assets;
    if (reading && assets?.has(target.path) === true) return assets.serve(req, res, target.path);
    if ((!reading || this.tokenForReads) && !bearerMatches(req.headers.authorization, this.options.token)) {
      res.setHeader('www-authenticate', 'Bearer realm="hyperlet"');
      return this.send(res, 401, { error: 'this route needs the API token: Authorization: Bearer TOKEN (the daemon wrote it beside its state DB, file api-token)' });
    }
    if (segments.length === 3 && segments[0] === 'sources' && segments[2] === 'refresh') {
      if (req.method !== 'POST') return this.send(res, 405, { error: 'refresh takes POST' });
      const id = segments[1] ?? '';
      return (this.options.refresh?.(id) ?? 0) > 0 ? this.send(res, 202, { refreshing: id }) : this.send(res, 404, { error: `no source ${id} that can refresh` });
    }
    // The dashboard asks whether its token is good before it offers actions: this route needs it, like every POST.
    if (target.path === '/api/v1/session' && req.method === 'POST') return this.send(res, 200, { token: 'valid' });
    const backups = this.options.backups;
    if (req.method === 'POST' && backups !== undefined && segments[0] === 'api' && segments[1] === 'v1') {
      const [, , objects, kind = '', namespace = '', name = '', action = ''] = segments;
      if (segments.length === 7 && objects === 'objects' && action === 'backup') {
        return serveBackupRun(req, res, () => backups.backup(kind, namespace, name, query), this.redact);
      }
      if (segments.length === 3 && objects === 'restore') return serveBackupRun(req, res, () => backups.restore(query), this.redact);
    }
    const actionApi = this.options.dashboard?.api;
    // POST /api/v1/objects/KIND/NAMESPACE/NAME/ACTION: an action, as a request annotation the reconcile loop acts on.
    const isAction = segments.length === 7 && segments[0] === 'api' && segments[1] === 'v1' && segments[2] === 'objects';
    if (req.method === 'POST' && actionApi !== undefined && isAction) {
      const [, , , kind = '', namespace = '', name = '', action = ''] = segments;
      const result = actionApi.act(kind, namespace, name, action, query);
      if (!result.ok) return this.send(res, result.status, { error: result.error });
      return this.send(res, 202, { requested: result.annotation, value: result.value });
    }
    if (!reading) return this.send(res, 405, { error: 'only GET is served (and POST /sources/ID/refresh)' });
    const path = target.path;
    if (path === '/sources') {
      if (this.options.db === undefined) return this.send(res, 404, { error: 'no state DB' });
      const problems = this.options.db.problems();
      return this.send(res, 200, { items: this.options.db.listSources().map((src) => ({ ...src, problems: problems.filter((p) => p.source === src.id).map((p) => p.problem.line) })) });
    }
    if (path === '/api/v1/watch') {
      if (this.options.watch === undefined) return this.send(res, 404, { error: 'no event stream here' });
      return this.options.watch.serve(req, res, query);
    }
    const dashboard = this.options.dashboard?.api;
    if (dashboard !== undefined && segments[0] === 'api' && segments[1] === 'v1') {
      return this.dashboardRead(res, segments.slice(2), query, dashboard);
    }
    if (path === '/healthz') return this.sendText(res, 200, 'text/plain', 'ok\n');
    if (path === '/readyz') return this.readyz(res);
    if (path === '/metrics') return this.sendText(res, 200, this.options.registry.contentType, await this.options.registry.metrics());
    const api = apiRoute(segments);
    if (api !== undefined) return this.read(res, query, api.namespace, api.plural, api.name);
    this.send(res, 404, { error: `no route for ${path}` });
  }

  /** GET /api/v1/host, /api/v1/events[?limit=N], /api/v1/objects/KIND/NAMESPACE/NAME. */
  private async dashboardRead(res: ServerResponse, rest: readonly string[], query: URLSearchParams, api: DashboardApi): Promise<void> {
    if (rest.length === 1 && rest[0] === 'host') return this.send(res, 200, api.host());
    if (rest.length === 1 && rest[0] === 'events') {
      const limit = Number(query.get('limit') ?? '100');
      if (!Number.isInteger(limit) || limit < 1 || limit > 1_000) {
        return this.send(res, 400, { error: 'limit must be an integer from 1 to 1000' });
      }
      return this.send(res, 200, { items: api.recentEvents(limit) });
    }
    if (rest.length === 4 && rest[0] === 'objects') {
      const [, kind = '', namespace = '', name = ''] = rest;
      const detail = await api.object(kind, namespace, name);
      return detail === undefined ? this.send(res, 404, { error: `${kind} ${namespace}/${name} not found` }) : this.send(res, 200, detail);
    }
    this.send(res, 404, { error: `no route for /api/v1/${rest.join('/')}` });
  }

  private send(res: ServerResponse, code: number, body: unknown): void {
    this.sendText(res, code, 'application/json', `${JSON.stringify(body)}\n`);
  }

  private sendText(res: ServerResponse, code: number, contentType: string, text: string): void {
    res.writeHead(code, { 'content-type': contentType, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
    res.end(this.redact(text));
  }

  private readyz(res: ServerResponse): void {
    const results = this.options.checks().map((c) => ({ name: c.name, required: c.required, ...c.check() }));
    const ready = results.every((r) => r.ok || !r.required);
    this.send(res, ready ? 200 : 503, { ready, checks: results });
  }

  private read(res: ServerResponse, params: URLSearchParams, namespace: string | undefined, plural: string, name: string | undefined): void {
    const kind = PLURAL_TO_KIND.get(plural);
    if (kind === undefined) return this.send(res, 404, { error: `unknown resource ${plural}` });
    if (this.options.db === undefined) return this.send(res, 404, { error: 'the read API serves dir and git sources; use the Kubernetes API in kube mode' });
    const rows = this.options.db.listObjects();
    if (name !== undefined) {
      const row = rows.find((r) => r.kind === kind && r.namespace === (namespace ?? 'default') && r.name === name);
      return row === undefined ? this.send(res, 404, { error: `${kind} ${namespace ?? 'default'}/${name} not found` }) : this.send(res, 200, rowToObject(row));
    }
    const limitParam = params.get('limit');
    const limit = limitParam === null ? undefined : Number(limitParam);
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) return this.send(res, 400, { error: 'limit must be a positive integer' });
    try {
      const page = queryObjects(rows, {
        kind,
        ...(namespace === undefined ? {} : { namespace }),
        ...(params.get('phase') === null ? {} : { phase: params.get('phase') ?? '' }),
        ...(params.get('labelSelector') === null ? {} : { labelSelector: params.get('labelSelector') ?? '' }),
        ...(limit === undefined ? {} : { limit }),
        ...(params.get('continue') === null ? {} : { continueToken: params.get('continue') ?? '' }),
      });
      this.send(res, 200, {
        apiVersion: 'hyperlet.io/v1alpha1', kind: `${kind}List`,
        metadata: page.continueToken === undefined ? {} : { continue: page.continueToken },
        items: page.items.map(rowToObject),
      });
    } catch (err) {
      this.send(res, 400, { error: (err as Error).message });
    }
  }
}

/** The parts of /apis/hyperlet.io/v1alpha1[/namespaces/NS]/PLURAL[/NAME]; undefined for any other path. */
function apiRoute(segments: readonly string[]): { namespace?: string; plural: string; name?: string } | undefined {
  if (segments[0] !== 'apis' || segments[1] !== 'hyperlet.io' || segments[2] !== 'v1alpha1') return undefined;
  const rest = segments.slice(3);
  if (rest[0] === 'namespaces' && rest.length >= 3 && rest.length <= 4) {
    return { namespace: rest[1] ?? '', plural: rest[2] ?? '', ...(rest[3] === undefined ? {} : { name: rest[3] }) };
  }
  if (rest.length >= 1 && rest.length <= 2 && rest[0] !== 'namespaces') return { plural: rest[0] ?? '', ...(rest[1] === undefined ? {} : { name: rest[1] }) };
  return undefined;
}
