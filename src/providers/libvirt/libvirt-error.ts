/**
 * libvirt's own errors (`remote_error` on the wire) as a typed error: the daemon's code, domain
 * and message, with guards for the answers hyperlet acts on (not found, invalid operation).
 */
import type { XdrReader } from './xdr.js';

/** virErrorNumber values hyperlet tells apart (libvirt include/libvirt/virterror.h). */
export const LibvirtErrorCode = {
  InternalError: 1,
  NoSupport: 3,
  NoConnect: 5,
  InvalidArg: 8,
  OperationFailed: 9,
  XmlError: 27,
  DomainExists: 28,
  SystemError: 38,
  Rpc: 39,
  NoDomain: 42,
  NoNetwork: 43,
  NoStoragePool: 49,
  NoStorageVol: 50,
  OperationInvalid: 55,
  ConfigUnsupported: 67,
  OperationTimeout: 68,
  NoDomainSnapshot: 72,
  NoDomainMetadata: 80,
  OperationUnsupported: 84,
  StorageVolExists: 90,
} as const;

/** Codes that mean "the object is not there": an answer, never a failure to retry. */
const NOT_FOUND_CODES: ReadonlySet<number> = new Set([
  LibvirtErrorCode.NoDomain, LibvirtErrorCode.NoNetwork, LibvirtErrorCode.NoStoragePool,
  LibvirtErrorCode.NoStorageVol, LibvirtErrorCode.NoDomainMetadata, LibvirtErrorCode.NoDomainSnapshot,
]);

/** An error the daemon returned for one call (status ERROR), or a transport failure (code 0). */
export class LibvirtError extends Error {
  readonly isLibvirtError = true;
  /** virErrorNumber; 0 for transport failures (socket closed, timeout) that never reached the daemon. */
  readonly code: number;
  /** virErrorDomain: which libvirt module raised it. */
  readonly domain: number;
  /** The procedure that failed, for logs. */
  readonly procedure: number | undefined;

  constructor(message: string, code: number, domain: number, procedure?: number, options?: ErrorOptions) {
    super(message, options);
    this.name = 'LibvirtError';
    this.code = code;
    this.domain = domain;
    this.procedure = procedure;
  }

  /** The object (domain, network, pool, volume, metadata) does not exist. */
  get isNotFound(): boolean {
    return NOT_FOUND_CODES.has(this.code);
  }

  /** The call made no sense in the object's current state (start a running domain, create an active pool). */
  get isOperationInvalid(): boolean {
    return this.code === LibvirtErrorCode.OperationInvalid;
  }
}

/** Whether `err` is a LibvirtError (by brand, across module copies). */
export function isLibvirtError(err: unknown): err is LibvirtError {
  return typeof err === 'object' && err !== null && (err as { isLibvirtError?: unknown }).isLibvirtError === true;
}

/** True when `err` is libvirt saying the object does not exist. */
export function isNotFound(err: unknown): boolean {
  return isLibvirtError(err) && err.isNotFound;
}

/**
 * Decodes a `remote_error` payload:
 * `{int code; int domain; remote_string message; int level; remote_domain dom; remote_string str1..3;
 * int int1, int2; remote_network net}`. Only code, domain and message are kept.
 */
export function decodeRemoteError(r: XdrReader, procedure: number): LibvirtError {
  const code = r.int();
  const domain = r.int();
  const message = r.optional((x) => x.string()) ?? `libvirt error ${code}`;
  return new LibvirtError(message, code, domain, procedure);
}
