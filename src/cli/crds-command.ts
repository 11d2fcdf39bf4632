/** `hyperlet crds [--out DIR]`: the CustomResourceDefinitions generated from the JSON Schemas. */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { crdFiles, crdKustomization, crdsYaml } from '../api/v1alpha1/crd.js';

/** `hyperlet crds`: writes the generated CRDs to stdout or --out; resolves to the exit code. */
export function crdsCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, strict: true, allowPositionals: false, options: { out: { type: 'string' } } });
  if (values.out === undefined) {
    process.stdout.write(crdsYaml());
    return Promise.resolve(0);
  }
  // Writing a directory: remove generated files of kinds that no longer exist, so it always equals the output.
  mkdirSync(values.out, { recursive: true });
  const files = [...crdFiles(), crdKustomization()];
  for (const name of readdirSync(values.out)) {
    if (name.endsWith('.yaml') && !files.some((f) => f.fileName === name)) rmSync(join(values.out, name));
  }
  for (const f of files) writeFileSync(join(values.out, f.fileName), f.content);
  process.stderr.write(`wrote ${files.map((f) => join(values.out ?? '', f.fileName)).join(', ')}\n`);
  return Promise.resolve(0);
}
