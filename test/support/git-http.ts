/**
 * A smart-HTTP git server on 127.0.0.1 that wants Basic credentials: Node's http server in front
 * of `git http-backend` (CGI), serving every repository under one directory read-only. It records
 * each request's path and whether it carried the right credentials, for tests of what hyperlet
 * sends and where.
 */
import { spawn } from 'node:child_process';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';

export interface SeenRequest {
  readonly path: string;
  readonly authorized: boolean;
  /** The raw Authorization header, when one came. */
  readonly authorization?: string;
}

export class GitHttpServer {
  private constructor(private readonly server: Server, readonly port: number, readonly seen: SeenRequest[]) {}

  /** Serves `baseDir`; every request needs `username:password` (HTTP Basic). */
  static async start(baseDir: string, credentials: { username: string; password: string }): Promise<GitHttpServer> {
    const want = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
    const seen: SeenRequest[] = [];
    const server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      const authorized = req.headers.authorization === want;
      seen.push({ path: url.pathname, authorized, ...(req.headers.authorization === undefined ? {} : { authorization: req.headers.authorization }) });
      if (!authorized) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="hyperlet-test"', 'content-type': 'text/plain' });
        res.end('credentials needed\n');
        return;
      }
      cgi(baseDir, req, url, res);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return new GitHttpServer(server, (server.address() as { port: number }).port, seen);
  }

  /** The URL of `repo` (a directory under baseDir), with `userinfo@` when given. */
  url(repo: string, userinfo?: string): string {
    return `http://${userinfo === undefined ? '' : `${userinfo}@`}127.0.0.1:${this.port}/${repo}`;
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

function cgi(baseDir: string, req: IncomingMessage, url: URL, res: ServerResponse): void {
  const child = spawn('git', ['http-backend'], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin', GIT_PROJECT_ROOT: baseDir, GIT_HTTP_EXPORT_ALL: '1',
      REQUEST_METHOD: req.method ?? 'GET', PATH_INFO: url.pathname, QUERY_STRING: url.search.slice(1),
      CONTENT_TYPE: req.headers['content-type'] ?? '', REMOTE_ADDR: '127.0.0.1', REMOTE_USER: 'test',
      ...(req.headers['content-length'] === undefined ? {} : { CONTENT_LENGTH: req.headers['content-length'] }),
      ...(req.headers['content-encoding'] === undefined ? {} : { HTTP_CONTENT_ENCODING: req.headers['content-encoding'] }),
      ...(req.headers['git-protocol'] === undefined ? {} : { GIT_PROTOCOL: String(req.headers['git-protocol']) }),
    },
    stdio: ['pipe', 'pipe', 'ignore'],
  });
  req.pipe(child.stdin);
  let head = Buffer.alloc(0);
  let headersDone = false;
  child.stdout.on('data', (chunk: Buffer) => {
    if (headersDone) { res.write(chunk); return; }
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) return;
    headersDone = true;
    let status = 200;
    const headers: Record<string, string> = {};
    for (const line of head.subarray(0, end).toString('latin1').split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon < 0) continue;
      const name = line.slice(0, colon).trim();
      const value = line.slice(colon + 1).trim();
      if (name.toLowerCase() === 'status') status = Number(value.split(' ')[0]);
      else headers[name] = value;
    }
    res.writeHead(status, headers);
    res.write(head.subarray(end + 4));
  });
  child.on('close', () => res.end());
  child.on('error', () => { if (!res.headersSent) res.writeHead(500); res.end(); });
}
