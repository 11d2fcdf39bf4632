/**
 * examples/ as `make run` loads it (dir source): every file is valid, and under the default host
 * policy only the Debian container's and Debian VM's placeholder URLs are refused, each on its
 * own field, so the other examples run.
 */
import { expect } from 'chai';
import path from 'node:path';
import { pathIssues, staticIssues } from '../../../src/policy/admission.js';
import { DEFAULT_SCOPE_RULES } from '../../../src/policy/host-policy.js';
import { nodePolicyFs } from '../../../src/policy/policy-fs.js';
import { loadPaths } from '../../../src/sources/manifest-loader.js';
import { type Desired, hostNameOf, specHashOf } from '../../../src/store/desired.js';
import { objectKey } from '../../../src/store/object-key.js';

const repoRoot = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../../..');

describe('examples/ under the default host policy', () => {
  it('loads every example; only the placeholder image URLs are refused, on spec.image.url and spec.disks[0].image', async () => {
    const { objects, problems } = await loadPaths([path.join(repoRoot, 'examples')]);
    expect(problems).to.deep.equal([]);
    const refused: Record<string, string[]> = {};
    for (const { object } of objects) {
      const d = {
        key: objectKey('dir', object.metadata.namespace ?? 'default', object.kind, object.metadata.name), source: 'dir', object,
        id: `id-${object.metadata.name}`, generation: 1, specHash: specHashOf(object.spec), hostName: hostNameOf(object),
      } as Desired;
      const issues = [...staticIssues(d, DEFAULT_SCOPE_RULES), ...await pathIssues(d, DEFAULT_SCOPE_RULES, nodePolicyFs)];
      // hello-vm boots the test guest's kernel from the guest cache, which a fresh checkout may not have built yet.
      const own = issues.filter((i) => !(object.kind === 'VirtualMachine' && i.field.startsWith('spec.boot.')));
      if (own.length > 0) refused[object.metadata.name] = own.map((i) => i.field);
    }
    expect(objects.map((o) => o.object.metadata.name)).to.include('debian');
    expect(refused).to.deep.equal({ 'debian': ['spec.image.url'], 'debian-vm': ['spec.disks[0].image'] });
  });
});
