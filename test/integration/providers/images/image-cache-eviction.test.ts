/**
 * Image cache eviction on real files and GNU tar: three images prepared an hour apart, then a
 * cache with a size cap evicts least recently used entries until it fits, keeping the tree a
 * container's overlay config names as its lower directory however old it is.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ImageCache, downloadKey, unpackKey } from '../../../../src/providers/images/image-cache.js';
import { overlayLowerDirs } from '../../../../src/providers/lxc/overlay-lower-dirs.js';
import { silentLogger } from '../../../../src/telemetry/logger.js';
import { FakeClock } from '../../../support/fake-clock.js';
import { until } from '../../../support/until.js';

const run = promisify(execFile);
const HOUR = 3_600_000;
const BLOB_BYTES = 256 * 1024;

describe('ImageCache eviction (real files and tar)', function () {
  this.timeout(60_000);
  let tmp = '';
  const images: Record<'a' | 'b' | 'c', { url: string }> = { a: { url: '' }, b: { url: '' }, c: { url: '' } };

  before(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'hyperlet-cache-evict-'));
    for (const name of ['a', 'b', 'c'] as const) {
      const tree = path.join(tmp, `tree-${name}`);
      mkdirSync(tree);
      writeFileSync(path.join(tree, 'blob'), randomBytes(BLOB_BYTES)); // incompressible: tarball and tree are both ~256 KiB
      await run('tar', ['-C', tree, '-czf', path.join(tmp, `${name}.tar.gz`), '.']);
      images[name] = { url: `file://${path.join(tmp, `${name}.tar.gz`)}` };
    }
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  const ready = async (cache: ImageCache, image: { url: string }): Promise<string> =>
    until('the image ready', async () => {
      const got = await cache.rootfs(image, 'v');
      return got.state === 'ready' ? got.path : undefined;
    }, 30_000, 20);

  it('evicts least recently used entries until the cache fits, never the tree a container uses', async () => {
    const dir = path.join(tmp, 'cache');
    const clock = new FakeClock();
    const t0 = clock.ms;
    const uncapped = new ImageCache({ dir, logger: silentLogger(), clock });
    const trees: Record<string, string> = {};
    for (const [i, name] of (['a', 'b', 'c'] as const).entries()) {
      clock.ms = t0 + i * HOUR;
      trees[name] = await ready(uncapped, images[name]);
    }
    await uncapped.settle();
    expect(readdirSync(path.join(dir, 'rootfs')).filter((n) => !n.startsWith('.'))).to.have.length(3);

    // A container made from image a (the oldest): its overlay config names a's tree as the lower directory.
    const lxcpath = path.join(tmp, 'lxc');
    mkdirSync(path.join(lxcpath, 'web'), { recursive: true });
    writeFileSync(path.join(lxcpath, 'web', 'config'), `lxc.uts.name = web\nlxc.rootfs.path = overlay:${trees.a}:${path.join(lxcpath, 'web', 'delta0')}\n`);

    // Room for two trees and half a tarball: a's tree (in use) and the newest tree stay.
    clock.ms = t0 + 3 * HOUR;
    const capped = new ImageCache({ dir, logger: silentLogger(), clock, maxBytes: 2 * (BLOB_BYTES + 8192) + BLOB_BYTES / 2, inUse: () => overlayLowerDirs(lxcpath) });
    const evicted = await capped.evict();
    const dl = (name: 'a' | 'b' | 'c'): string => path.join(dir, 'downloads', downloadKey(images[name]));
    const tree = (name: 'a' | 'b' | 'c'): string => path.join(dir, 'rootfs', unpackKey(images[name], 'v'));
    expect(evicted, 'oldest first (ties by path), only as many as needed').to.deep.equal([dl('a'), dl('b'), tree('b'), dl('c')]);
    expect(existsSync(tree('a')), 'the tree a container uses stays, though it is the oldest').to.equal(true);
    expect(existsSync(tree('c')), 'the newest tree stays').to.equal(true);
    expect(existsSync(tree('b'))).to.equal(false);
    expect(readdirSync(path.join(dir, 'rootfs')).filter((n) => n.startsWith('.')), 'no hidden leftover').to.deep.equal([]);

    // What stays is still served as it is; what went is prepared again on demand.
    expect(await capped.rootfs(images.c, 'v')).to.deep.equal({ state: 'ready', path: tree('c') });
    expect((await capped.rootfs(images.b, 'v')).state).to.equal('pending');
    await capped.settle();
    expect(existsSync(tree('b')), 'b is back').to.equal(true);
    expect(await capped.evict(), 'both new entries are within the grace period; a and c stay as before').to.deep.equal([]);
  });

  it('evicts nothing without a cap', async () => {
    const dir = path.join(tmp, 'cache-uncapped');
    const cache = new ImageCache({ dir, logger: silentLogger() });
    await ready(cache, images.a);
    expect(await cache.evict()).to.deep.equal([]);
  });
});
