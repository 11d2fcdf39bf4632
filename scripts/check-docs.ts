/**
 * The doc check `make lint` runs: every declaration src/ exports (function, class, interface,
 * type, enum, const) carries a TSDoc comment (`/** … *\/`) saying its contract, as STYLE.md asks.
 * A missing one fails the build with the file, line and name.
 *
 * Caveats: it checks that a comment is there, not what it says; re-exports (`export { x } from`)
 * are checked where they are declared. Tests, benchmarks and scripts are exempt.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** One exported declaration without a doc comment. */
export interface MissingDoc {
  readonly file: string;
  readonly line: number;
  readonly name: string;
}

function isExported(node: ts.Node): boolean {
  return ts.canHaveModifiers(node) && (ts.getModifiers(node) ?? []).some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
}

/** Whether `node` has a `/** … *\/` comment right before it. */
function hasDocComment(node: ts.Node, text: string): boolean {
  const ranges = ts.getLeadingCommentRanges(text, node.getFullStart()) ?? [];
  return ranges.some((r) => r.kind === ts.SyntaxKind.MultiLineCommentTrivia && text.startsWith('/**', r.pos));
}

function namesOf(node: ts.Statement): string[] {
  if (ts.isVariableStatement(node)) return node.declarationList.declarations.map((d) => d.name.getText());
  const named = node as ts.Statement & { name?: ts.Node };
  return [named.name?.getText() ?? 'default'];
}

/** The exported declarations of one TypeScript source that lack a doc comment. */
export function missingDocs(file: string, text: string): MissingDoc[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
  const missing: MissingDoc[] = [];
  for (const statement of source.statements) {
    if (!isExported(statement) || ts.isExportDeclaration(statement) || ts.isExportAssignment(statement)) continue;
    if (hasDocComment(statement, text)) continue;
    const line = source.getLineAndCharacterOfPosition(statement.getStart()).line + 1;
    for (const name of namesOf(statement)) missing.push({ file, line, name });
  }
  return missing;
}

function* tsFiles(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* tsFiles(path);
    else if (entry.name.endsWith('.ts')) yield path;
  }
}

/** Checks every file under `srcDir`; returns what lacks a doc comment. */
export function checkTree(srcDir: string): MissingDoc[] {
  const missing: MissingDoc[] = [];
  for (const path of tsFiles(srcDir)) {
    missing.push(...missingDocs(relative(srcDir, path).split('\\').join('/'), readFileSync(path, 'utf8')));
  }
  return missing;
}

function main(): void {
  const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
  const missing = checkTree(join(repoRoot, 'src'));
  for (const m of missing) process.stderr.write(`src/${m.file}:${m.line}: export ${m.name} has no doc comment saying its contract\n`);
  if (missing.length > 0) {
    process.stderr.write(`check-docs: ${missing.length} export(s) without a doc comment\n`);
    process.exit(1);
  }
  process.stdout.write('check-docs: every export says its contract\n');
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
