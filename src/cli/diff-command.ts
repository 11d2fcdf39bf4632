/**
 * `hyperlet diff -f PATH [--policy FILE]`: what the daemon would do for these objects on this
 * host, changing nothing. Objects the host policy refuses (the file given, else the built-in
 * default, as for `hyperlet run`) are shown with the refusal, field by field. Exit 0 when nothing
 * would change, 1 when something would, 2 on bad input, a refusal or usage.
 */
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { environmentReferences, isEnvironmentError, withEnvironmentValues } from '../api/v1alpha1/environment.js';
import type { Kind } from '../api/v1alpha1/group.js';
import { describeEnvironmentChange, redactFieldValue } from '../api/v1alpha1/redact-object.js';
import type { FieldChange } from '../providers/provider.js';
import { FileEnvironmentResolver } from '../sources/file-environment-resolver.js';
import { DEFAULT_SECRETS_DIR } from '../sources/secret-file.js';
import { silentLogger } from '../telemetry/logger.js';
import { closeProviders, createProviders } from '../providers/registry.js';
import { plan, type Step } from '../reconcile/plan.js';
import { errorMessage } from '../shared/errors.js';
import { loadPaths } from '../sources/manifest-loader.js';
import { StateDb } from '../state/state-db.js';
import { DEFAULT_STATE_PATH } from '../state/state-dir.js';
import { issueLine } from '../policy/admission.js';
import { PolicyOptionError, admitAll, desiredOf, policyOption } from './policy-check.js';
import { UsageError } from './usage-error.js';

function describe(step: Step): string {
  switch (step.op) {
    case 'update': return `update ${step.changes.map(describeChange).join(', ')}`;
    case 'setState': return `set state ${step.to}`;
    case 'delete': return step.reason === 'recreate' ? 'delete (to re-create)' : step.reason === 'partial' ? 'clean up a partial instance' : 'delete';
    default: return step.op;
  }
}

/** One field change for people: environment by key only (values are never shown), others from → to. */
function describeChange(c: FieldChange): string {
  if (c.path === 'environment') return `environment (${describeEnvironmentChange(c.from, c.to)}) (${c.apply})`;
  return `${c.path} ${JSON.stringify(redactFieldValue(c.path, c.from))} → ${JSON.stringify(redactFieldValue(c.path, c.to))} (${c.apply})`;
}

/** `hyperlet diff -f`: prints what reconciling the files would change, changing nothing; exit 0 none, 1 some, 2 unchecked objects. */
export async function diffCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true, strict: true,
    options: {
      filename: { type: 'string', short: 'f', multiple: true }, state: { type: 'string' }, lxcpath: { type: 'string' },
      'libvirt-uri': { type: 'string' }, 'libvirt-socket': { type: 'string' }, 'secrets-dir': { type: 'string' },
      policy: { type: 'string' },
    },
  });
  const paths = [...(values.filename ?? []), ...positionals];
  if (paths.length === 0) throw new UsageError('diff needs at least one -f PATH');
  let hostPolicy;
  try {
    hostPolicy = await policyOption(values.policy);
  } catch (err) {
    if (!(err instanceof PolicyOptionError)) throw err;
    for (const line of err.lines) process.stdout.write(`${line}\n`);
    return 2;
  }
  const { objects, problems } = await loadPaths(paths);
  if (problems.length > 0) {
    for (const p of problems) process.stdout.write(`${p.line}\n`);
    return 2;
  }
  const statePath = values.state ?? DEFAULT_STATE_PATH;
  const db = existsSync(statePath) ? new StateDb(statePath, { readonly: true }) : undefined;
  const rows = db?.listObjects() ?? [];
  db?.close();
  const kinds = [...new Set(objects.map((o) => o.object.kind))] as Kind[];
  const providers = await createProviders({
    lxcpath: values.lxcpath ?? '/var/lib/lxc', libvirtUri: values['libvirt-uri'] ?? 'qemu:///system', kinds, logger: silentLogger(),
    ...(values['libvirt-socket'] === undefined ? {} : { libvirtSocket: values['libvirt-socket'] }),
  });
  const signal = AbortSignal.timeout(120_000);
  // environmentFrom files are read as the daemon of a dir or git source reads it, so the diff is the daemon's.
  const environment = new FileEnvironmentResolver(values['secrets-dir'] ?? DEFAULT_SECRETS_DIR);
  let changes = 0;
  let failures = 0;
  let refusals = 0;
  const declared = objects.map((loaded) => {
    const { object } = loaded;
    const row = rows.find((r) => r.kind === object.kind && r.namespace === object.metadata.namespace && r.name === object.metadata.name);
    return desiredOf(loaded, row);
  });
  // The same verdict the daemon reaches: a refused object would not be touched, so nothing is planned for it.
  const verdicts = await admitAll(hostPolicy, declared);
  try {
    for (const declaredObject of declared) {
      const { object } = declaredObject;
      const label = `${object.kind}/${object.metadata.namespace === 'default' ? '' : `${object.metadata.namespace}/`}${object.metadata.name}`;
      const verdict = verdicts.get(declaredObject);
      if (verdict !== undefined && !verdict.allowed) {
        refusals++;
        process.stdout.write(`${label}: refused (${verdict.reason}): nothing would be done\n`);
        for (const issue of verdict.issues) process.stdout.write(`  ${issueLine(issue)}\n`);
        continue;
      }
      const d = verdict?.allowed === true ? verdict.desired : declaredObject;
      const provider = providers.get(object.kind);
      try {
        if (provider === undefined) throw new Error('no provider');
        await provider.probe(signal);
        // The admitted object (policy defaults in) with its environmentFrom read: what the daemon would apply.
        const refs = environmentReferences(d.object);
        const target = refs.length === 0 ? d : { ...d, object: withEnvironmentValues(d.object, await environment.resolve(d, refs, signal)) };
        const p = plan(target, await provider.observe(d, signal), { applyModeOf: provider.applyModeOf?.bind(provider) });
        if (p.conflict !== undefined) {
          process.stdout.write(`${label}: conflict: ${p.conflict}\n`);
          changes++;
          continue;
        }
        if (p.steps.length === 0 && p.pending.length === 0) {
          process.stdout.write(`${label}: up to date\n`);
          continue;
        }
        if (p.steps.length > 0) changes++;
        process.stdout.write(`${label}: ${p.steps.length === 0 ? 'nothing to do now' : p.steps.map(describe).join('; ')}\n`);
        for (const c of p.pending) process.stdout.write(`  held back: ${c.path} needs a ${c.apply} (updatePolicy ${object.spec.updatePolicy})\n`);
      } catch (err) {
        failures++;
        process.stdout.write(`${label}: ${isEnvironmentError(err) ? `${err.reason}: ${err.message}` : `cannot observe: ${errorMessage(err)}`}\n`);
      }
    }
  } finally {
    await closeProviders(providers.values());
  }
  return failures > 0 || refusals > 0 ? 2 : changes > 0 ? 1 : 0;
}
