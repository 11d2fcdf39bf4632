import { expect } from 'chai';
import { overlayLowerDirsOf } from '../../../../src/providers/lxc/overlay-lower-dirs.js';

describe('overlayLowerDirsOf', () => {
  const cases: Record<string, { reason: string; config: string; want: string[] }> = {
    Overlay: { reason: 'overlay:LOWER:UPPER names one lower', config: 'lxc.rootfs.path = overlay:/cache/rootfs/k1:/lxc/web/delta0\n', want: ['/cache/rootfs/k1'] },
    OverlayFs: { reason: 'the older overlayfs: prefix too', config: 'lxc.rootfs.path = overlayfs:/cache/k2:/lxc/w/delta0\n', want: ['/cache/k2'] },
    Dir: { reason: 'a directory rootfs uses no cached tree', config: 'lxc.rootfs.path = dir:/lxc/web/rootfs\n', want: [] },
    LastWins: {
      reason: 'the last lxc.rootfs.path is the one LXC uses',
      config: 'lxc.rootfs.path = overlay:/old:/u\nlxc.rootfs.path = overlay:/new:/u\n', want: ['/new'],
    },
    None: { reason: 'no rootfs line', config: 'lxc.uts.name = web\n', want: [] },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => expect(overlayLowerDirsOf(tc.config), tc.reason).to.deep.equal(tc.want));
  }
});
