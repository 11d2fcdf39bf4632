import { expect } from 'chai';
import { checkImport, importsOf } from '../../../scripts/check-layers.js';

describe('check-layers', () => {
  const cases = {
    DownwardImportIsAllowed: { reason: 'reconcile sits above providers', file: 'reconcile/reconciler.ts', imported: 'providers/provider.js', ok: true },
    SameFolderIsAllowed: { reason: 'a folder may use its own files', file: 'queue/work-queue.ts', imported: 'queue/rate-limiter.js', ok: true },
    SharedLeafIsAllowed: { reason: 'shared/ is the bottom row', file: 'api/v1alpha1/validate.ts', imported: 'shared/errors.js', ok: true },
    UpwardImportFails: { reason: 'providers may not reach up into reconcile', file: 'providers/registry.ts', imported: 'reconcile/errors.js', ok: false },
    PeerImportFails: { reason: 'sources and status share a row and stay apart', file: 'sources/source.ts', imported: 'status/status-writer.js', ok: false },
    CliNamingLxcFails: { reason: 'the CLI reaches instances through the Provider interface', file: 'cli/container-commands.ts', imported: 'providers/lxc/lxc-provider.js', ok: false },
    RegistryNamingLxcIsAllowed: { reason: 'the registry wires providers', file: 'providers/registry.ts', imported: 'providers/lxc/lxc-provider.js', ok: true },
    LxcNamingLibvirtFails: { reason: 'one provider never reaches into another', file: 'providers/lxc/lxc-tools.ts', imported: 'providers/libvirt/xdr.js', ok: false },
    UnknownFolderFails: { reason: 'a new folder must be placed in the order first', file: 'misc/thing.ts', imported: 'api/v1alpha1/types.js', ok: false },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const violation = checkImport(tc.file, tc.imported);
      expect(violation === undefined, tc.reason).to.equal(tc.ok);
      if (!tc.ok) expect(violation?.file).to.equal(tc.file);
    });
  }

  it('FindsStaticReExportAndDynamicImports', () => {
    const source = [
      "import type { A } from '../a/b.js';",
      "import {\n  C,\n  D,\n} from './c.js';",
      "export { E } from '../e/e.js';",
      "const m = await import('../m/m.js');",
      "import { readFile } from 'node:fs';",
    ].join('\n');
    expect(importsOf(source)).to.have.members(['../a/b.js', './c.js', '../e/e.js', '../m/m.js']);
  });
});
