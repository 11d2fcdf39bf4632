/**
 * The small layer hyperlet puts over @kubernetes/client-node 1.4: loading a kubeconfig, request
 * options (an AbortSignal, a patch content type) and one mapping of API errors to hyperlet's
 * error kinds, so every caller treats 409 and 404 the same way.
 */
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import {
  type ConfigurationOptions, KubeConfig, Observable, type ObservableMiddleware, type PatchStrategy, type RequestContext, type ResponseContext,
} from '@kubernetes/client-node';
import { API_VERSION, GROUP, KINDS, VERSION, type Kind } from '../api/v1alpha1/group.js';
import { ConflictError } from '../shared/errors.js';

/**
 * Loads the client configuration: the file at `path` when given, else client-node's defaults
 * ($KUBECONFIG, ~/.kube/config, or the in-cluster ServiceAccount). Throws when none is usable.
 */
export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (path !== undefined) kc.loadFromFile(path);
    else kc.loadFromDefault();
  } catch (err) {
    throw new Error(`cannot load the kubeconfig ${path ?? '(default)'}`, { cause: err });
  }
  if (kc.getCurrentCluster() === null) throw new Error(`cannot use the kubeconfig ${path ?? '(default)'}: it names no current cluster`);
  return shareConnections(kc);
}

/** Per-request options: abort with `signal`, send a body of `contentType` (patch strategies). */
export function requestOptions(signal?: AbortSignal, contentType?: PatchStrategy): ConfigurationOptions<ObservableMiddleware> | undefined {
  if (signal === undefined && contentType === undefined) return undefined;
  const middleware: ObservableMiddleware = {
    pre: (request: RequestContext) => {
      if (signal !== undefined) request.setSignal(signal);
      if (contentType !== undefined) request.setHeaderParam('Content-Type', contentType);
      return new Observable(Promise.resolve(request));
    },
    post: (response: ResponseContext) => new Observable(Promise.resolve(response)),
  };
  return { middleware: [middleware], middlewareMergeStrategy: 'append' };
}

/** The HTTP status of a failed API call (ApiException.code, a watch error's statusCode), if any. */
export function statusCodeOf(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; statusCode?: unknown };
  if (typeof e.code === 'number') return e.code;
  if (typeof e.statusCode === 'number') return e.statusCode;
  return undefined;
}

/** Whether a failed API call was a 404 (the object or the kind is not there). */
export const isNotFound = (err: unknown): boolean => statusCodeOf(err) === 404;

/** The API server's own words from a failed call: the Status message when there is one. */
export function apiMessage(err: unknown): string {
  const body = (err as { body?: unknown } | null)?.body;
  let parsed: unknown = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      return body.replace(/\s+/g, ' ').trim().slice(0, 500);
    }
  }
  const message = (parsed as { message?: unknown } | null)?.message;
  if (typeof message === 'string') return message;
  return err instanceof Error ? err.message : String(err);
}

/**
 * Wraps a failed API call: 409 becomes ConflictError (retry on fresh data), anything else an
 * Error "cannot WHAT: <the API server's message>" with the original as cause.
 */
export function kubeError(err: unknown, what: string): Error {
  const code = statusCodeOf(err);
  const detail = `${apiMessage(err)}${code !== undefined ? ` (HTTP ${code})` : ''}`;
  if (code === 409) return new ConflictError(`cannot ${what}: ${detail}`, { cause: err });
  return new Error(`cannot ${what}: ${detail}`, { cause: err });
}

/** Where a kind lives in the API. */
export function resourceOf(kind: Kind): { group: string; version: string; plural: string; apiVersion: string } {
  return { group: GROUP, version: VERSION, plural: KINDS[kind].plural, apiVersion: API_VERSION };
}

/**
 * Whether resourceVersion `a` is newer than `b`. Kubernetes calls resource versions opaque, but
 * every kube-apiserver backed by etcd uses its revision, a growing integer; anything else is
 * treated as newer, so the worst case is one extra request, never a lost update.
 */
export function isNewerResourceVersion(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || a === '') return false;
  if (b === undefined || b === '') return true;
  if (/^[0-9]+$/.test(a) && /^[0-9]+$/.test(b)) return BigInt(a) > BigInt(b);
  return a !== b;
}

/** The keep-alive agents a KubeConfig shares between its requests, by TLS identity. */
const SHARED_AGENTS = Symbol('hyperlet.sharedAgents');

/**
 * Makes every request of `kc`'s API clients reuse connections. client-node 1.4 builds a new
 * https.Agent for each request (KubeConfig.applySecurityAuthentication), so each one opens a new
 * TCP connection and does a full TLS handshake, which costs more CPU than the request itself on
 * both sides. This keeps one keep-alive agent per TLS identity (CA, client certificate and key,
 * server name, verification) and hands it to every request instead: same certificates, same
 * checks, no new handshake. Proxies keep client-node's own agents. Watches (Watch, informers)
 * are long-lived and keep theirs. Idempotent; returns `kc`.
 */
export function shareConnections(kc: KubeConfig): KubeConfig {
  const marked = kc as KubeConfig & { [SHARED_AGENTS]?: Map<string, http.Agent> };
  if (marked[SHARED_AGENTS] !== undefined) return kc;
  const agents = new Map<string, http.Agent>();
  marked[SHARED_AGENTS] = agents;
  const original = kc.applySecurityAuthentication.bind(kc);
  kc.applySecurityAuthentication = async (context: RequestContext): Promise<void> => {
    await original(context);
    const fresh = context.getAgent();
    // Only client-node's plain agents; a proxy agent (socks, http(s) proxy) is left as it is.
    if (fresh === undefined || (fresh.constructor !== https.Agent && fresh.constructor !== http.Agent)) return;
    const options = (fresh as https.Agent).options;
    const identity = createHash('sha256');
    for (const part of [fresh.constructor.name, options.ca, options.cert, options.key, options.pfx, options.passphrase,
      options.servername, options.rejectUnauthorized]) {
      identity.update(`${typeof part}:`).update(part === undefined ? '' : typeof part === 'string' || Buffer.isBuffer(part) ? part : JSON.stringify(part));
    }
    const key = identity.digest('hex');
    let shared = agents.get(key);
    if (shared === undefined) {
      // A rotated certificate makes a new identity; the old agent's requests finish, and the API
      // server closes its idle connections (kube-apiserver's idle timeout is 90 s).
      agents.clear();
      const keepAlive = { ...options, keepAlive: true };
      shared = fresh.constructor === https.Agent ? new https.Agent(keepAlive) : new http.Agent(keepAlive);
      agents.set(key, shared);
    }
    context.setAgent(shared);
  };
  return kc;
}
