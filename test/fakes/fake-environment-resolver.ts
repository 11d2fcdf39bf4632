/** An EnvironmentResolver with scripted values and failures, recording what it was asked. */
import type { EnvironmentReference } from '../../src/api/v1alpha1/environment.js';
import type { EnvironmentResolver } from '../../src/reconcile/backend.js';
import type { Desired } from '../../src/store/desired.js';

export class FakeEnvironmentResolver implements EnvironmentResolver {
  readonly asked: string[] = [];
  /** Values by variable name; a name missing here fails. */
  values: Record<string, string> = {};
  /** Thrown instead of answering, when set. */
  failure: Error | undefined;

  async resolve(d: Desired, refs: readonly EnvironmentReference[]): Promise<Record<string, string>> {
    this.asked.push(`${d.hostName}:${refs.map((r) => r.name).join(',')}`);
    if (this.failure !== undefined) throw this.failure;
    const out: Record<string, string> = {};
    for (const r of refs) {
      const v = this.values[r.name];
      if (v === undefined) throw new Error(`FakeEnvironmentResolver: no value for ${r.name}`);
      out[r.name] = v;
    }
    return out;
  }
}
