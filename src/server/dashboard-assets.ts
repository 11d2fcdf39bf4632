/**
 * The dashboard's files (src/server/dashboard/: index.html, dashboard.css, dashboard.js), read
 * once at start and served from memory with an ETag and gzip: every asset comes from the daemon,
 * nothing from the internet. The page itself holds no data (the API and the event stream do), so
 * it is served without the token even where data routes need one; its Content-Security-Policy
 * allows nothing but this origin.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

interface Asset {
  readonly body: Buffer;
  readonly gzip: Buffer;
  readonly etag: string;
  readonly contentType: string;
}

const FILES: Readonly<Record<string, { file: string; contentType: string }>> = {
  '/': { file: 'index.html', contentType: 'text/html; charset=utf-8' },
  '/ui/': { file: 'index.html', contentType: 'text/html; charset=utf-8' },
  '/ui/dashboard.css': { file: 'dashboard.css', contentType: 'text/css; charset=utf-8' },
  '/ui/dashboard.js': { file: 'dashboard.js', contentType: 'text/javascript; charset=utf-8' },
};

const CSP = [
  "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:", "connect-src 'self'",
  "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
].join('; ');

/** Where the files are: beside this module in src/, or in src/ when this module runs from dist/src/. */
export function dashboardDir(): string {
  const candidates = [new URL('./dashboard/', import.meta.url), new URL('../../../src/server/dashboard/', import.meta.url)];
  const found = candidates.map((u) => fileURLToPath(u)).find((dir) => existsSync(`${dir}index.html`));
  if (found === undefined) throw new Error('cannot find the dashboard files (src/server/dashboard/index.html)');
  return found;
}

/** The dashboard's static files, served from memory with an ETag and gzip. */
export class DashboardAssets {
  private readonly assets = new Map<string, Asset>();

  /** Reads every file of `dir` now; throws "cannot ..." naming a missing one. */
  constructor(dir = dashboardDir()) {
    for (const [path, { file, contentType }] of Object.entries(FILES)) {
      const body = readFileSync(`${dir}${file}`);
      const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
      this.assets.set(path, { body, gzip: gzipSync(body, { level: 9 }), etag, contentType });
    }
  }

  /** Bytes of the whole page (every distinct file once), as sent uncompressed and gzipped. */
  get weight(): { bytes: number; gzipBytes: number } {
    const distinct = new Map([...this.assets.values()].map((a) => [a.etag, a]));
    let bytes = 0;
    let gzipBytes = 0;
    for (const a of distinct.values()) {
      bytes += a.body.length;
      gzipBytes += a.gzip.length;
    }
    return { bytes, gzipBytes };
  }

  /** Whether `path` is a dashboard file. */
  has(path: string): boolean {
    return this.assets.has(path);
  }

  /** Sends the file at `path` (304 when the client has it, gzip when it accepts it). */
  serve(req: IncomingMessage, res: ServerResponse, path: string): void {
    const asset = this.assets.get(path);
    if (asset === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found\n');
      return;
    }
    const headers: Record<string, string> = {
      'content-type': asset.contentType, etag: asset.etag, 'cache-control': 'no-cache', 'content-security-policy': CSP,
      'x-content-type-options': 'nosniff', 'x-frame-options': 'DENY', 'referrer-policy': 'no-referrer', vary: 'accept-encoding',
    };
    if (req.headers['if-none-match'] === asset.etag) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    const gzip = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
    const body = gzip ? asset.gzip : asset.body;
    res.writeHead(200, { ...headers, 'content-length': String(body.length), ...(gzip ? { 'content-encoding': 'gzip' } : {}) });
    res.end(req.method === 'HEAD' ? undefined : body);
  }
}
