import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StateDb } from '../../../src/state/state-db.js';
import { container } from '../../fakes/desired-objects.js';

describe('StateDb', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'hyperlet-db-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const parts = { source: 'dir', kind: 'Container', namespace: 'default', name: 'web' };

  it('runs every migration once and reopens at the same version', () => {
    const path = join(dir, 'state.db');
    const db = new StateDb(path);
    const version = db.schemaVersion;
    expect(version).to.be.greaterThan(0);
    db.close();
    const again = new StateDb(path);
    expect(again.schemaVersion).to.equal(version);
    again.close();
  });

  it('keeps a graceful stop\'s deadline on disk across a reopen, and forgets it on delete', () => {
    const path = join(dir, 'state.db');
    let db = new StateDb(path);
    db.setStopDeadline('dir/default/Container/web', { requestedAtMs: 1_000, deadlineMs: 21_000 });
    db.deleteStopDeadline('dir/default/Container/none'); // no row: no error
    db.close();
    db = new StateDb(path);
    expect(db.stopDeadline('dir/default/Container/web')).to.deep.equal({ requestedAtMs: 1_000, deadlineMs: 21_000 });
    db.deleteStopDeadline('dir/default/Container/web');
    db.close();
    db = new StateDb(path);
    expect(db.stopDeadline('dir/default/Container/web')).to.equal(undefined);
    db.close();
  });

  it('keeps an id across restarts and bumps the generation only when the spec changes', () => {
    const path = join(dir, 'state.db');
    const d = container('web');
    let db = new StateDb(path);
    const first = db.identify(d.key, parts, 'hash-a');
    expect(db.identify(d.key, parts, 'hash-a')).to.deep.equal(first);
    db.close();
    db = new StateDb(path);
    expect(db.identify(d.key, parts, 'hash-a')).to.deep.equal(first);
    expect(db.identify(d.key, parts, 'hash-b')).to.deep.equal({ id: first.id, generation: 2 });
    db.close();
    db = new StateDb(path);
    expect(db.identify(d.key, parts, 'hash-b')).to.deep.equal({ id: first.id, generation: 2 });
    db.close();
  });

  it('remembers tombstones durably, and forget removes them', async () => {
    const path = join(dir, 'state.db');
    const d = container('web');
    const other = container('db');
    const db = new StateDb(path);
    db.identify(d.key, parts, d.specHash);
    db.identify(other.key, { ...parts, name: 'db' }, other.specHash);
    // Two remembers in one turn share a commit; a second handle sees both once they resolve.
    await Promise.all([db.remember(d), db.remember(other)]);
    const reader = new StateDb(path, { readonly: true });
    expect(reader.rememberedKeys().sort()).to.deep.equal([other.key, d.key].sort());
    db.forget(other.key);
    expect(reader.getObject(d.key)?.applied?.id).to.equal(d.id);
    db.forget(d.key);
    expect(reader.rememberedKeys()).to.deep.equal([]);
    reader.close();
    db.close();
  });

  it('keeps an append-only audit log, newest last', () => {
    const db = new StateDb(join(dir, 'state.db'));
    for (let i = 0; i < 5; i++) db.audit('k', 'Normal', `Step${i}`, 'success', `message ${i}`);
    const entries = db.auditFor('k', 3);
    expect(entries.map((e) => e.action)).to.deep.equal(['Step2', 'Step3', 'Step4']);
    expect(entries[0]!.seq).to.be.lessThan(entries[2]!.seq);
    db.close();
  });

  it('flushes status written behind on close', () => {
    const path = join(dir, 'state.db');
    const d = container('web');
    const db = new StateDb(path);
    db.identify(d.key, parts, d.specHash);
    db.writeStatus(d, { phase: 'Running', conditions: [] });
    db.close();
    const reader = new StateDb(path, { readonly: true });
    expect(reader.getObject(d.key)?.status?.phase).to.equal('Running');
    reader.close();
  });
});
