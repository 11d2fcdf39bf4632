/**
 * The layer check `make lint` runs: every import in src/ points down the layer order of
 * DESIGN.md, so the folder names tell what a file may touch. An edge against the order fails the
 * build with the file, the import and both layers named.
 *
 * Rules: a folder may import its own files and any folder on a lower row; two folders on one row
 * never import each other. Only providers/registry.ts and daemon/ may name a provider's own
 * folder (providers/lxc, providers/libvirt): everything else reaches instances through the
 * Provider interface. Tests and benchmarks are exempt (they reach in on purpose).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, posix, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Bottom first. One row per entry; folders on one row are peers. */
export const LAYERS: readonly (readonly string[])[] = [
  ['shared'],
  ['api'],
  ['store'],
  ['queue'],
  ['state'],
  ['kube'],
  ['telemetry'],
  ['providers'],
  ['policy'],
  ['reconcile'],
  ['sources', 'status', 'scheduler'],
  ['server', 'notify'],
  ['daemon'],
  ['cli'],
];

/** Files and folders allowed to name a provider's own folder. */
const PROVIDER_WIRING = ['providers/registry.ts', 'daemon/'];
const PROVIDER_FOLDERS = ['providers/lxc/', 'providers/libvirt/'];

export interface LayerViolation {
  readonly file: string;
  readonly imported: string;
  readonly rule: string;
}

function rowOf(folder: string): number {
  return LAYERS.findIndex((row) => row.includes(folder));
}

/** The violations of one import from `file` (both relative to src/, posix separators). */
export function checkImport(file: string, imported: string): LayerViolation | undefined {
  const from = file.split('/')[0] ?? '';
  const to = imported.split('/')[0] ?? '';
  const fromRow = rowOf(from);
  const toRow = rowOf(to);
  if (fromRow < 0) return { file, imported, rule: `folder src/${from}/ is not in the layer order (scripts/check-layers.ts)` };
  if (toRow < 0) return { file, imported, rule: `folder src/${to}/ is not in the layer order (scripts/check-layers.ts)` };
  const ownProviderFolder = PROVIDER_FOLDERS.find((p) => file.startsWith(p));
  const namedProvider = PROVIDER_FOLDERS.find((p) => imported.startsWith(p));
  if (namedProvider !== undefined && namedProvider !== ownProviderFolder && !PROVIDER_WIRING.some((w) => file.startsWith(w))) {
    return { file, imported, rule: `only ${PROVIDER_WIRING.join(' and ')} may import from ${namedProvider}; use the Provider interface` };
  }
  if (from === to) return undefined;
  if (toRow < fromRow) return undefined;
  const relation = toRow === fromRow ? 'a peer on the same row' : 'a higher layer';
  return { file, imported, rule: `${from}/ may not import ${to}/, ${relation} (order, bottom first: ${LAYERS.map((r) => r.join('|')).join(' < ')})` };
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\b[^'"]*?\bfrom\s*['"](\.[^'"]+)['"]|\bimport\(\s*['"](\.[^'"]+)['"]\s*\)/g;

/** Every relative import of a TypeScript source, as written. */
export function importsOf(source: string): string[] {
  const found: string[] = [];
  for (const m of source.matchAll(IMPORT)) found.push((m[1] ?? m[2]) as string);
  return found;
}

function* tsFiles(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* tsFiles(path);
    else if (entry.name.endsWith('.ts')) yield path;
  }
}

/** Checks every file under `srcDir`; returns the violations found. */
export function checkTree(srcDir: string): LayerViolation[] {
  const violations: LayerViolation[] = [];
  for (const path of tsFiles(srcDir)) {
    const file = relative(srcDir, path).split('\\').join('/');
    for (const spec of importsOf(readFileSync(path, 'utf8'))) {
      const target = relative(srcDir, resolve(dirname(path), spec)).split('\\').join('/');
      if (target.startsWith('..')) {
        violations.push({ file, imported: spec, rule: 'imports from outside src/' });
        continue;
      }
      const violation = checkImport(file, posix.normalize(target));
      if (violation !== undefined) violations.push(violation);
    }
  }
  return violations;
}

function main(): void {
  const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
  const srcDir = join(repoRoot, 'src');
  const violations = checkTree(srcDir);
  for (const v of violations) process.stderr.write(`src/${v.file}: imports ${v.imported}: ${v.rule}\n`);
  if (violations.length > 0) {
    process.stderr.write(`check-layers: ${violations.length} import(s) against the layer order\n`);
    process.exit(1);
  }
  process.stdout.write('check-layers: every import points down the layer order\n');
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
