/**
 * libvirt RPC message framing: a 4-byte total length (counting itself), a 24-byte header
 * (program, version, procedure, type, serial, status) and an XDR payload.
 */

/** REMOTE_PROGRAM and its version. */
export const REMOTE_PROGRAM = 0x20008086;
/** The version every libvirt RPC header carries. */
export const REMOTE_PROTOCOL_VERSION = 1;
/** KEEPALIVE_PROGRAM: PING (1) must be answered with PONG (2). */
export const KEEPALIVE_PROGRAM = 0x6b656570;
/** Keepalive procedure: a ping from the peer. */
export const KEEPALIVE_PROC_PING = 1;
/** Keepalive procedure: the answer to a ping. */
export const KEEPALIVE_PROC_PONG = 2;
/** VIR_NET_MESSAGE_MAX: a frame announcing more is corrupt. */
export const MESSAGE_MAX_BYTES = 16_777_216;
/** Size of a message header, after the length word. */
export const HEADER_BYTES = 24;
const LENGTH_BYTES = 4;

/** virNetMessageType values. */
export const MessageType = { Call: 0, Reply: 1, Message: 2, Stream: 3, CallWithFds: 4, ReplyWithFds: 5 } as const;
/** virNetMessageStatus values. */
export const MessageStatus = { Ok: 0, Error: 1, Continue: 2 } as const;

/** The header of one RPC message. */
export interface MessageHeader {
  readonly program: number;
  readonly version: number;
  readonly procedure: number;
  readonly type: number;
  readonly serial: number;
  readonly status: number;
}

/** One framed RPC message: its header and XDR body. */
export interface RpcMessage {
  readonly header: MessageHeader;
  readonly payload: Buffer;
}

/** One complete frame, length prefix included. */
export function encodeMessage(header: MessageHeader, payload: Buffer): Buffer {
  const total = LENGTH_BYTES + HEADER_BYTES + payload.length;
  if (total > MESSAGE_MAX_BYTES) throw new RangeError(`cannot send a message of ${total} bytes (max ${MESSAGE_MAX_BYTES})`);
  const frame = Buffer.alloc(LENGTH_BYTES + HEADER_BYTES);
  frame.writeUInt32BE(total, 0);
  frame.writeUInt32BE(header.program, 4);
  frame.writeUInt32BE(header.version, 8);
  frame.writeInt32BE(header.procedure, 12);
  frame.writeInt32BE(header.type, 16);
  frame.writeUInt32BE(header.serial, 20);
  frame.writeInt32BE(header.status, 24);
  return Buffer.concat([frame, payload]);
}

/**
 * Turns a byte stream into messages, whatever the chunking: feed it every chunk the socket
 * delivers and it returns the messages completed so far. Throws a RangeError on a length that
 * cannot be a frame; the connection must then be dropped, as the stream is out of step.
 */
export class MessageDecoder {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): RpcMessage[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const out: RpcMessage[] = [];
    while (this.pending.length >= LENGTH_BYTES) {
      const total = this.pending.readUInt32BE(0);
      if (total < LENGTH_BYTES + HEADER_BYTES || total > MESSAGE_MAX_BYTES) {
        throw new RangeError(`cannot decode RPC frame: length ${total}`);
      }
      if (this.pending.length < total) break;
      const header: MessageHeader = {
        program: this.pending.readUInt32BE(4),
        version: this.pending.readUInt32BE(8),
        procedure: this.pending.readInt32BE(12),
        type: this.pending.readInt32BE(16),
        serial: this.pending.readUInt32BE(20),
        status: this.pending.readInt32BE(24),
      };
      out.push({ header, payload: Buffer.from(this.pending.subarray(LENGTH_BYTES + HEADER_BYTES, total)) });
      this.pending = this.pending.subarray(total);
    }
    return out;
  }

  /** Bytes of a frame not yet complete. */
  get bufferedBytes(): number {
    return this.pending.length;
  }
}
