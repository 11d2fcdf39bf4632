/**
 * Regenerates crds/ from the JSON Schemas: `node dist/scripts/kube-testenv/write-crds.js [DIR]`.
 * Removes generated files of kinds that no longer exist, so crds/ always equals `hyperlet crds`.
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crdFiles } from '../../src/api/v1alpha1/crd.js';

const dir = process.argv[2] ?? 'crds';
mkdirSync(dir, { recursive: true });
const files = crdFiles();
for (const name of readdirSync(dir)) {
  if (name.endsWith('.yaml') && !files.some((f) => f.fileName === name)) rmSync(join(dir, name));
}
for (const f of files) writeFileSync(join(dir, f.fileName), f.content);
console.log(`wrote ${files.map((f) => join(dir, f.fileName)).join(', ')}`);
