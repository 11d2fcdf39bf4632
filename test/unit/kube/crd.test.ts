import { expect } from 'chai';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import yaml from 'js-yaml';
import { CRD_HEADER, crdFiles, crdKustomization, crdsYaml, generateCrds, toRe2Pattern } from '../../../src/api/v1alpha1/crd.js';
import { REPO_ROOT } from '../../e2e/support/kube-testenv.js';

type Node = Record<string, unknown>;

/** Every schema node below `node`, with its path. */
function* walk(node: Node, path: string): Generator<[string, Node]> {
  yield [path, node];
  for (const [name, child] of Object.entries((node.properties ?? {}) as Record<string, Node>)) yield* walk(child, `${path}.${name}`);
  if (typeof node.items === 'object' && node.items !== null) yield* walk(node.items as Node, `${path}[]`);
  if (typeof node.additionalProperties === 'object' && node.additionalProperties !== null) yield* walk(node.additionalProperties as Node, `${path}{}`);
}

const crdOf = (plural: string): Node => {
  const crd = generateCrds().find((c) => (c.metadata as { name: string }).name === `${plural}.hyperlet.io`);
  if (crd === undefined) throw new Error(`no CRD ${plural}`);
  return crd;
};
const versionOf = (crd: Node): Node => ((crd.spec as Node).versions as Node[])[0]!;
const rootSchemaOf = (crd: Node): Node => ((versionOf(crd).schema as Node).openAPIV3Schema as Node);

describe('generated CRDs', () => {
  it('crds/ holds exactly what `hyperlet crds` prints (regenerate: make crds)', () => {
    const dir = join(REPO_ROOT, 'crds');
    const onDisk = readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort();
    const files = [...crdFiles(), crdKustomization()];
    expect(onDisk).to.deep.equal(files.map((f) => f.fileName).sort());
    for (const f of files) expect(readFileSync(join(dir, f.fileName), 'utf8'), f.fileName).to.equal(f.content);
    expect(crdsYaml()).to.equal(crdFiles().map((f) => f.content).join('---\n'));
  });

  it('crds/kustomization.yaml lists exactly the generated CRD files (manifests/ installs them through it)', () => {
    const k = yaml.load(crdKustomization().content) as { kind: string; resources: string[] };
    expect(k.kind).to.equal('Kustomization');
    expect([...k.resources].sort()).to.deep.equal(crdFiles().map((f) => f.fileName).sort());
    const top = yaml.load(readFileSync(join(REPO_ROOT, 'manifests', 'kustomization.yaml'), 'utf8')) as { resources: string[] };
    expect(top.resources).to.include('../crds');
  });

  it('every file starts with the DO NOT EDIT header and parses back to the generated objects', () => {
    for (const f of crdFiles()) {
      expect(f.content.startsWith(CRD_HEADER)).to.equal(true);
      expect(CRD_HEADER).to.include('DO NOT EDIT');
    }
    expect(yaml.loadAll(crdsYaml())).to.deep.equal(generateCrds());
  });

  const names = {
    Container: { plural: 'containers', shortNames: ['ct'] },
    VirtualMachine: { plural: 'virtualmachines', shortNames: ['vm', 'vms'] },
  };
  for (const [kind, want] of Object.entries(names)) {
    it(`${kind}: names, category, status subresource, printer columns, node field selector`, () => {
      const crd = crdOf(want.plural);
      const spec = crd.spec as Node;
      expect(spec.scope).to.equal('Namespaced');
      expect(spec.names).to.deep.include({ kind, plural: want.plural, shortNames: want.shortNames, categories: ['hyperlet'] });
      const v = versionOf(crd);
      expect(v).to.deep.include({ name: 'v1alpha1', served: true, storage: true, subresources: { status: {} } });
      expect((v.additionalPrinterColumns as Node[]).filter((c) => c.priority === undefined).map((c) => c.name))
        .to.deep.equal(['Phase', 'Node', 'Placed', 'CPU', 'Memory', 'Age']);
      expect(v.selectableFields).to.deep.equal([{ jsonPath: '.spec.nodeName' }, { jsonPath: '.status.placement.nodeName' }]);
    });

    it(`${kind}: the schema is structural (every node typed, no JSON-Schema-only keywords)`, () => {
      for (const [path, node] of walk(rootSchemaOf(crdOf(want.plural)), '')) {
        const typed = typeof node.type === 'string' || node['x-kubernetes-int-or-string'] === true;
        expect(typed, `${path} has no type`).to.equal(true);
        for (const banned of ['additionalProperties', 'propertyNames', 'x-quantity-range', 'const', 'oneOf']) {
          if (banned === 'additionalProperties' && typeof node.additionalProperties === 'object') continue;
          expect(node, `${path} keeps ${banned}`).not.to.have.property(banned);
        }
        if (typeof node.pattern === 'string') expect(node.pattern, `${path} pattern`).not.to.match(/\\u[0-9a-fA-F]{4}/);
      }
    });
  }

  it('turns the quantity ranges and the cross-field rules into CEL', () => {
    const spec = (rootSchemaOf(crdOf('containers')).properties as Node).spec as Node;
    const memory = ((spec.properties as Node).resources as Node & { properties: Node }).properties.memory as Node;
    const rules = memory['x-kubernetes-validations'] as { rule: string; message: string }[];
    expect(rules.map((r) => r.message)).to.deep.equal(['must be between 64Mi and 1Ti']);
    expect(rules[0]!.rule).to.include('self >= 67108864 && self <= 1099511627776');
    expect((spec['x-kubernetes-validations'] as { message: string }[]).map((r) => r.message))
      .to.deep.equal([
        'exactly one of template, rootfs and image must be set', 'templateArgs is only for a template',
        'a name in environmentFrom must not also be in environment',
      ]);
  });

  const patterns = {
    EscapesBecomeRe2: { reason: 'RE2 spells \\u0000 as \\x{0000}', in: '^[^\\u0000-\\u001f]*$', want: '^[^\\x{0000}-\\x{001f}]*$' },
    OtherPatternsUnchanged: { reason: 'nothing else differs between the two dialects here', in: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', want: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' },
  };
  for (const [name, tc] of Object.entries(patterns)) {
    it(`toRe2Pattern: ${name}`, () => expect(toRe2Pattern(tc.in), tc.reason).to.equal(tc.want));
  }
});
