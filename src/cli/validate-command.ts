/**
 * `hyperlet validate -f PATH... [--policy FILE]`: one line per problem; exit 0 valid, 1 invalid,
 * 2 usage. With --policy the policy file is checked too, and each valid object is judged by it
 * on this host (as source "dir"), as `hyperlet run --policy FILE` would judge it.
 */
import { parseArgs } from 'node:util';
import { loadPaths, makeProblem } from '../sources/manifest-loader.js';
import { PolicyOptionError, admitAll, desiredOf, policyOption } from './policy-check.js';
import { UsageError } from './usage-error.js';

/** `hyperlet validate -f`: checks files against the schemas, printing every issue; 1 when any is invalid. */
export async function validateCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true, strict: true,
    options: { filename: { type: 'string', short: 'f', multiple: true }, policy: { type: 'string' } },
  });
  const paths = [...(values.filename ?? []), ...positionals];
  if (paths.length === 0 && values.policy === undefined) {
    throw new UsageError('validate needs at least one -f PATH (a file or a directory), or --policy FILE');
  }
  let policy;
  try {
    policy = await policyOption(values.policy);
  } catch (err) {
    if (!(err instanceof PolicyOptionError)) throw err;
    for (const line of err.lines) process.stdout.write(`${line}\n`);
    process.stderr.write(`the host policy is invalid: ${err.lines.length} problem(s)\n`);
    return 1;
  }
  if (paths.length === 0) {
    process.stderr.write(`${values.policy ?? ''}: a valid host policy\n`);
    return 0;
  }
  const { objects, problems } = await loadPaths(paths);
  const lines = problems.map((p) => p.line);
  let refused = 0;
  if (values.policy !== undefined) {
    const verdicts = await admitAll(policy, objects.map((o) => desiredOf(o)));
    for (const [d, verdict] of verdicts) {
      if (verdict.allowed) continue;
      refused++;
      const { kind, metadata } = d.object;
      for (const issue of verdict.issues) {
        lines.push(makeProblem({
          file: d.origin?.file ?? '-', document: d.origin?.document ?? 0, kind, namespace: metadata.namespace, name: metadata.name,
          path: issue.field, rule: issue.rule, message: `${issue.message} (policy: ${issue.rule})`,
        }).line);
      }
    }
  }
  for (const line of lines) process.stdout.write(`${line}\n`);
  const policyNote = values.policy === undefined ? '' : `, ${refused} refused by the host policy`;
  process.stderr.write(`${objects.length - refused} valid object(s), ${problems.length} problem(s)${policyNote}\n`);
  return lines.length === 0 ? 0 : 1;
}
