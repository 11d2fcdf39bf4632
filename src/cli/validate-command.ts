/** `hyperlet validate -f PATH...`: one line per problem; exit 0 valid, 1 invalid, 2 usage. */
import { parseArgs } from 'node:util';
import { loadPaths } from '../sources/manifest-loader.js';
import { UsageError } from './usage-error.js';

/** `hyperlet validate -f`: checks files against the schemas, printing every issue; 1 when any is invalid. */
export async function validateCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, strict: true, options: { filename: { type: 'string', short: 'f', multiple: true } } });
  const paths = [...(values.filename ?? []), ...positionals];
  if (paths.length === 0) throw new UsageError('validate needs at least one -f PATH (a file or a directory)');
  const { objects, problems } = await loadPaths(paths);
  for (const p of problems) process.stdout.write(`${p.line}\n`);
  process.stderr.write(`${objects.length} valid object(s), ${problems.length} problem(s)\n`);
  return problems.length === 0 ? 0 : 1;
}
