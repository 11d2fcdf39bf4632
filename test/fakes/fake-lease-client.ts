/** FakeLeaseClient: one Lease in memory with the API server's optimistic concurrency (unit tests of elections). */
import type { LeaseClient, LeaseRecord } from '../../src/kube/leader-election.js';
import { ConflictError } from '../../src/shared/errors.js';

/** One Lease in memory with the API's optimistic concurrency; `down` makes every call fail. */
export class FakeLeaseClient implements LeaseClient {
  record: LeaseRecord | undefined;
  down = false;
  private rv = 0;
  async get(): Promise<LeaseRecord | undefined> {
    await Promise.resolve();
    if (this.down) throw new Error('cannot reach the API server');
    return this.record;
  }
  async create(r: LeaseRecord): Promise<LeaseRecord> {
    await Promise.resolve();
    if (this.down) throw new Error('cannot reach the API server');
    if (this.record !== undefined) throw new ConflictError('exists');
    this.record = { ...r, resourceVersion: String(++this.rv) };
    return this.record;
  }
  async update(r: LeaseRecord): Promise<LeaseRecord> {
    await Promise.resolve();
    if (this.down) throw new Error('cannot reach the API server');
    if (this.record?.resourceVersion !== r.resourceVersion) throw new ConflictError('stale');
    this.record = { ...r, resourceVersion: String(++this.rv) };
    return this.record;
  }
}
