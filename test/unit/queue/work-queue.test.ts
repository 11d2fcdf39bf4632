import { expect } from 'chai';
import sinon from 'sinon';
import { WorkQueue } from '../../../src/queue/work-queue.js';
import { RateLimiter } from '../../../src/queue/rate-limiter.js';
import { systemClock } from '../../../src/shared/clock.js';

/** A handler whose runs stay open until the test releases them. */
class GatedHandler {
  readonly started: string[] = [];
  active = 0;
  maxActive = 0;
  private readonly gates: (() => void)[] = [];
  readonly process = async (key: string): Promise<void> => {
    this.started.push(key);
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    await new Promise<void>((resolve) => this.gates.push(resolve));
    this.active--;
  };
  releaseAll(): void {
    for (const g of this.gates.splice(0)) g();
  }
}

const flush = async (): Promise<void> => {
  for (let i = 0; i < 10; i++) await Promise.resolve();
  await new Promise((r) => setImmediate(r));
};

describe('WorkQueue', () => {
  it('processes a key added several times while waiting once', async () => {
    const h = new GatedHandler();
    const q = new WorkQueue({ concurrency: 1, process: h.process });
    q.add('busy'); // holds the only worker, so the next adds wait
    q.add('a'); q.add('a'); q.add('b'); q.add('a');
    expect(q.depth).to.equal(2);
    for (let i = 0; i < 4; i++) { await flush(); h.releaseAll(); }
    await q.onIdle();
    expect(h.started).to.deep.equal(['busy', 'a', 'b']);
    expect(q.processed).to.equal(3);
  });

  it('never runs one key on two workers; an add during processing runs it once more after', async () => {
    const h = new GatedHandler();
    const q = new WorkQueue({ concurrency: 4, process: h.process });
    q.add('a');
    await flush();
    q.add('a'); q.add('a');
    await flush();
    expect(h.started).to.deep.equal(['a']);
    expect(h.maxActive).to.equal(1);
    h.releaseAll();
    await flush();
    expect(h.started).to.deep.equal(['a', 'a']);
    h.releaseAll();
    await q.onIdle();
    expect(h.started).to.have.length(2);
  });

  it('runs different keys concurrently up to the concurrency bound', async () => {
    const h = new GatedHandler();
    const q = new WorkQueue({ concurrency: 3, process: h.process });
    for (const k of ['a', 'b', 'c', 'd', 'e']) q.add(k);
    await flush();
    expect(h.active).to.equal(3);
    h.releaseAll(); await flush(); h.releaseAll();
    await q.onIdle();
    expect(h.maxActive).to.equal(3);
    expect(h.started.sort()).to.deep.equal(['a', 'b', 'c', 'd', 'e']);
  });

  it('runs a key added to the front before keys that waited longer', async () => {
    const h = new GatedHandler();
    const q = new WorkQueue({ concurrency: 1, process: h.process });
    q.add('busy');
    q.add('a'); q.add('b'); q.add('c', { front: true });
    for (let i = 0; i < 5; i++) { await flush(); h.releaseAll(); }
    await q.onIdle();
    expect(h.started).to.deep.equal(['busy', 'c', 'a', 'b']);
  });

  it('keeps running after a handler throws', async () => {
    const seen: string[] = [];
    const q = new WorkQueue({ concurrency: 1, process: async (k) => { seen.push(k); if (k === 'bad') throw new Error('boom'); } });
    q.add('bad'); q.add('good');
    await q.onIdle();
    expect(seen).to.deep.equal(['bad', 'good']);
  });

  describe('with a fake clock', () => {
    let clock: sinon.SinonFakeTimers;
    beforeEach(() => { clock = sinon.useFakeTimers({ now: 1_000_000 }); });
    afterEach(() => clock.restore());

    it('addAfter waits the delay, and the earliest pending time wins', async () => {
      const seen: number[] = [];
      const q = new WorkQueue({ process: async () => { seen.push(Date.now()); }, clock: systemClock });
      q.addAfter('a', 5_000);
      q.addAfter('a', 2_000);
      q.addAfter('a', 9_000);
      await clock.tickAsync(1_999);
      expect(seen).to.deep.equal([]);
      await clock.tickAsync(1);
      expect(seen).to.deep.equal([1_002_000]);
      await clock.tickAsync(10_000);
      expect(seen).to.have.length(1);
    });

    it('addRateLimited backs off 1 s doubling to the cap, and forget resets it', async () => {
      const times: number[] = [];
      const limiter = new RateLimiter({ baseDelayMs: 1_000, maxDelayMs: 8_000, jitter: 0, qps: 1000, burst: 1000, clock: systemClock });
      const q = new WorkQueue({ process: async () => { times.push(Date.now()); }, rateLimiter: limiter, clock: systemClock });
      const delays: number[] = [];
      for (let i = 0; i < 6; i++) {
        const before = Date.now();
        q.addRateLimited('k');
        await clock.tickAsync(10_000);
        delays.push(times[times.length - 1]! - before);
      }
      expect(delays).to.deep.equal([1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
      expect(q.retries('k')).to.equal(6);
      q.forget('k');
      expect(q.retries('k')).to.equal(0);
      const before = Date.now();
      q.addRateLimited('k');
      await clock.tickAsync(10_000);
      expect(times[times.length - 1]! - before).to.equal(1_000);
    });

    it('jitter adds up to its fraction of the delay', () => {
      const limiter = new RateLimiter({ baseDelayMs: 1_000, jitter: 0.1, random: () => 0.5, qps: 1000, burst: 1000, clock: systemClock });
      expect(limiter.when('k')).to.equal(1_050);
      expect(limiter.when('k')).to.equal(2_100);
    });

    it('the token bucket spaces retries of many keys to qps after the burst', () => {
      const limiter = new RateLimiter({ baseDelayMs: 0, maxDelayMs: 0, jitter: 0, qps: 10, burst: 2, clock: systemClock });
      const delays = ['a', 'b', 'c', 'd', 'e'].map((k) => limiter.when(k));
      expect(delays).to.deep.equal([0, 0, 100, 200, 300]);
      clock.tick(1_000);
      expect(limiter.when('f')).to.equal(0);
    });

    it('per-key backoff and the bucket combine by taking the longer delay', () => {
      const limiter = new RateLimiter({ baseDelayMs: 50, jitter: 0, qps: 1, burst: 1, clock: systemClock });
      expect(limiter.when('a')).to.equal(50);
      expect(limiter.when('b')).to.equal(1_000);
    });
  });

  it('shutDown drains the run in flight, drops waiting keys and ignores later adds', async () => {
    const h = new GatedHandler();
    const q = new WorkQueue({ concurrency: 1, process: h.process });
    q.add('a'); q.add('b'); q.addAfter('c', 50);
    await flush();
    let done = false;
    const stopping = q.shutDown().then(() => { done = true; });
    await flush();
    expect(done).to.equal(false);
    h.releaseAll();
    await stopping;
    q.add('d');
    await new Promise((r) => setTimeout(r, 80));
    expect(h.started).to.deep.equal(['a']);
    expect(q.has('d')).to.equal(false);
  });

  describe('fair sharing between scopes', () => {
    const byScope = { scopeOf: (key: string) => key.split('/')[0] ?? '' };

    it('takes waiting keys from the scopes in turn, not in arrival order', async () => {
      const h = new GatedHandler();
      const q = new WorkQueue({ concurrency: 1, process: h.process, fairness: byScope });
      q.add('z/busy'); // holds the only worker while the others arrive
      for (const k of ['a/1', 'a/2', 'a/3', 'a/4', 'b/1', 'c/1', 'b/2']) q.add(k);
      for (let i = 0; i < 9; i++) { await flush(); h.releaseAll(); }
      await q.onIdle();
      expect(h.started, 'a burst of scope a does not queue ahead of b and c').to.deep.equal(['z/busy', 'a/1', 'b/1', 'c/1', 'a/2', 'b/2', 'a/3', 'a/4']);
    });

    it('without fairness keys run in arrival order (one scope)', async () => {
      const h = new GatedHandler();
      const q = new WorkQueue({ concurrency: 1, process: h.process });
      for (const k of ['a/1', 'a/2', 'b/1']) q.add(k);
      for (let i = 0; i < 4; i++) { await flush(); h.releaseAll(); }
      await q.onIdle();
      expect(h.started).to.deep.equal(['a/1', 'a/2', 'b/1']);
    });

    it('a scope whose runs never end holds every worker but one', async () => {
      const h = new GatedHandler();
      const q = new WorkQueue({ concurrency: 4, process: h.process, fairness: byScope });
      for (let i = 0; i < 10; i++) q.add(`slow/${i}`);
      await flush();
      expect(h.active, 'one worker is left free').to.equal(3);
      q.add('other/1');
      await flush();
      expect(h.started.at(-1), 'another scope gets the last worker at once').to.equal('other/1');
      expect(h.active).to.equal(4);
      h.releaseAll();
      for (let i = 0; i < 6; i++) { await flush(); h.releaseAll(); }
      await q.onIdle();
      expect(h.started).to.have.length(11);
    });

    it('maxPerScope sets the share; a scope alone never exceeds it', async () => {
      const h = new GatedHandler();
      const q = new WorkQueue({ concurrency: 4, process: h.process, fairness: { ...byScope, maxPerScope: 2 } });
      for (let i = 0; i < 5; i++) q.add(`a/${i}`);
      for (let i = 0; i < 5; i++) q.add(`b/${i}`);
      await flush();
      expect(h.started.slice().sort()).to.deep.equal(['a/0', 'a/1', 'b/0', 'b/1']);
      for (let i = 0; i < 6; i++) { h.releaseAll(); await flush(); }
      await q.onIdle();
      expect(h.maxActive).to.equal(4);
    });

    it('a front key goes first within its scope, and before normal keys of other scopes', async () => {
      const h = new GatedHandler();
      const q = new WorkQueue({ concurrency: 1, process: h.process, fairness: byScope });
      q.add('a/busy');
      q.add('a/1'); q.add('b/1'); q.add('a/next', { front: true });
      for (let i = 0; i < 5; i++) { await flush(); h.releaseAll(); }
      await q.onIdle();
      expect(h.started).to.deep.equal(['a/busy', 'a/next', 'b/1', 'a/1']);
    });

    it('a waiting key added again with front moves ahead', async () => {
      const h = new GatedHandler();
      const q = new WorkQueue({ concurrency: 1, process: h.process, fairness: byScope });
      q.add('a/busy');
      q.add('a/1'); q.add('a/2'); q.add('a/2', { front: true });
      for (let i = 0; i < 4; i++) { await flush(); h.releaseAll(); }
      await q.onIdle();
      expect(h.started).to.deep.equal(['a/busy', 'a/2', 'a/1']);
    });

    it('with a fake clock: a delayed key of another scope starts when due although a slow scope is busy', async () => {
      const clock = sinon.useFakeTimers({ now: 1_000_000 });
      try {
        const h = new GatedHandler();
        const q = new WorkQueue({ concurrency: 2, process: h.process, clock: systemClock, fairness: byScope });
        for (let i = 0; i < 5; i++) q.add(`slow/${i}`);
        q.addAfter('fast/1', 30_000);
        await clock.tickAsync(29_999);
        expect(h.started).to.deep.equal(['slow/0']);
        await clock.tickAsync(1);
        expect(h.started).to.deep.equal(['slow/0', 'fast/1']);
        h.releaseAll();
        await clock.tickAsync(0);
        expect(h.started.slice(2), 'the free workers go back to the slow scope, one at a time').to.deep.equal(['slow/1']);
      } finally {
        clock.restore();
      }
    });
  });

  it('rejects a bad concurrency', () => {
    expect(() => new WorkQueue({ concurrency: 0, process: async () => {} })).to.throw(TypeError);
  });
});
