/**
 * One kind's list-watch, on @kubernetes/client-node's ListWatch informer, made to keep running.
 *
 * Guarantees:
 * - The list is paginated and consistent (one resourceVersion for all pages); the watch resumes
 *   from the last resourceVersion it saw, asks for bookmarks (so that version stays fresh) and
 *   for a server-side timeout of 5–10 min (client-go's spread), so no watch lives forever.
 * - 410 Gone relists (ListWatch does that itself). Any other failure (connection refused while
 *   kube-apiserver restarts, 403, 500, a failed list) stops ListWatch; this class starts it again
 *   after a backoff of 1 s doubling to 30 s (client-node's own figures), reset by a good list or
 *   watch event. A watch that outlives its server timeout by 30 s is presumed dead (half-open
 *   TCP) and aborted, which goes the same way.
 * - `relist()` replaces the ListWatch with a fresh one (a full list): the periodic resync that
 *   bounds how stale a silently broken watch can leave us. `listed` reports every full list so
 *   the caller can drop objects that vanished while nobody watched.
 * Caveats: handlers run synchronously inside client-node's callbacks; keep them cheap.
 */
import {
  CustomObjectsApi, type KubeConfig, type KubernetesListObject, ListWatch, Watch,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { API_VERSION, GROUP, type Kind, VERSION } from '../api/v1alpha1/group.js';
import { HYPERVISOR_NODE } from '../api/v1alpha1/hypervisor-node.js';
import { type Clock, systemClock } from '../shared/clock.js';
import type { KubeObject } from './desired-from-kube.js';
import { resourceOf } from './kube-client.js';

/** What an informer reports: objects upserted and removed, and each full listing. */
export interface KubeInformerHandlers {
  /** An object was added or changed. */
  upsert(obj: KubeObject): void;
  /** An object was deleted (or left the field selector). */
  remove(obj: KubeObject): void;
  /** A full list arrived: these are all the objects there are (relist, 410, resync). */
  listed(objs: readonly KubeObject[]): void;
  /** The informer failed and restarts in `retryInMs`; `undefined` once it works again. */
  health(err: unknown, retryInMs: number): void;
}

/** What to list and watch, and where to report it. */
export interface KubeInformerOptions {
  readonly kubeConfig: KubeConfig;
  /** A reconciled kind, or the cluster-scoped HypervisorNode (the scheduler's). */
  readonly kind: Kind | 'HypervisorNode';
  /** Watch one namespace; all namespaces when absent. */
  readonly namespace?: string;
  /** Server-side field selector, e.g. "spec.nodeName=node-a" (the CRDs make spec.nodeName selectable). */
  readonly fieldSelector?: string;
  readonly logger: Logger;
  readonly handlers: KubeInformerHandlers;
  /** Objects per list page (default 500, client-go's). */
  readonly pageSize?: number;
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
  /** Server-side watch timeout range in seconds (default 300–600). */
  readonly watchTimeoutSeconds?: readonly [number, number];
  readonly clock?: Clock;
}

/** A Watch that asks for bookmarks and a server timeout, and aborts a watch that outlives it. */
class BoundedWatch extends Watch {
  constructor(
    config: KubeConfig,
    private readonly timeoutRange: readonly [number, number],
    private readonly onActivity: () => void,
    private readonly clock: Clock,
  ) {
    super(config);
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    const [min, max] = this.timeoutRange;
    const timeoutSeconds = Math.floor(min + Math.random() * (max - min));
    const deadline: { timer?: unknown; ended?: boolean } = {};
    const controller = await super.watch(path, { ...queryParams, allowWatchBookmarks: true, timeoutSeconds },
      (phase, obj, raw) => {
        this.onActivity();
        callback(phase, obj, raw);
      },
      (err) => {
        deadline.ended = true;
        this.clock.clearTimeout(deadline.timer);
        done(err);
      });
    // The server ends the watch at timeoutSeconds; if nothing did by then, the TCP connection is dead.
    if (deadline.ended !== true) deadline.timer = this.clock.setTimeout(() => controller.abort(), (timeoutSeconds + 30) * 1000);
    return controller;
  }
}

/** One kind's self-restarting list-watch; see the file comment. */
export class KubeInformer {
  private readonly api: CustomObjectsApi;
  private readonly log: Logger;
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly clock: Clock;
  private generation = 0;
  private current: ListWatch<KubeObject> | undefined;
  private backoffMs: number;
  private retryTimer: unknown;
  private stopped = true;
  private failing = false;
  private syncedOnce = false;
  private resolveSynced: () => void = () => {};
  /** Resolves after the first successful full list. */
  readonly synced: Promise<void>;

  constructor(private readonly options: KubeInformerOptions) {
    this.api = options.kubeConfig.makeApiClient(CustomObjectsApi);
    this.log = options.logger.child({ kind: options.kind });
    this.minBackoffMs = options.minBackoffMs ?? 1_000;
    this.maxBackoffMs = options.maxBackoffMs ?? 30_000;
    this.backoffMs = this.minBackoffMs;
    this.clock = options.clock ?? systemClock;
    this.synced = new Promise((r) => { this.resolveSynced = r; });
  }

  get hasSynced(): boolean {
    return this.syncedOnce;
  }

  /** Starts listing and watching; returns at once. */
  start(): void {
    this.stopped = false;
    this.launch();
  }

  /** Replaces the watch with a fresh list and watch (periodic resync). */
  relist(): void {
    if (this.stopped) return;
    this.clock.clearTimeout(this.retryTimer);
    void this.current?.stop();
    this.launch();
  }

  /** Stops the watch; no handler is called afterwards. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.generation++;
    this.clock.clearTimeout(this.retryTimer);
    await this.current?.stop();
    this.current = undefined;
  }

  private get resource(): { group: string; version: string; plural: string; apiVersion: string } {
    const { kind } = this.options;
    return kind === 'HypervisorNode' ? { group: GROUP, version: VERSION, plural: HYPERVISOR_NODE.plural, apiVersion: API_VERSION } : resourceOf(kind);
  }

  private get path(): string {
    const r = this.resource;
    const ns = this.options.namespace !== undefined ? `/namespaces/${encodeURIComponent(this.options.namespace)}` : '';
    return `/apis/${r.group}/${r.version}${ns}/${r.plural}`;
  }

  private launch(): void {
    const generation = ++this.generation;
    const live = (): boolean => generation === this.generation && !this.stopped;
    const watch = new BoundedWatch(this.options.kubeConfig, this.options.watchTimeoutSeconds ?? [300, 600],
      () => { if (live()) this.succeeded(); }, this.clock);
    const lw = new ListWatch<KubeObject>(this.path, watch, () => this.list(live), false, undefined, this.options.fieldSelector);
    const { handlers } = this.options;
    lw.on('add', (o) => { if (live()) handlers.upsert(o); });
    lw.on('update', (o) => { if (live()) handlers.upsert(o); });
    lw.on('delete', (o) => { if (live()) handlers.remove(o); });
    lw.on('error', (err) => {
      if (!live()) return;
      const retryInMs = this.backoffMs;
      this.backoffMs = Math.min(this.backoffMs * 2, this.maxBackoffMs);
      this.failing = true;
      handlers.health(err, retryInMs);
      this.log.warn({ err, retryInMs }, 'list-watch failed; restarting');
      this.clock.clearTimeout(this.retryTimer);
      this.retryTimer = this.clock.setTimeout(() => { if (live()) void lw.start(); }, retryInMs);
    });
    this.current = lw;
    void lw.start();
  }

  private succeeded(): void {
    this.backoffMs = this.minBackoffMs;
    if (this.failing) {
      this.failing = false;
      this.options.handlers.health(undefined, 0);
    }
  }

  /** A full, paginated list at one resourceVersion. */
  private async list(live: () => boolean): Promise<KubernetesListObject<KubeObject>> {
    const r = this.resource;
    const items: KubeObject[] = [];
    let resourceVersion = '';
    let continueToken: string | undefined;
    do {
      const common = {
        group: r.group, version: r.version, plural: r.plural, limit: this.options.pageSize ?? 500,
        ...(continueToken !== undefined ? { _continue: continueToken } : {}),
        ...(this.options.fieldSelector !== undefined ? { fieldSelector: this.options.fieldSelector } : {}),
      };
      const page = (this.options.namespace !== undefined
        ? await this.api.listNamespacedCustomObject({ ...common, namespace: this.options.namespace })
        : await this.api.listClusterCustomObject(common)) as KubernetesListObject<KubeObject>;
      items.push(...page.items);
      if (continueToken === undefined) resourceVersion = page.metadata?.resourceVersion ?? '';
      // Custom objects come back as plain JSON, where the token is `continue` (typed lists say `_continue`).
      const token = (page.metadata as { continue?: string } | undefined)?.continue ?? page.metadata?._continue;
      continueToken = token !== undefined && token !== '' ? token : undefined;
    } while (continueToken !== undefined);
    if (live()) {
      this.succeeded();
      this.options.handlers.listed(items);
      if (!this.syncedOnce) {
        this.syncedOnce = true;
        this.resolveSynced();
      }
    }
    this.log.debug({ count: items.length, resourceVersion }, 'listed');
    return { apiVersion: r.apiVersion, kind: `${this.options.kind}List`, metadata: { resourceVersion }, items };
  }
}
