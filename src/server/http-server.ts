/**
 * The daemon's HTTP endpoints, on 127.0.0.1 unless told otherwise: /healthz (the process
 * answers), /readyz (per-check JSON; 503 until every source has listed and every controller has
 * resynced once), /metrics (Prometheus text), and a read API over the state DB for dir and git
 * sources: /apis/hyperlet.io/v1alpha1/{containers,virtualmachines}[?phase=&labelSelector=&limit=&continue=]
 * and /apis/hyperlet.io/v1alpha1/namespaces/NS/{plural}[/NAME]; /sources (per-source state: git
 * revisions and problems) and POST /sources/ID/refresh (look for new input now).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { KINDS, type Kind } from '../api/v1alpha1/group.js';
import type { StateDb } from '../state/state-db.js';
import { queryObjects, rowToObject } from './object-query.js';

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
}

const PLURAL_TO_KIND = new Map<string, Kind>(Object.entries(KINDS).map(([kind, k]) => [k.plural, kind as Kind]));

/** Serves /healthz, /readyz, /metrics and the read API on loopback by default; `close` stops it. */
export class HttpServer {
  private readonly server: Server;

  constructor(private readonly options: HttpServerOptions) {
    this.server = createServer((req, res) => {
      this.route(req, res).catch((err: unknown) => {
        options.logger.error({ err, url: req.url }, 'http handler failed');
        if (!res.headersSent) send(res, 500, { error: 'internal error' });
      });
    });
  }

  /** Listens; resolves with the bound address (port 0 picks a free one). */
  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.host, () => resolve(this.server.address() as AddressInfo));
    });
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const refresh = /^\/sources\/([^/]+)\/refresh$/.exec(url.pathname);
    if (refresh !== null && req.method !== 'POST') return send(res, 405, { error: 'refresh takes POST' });
    if (refresh !== null) {
      const id = decodeURIComponent(refresh[1] ?? '');
      return (this.options.refresh?.(id) ?? 0) > 0 ? send(res, 202, { refreshing: id }) : send(res, 404, { error: `no source ${id} that can refresh` });
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, { error: 'only GET is served (and POST /sources/ID/refresh)' });
    if (url.pathname === '/sources') {
      if (this.options.db === undefined) return send(res, 404, { error: 'no state DB' });
      const problems = this.options.db.problems();
      return send(res, 200, { items: this.options.db.listSources().map((src) => ({ ...src, problems: problems.filter((p) => p.source === src.id).map((p) => p.problem.line) })) });
    }
    if (url.pathname === '/healthz') return sendText(res, 200, 'ok\n');
    if (url.pathname === '/readyz') return this.readyz(res);
    if (url.pathname === '/metrics') {
      res.writeHead(200, { 'content-type': this.options.registry.contentType });
      res.end(await this.options.registry.metrics());
      return;
    }
    const api = /^\/apis\/hyperlet\.io\/v1alpha1(?:\/namespaces\/([^/]+))?\/([a-z]+)(?:\/([^/]+))?$/.exec(url.pathname);
    if (api !== null) return this.read(res, url, api[1], api[2] ?? '', api[3]);
    send(res, 404, { error: `no route for ${url.pathname}` });
  }

  private readyz(res: ServerResponse): void {
    const results = this.options.checks().map((c) => ({ name: c.name, required: c.required, ...c.check() }));
    const ready = results.every((r) => r.ok || !r.required);
    send(res, ready ? 200 : 503, { ready, checks: results });
  }

  private read(res: ServerResponse, url: URL, namespace: string | undefined, plural: string, name: string | undefined): void {
    const kind = PLURAL_TO_KIND.get(plural);
    if (kind === undefined) return send(res, 404, { error: `unknown resource ${plural}` });
    if (this.options.db === undefined) return send(res, 404, { error: 'the read API serves dir and git sources; use the Kubernetes API in kube mode' });
    const rows = this.options.db.listObjects();
    if (name !== undefined) {
      const row = rows.find((r) => r.kind === kind && r.namespace === (namespace ?? 'default') && r.name === name);
      return row === undefined ? send(res, 404, { error: `${kind} ${namespace ?? 'default'}/${name} not found` }) : send(res, 200, rowToObject(row));
    }
    const limitParam = url.searchParams.get('limit');
    const limit = limitParam === null ? undefined : Number(limitParam);
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) return send(res, 400, { error: 'limit must be a positive integer' });
    try {
      const page = queryObjects(rows, {
        kind,
        ...(namespace === undefined ? {} : { namespace }),
        ...(url.searchParams.get('phase') === null ? {} : { phase: url.searchParams.get('phase') ?? '' }),
        ...(url.searchParams.get('labelSelector') === null ? {} : { labelSelector: url.searchParams.get('labelSelector') ?? '' }),
        ...(limit === undefined ? {} : { limit }),
        ...(url.searchParams.get('continue') === null ? {} : { continueToken: url.searchParams.get('continue') ?? '' }),
      });
      send(res, 200, {
        apiVersion: 'hyperlet.io/v1alpha1', kind: `${kind}List`,
        metadata: page.continueToken === undefined ? {} : { continue: page.continueToken },
        items: page.items.map(rowToObject),
      });
    } catch (err) {
      send(res, 400, { error: (err as Error).message });
    }
  }
}

function send(res: ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(`${JSON.stringify(body)}\n`);
}

function sendText(res: ServerResponse, code: number, text: string): void {
  res.writeHead(code, { 'content-type': 'text/plain' });
  res.end(text);
}
