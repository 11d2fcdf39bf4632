import { expect } from 'chai';
import { containerSchema } from '../../../src/api/v1alpha1/container-schema.js';
import { generateCrd } from '../../../src/api/v1alpha1/crd.js';
import type { Kind } from '../../../src/api/v1alpha1/group.js';
import type { JsonSchema } from '../../../src/api/v1alpha1/schema-parts.js';
import { virtualMachineSchema } from '../../../src/api/v1alpha1/virtual-machine-schema.js';

/**
 * Paths of the nodes `kubectl explain` shows that have no description: the kind itself, every
 * field, and the objects inside arrays. (Map values and anyOf branches are not shown on their own.)
 */
function undescribed(node: JsonSchema, path: string, skip: readonly string[] = []): string[] {
  if (skip.includes(path)) return [];
  const out: string[] = [];
  const description = node.description;
  if (typeof description !== 'string' || description.trim() === '') out.push(path);
  const properties = (node.properties ?? {}) as Record<string, JsonSchema>;
  for (const [name, child] of Object.entries(properties)) out.push(...undescribed(child, `${path}.${name}`, skip));
  const items = node.items as JsonSchema | undefined;
  const objectItems = items !== undefined && (items.type === 'object' || items.properties !== undefined);
  if (objectItems) out.push(...undescribed(items, `${path}[]`, skip));
  return out;
}

const crdSchema = (kind: Kind): JsonSchema => {
  const crd = generateCrd(kind) as { spec: { versions: { schema: { openAPIV3Schema: JsonSchema } }[] } };
  return crd.spec.versions[0]!.schema.openAPIV3Schema;
};

const FILES = 'the JSON Schema files are validated with';
const SERVED = 'the CRD the API server serves, status included';

describe('schema descriptions (what kubectl explain and hyperlet validate show)', () => {
  const cases = {
    ContainerSchema: { reason: FILES, schema: containerSchema, root: 'Container', skip: [] },
    VirtualMachineSchema: { reason: FILES, schema: virtualMachineSchema, root: 'VirtualMachine', skip: [] },
    // A CRD may say nothing of metadata but name's rules: the API server serves Kubernetes' ObjectMeta there.
    ContainerCrd: { reason: SERVED, schema: crdSchema('Container'), root: 'containers', skip: ['containers.metadata'] },
    VirtualMachineCrd: { reason: SERVED, schema: crdSchema('VirtualMachine'), root: 'virtualmachines', skip: ['virtualmachines.metadata'] },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(`${name}: every kind, object and field has a description`, () => {
      expect(undescribed(tc.schema, tc.root, tc.skip), tc.reason).to.deep.equal([]);
    });
  }

  it('finds a missing description (the check can fail)', () => {
    const schema = {
      type: 'object', description: 'x',
      properties: { a: { type: 'string' }, b: { type: 'array', description: 'y', items: { type: 'object', properties: {} } } },
    };
    expect(undescribed(schema, 'k')).to.deep.equal(['k.a', 'k.b[]']);
  });

  it('says what a quantity is, in the description kubectl explain shows', () => {
    const props = (node: JsonSchema): Record<string, JsonSchema> => node.properties as Record<string, JsonSchema>;
    const description = props(props(props(crdSchema('Container')).spec!).resources!).memory!.description as string;
    expect(description).to.match(/quantity/i).and.to.contain('512Mi');
  });
});
