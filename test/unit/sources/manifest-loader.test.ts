import { expect } from 'chai';
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadFile, loadPaths, loadText, MAX_FILE_BYTES } from '../../../src/sources/manifest-loader.js';

const good = (name: string) => `apiVersion: hyperlet.io/v1alpha1\nkind: Container\nmetadata:\n  name: ${name}\nspec:\n  template: busybox\n`;

describe('manifest loader', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'hyperlet-loader-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const cases: Record<string, { reason: string; text: string; objects: number; lines: RegExp[] }> = {
    MultiDocument: { reason: 'every document is read', text: `${good('a')}---\n${good('b')}`, objects: 2, lines: [] },
    BrokenYaml: { reason: 'a syntax error is one line with a position', text: 'kind: [unclosed\n', objects: 0, lines: [/^f\.yaml -: cannot parse YAML at line \d+, column \d+/] },
    DuplicateKey: { reason: 'YAML duplicate keys are an error', text: 'kind: a\nkind: b\n', objects: 0, lines: [/cannot parse YAML/] },
    NotAMapping: { reason: 'a list document', text: `${good('a')}---\n- 1\n- 2\n`, objects: 1, lines: [/^f\.yaml#2 -: document must be a mapping/] },
    UnknownKind: { reason: 'a kind we do not serve', text: 'apiVersion: hyperlet.io/v1alpha1\nkind: Pod\nmetadata: {name: x}\n', objects: 0, lines: [/^f\.yaml -: kind: must be Container or VirtualMachine/] },
    InvalidField: { reason: 'names file, kind/name, field path and rule', text: `${good('a')}  resources: {cpu: 500}\n`, objects: 0, lines: [/^f\.yaml Container\/a: spec\.resources\.cpu: must be <= 128/] },
    BadDocDoesNotHideGood: { reason: 'one bad document never hides the good ones', text: `${good('a')}---\n${good('B')}---\n${good('c')}`, objects: 2, lines: [/^f\.yaml#2 Container\/B: metadata\.name: must be a DNS-1123 label/] },
    AliasBomb: {
      reason: 'an alias bomb is refused, not expanded',
      text: 'a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n',
      objects: 0, lines: [/expands to more than/],
    },
    Json: { reason: 'JSON is accepted', text: JSON.stringify({ apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name: 'j' }, spec: { template: 'busybox' } }), objects: 1, lines: [] },
    EmptyDocuments: { reason: 'empty documents are skipped', text: `---\n---\n${good('a')}---\n`, objects: 1, lines: [] },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const r = loadText('f.yaml', tc.text);
      expect(r.objects, tc.reason).to.have.length(tc.objects);
      expect(r.problems, tc.reason).to.have.length(tc.lines.length);
      tc.lines.forEach((re, i) => expect(r.problems[i]?.line, tc.reason).to.match(re));
    });
  }

  it('refuses a file over 1 MiB unread', async () => {
    const f = join(dir, 'big.yaml');
    writeFileSync(f, `${good('a')}#${'x'.repeat(MAX_FILE_BYTES)}\n`);
    const r = await loadFile(f);
    expect(r.unusable).to.equal(true);
    expect(r.problems[0]?.rule).to.equal('size');
  });

  it('refuses a binary file', async () => {
    const f = join(dir, 'bin.yaml');
    writeFileSync(f, Buffer.from([0x6b, 0x00, 0xff, 0xfe]));
    const r = await loadFile(f);
    expect(r.problems[0]?.rule).to.equal('binary');
  });

  it('walks directories, and reports a duplicate kind/namespace/name once, keeping the first', async () => {
    mkdirSync(join(dir, 'sub'));
    writeFileSync(join(dir, 'a.yaml'), good('web'));
    writeFileSync(join(dir, 'sub', 'b.yml'), good('web'));
    writeFileSync(join(dir, 'notes.txt'), 'not a manifest');
    const r = await loadPaths([dir], dir);
    expect(r.objects.map((o) => o.file)).to.deep.equal(['a.yaml']);
    expect(r.problems).to.have.length(1);
    expect(r.problems[0]?.line).to.match(/^sub\/b\.yml#1 Container\/web: metadata\.name: also declared in a\.yaml#1/);
  });
});
