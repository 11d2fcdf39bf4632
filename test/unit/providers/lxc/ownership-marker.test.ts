import { expect } from 'chai';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MARKER_VERSION, type OwnershipMarker, parseMarker, readMarker, writeMarker } from '../../../../src/providers/lxc/ownership-marker.js';

const good: OwnershipMarker = {
  version: MARKER_VERSION, id: 'id-1', key: 'dir/default/Container/web', specHash: 'abc', fields: { 'resources.cpu': 1, template: 'busybox', rootfs: null },
  complete: true, origin: 'created', updatedAt: '2026-01-01T00:00:00.000Z',
};

describe('parseMarker', () => {
  const cases = {
    Valid: { reason: 'what writeMarker writes reads back', text: JSON.stringify(good), ok: true },
    NoSpecHash: { reason: 'an adopted container has no spec hash yet', text: JSON.stringify({ ...good, specHash: undefined, origin: 'adopted' }), ok: true },
    NoId: { reason: 'a marker without an id owns nothing', text: JSON.stringify({ ...good, id: '' }), ok: false },
    NoComplete: { reason: 'without the flag a partial create cannot be told apart', text: JSON.stringify({ ...good, complete: 'yes' }), ok: false },
    NestedField: { reason: 'fields are flat values', text: JSON.stringify({ ...good, fields: { a: { b: 1 } } }), ok: false },
    OtherVersion: { reason: 'a future format is not guessed at', text: JSON.stringify({ ...good, version: 2 }), ok: false },
    NotJson: { reason: 'a torn file', text: '{"version":1,', ok: false },
    Array: { reason: 'not an object', text: '[]', ok: false },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      if (tc.ok) expect(() => parseMarker(tc.text), tc.reason).not.to.throw();
      else expect(() => parseMarker(tc.text), tc.reason).to.throw(/cannot parse ownership marker|JSON/);
    });
  }
});

describe('readMarker / writeMarker', () => {
  let dir = '';
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'hyperlet-marker-')); });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  it('RoundTrip', async () => {
    const path = join(dir, 'hyperlet.json');
    await writeMarker(path, good);
    expect(await readMarker(path)).to.deep.equal(good);
    expect(await readdir(dir), 'no temporary file stays behind').to.deep.equal(['hyperlet.json']);
  });

  it('MissingIsUndefined', async () => {
    expect(await readMarker(join(dir, 'none.json'))).to.equal(undefined);
  });

  it('CorruptThrows', async () => {
    const path = join(dir, 'corrupt.json');
    await writeFile(path, '{');
    const err: unknown = await readMarker(path).then(() => undefined, (e: unknown) => e);
    expect((err as Error).message, 'a corrupt marker is neither ours nor absent').to.match(/^cannot use ownership marker/);
  });
});
