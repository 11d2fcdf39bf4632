/**
 * The agent-to-agent handover server (`hyperlet run --peer-listen HOST:PORT`): another node's
 * agent fetches the data of an instance that left this node, then releases it (see
 * sources/kube-handover.ts). Two routes, both needing `Authorization: Bearer TOKEN` (the shared
 * --peer-token-file; compared in constant time):
 * - `GET  /v1/handover/NAMESPACE/KIND/NAME?uid=UID`: stops the instance and streams its data
 *   (200, the provider's archive), or answers JSON {reason, message}: 404 NoInstance, 409
 *   StillAssigned (the object is still this node's), 401 Unauthorized.
 * - `POST /v1/handover/NAMESPACE/KIND/NAME/release?uid=UID`: the caller has the data; the
 *   instance here is deleted (200 Released).
 * Plain HTTP only on a loopback address; anything else serves HTTPS (--tls-cert, --tls-key).
 */
import { type IncomingMessage, type Server, type ServerResponse, createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { ExportAnswer, HandoverRequest } from '../sources/kube-handover.js';
import { bearerMatches } from './http-server.js';

/** What the server answers with: the kube handover's two operations. */
export interface HandoverService {
  exportFor(req: HandoverRequest, signal: AbortSignal): Promise<ExportAnswer>;
  releaseFor(req: HandoverRequest, signal: AbortSignal): Promise<{ code: number; reason: string; message: string }>;
}

/** Where and how the handover server listens. */
export interface HandoverServerOptions {
  readonly host: string;
  readonly port: number;
  readonly token: string;
  readonly service: HandoverService;
  readonly logger: Logger;
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer };
}

const ROUTE = /^\/v1\/handover\/([a-z0-9][-a-z0-9]*)\/([A-Za-z]+)\/([a-z0-9][-a-z0-9.]*)(\/release)?$/;

/** See the file comment. */
export class HandoverServer {
  private readonly server: Server;
  private readonly log: Logger;
  private readonly abort = new AbortController();

  constructor(private readonly options: HandoverServerOptions) {
    this.log = options.logger.child({ component: 'handover-server' });
    const handler = (req: IncomingMessage, res: ServerResponse): void => {
      void this.serve(req, res).catch((err: unknown) => {
        this.log.warn({ err }, 'handover request failed');
        if (!res.headersSent) answer(res, 500, 'Failed', (err as Error).message);
        else res.destroy(err as Error);
      });
    };
    this.server = options.tls === undefined ? createHttpServer(handler) : createHttpsServer({ cert: options.tls.cert, key: options.tls.key }, handler);
  }

  /** Starts listening; resolves to the bound address. */
  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /** Stops listening and ends exports in flight. */
  async close(): Promise<void> {
    this.abort.abort();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!bearerMatches(req.headers.authorization, this.options.token)) {
      answer(res, 401, 'Unauthorized', 'cannot serve a handover without the peer token');
      return;
    }
    const url = new URL(req.url ?? '/', 'http://handover');
    const m = ROUTE.exec(url.pathname);
    const uid = url.searchParams.get('uid') ?? '';
    if (m === null || uid === '') {
      answer(res, 404, 'NotFound', 'cannot route: expected /v1/handover/NAMESPACE/KIND/NAME[/release]?uid=UID');
      return;
    }
    const request: HandoverRequest = { namespace: m[1] ?? '', kind: m[2] ?? '', name: m[3] ?? '', uid };
    const release = m[4] !== undefined;
    if ((release && req.method !== 'POST') || (!release && req.method !== 'GET')) {
      answer(res, 405, 'MethodNotAllowed', release ? 'cannot release with anything but POST' : 'cannot export with anything but GET');
      return;
    }
    const signal = AbortSignal.any([this.abort.signal, abortedWhenClosed(res)]);
    if (release) {
      const released = await this.options.service.releaseFor(request, signal);
      answer(res, released.code, released.reason, released.message);
      return;
    }
    const exported = await this.options.service.exportFor(request, signal);
    if (!exported.ok) {
      answer(res, exported.code, exported.reason, exported.message);
      return;
    }
    this.log.info({ ...request }, 'streaming instance data to another node');
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    await pipeline(exported.stream, res);
  }
}

function abortedWhenClosed(res: ServerResponse): AbortSignal {
  const controller = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) controller.abort();
  });
  return controller.signal;
}

function answer(res: ServerResponse, code: number, reason: string, message: string): void {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ reason, message }));
}
