/**
 * The EnvironmentResolver of dir and git sources: environmentFrom `file` from the host's secrets
 * directory (secret-file.ts). Secrets then live on the host, put there by its operator, never
 * in the directory or repository the objects come from.
 */
import type { EnvironmentReference } from '../api/v1alpha1/environment.js';
import { EnvironmentError, referenceField } from '../api/v1alpha1/environment.js';
import type { Desired } from '../store/desired.js';
import { readSecretFile } from './secret-file.js';
import type { EnvironmentResolver } from '../reconcile/backend.js';

/** Reads valueFrom.file references from the secrets directory only; throws EnvironmentError naming the field. */
export class FileEnvironmentResolver implements EnvironmentResolver {
  /** `secretsDir`: --secrets-dir, the only directory secret files are read from. */
  constructor(private readonly secretsDir: string) {}

  async resolve(_d: Desired, refs: readonly EnvironmentReference[], signal: AbortSignal): Promise<Record<string, string>> {
    const values: Record<string, string> = {};
    for (const ref of refs) {
      signal.throwIfAborted();
      const field = referenceField(ref);
      if (ref.source.file === undefined) {
        throw new EnvironmentError('PolicyDenied', `${field}: secretKeyRef needs the kube source; dir and git sources read {file: PATH} from ${this.secretsDir}`);
      }
      values[ref.name] = await readSecretFile(this.secretsDir, ref.source.file, field, ref.document === true);
    }
    return values;
  }
}
