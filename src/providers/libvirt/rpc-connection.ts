/**
 * One libvirt RPC connection over a stream socket: serial-matched calls that may overlap and
 * complete out of order, at most `maxInFlight` at once (libvirtd's max_client_requests), event
 * messages routed by type, and keepalive PINGs answered.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { LibvirtError, decodeRemoteError } from './libvirt-error.js';
import {
  KEEPALIVE_PROC_PING, KEEPALIVE_PROC_PONG, KEEPALIVE_PROGRAM, MessageDecoder, MessageStatus, MessageType,
  REMOTE_PROGRAM, REMOTE_PROTOCOL_VERSION, encodeMessage, type RpcMessage,
} from './rpc-framing.js';
import { RpcStream } from './rpc-stream.js';
import { XdrReader } from './xdr.js';

/** libvirtd's default max_client_requests: more calls in flight only queue in the daemon. */
export const DEFAULT_MAX_IN_FLIGHT = 5;
/** A call the daemon has not answered in this time fails (a start can take seconds; a hung daemon must not hang us). */
export const DEFAULT_CALL_TIMEOUT_MS = 60_000;

/** Limits of one RPC connection. */
export interface RpcConnectionOptions {
  readonly maxInFlight?: number;
  readonly callTimeoutMs?: number;
}

/** Per-call options of an RPC call. */
export interface CallOptions {
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

interface PendingCall {
  readonly procedure: number;
  resolve(payload: Buffer): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/** Events: 'event' (procedure: number, payload: Buffer) for every MESSAGE of the remote program; 'close' (err?: Error) once. */
export interface RpcConnectionEvents {
  event: [procedure: number, payload: Buffer];
  close: [err: Error | undefined];
}

/**
 * A connection to libvirtd. Guarantees: each call settles exactly once (reply, daemon error as
 * LibvirtError, timeout, abort, or connection loss); replies are matched on serial, never on
 * order. Caveats: after 'close' every call fails at once; reconnecting is the caller's job
 * (LibvirtClient).
 */
export class RpcConnection extends EventEmitter<RpcConnectionEvents> {
  private readonly decoder = new MessageDecoder();
  private readonly pending = new Map<number, PendingCall>();
  /** Open streams by the serial of the call that opened them. */
  private readonly streams = new Map<number, RpcStream>();
  private readonly waiting: (() => void)[] = [];
  private nextSerial = 1;
  private inFlight = 0;
  private closedWith: Error | undefined;
  private closed = false;
  private readonly maxInFlight: number;
  private readonly callTimeoutMs: number;

  constructor(private readonly socket: Duplex, options: RpcConnectionOptions = {}) {
    super();
    this.maxInFlight = options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
    this.callTimeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (err) => this.shutdown(err));
    socket.on('close', () => this.shutdown(undefined));
  }

  /** Opens a UNIX socket connection; rejects with a LibvirtError (code 0) saying why when it cannot within `timeoutMs`. */
  static async open(socketPath: string, timeoutMs: number, options: RpcConnectionOptions = {}): Promise<RpcConnection> {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.createConnection(socketPath);
      const timer = setTimeout(() => {
        s.destroy();
        reject(new LibvirtError(`cannot connect to ${socketPath}: no answer in ${timeoutMs} ms`, 0, 0));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('error', (err) => {
        clearTimeout(timer);
        reject(new LibvirtError(`cannot connect to ${socketPath}: ${err.message}`, 0, 0, undefined, { cause: err }));
      });
    });
    return new RpcConnection(socket, options);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Number of calls sent and not yet answered. */
  get callsInFlight(): number {
    return this.inFlight;
  }

  /**
   * Calls `procedure` of the remote program with an XDR-encoded argument and resolves with the
   * reply's payload. Rejects with the daemon's LibvirtError when it answers ERROR.
   */
  async call(procedure: number, args: Buffer, options: CallOptions = {}): Promise<Buffer> {
    options.signal?.throwIfAborted();
    await this.acquireSlot();
    try {
      return await this.send(procedure, args, options);
    } finally {
      this.releaseSlot();
    }
  }

  /**
   * Calls a stream procedure (DOMAIN_OPEN_CONSOLE…) and resolves with its stream once the daemon
   * has answered OK; STREAM messages that arrive before are kept for the stream. Rejects like
   * call() when the daemon refuses.
   */
  async openStream(procedure: number, args: Buffer, options: CallOptions = {}): Promise<RpcStream> {
    options.signal?.throwIfAborted();
    await this.acquireSlot();
    let stream: RpcStream | undefined;
    try {
      await this.send(procedure, args, options, (serial) => {
        stream = new RpcStream((status, payload) => {
          if (status !== MessageStatus.Continue) this.streams.delete(serial);
          if (this.closed) return;
          this.socket.write(encodeMessage({ program: REMOTE_PROGRAM, version: REMOTE_PROTOCOL_VERSION, procedure, type: MessageType.Stream, serial, status }, payload));
        });
        this.streams.set(serial, stream);
      });
    } catch (err) {
      for (const [serial, s] of this.streams) if (s === stream) this.streams.delete(serial);
      throw err;
    } finally {
      this.releaseSlot();
    }
    if (stream === undefined) throw new LibvirtError(`cannot open a stream with procedure ${procedure}`, 0, 0, procedure);
    return stream;
  }

  /** Closes the socket; calls still pending fail. Idempotent. */
  close(): void {
    this.socket.end();
    this.socket.destroy();
    this.shutdown(undefined);
  }

  private async acquireSlot(): Promise<void> {
    if (this.inFlight < this.maxInFlight) {
      this.inFlight++;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
    // the releasing call handed its slot over: inFlight stays the same
  }

  private releaseSlot(): void {
    const next = this.waiting.shift();
    if (next !== undefined) next();
    else this.inFlight--;
  }

  private send(procedure: number, args: Buffer, options: CallOptions, beforeSend?: (serial: number) => void): Promise<Buffer> {
    if (this.closed) {
      return Promise.reject(new LibvirtError(`cannot call procedure ${procedure}: connection closed${this.closedWith ? ` (${this.closedWith.message})` : ''}`, 0, 0, procedure));
    }
    const serial = this.nextSerial;
    this.nextSerial = this.nextSerial >= 0xffff_fff0 ? 1 : this.nextSerial + 1;
    const timeoutMs = options.timeoutMs ?? this.callTimeoutMs;
    return new Promise<Buffer>((resolve, reject) => {
      const onAbort = (): void => {
        this.settle(serial)?.reject(options.signal?.reason instanceof Error ? options.signal.reason : new Error('aborted'));
      };
      const timer = setTimeout(() => {
        this.settle(serial)?.reject(new LibvirtError(`cannot call procedure ${procedure}: no reply in ${timeoutMs} ms`, 0, 0, procedure));
      }, timeoutMs);
      options.signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.set(serial, {
        procedure,
        timer,
        resolve: (p) => { options.signal?.removeEventListener('abort', onAbort); resolve(p); },
        reject: (e) => { options.signal?.removeEventListener('abort', onAbort); reject(e); },
      });
      beforeSend?.(serial);
      this.socket.write(encodeMessage({
        program: REMOTE_PROGRAM, version: REMOTE_PROTOCOL_VERSION, procedure, type: MessageType.Call, serial, status: MessageStatus.Ok,
      }, args));
    });
  }

  private settle(serial: number): PendingCall | undefined {
    const call = this.pending.get(serial);
    if (call === undefined) return undefined;
    this.pending.delete(serial);
    clearTimeout(call.timer);
    return call;
  }

  private receive(chunk: Buffer): void {
    let messages: RpcMessage[];
    try {
      messages = this.decoder.push(chunk);
    } catch (err) {
      // The stream is out of step: nothing after this point can be trusted.
      this.socket.destroy();
      this.shutdown(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    for (const m of messages) this.dispatch(m);
  }

  private dispatch(m: RpcMessage): void {
    const { header } = m;
    if (header.program === KEEPALIVE_PROGRAM) {
      if (header.procedure === KEEPALIVE_PROC_PING) {
        this.socket.write(encodeMessage({
          program: KEEPALIVE_PROGRAM, version: 1, procedure: KEEPALIVE_PROC_PONG, type: MessageType.Message, serial: 0, status: MessageStatus.Ok,
        }, Buffer.alloc(0)));
      }
      return;
    }
    if (header.program !== REMOTE_PROGRAM) return;
    // Events carry serial 1 (not 0 as documented): route on the type only.
    if (header.type === MessageType.Message) {
      this.emit('event', header.procedure, m.payload);
      return;
    }
    if (header.type === MessageType.Stream) {
      this.streamMessage(m);
      return;
    }
    if (header.type !== MessageType.Reply) return;
    const call = this.settle(header.serial);
    if (call === undefined) return; // timed out or aborted already
    if (header.status === MessageStatus.Ok) {
      call.resolve(m.payload);
      return;
    }
    try {
      call.reject(decodeRemoteError(new XdrReader(m.payload), call.procedure));
    } catch (err) {
      call.reject(new LibvirtError(`cannot decode the error of procedure ${call.procedure}`, 0, 0, call.procedure, { cause: err }));
    }
  }

  private streamMessage(m: RpcMessage): void {
    const stream = this.streams.get(m.header.serial);
    if (stream === undefined) return; // ended here already (the daemon's answer to our finish or abort)
    if (m.header.status === MessageStatus.Continue) {
      stream.deliverData(m.payload);
      return;
    }
    this.streams.delete(m.header.serial);
    if (m.header.status === MessageStatus.Ok) {
      stream.deliverEnd(undefined);
      return;
    }
    let err: Error;
    try {
      err = decodeRemoteError(new XdrReader(m.payload), m.header.procedure);
    } catch {
      err = new LibvirtError(`stream of procedure ${m.header.procedure} aborted by libvirtd`, 0, 0, m.header.procedure);
    }
    stream.deliverEnd(err);
  }

  private shutdown(err: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.closedWith = err;
    for (const serial of [...this.pending.keys()]) {
      const call = this.settle(serial);
      call?.reject(new LibvirtError(`cannot complete procedure ${call.procedure}: connection closed${err ? ` (${err.message})` : ''}`, 0, 0, call.procedure));
    }
    for (const [serial, stream] of [...this.streams]) {
      this.streams.delete(serial);
      stream.deliverEnd(new LibvirtError(`cannot continue the stream: connection closed${err ? ` (${err.message})` : ''}`, 0, 0));
    }
    this.emit('close', err);
  }
}
