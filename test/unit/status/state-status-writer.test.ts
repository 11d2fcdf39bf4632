import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StateDb } from '../../../src/state/state-db.js';
import { StateStatusWriter } from '../../../src/status/state-status-writer.js';
import { silentLogger } from '../../../src/telemetry/logger.js';
import { container } from '../../fakes/desired-objects.js';

describe('StateStatusWriter records', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'hyperlet-records-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const parts = (name: string) => ({ source: 'dir', kind: 'Container', namespace: 'default', name });

  it('KeysIncludeRowsNeverActedOnFromBeforeTheStartUntilForgotten', () => {
    // A daemon identified "idle" (never acted on) and remembered "acted", then was killed.
    const path = join(dir, 'state.db');
    const [idle, acted] = [container('idle'), container('acted')];
    let db = new StateDb(path);
    db.identify(idle.key, parts('idle'), idle.specHash);
    db.identify(acted.key, parts('acted'), acted.specHash);
    db.remember(acted);
    db.close();

    db = new StateDb(path);
    const records = new StateStatusWriter(db, 'dir', silentLogger());
    expect([...records.keys()].sort(), 'both come back for one pass: nothing else would bring "idle" back if its file went').to.deep.equal([acted.key, idle.key].sort());
    expect(records.lastApplied(idle.key), 'no tombstone: the pass forgets it').to.equal(undefined);
    records.forget(idle.key);
    expect(records.keys()).to.deep.equal([acted.key]);
    expect(db.getObject(idle.key), 'gone from the DB').to.equal(undefined);
    db.close();
  });

  it('RememberingMovesAKeyFromUnappliedToRemembered', () => {
    const path = join(dir, 'state.db');
    const d = container('web');
    let db = new StateDb(path);
    db.identify(d.key, parts('web'), d.specHash);
    db.close();
    db = new StateDb(path);
    const records = new StateStatusWriter(db, 'dir', silentLogger());
    records.remember(d);
    expect(records.keys()).to.deep.equal([d.key]);
    expect(records.lastApplied(d.key)?.key).to.equal(d.key);
    db.close();
  });
});
