/**
 * The EnvironmentResolver of the kube source: environmentFrom `secretKeyRef` read from a Secret in the
 * object's own namespace, at every reconcile (a rotated Secret reaches the container at its next
 * restart, as the update policy allows). `file` is refused: the host's files are the
 * host operator's, not a namespace's.
 */
import { EnvironmentError, type EnvironmentReference, checkedEnvironmentValue, referenceField } from '../api/v1alpha1/environment.js';
import type { Desired } from '../store/desired.js';
import { apiMessage, statusCodeOf } from '../kube/kube-client.js';
import type { SecretReader } from '../kube/kube-secret-reader.js';
import type { EnvironmentResolver } from '../reconcile/backend.js';

/** Reads valueFrom.secretKeyRef references from Secrets in the object's namespace; throws EnvironmentError naming the field. */
export class KubeEnvironmentResolver implements EnvironmentResolver {
  constructor(private readonly secrets: SecretReader) {}

  async resolve(d: Desired, refs: readonly EnvironmentReference[], signal: AbortSignal): Promise<Record<string, string>> {
    const namespace = d.object.metadata.namespace;
    const values: Record<string, string> = {};
    for (const ref of refs) {
      const field = referenceField(ref);
      const selector = ref.source.secretKeyRef;
      if (selector === undefined) {
        throw new EnvironmentError('PolicyDenied', `${field}: {file: PATH} is read for dir and git sources only; in Kubernetes use secretKeyRef`);
      }
      const what = `Secret ${namespace}/${selector.name}`;
      let got;
      try {
        got = await this.secrets.readKey(namespace, selector.name, selector.key, signal);
      } catch (err) {
        if (signal.aborted) throw err;
        const code = statusCodeOf(err);
        const why = code === 403 ? 'the agent may not get Secrets in this namespace (RBAC: get secrets)' : apiMessage(err);
        throw new EnvironmentError('SecretUnavailable', `${field}: cannot read ${what}: ${why}${code === undefined ? '' : ` (HTTP ${code})`}`, { cause: err });
      }
      if (!got.found) {
        throw new EnvironmentError('SecretNotFound', got.missing === 'secret' ? `${field}: no ${what}` : `${field}: ${what} has no key ${JSON.stringify(selector.key)}`);
      }
      let text: string;
      try {
        text = new TextDecoder('utf-8', { fatal: true }).decode(got.bytes);
      } catch {
        throw new EnvironmentError('PolicyDenied', `${field}: ${what} key ${JSON.stringify(selector.key)} is not UTF-8 text`);
      }
      values[ref.name] = checkedEnvironmentValue(field, text, `${what} key ${JSON.stringify(selector.key)}`, ref.document === true);
    }
    return values;
  }
}
