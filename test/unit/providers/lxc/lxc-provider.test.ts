import { expect } from 'chai';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LxcProvider } from '../../../../src/providers/lxc/lxc-provider.js';
import { isTerminalError } from '../../../../src/shared/errors.js';
import type { Desired } from '../../../../src/store/desired.js';
import { silentLogger } from '../../../../src/telemetry/logger.js';
import { container } from '../../../fakes/desired-objects.js';

describe('LxcProvider.create: a template that is not installed', () => {
  let root: string;
  beforeEach(async () => { root = await mkdtemp(join(tmpdir(), 'hyperlet-lxc-template-')); });
  afterEach(() => rm(root, { recursive: true, force: true }));

  const cases = {
    Missing: { reason: 'no lxc-NAME file: lxc-create would fail the same way on every retry', file: undefined },
    NotExecutable: { reason: 'a template lxc-create cannot run is as good as missing', file: { mode: 0o644 } },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, async () => {
      const lxcpath = join(root, 'lxc');
      const templatesDir = join(root, 'templates');
      await mkdir(lxcpath);
      await mkdir(templatesDir);
      if (tc.file !== undefined) await writeFile(join(templatesDir, 'lxc-mine'), '#!/bin/sh\nexit 0\n', { mode: tc.file.mode });
      const provider = new LxcProvider({ lxcpath, logger: silentLogger(), templatesDir });
      const err: unknown = await provider.create(container('web', { template: 'mine' }) as Desired<'Container'>, AbortSignal.timeout(10_000)).then(() => undefined, (e: unknown) => e);
      expect(isTerminalError(err), tc.reason).to.equal(true);
      expect((err as { reason: string }).reason).to.equal('TemplateNotFound');
      expect((err as Error).message).to.contain(join(templatesDir, 'lxc-mine'));
      expect(await readdir(lxcpath), 'nothing is made before the check').to.deep.equal([]);
    });
  }
});
