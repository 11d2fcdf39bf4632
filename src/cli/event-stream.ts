/**
 * A client of the daemon's event stream (GET /api/v1/watch, Server-Sent Events) over node:http
 * and node:https, so it can send the API token in a header and trust a given CA. Parses the text/event-stream
 * format: `event:`, `data:` (joined by newlines), `id:`, comments; a blank line ends a message.
 *
 * Guarantees: yields each message once, in order, as soon as its blank line arrives; ends when
 * the daemon closes the stream or `signal` aborts; throws "cannot watch ..." when the daemon
 * answers anything but 200 with an event stream.
 */
import { type IncomingMessage, request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

/** One message of the stream. */
export interface StreamMessage {
  readonly event: string;
  readonly data: string;
  readonly id?: string;
}

/** Incremental text/event-stream parser: feed it chunks, get whole messages. */
export class EventStreamParser {
  private buffer = '';
  private event = '';
  private data: string[] = [];
  private id: string | undefined;

  /** Messages completed by `chunk`. */
  push(chunk: string): StreamMessage[] {
    this.buffer += chunk;
    const out: StreamMessage[] = [];
    for (;;) {
      const end = this.buffer.search(/\r\n|\r|\n/);
      if (end < 0) break;
      const line = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + (this.buffer.startsWith('\r\n', end) ? 2 : 1));
      if (line === '') {
        if (this.data.length > 0 || this.event !== '') {
          const event = this.event === '' ? 'message' : this.event;
          out.push({ event, data: this.data.join('\n'), ...(this.id === undefined ? {} : { id: this.id }) });
        }
        this.event = '';
        this.data = [];
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') this.event = value;
      else if (field === 'data') this.data.push(value);
      else if (field === 'id') this.id = value;
    }
    return out;
  }
}

/** Opens `url` (http or https; `ca` to trust a self-signed server) and yields its messages until it ends. */
export async function* readEventStream(
  url: string, options: { headers?: Record<string, string>; signal?: AbortSignal; ca?: Buffer } = {},
): AsyncGenerator<StreamMessage> {
  const target = new URL(url);
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = send(target, {
      headers: { accept: 'text/event-stream', ...options.headers },
      ...(options.ca === undefined ? {} : { ca: options.ca }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    }, resolve);
    req.on('error', (err: NodeJS.ErrnoException) => {
      const why = err.code ?? err.message;
      reject(new Error(`cannot watch ${target.origin}: ${why} (is hyperlet run serving there? see --server)`, { cause: err }));
    });
    req.end();
  });
  const type = res.headers['content-type'] ?? '';
  if (res.statusCode !== 200 || !type.startsWith('text/event-stream')) {
    const chunks: Buffer[] = [];
    for await (const chunk of res) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8').trim();
    const detail = text === '' ? '' : `: ${text}`;
    throw new Error(`cannot watch ${target.origin}${target.pathname}: the daemon answered ${res.statusCode ?? 0}${detail}`);
  }
  res.setEncoding('utf8');
  const parser = new EventStreamParser();
  try {
    for await (const chunk of res) for (const message of parser.push(chunk as string)) yield message;
  } catch (err) {
    if (options.signal?.aborted === true) return;
    throw err;
  } finally {
    res.destroy();
  }
}
