import { expect } from 'chai';
import { RequestOverlay } from '../../../src/daemon/request-overlay.js';
import { REBOOT_REQUEST_ANNOTATION } from '../../../src/shared/annotations.js';
import { StateDb } from '../../../src/state/state-db.js';
import { DesiredStore } from '../../../src/store/desired-store.js';
import type { Desired } from '../../../src/store/desired.js';
import { vm } from '../../fakes/desired-objects.js';

const annotated = (value?: string): Desired =>
  vm('box', {}, value === undefined ? {} : { annotations: { [REBOOT_REQUEST_ANNOTATION]: value } });
const requested = (store: DesiredStore, d: Desired): string | undefined =>
  store.get(d.key)?.object.metadata.annotations?.[REBOOT_REQUEST_ANNOTATION];

describe('RequestOverlay', () => {
  it('lays a request over the declared object, which the store then sees as changed', () => {
    const db = new StateDb(':memory:');
    const store = new DesiredStore();
    const changed: string[] = [];
    store.onChange((k) => changed.push(k));
    const overlay = new RequestOverlay(store, db);
    const d = annotated();
    overlay.upsert(d);
    expect(overlay.request(d.key, REBOOT_REQUEST_ANNOTATION, 'r1', 0)).to.equal(true);
    expect(requested(store, d)).to.equal('r1');
    expect(changed, 'declared, then requested: two changes').to.deep.equal([d.key, d.key]);
    overlay.upsert(d); // a relist of the same file keeps the request
    expect(requested(store, d)).to.equal('r1');
    expect(changed).to.have.length(2);
  });

  it('keeps a request across a restart (the state DB) and lays it over the object again', () => {
    const db = new StateDb(':memory:');
    const d = annotated();
    const first = new RequestOverlay(new DesiredStore(), db);
    first.upsert(d);
    first.request(d.key, REBOOT_REQUEST_ANNOTATION, 'r1', 0);
    const store = new DesiredStore();
    new RequestOverlay(store, db).replaceAll('dir', [d]);
    expect(requested(store, d)).to.equal('r1');
  });

  const cases: Record<string, { reason: string; declaredAtRequest?: string; declaredLater?: string; want: string | undefined }> = {
    SourceUnchangedKeepsRequest: {
      reason: 'the file still says what it said: the request stands',
      declaredAtRequest: 'f1', declaredLater: 'f1', want: 'r1',
    },
    SourceChangedWins: {
      reason: 'the author asked again in the file: the newer word wins',
      declaredAtRequest: 'f1', declaredLater: 'f2', want: 'f2',
    },
    SourceAddedWins: { reason: 'the file now asks where it did not before', declaredLater: 'f1', want: 'f1' },
    SourceRemovedDropsRequest: { reason: 'the file dropped its annotation: so does the request', declaredAtRequest: 'f1', want: undefined },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const db = new StateDb(':memory:');
      const store = new DesiredStore();
      const overlay = new RequestOverlay(store, db);
      overlay.upsert(annotated(tc.declaredAtRequest));
      overlay.request(annotated().key, REBOOT_REQUEST_ANNOTATION, 'r1', 0);
      overlay.upsert(annotated(tc.declaredLater));
      expect(requested(store, annotated()), tc.reason).to.equal(tc.want);
      expect(db.requests().length, 'the request is kept only while it stands').to.equal(tc.want === 'r1' ? 1 : 0);
    });
  }

  it('refuses a request for an object no source declares, and drops requests of objects that leave', () => {
    const db = new StateDb(':memory:');
    const store = new DesiredStore();
    const overlay = new RequestOverlay(store, db);
    const d = annotated();
    expect(overlay.request(d.key, REBOOT_REQUEST_ANNOTATION, 'r1', 0)).to.equal(false);
    overlay.upsert(d);
    overlay.request(d.key, REBOOT_REQUEST_ANNOTATION, 'r1', 0);
    overlay.replaceAll('dir', []);
    expect(store.get(d.key)).to.equal(undefined);
    expect(db.requests()).to.deep.equal([]);
  });
});
