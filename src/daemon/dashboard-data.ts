/**
 * What the dashboard reads (server/dashboard-api.ts), gathered from the running daemon: the
 * desired store, each source's status and records, provider health, the state DB's audit log and
 * the providers' console logs. Environment values are redacted from specs; console text is
 * stripped of terminal control sequences and passed through the daemon's Redactor.
 */
import { open } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import type { Kind } from '../api/v1alpha1/group.js';
import { KINDS, isKind } from '../api/v1alpha1/group.js';
import { parseQuantity } from '../api/v1alpha1/quantity.js';
import { redactObject } from '../api/v1alpha1/redact-object.js';
import type { Provider } from '../providers/provider.js';
import type { SourceBackend } from '../reconcile/backend.js';
import type { ProviderHealth } from '../reconcile/provider-health.js';
import type { ActionResult, DashboardApi, EventLog, HostInfo, ObjectDetail } from '../server/dashboard-api.js';
import { REBOOT_REQUEST_ANNOTATION, RESTORE_REQUEST_ANNOTATION, SNAPSHOT_REQUEST_ANNOTATION } from '../shared/annotations.js';
import type { ObjectViews } from '../server/object-view.js';
import type { WatchEvent } from '../server/watch-stream.js';
import type { Clock } from '../shared/clock.js';
import { stripTerminalControls } from '../shared/terminal-text.js';
import type { Source } from '../sources/source.js';
import type { StateDb } from '../state/state-db.js';
import type { StoreReader } from '../store/desired-store.js';
import { type ObjectKey, objectKey, parseKey } from '../store/object-key.js';

/** Bytes of a console log the object page shows (its end). */
const CONSOLE_TAIL_BYTES = 16 * 1024;

/** What the dashboard reads from: the running daemon's stores, sources, providers and logs. */
export interface DaemonDashboardOptions {
  readonly node: string;
  readonly startedAt: string;
  readonly store: StoreReader;
  readonly backends: () => readonly SourceBackend<Source>[];
  readonly synced: (sourceId: string) => boolean;
  readonly healths: ReadonlyMap<Kind, ProviderHealth>;
  readonly providers: ReadonlyMap<Kind, Provider>;
  readonly views: ObjectViews;
  readonly eventLog: EventLog;
  readonly db?: Pick<StateDb, 'auditFor'>;
  readonly redact: (text: string) => string;
  /** The time requests are stamped with. */
  readonly clock: Clock;
  /** Lays a request annotation over a declared object (RequestOverlay); false when the source declares none. */
  readonly request: (key: ObjectKey, annotation: string, value: string) => boolean;
}

/**
 * The actions the page and the CLI may ask for, each an annotation the reconcile loop already
 * acts on, and which kinds offer it. Start and stop are the declared state (the file, the commit,
 * the resource): they are not offered.
 */
interface ActionSpec {
  readonly annotation: string;
  readonly offered: (kind: Kind, provider: Provider | undefined) => boolean;
  /** The annotation's value for a request made at `at` with these parameters, or why they do not do. */
  readonly value: (at: string, params: URLSearchParams) => { value: string } | { error: string };
}

/** A snapshot name as the API takes it: a DNS-1123 label (it reaches paths and XML). */
const SNAPSHOT_NAME_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** The name of a one-off snapshot requested at `at` without a name: "snap-" and the UTC time, a DNS label. */
export function requestedSnapshotName(at: string): string {
  return `snap-${at.replace(/\.\d+Z$/, 'z').replace(/[-:]/g, '').toLowerCase()}`;
}

const ACTIONS: Readonly<Record<string, ActionSpec>> = {
  reboot: {
    annotation: REBOOT_REQUEST_ANNOTATION, offered: (_kind, provider) => provider?.rebootPending !== undefined,
    value: (at) => ({ value: at }),
  },
  // SNAPSHOT@TOKEN: a new token restores the same snapshot again (acted on once per value).
  restore: {
    annotation: RESTORE_REQUEST_ANNOTATION, offered: (_kind, provider) => provider?.restoreSnapshot !== undefined,
    value: (at, params) => {
      const snapshot = params.get('snapshot') ?? '';
      if (!SNAPSHOT_NAME_RE.test(snapshot)) return { error: 'restore needs ?snapshot=NAME (a DNS-1123 label)' };
      return { value: `${snapshot}@${at.replace(/[^0-9]/g, '')}` };
    },
  },
  // SNAPSHOT: taken once the instance is steady, unless it has one of that name already.
  snapshot: {
    annotation: SNAPSHOT_REQUEST_ANNOTATION, offered: (_kind, provider) => provider?.snapshot !== undefined,
    value: (at, params) => {
      const snapshot = params.get('snapshot') ?? requestedSnapshotName(at);
      if (!SNAPSHOT_NAME_RE.test(snapshot)) return { error: 'snapshot takes ?snapshot=NAME (a DNS-1123 label), or none for snap-TIME' };
      return { value: snapshot };
    },
  },
};

/** The dashboard's data, read from the running daemon on demand; secrets redacted. */
export class DaemonDashboard implements DashboardApi {
  constructor(private readonly o: DaemonDashboardOptions) {}

  host(): HostInfo {
    let cpusAsked = 0;
    let memoryBytes = 0;
    let running = 0;
    const objects = this.o.store.list();
    for (const d of objects) {
      const spec = d.object.spec as { state?: string; resources?: { cpu?: number; memory?: string | number } };
      cpusAsked += spec.resources?.cpu ?? 0;
      memoryBytes += spec.resources?.memory === undefined ? 0 : parseQuantity(spec.resources.memory) ?? 0;
      if (spec.state === 'Running') running++;
    }
    return {
      node: this.o.node, startedAt: this.o.startedAt,
      capacity: { cpus: cpus().length, memoryBytes: totalmem() },
      allocated: { objects: objects.length, running, cpus: cpusAsked, memoryBytes },
      providers: [...this.o.healths].map(([kind, health]) => {
        const h = health.current;
        return h === undefined ? { name: KINDS[kind].provider, ok: false, reason: 'not probed yet' }
          : h.ok ? { name: KINDS[kind].provider, ok: true } : { name: KINDS[kind].provider, ok: false, reason: this.o.redact(h.reason) };
      }),
      sources: this.o.backends().map((b) => {
        const revision = b.source.revisionState?.();
        const summary = b.source.summary?.();
        return {
          id: b.source.id, description: this.o.redact(b.source.description), synced: this.o.synced(b.source.id),
          ...(summary === undefined ? {} : { summary: this.o.redact(summary) }),
          ...(revision === undefined ? {} : { behind: revision.behind }),
          problems: b.source.problems().map((p) => this.o.redact(p.line)),
        };
      }),
    };
  }

  recentEvents(limit: number): readonly WatchEvent[] {
    return this.o.eventLog.recent(limit);
  }

  async object(kind: string, namespace: string, name: string): Promise<ObjectDetail | undefined> {
    if (!isKind(kind)) return undefined;
    const backend = this.o.backends().find((b) => this.o.views.get(objectKey(b.source.id, namespace, kind, name)) !== undefined);
    if (backend === undefined) return undefined;
    const key = objectKey(backend.source.id, namespace, kind, name);
    const view = this.o.views.get(key);
    const d = this.o.store.get(key) ?? backend.records?.lastApplied(key);
    if (view === undefined || d === undefined) return undefined;
    const status = backend.statusWriter.lastWritten(key);
    const shown = redactObject(d.object);
    const object = { ...shown, metadata: { ...shown.metadata, uid: d.id }, ...(status === undefined ? {} : { status }) };
    const consoleTail = await this.consoleTail(kind, d.hostName);
    const actions = Object.entries(ACTIONS).filter(([, a]) => a.offered(kind, this.o.providers.get(kind))).map(([name]) => name);
    return { object, view, events: this.eventsOf(key, backend), actions, ...(consoleTail === undefined ? {} : { consoleTail }) };
  }

  act(kind: string, namespace: string, name: string, action: string, params = new URLSearchParams()): ActionResult {
    const key = isKind(kind) ? this.findKey(kind, namespace, name) : undefined;
    if (key === undefined || !isKind(kind)) return { ok: false, status: 404, error: `${kind} ${namespace}/${name} not found` };
    const spec = ACTIONS[action];
    if (spec === undefined || !spec.offered(kind, this.o.providers.get(kind))) {
      const offered = this.offeredFor(kind).join(', ') || 'none';
      return { ok: false, status: 409, error: `${action} is not offered for ${KINDS[kind].plural} (offered: ${offered})` };
    }
    const made = spec.value(new Date(this.o.clock.now()).toISOString(), params);
    if ('error' in made) return { ok: false, status: 400, error: made.error };
    const { value } = made;
    if (!this.o.request(key, spec.annotation, value)) {
      return { ok: false, status: 404, error: `${kind} ${namespace}/${name} is not declared by its source` };
    }
    return { ok: true, annotation: spec.annotation, value };
  }

  private offeredFor(kind: Kind): string[] {
    return Object.entries(ACTIONS).filter(([, a]) => a.offered(kind, this.o.providers.get(kind))).map(([name]) => name);
  }

  private findKey(kind: Kind, namespace: string, name: string): ObjectKey | undefined {
    return this.o.backends().map((b) => objectKey(b.source.id, namespace, kind, name)).find((k) => this.o.store.get(k) !== undefined);
  }

  /** Audit entries where the source keeps them (dir, git); the events seen since start otherwise (kube). */
  private eventsOf(key: ObjectKey, backend: SourceBackend): WatchEvent[] {
    const { kind, namespace, name } = parseKey(key);
    if (backend.records === undefined || this.o.db === undefined) return this.o.eventLog.recent(50, `${kind}/${namespace}/${name}`);
    return this.o.db.auditFor(key, 50).map((a) => ({
      time: a.at, type: a.type === 'Warning' ? 'Warning' : 'Normal', reason: a.action, message: a.message,
      involvedObject: { kind, namespace, name, uid: '' },
    }));
  }

  /** The end of the instance's console log, or undefined when the provider keeps none (or it is not there yet). */
  private async consoleTail(kind: Kind, hostName: string): Promise<string | undefined> {
    const path = this.o.providers.get(kind)?.consoleLogPath?.(hostName);
    if (path === undefined) return undefined;
    let file;
    try {
      file = await open(path, 'r');
    } catch {
      return undefined; // no log yet: a container that never started
    }
    try {
      const { size } = await file.stat();
      const length = Math.min(size, CONSOLE_TAIL_BYTES);
      const buffer = Buffer.alloc(length);
      await file.read(buffer, 0, length, size - length);
      const text = buffer.toString('utf8');
      // Cut a partial first line when the tail starts mid-file.
      const start = size > length ? text.indexOf('\n') + 1 : 0;
      return this.o.redact(stripTerminalControls(text.slice(start)));
    } finally {
      await file.close();
    }
  }
}
