/**
 * A libvirt RPC stream (virNetClientStream): the data channel opened by a stream procedure such
 * as DOMAIN_OPEN_CONSOLE. Both directions carry STREAM messages with the opening call's
 * procedure and serial: status CONTINUE with raw bytes is data, OK with no payload is the end,
 * ERROR is an abort (from the daemon with a remote_error payload, from the client empty).
 */
import { EventEmitter } from 'node:events';

/** The largest data payload one STREAM message carries (VIR_NET_MESSAGE_LEGACY_PAYLOAD_MAX). */
export const STREAM_PAYLOAD_MAX_BYTES = 262_120;

/** Sends one STREAM message of the stream: `status` is MessageStatus (0 OK, 1 ERROR, 2 CONTINUE). */
export type StreamSender = (status: number, payload: Buffer) => void;

/** 'data' for every chunk from the daemon, in order; 'end' once, with the reason when it was not a clean end. */
export interface RpcStreamEvents {
  data: [chunk: Buffer];
  end: [err: Error | undefined];
}

/**
 * One open stream. Guarantees: chunks that arrive before `resume()` are kept and emitted, in
 * order, when it is called; 'end' is emitted exactly once (daemon end, daemon error, `finish()`,
 * `abort()` or connection loss), after the last 'data'; writes after the end are dropped.
 */
export class RpcStream extends EventEmitter<RpcStreamEvents> {
  private readonly held: Buffer[] = [];
  private flowing = false;
  private endedWith: { err: Error | undefined } | undefined;
  private ended = false;

  constructor(private readonly sender: StreamSender) {
    super();
  }

  /** Whether the stream has ended (either side). */
  get isEnded(): boolean {
    return this.ended || this.endedWith !== undefined;
  }

  /** Starts emitting 'data' (and a pending 'end'): call it once the listeners are attached. */
  resume(): void {
    if (this.flowing) return;
    this.flowing = true;
    for (const chunk of this.held.splice(0)) this.emit('data', chunk);
    if (this.endedWith !== undefined) this.emitEnd(this.endedWith.err);
  }

  /** Sends bytes to the daemon, split into messages it accepts. */
  write(data: Buffer): void {
    if (this.isEnded) return;
    for (let i = 0; i < data.length; i += STREAM_PAYLOAD_MAX_BYTES) this.sender(2, data.subarray(i, i + STREAM_PAYLOAD_MAX_BYTES));
  }

  /** Ends the stream cleanly (virStreamFinish): the daemon closes its side. */
  finish(): void {
    if (this.isEnded) return;
    this.sender(0, Buffer.alloc(0));
    this.deliverEnd(undefined);
  }

  /** Aborts the stream (virStreamAbort). */
  abort(): void {
    if (this.isEnded) return;
    this.sender(1, Buffer.alloc(0));
    this.deliverEnd(undefined);
  }

  /** For the connection: data from the daemon. */
  deliverData(chunk: Buffer): void {
    if (this.isEnded || chunk.length === 0) return;
    if (this.flowing) this.emit('data', chunk);
    else this.held.push(chunk);
  }

  /** For the connection: the daemon ended the stream, or the connection is gone. */
  deliverEnd(err: Error | undefined): void {
    if (this.isEnded) return;
    if (this.flowing) this.emitEnd(err);
    else this.endedWith = { err };
  }

  private emitEnd(err: Error | undefined): void {
    if (this.ended) return;
    this.ended = true;
    this.emit('end', err);
  }
}
