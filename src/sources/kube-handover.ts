/**
 * Moves with data between per-node kube agents. When an object's node changes (an edited
 * spec.nodeName, or the scheduler placing it again on a drain), the old agent stops the instance
 * and keeps it (held, not deleted); the new agent fetches its data from the old agent's handover
 * server (server/handover-server.ts, found through the old HypervisorNode's status.handoverUrl,
 * with a shared bearer token), creates the instance, puts the data in, tells the old agent to
 * release it (only then is the old instance deleted) and starts it. Status says phase Moving with
 * a Moving condition meanwhile.
 *
 * The data is whatever the provider's exportData writes and its importData reads (LXC: a tar of
 * the rootfs); this module only carries bytes, so another format (the backup archive of the
 * snapshots issue) can replace it in the provider alone.
 *
 * Guarantees (crash points):
 * - Destination: the move is recorded on disk (moves.json) when the object first shows up here,
 *   before any status is written (which would overwrite status.node, the only other memory of
 *   where it came from). The data lands in a .part file, fsynced and renamed: a complete
 *   archive on disk means "we have the data". Order: fetch, create, import, release, forget the
 *   move, delete the archive. A crash before the archive is complete fetches again; after it,
 *   the next start (setState Running) imports and releases again (both idempotent).
 * - Source: the old instance is never deleted before the destination asks for the release; an
 *   export stops the instance first and never changes it otherwise. An agent that restarted
 *   forgot what it held, and still serves and releases it (it reads the object from the API).
 * - Objects with spec.evictionPolicy Recreate carry no data: the old instance is deleted at
 *   once and the new one starts afresh.
 * Caveats: an object left Stopped keeps phase Moving after a crash between create and import
 * until it is started or changed; a container whose rootfs is a host path (spec.rootfs) moves
 * without that path's content.
 */
import { createWriteStream } from 'node:fs';
import { mkdirSync, readFileSync, renameSync, writeFileSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { GROUP, VERSION, isKind, type Kind } from '../api/v1alpha1/group.js';
import { HYPERVISOR_NODE, type HypervisorNodeObject } from '../api/v1alpha1/hypervisor-node.js';
import { type KubeObject, desiredFromKube } from '../kube/desired-from-kube.js';
import { isNotFound, kubeError, requestOptions, resourceOf } from '../kube/kube-client.js';
import type { ObservedInstance, Provider } from '../providers/provider.js';
import { type Clock, sleep, systemClock } from '../shared/clock.js';
import { failpoint } from '../shared/failpoint.js';
import type { Desired } from '../store/desired.js';
import { type ObjectKey, objectKey } from '../store/object-key.js';

/** One move into this node, as recorded on disk. */
interface MoveIn { readonly uid: string; readonly from: string }

/** How the handover connects, where it keeps its files and who it is. */
export interface KubeHandoverOptions {
  readonly kubeConfig: KubeConfig;
  /** This agent's node name. */
  readonly node: string;
  /** The kube source's id (first part of keys). */
  readonly sourceId: string;
  /** A directory only this agent uses (moves.json and archives in flight); made 0700. */
  readonly dir: string;
  /** The bearer token every agent's handover server accepts (--peer-token-file). */
  readonly token: string;
  readonly logger: Logger;
  readonly clock?: Clock;
}

/** What an export request gets: the data, or why not (an HTTP status and a CamelCase reason). */
export type ExportAnswer =
  | { readonly ok: true; readonly stream: NodeJS.ReadableStream }
  | { readonly ok: false; readonly code: number; readonly reason: string; readonly message: string };

/** A request names one object by namespace, kind, name and uid. */
export interface HandoverRequest { readonly namespace: string; readonly kind: string; readonly name: string; readonly uid: string }

/** The Moving condition's reason while the data is on its way. */
export const MOVING_REASON = 'DataHandover';

/** See the file comment; one per per-node kube agent. */
export class KubeHandover {
  private readonly api: CustomObjectsApi;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly movesPath: string;
  private readonly moves: Map<ObjectKey, MoveIn>;
  private readonly held = new Map<ObjectKey, Desired>();
  private readonly providers = new Map<Kind, Provider>();
  /** Called when a held instance is released (or its object is gone): `d` becomes a tombstone (KubeMovedAway). */
  onReleased: ((d: Desired) => void) | undefined;
  /** Then called to reconcile that tombstone now (the daemon's controller). */
  enqueue: ((d: Desired) => void) | undefined;

  constructor(private readonly options: KubeHandoverOptions) {
    this.api = options.kubeConfig.makeApiClient(CustomObjectsApi);
    this.log = options.logger.child({ component: 'handover', node: options.node });
    this.clock = options.clock ?? systemClock;
    mkdirSync(options.dir, { recursive: true, mode: 0o700 });
    this.movesPath = join(options.dir, 'moves.json');
    this.moves = readMoves(this.movesPath);
  }

  /** The node the data of `key` is coming from, while it is (status shows phase Moving). */
  movingFrom(key: ObjectKey): string | undefined {
    return this.moves.get(key)?.from;
  }

  /** Whether this agent holds the stopped instance of `key` for another node. */
  isHeld(key: ObjectKey): boolean {
    return this.held.has(key);
  }

  /**
   * The kube source saw `obj` (assigned to this node) for `key`: when its status names another
   * node that ran it, and its policy carries data, the move is recorded (on disk, at once).
   */
  arrived(key: ObjectKey, obj: KubeObject): void {
    this.held.delete(key);
    const uid = obj.metadata?.uid;
    const from = (obj.status as { node?: unknown } | undefined)?.node;
    if (uid === undefined || typeof from !== 'string' || from === '' || from === this.options.node) return;
    if (obj.metadata?.deletionTimestamp !== undefined || evictionPolicyOf(obj) === 'Recreate') return;
    if (this.moves.get(key)?.uid === uid) return;
    this.moves.set(key, { uid, from });
    this.saveMoves();
    this.log.info({ key, from }, 'object moved here: its data comes from the old node');
  }

  /**
   * The object `d` left this node: returns true when its instance is held for the new node
   * (policy Move), false when it is to be deleted at once (Recreate).
   */
  hold(d: Desired): boolean {
    if (d.object.spec.evictionPolicy === 'Recreate') return false;
    this.held.set(d.key, d);
    this.log.info({ key: d.key }, 'object left this node: its instance is kept until the new node has its data');
    return true;
  }

  /** Wraps `inner` so creating a moved object brings its data first (see the file comment). */
  provider<K extends Kind>(inner: Provider<K>): Provider<K> {
    this.providers.set(inner.kind, inner);
    if (inner.exportData === undefined || inner.importData === undefined) return inner;
    const wrapped: Provider<K> = Object.create(inner) as Provider<K>;
    wrapped.create = async (d, signal) => this.createMoved(inner, d, signal);
    wrapped.setState = async (d, to, observed, signal) => {
      if (to === 'Running' || to === 'Frozen') await this.finishMoved(inner, d, signal);
      return inner.setState(d, to, observed, signal);
    };
    wrapped.delete = async (d, signal) => {
      await inner.delete(d, signal);
      await this.forgetMove(d);
    };
    return wrapped;
  }

  /** Serves one export (the old agent's side): stops the instance if needed and streams its data. */
  async exportFor(req: HandoverRequest, signal: AbortSignal): Promise<ExportAnswer> {
    const found = await this.heldObject(req, signal);
    if (!found.ok) return found;
    const { d, provider } = found;
    let observed = await provider.observe(d, signal);
    if (observed === undefined || observed.ownerId !== req.uid) return noInstance(req);
    if (provider.exportData === undefined) return { ok: false, code: 501, reason: 'Unsupported', message: `cannot export: provider ${provider.name} has no data export` };
    observed = await this.stopped(provider, d, observed, signal);
    failpoint('handover.exporting');
    this.log.info({ key: d.key }, 'handing over the data of a stopped instance');
    return { ok: true, stream: await provider.exportData(d, signal) };
  }

  /** Serves one release (the old agent's side): the new node has the data; the old instance goes. */
  async releaseFor(req: HandoverRequest, signal: AbortSignal): Promise<{ code: number; reason: string; message: string }> {
    const found = await this.heldObject(req, signal);
    if (!found.ok) return found;
    this.held.delete(found.d.key);
    this.log.info({ key: found.d.key }, 'the new node has the data: removing the instance here');
    this.onReleased?.({ ...found.d, deleting: true });
    this.enqueue?.(found.d);
    return { code: 200, reason: 'Released', message: `released ${req.namespace}/${req.name}` };
  }

  /** The object a request names, as held here (or read from the API after a restart), and its provider. */
  private async heldObject(req: HandoverRequest, signal: AbortSignal):
  Promise<{ ok: true; d: Desired; provider: Provider } | { ok: false; code: number; reason: string; message: string }> {
    if (!isKind(req.kind)) return { ok: false, code: 400, reason: 'BadRequest', message: `cannot hand over kind ${JSON.stringify(req.kind)}` };
    const kind = req.kind;
    const key = objectKey(this.options.sourceId, req.namespace, kind, req.name);
    const provider = this.providers.get(kind);
    if (provider === undefined) return { ok: false, code: 404, reason: 'NoInstance', message: `this agent does not run ${kind}s` };
    let obj: KubeObject | undefined;
    try {
      const r = resourceOf(kind);
      obj = await this.api.getNamespacedCustomObject({
        group: r.group, version: r.version, plural: r.plural, namespace: req.namespace, name: req.name,
      }, requestOptions(signal)) as KubeObject;
    } catch (err) {
      if (!isNotFound(err)) throw kubeError(err, `read ${kind} ${req.namespace}/${req.name}`);
    }
    const heldHere = this.held.get(key);
    if (obj === undefined || obj.metadata?.uid !== req.uid) {
      // The object is gone (deleted while it moved): nothing to hand over; what is held here goes.
      if (obj === undefined && heldHere !== undefined && heldHere.id === req.uid) {
        this.held.delete(key);
        this.onReleased?.({ ...heldHere, deleting: true });
        this.enqueue?.(heldHere);
      }
      return noInstance(req);
    }
    const assigned = (obj.spec as { nodeName?: string } | undefined)?.nodeName
      ?? (obj.status as { placement?: { nodeName?: string } } | undefined)?.placement?.nodeName;
    if (assigned === this.options.node) {
      return { ok: false, code: 409, reason: 'StillAssigned', message: `${kind} ${req.namespace}/${req.name} is assigned to node ${this.options.node}` };
    }
    if (heldHere !== undefined) return { ok: true, d: heldHere, provider };
    const converted = desiredFromKube(this.options.sourceId, kind, obj);
    if (!converted.ok) return { ok: false, code: 409, reason: 'InvalidObject', message: converted.issues.map((i) => `${i.path}: ${i.message}`).join('; ') };
    return { ok: true, d: converted.desired, provider };
  }

  /** Stops the instance (waiting for it, with backoff) and returns it as observed stopped. */
  private async stopped(provider: Provider, d: Desired, observed: ObservedInstance, signal: AbortSignal): Promise<ObservedInstance> {
    let current: ObservedInstance | undefined = observed;
    let waitMs = 200;
    for (let attempt = 0; attempt < 30; attempt++) {
      if (current === undefined) throw new Error(`cannot stop ${d.hostName}: it vanished`);
      if (current.state === 'Stopped') return current;
      if (current.state !== 'Stopping') await provider.setState(d, 'Stopped', current, signal).catch(() => undefined);
      await sleep(this.clock, waitMs, signal);
      waitMs = Math.min(waitMs * 2, 5_000);
      current = await provider.observe(d, signal);
    }
    throw new Error(`cannot stop ${d.hostName} for its move: it is still ${current?.state ?? 'absent'}`);
  }

  private archivePath(d: Desired): string {
    return join(this.options.dir, `${d.id}.data`);
  }

  /** create() of a moved object: fetch, create, import, release (see the file comment). */
  private async createMoved<K extends Kind>(inner: Provider<K>, d: Desired<K>, signal: AbortSignal): Promise<void> {
    const move = this.moves.get(d.key);
    if (move === undefined || move.uid !== d.id) return inner.create(d, signal);
    const archive = this.archivePath(d);
    if (!(await present(archive))) {
      const fetched = await this.fetchData(move.from, d, archive, signal);
      if (!fetched) {
        // The old node has no instance of this object (never created there, or deleted): start afresh.
        this.log.info({ key: d.key, from: move.from }, 'the old node has no instance: creating afresh');
        await inner.create(d, signal);
        await this.forgetMove(d);
        return;
      }
    }
    failpoint('handover.fetched');
    await inner.create(d, signal);
    await this.finishMoved(inner, d, signal);
  }

  /** Import, release, forget: the part of a move after the data is here and the instance exists. */
  private async finishMoved<K extends Kind>(inner: Provider<K>, d: Desired<K>, signal: AbortSignal): Promise<void> {
    const move = this.moves.get(d.key);
    if (move === undefined || move.uid !== d.id) return;
    const archive = this.archivePath(d);
    if (!(await present(archive))) {
      // Created without the data (the old node had none): nothing left to bring.
      await this.forgetMove(d);
      return;
    }
    await inner.importData?.(d, archive, signal);
    failpoint('handover.imported');
    await this.call(move.from, d, 'release', signal);
    await this.forgetMove(d);
    this.log.info({ key: d.key, from: move.from }, 'moved here with its data');
  }

  private async forgetMove(d: Desired): Promise<void> {
    if (this.moves.get(d.key)?.uid === d.id) {
      this.moves.delete(d.key);
      this.saveMoves();
    }
    await rm(this.archivePath(d), { force: true });
    await rm(`${this.archivePath(d)}.part`, { force: true });
  }

  /** Fetches the data of `d` from node `from` into `archive`; false when that node has no instance of it. */
  private async fetchData(from: string, d: Desired, archive: string, signal: AbortSignal): Promise<boolean> {
    const response = await this.call(from, d, 'data', signal);
    if (response === undefined) return false;
    const part = `${archive}.part`;
    await mkdir(this.options.dir, { recursive: true, mode: 0o700 });
    const body = response.body;
    if (body === null) throw new Error(`cannot fetch the data of ${d.hostName} from node ${from}: empty response`);
    await pipeline(Readable.fromWeb(body), createWriteStream(part, { mode: 0o600 }), { signal });
    const handle = await open(part, 'r+');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(part, archive);
    const size = (await stat(archive)).size;
    this.log.info({ key: d.key, from, bytes: size }, 'data fetched from the old node');
    return true;
  }

  /**
   * One request to node `from`'s handover server: 'data' resolves to the response (undefined when
   * that node has no instance of `d`); 'release' resolves when released. Throws otherwise.
   */
  private async call(from: string, d: Desired, what: 'data' | 'release', signal: AbortSignal): Promise<Response | undefined> {
    const base = await this.peerUrl(from, signal);
    const { namespace, name } = d.object.metadata;
    const path = `/v1/handover/${encodeURIComponent(namespace)}/${d.object.kind}/${encodeURIComponent(name)}`;
    const url = `${base.replace(/\/+$/, '')}${path}${what === 'release' ? '/release' : ''}?uid=${encodeURIComponent(d.id)}`;
    let response: Response;
    try {
      response = await fetch(url, {
        method: what === 'release' ? 'POST' : 'GET', headers: { authorization: `Bearer ${this.options.token}` }, signal,
      });
    } catch (err) {
      // The cause carries undici's words ("fetch failed: other side closed"); errorMessage() joins the chain.
      throw new Error(`cannot ${what === 'data' ? 'fetch the data of' : 'release'} ${d.hostName} at node ${from} (${base})`, { cause: err });
    }
    if (response.ok) return what === 'data' ? response : undefined;
    const answer = await response.json().catch(() => ({})) as { reason?: string; message?: string };
    if (response.status === 404 && answer.reason === 'NoInstance') return undefined;
    throw new Error(`cannot ${what === 'data' ? 'fetch the data of' : 'release'} ${d.hostName} at node ${from}: HTTP ${response.status} `
      + `${answer.reason ?? ''}: ${answer.message ?? ''}`.trim());
  }

  private async peerUrl(node: string, signal: AbortSignal): Promise<string> {
    let hvn: HypervisorNodeObject;
    try {
      hvn = await this.api.getClusterCustomObject({ group: GROUP, version: VERSION, plural: HYPERVISOR_NODE.plural, name: node },
        requestOptions(signal)) as HypervisorNodeObject;
    } catch (err) {
      throw kubeError(err, `read HypervisorNode ${node} (the node the data comes from)`);
    }
    const url = hvn.status?.handoverUrl;
    if (url === undefined || url === '') throw new Error(`cannot fetch data from node ${node}: its agent serves no handover (status.handoverUrl is empty)`);
    return url;
  }

  private saveMoves(): void {
    const tmp = `${this.movesPath}.tmp`;
    writeFileSync(tmp, JSON.stringify(Object.fromEntries(this.moves)), { mode: 0o600 });
    const fd = openSync(tmp, 'r+');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.movesPath);
  }
}

function readMoves(path: string): Map<ObjectKey, MoveIn> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw new Error(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  const parsed = JSON.parse(text) as Record<string, MoveIn>;
  return new Map(Object.entries(parsed).map(([key, move]) => [key as ObjectKey, move]));
}

function evictionPolicyOf(obj: KubeObject): string | undefined {
  return (obj.spec as { evictionPolicy?: string } | undefined)?.evictionPolicy;
}

function noInstance(req: HandoverRequest): { ok: false; code: number; reason: string; message: string } {
  return { ok: false, code: 404, reason: 'NoInstance', message: `no instance of ${req.kind} ${req.namespace}/${req.name} (uid ${req.uid}) here` };
}

async function present(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
