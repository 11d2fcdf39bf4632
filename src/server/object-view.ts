/**
 * Objects as the event stream and the dashboard show them, whatever their source: Kubernetes
 * shaped (apiVersion, kind, metadata, spec, status), with a spec cut down to what tables show
 * (desired state, resources, node). The full spec stays behind the read API, which redacts it.
 */
import type { Status } from '../api/v1alpha1/types.js';

/** The spec fields views carry: never the environment, mounts or anything else an author wrote. */
export interface SpecSummary {
  readonly state?: string;
  readonly resources?: { readonly cpu?: number; readonly memory?: string | number; readonly disk?: string | number };
  readonly nodeName?: string;
}

/** One object as watchers see it. */
export interface ObjectView {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: {
    readonly name: string;
    readonly namespace: string;
    readonly uid: string;
    readonly generation: number;
    readonly creationTimestamp?: string;
    readonly labels?: Readonly<Record<string, string>>;
    /** hyperlet.io/source: SOURCE[:FILE] */
    readonly annotations?: Readonly<Record<string, string>>;
  };
  readonly spec: SpecSummary;
  readonly status?: Status;
}

/** Reads the daemon's objects for views: every object it knows (declared or being deleted), and one by key. */
export interface ObjectViews {
  list(): ObjectView[];
  get(key: string): ObjectView | undefined;
}

/** "KIND/NAMESPACE/NAME" of a view, the subject events name it by. */
export function subjectOf(view: ObjectView): string {
  return `${view.kind}/${view.metadata.namespace}/${view.metadata.name}`;
}

/** Which objects a watch or a list wants (absent fields match everything). */
export interface ViewFilter {
  readonly kind?: string;
  readonly namespace?: string;
  readonly name?: string;
}

/** Whether the object KIND NAMESPACE/NAME passes `filter`. */
export function namesMatch(kind: string, namespace: string, name: string, filter: ViewFilter): boolean {
  return (filter.kind === undefined || kind === filter.kind)
    && (filter.namespace === undefined || namespace === filter.namespace)
    && (filter.name === undefined || name === filter.name);
}

/** Whether `view` passes `filter`. */
export function viewMatches(view: ObjectView, filter: ViewFilter): boolean {
  return namesMatch(view.kind, view.metadata.namespace, view.metadata.name, filter);
}
