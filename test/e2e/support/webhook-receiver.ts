/**
 * A real HTTP webhook receiver on 127.0.0.1 for notification tests, whose behaviour the test
 * switches at will: down (the port closed: connection refused), ok, failing (500), slow (answers
 * after `slowMs`), flapping (500 and 200 in turn). It de-duplicates by CloudEvents id as a
 * receiver must, remembers the first arrival of each id in order, and checks every signature.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { verifySignature } from '../../../src/notify/cloud-event.js';

export type ReceiverMode = 'ok' | 'fail' | 'slow' | 'flap';

/** A CloudEvent as received (the fields the tests read). */
export interface ReceivedEvent {
  readonly id: string;
  readonly type: string;
  readonly subject: string;
  readonly sequence: string;
  readonly source: string;
  readonly data: Record<string, unknown>;
  /** When it first arrived (ms since the epoch). */
  readonly arrivedAtMs: number;
}

export class WebhookReceiver {
  mode: ReceiverMode = 'ok';
  slowMs = 1_500;
  /** First arrival of each id, in arrival order. */
  readonly events: ReceivedEvent[] = [];
  private readonly seen = new Set<string>();
  /** Requests answered, by status, and requests whose id had already arrived. */
  readonly stats = { requests: 0, duplicates: 0, badSignatures: 0, answered: new Map<number, number>() };
  private server: Server | undefined;
  private port = 0;
  private flip = false;

  constructor(private readonly secret: Buffer | undefined) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}/hook`;
  }

  /** Starts listening (on the same port as before, if it listened already). */
  async up(): Promise<void> {
    if (this.server !== undefined) return;
    const server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Closes the port: the next connection is refused. */
  async down(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server === undefined) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Ids received so far. */
  ids(): Set<string> {
    return new Set(this.events.map((e) => e.id));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    this.stats.requests++;
    if (this.secret !== undefined && !verifySignature(this.secret, body, req.headers['x-hyperlet-signature'] as string | undefined)) {
      this.stats.badSignatures++;
      return this.answer(res, 401);
    }
    const event = JSON.parse(body.toString('utf8')) as Omit<ReceivedEvent, 'arrivedAtMs'>;
    const mode = this.mode;
    if (mode === 'fail' || (mode === 'flap' && (this.flip = !this.flip))) return this.answer(res, 500);
    // Taken: recorded now, even if the answer comes too late for the sender (which will send it again).
    if (this.seen.has(event.id)) this.stats.duplicates++;
    else {
      this.seen.add(event.id);
      this.events.push({ ...event, arrivedAtMs: Date.now() });
    }
    if (mode === 'slow') await new Promise((r) => setTimeout(r, this.slowMs));
    this.answer(res, 200);
  }

  private answer(res: ServerResponse, status: number): void {
    this.stats.answered.set(status, (this.stats.answered.get(status) ?? 0) + 1);
    if (res.destroyed) return;
    res.writeHead(status, { 'content-type': 'text/plain' });
    res.end();
  }
}
