/**
 * The Provider contract (src/providers/provider.ts) as tests, written once and run against every
 * provider: the FakeProvider in the unit tier, the real LXC and libvirt providers in e2e.
 *
 * Guarantees checked, whatever the provider drives:
 * - observe of a missing instance is undefined, and delete of it succeeds;
 * - create twice is one instance: owned, complete, stopped, and the second create changes nothing;
 * - setState moves between Running, Stopped and the kind's third state, and a repeated move,
 *   with a fresh or with the stale observation, succeeds and changes nothing;
 * - changes() names an instance stopped from outside hyperlet within the subject's bound;
 * - an instance hyperlet did not create is observed without an owner, and no call the reconciler
 *   could make (create, update, setState, delete) changes it: each throws TerminalError NotOwned or
 *   leaves it alone; the same for an instance of another object; adopt marks it and changes nothing else;
 * - what a create cut short leaves (a killed lxc-create, a domain defined without its volumes…) is
 *   observed as `partial` and owned (or not at all, when nothing of the instance itself was made),
 *   and delete removes all of it;
 * - close() ends every changes() stream, later streams end at once, and a second close succeeds.
 *
 * Assumptions: the subject's host names are unique on the host and its own hooks remove what is
 * left after a failure; the suite deletes what it made in its after() hook as well.
 */
import { expect } from 'chai';
import type { Kind } from '../../src/api/v1alpha1/group.js';
import type { PowerState } from '../../src/api/v1alpha1/types.js';
import type { FieldChange, ObservedInstance, Provider } from '../../src/providers/provider.js';
import { isTerminalError } from '../../src/shared/errors.js';
import type { Desired } from '../../src/store/desired.js';

/** One way a create is cut short, leaving what a killed hyperlet leaves. */
export interface KilledCreate<K extends Kind, P extends Provider<K>> {
  /** What observe must then report: a partial instance of the object, or nothing at all. */
  readonly seen: 'partial' | 'nothing';
  /** Leaves the host as a create of `d` cut short at this point would. */
  leave(provider: P, d: Desired<K>): Promise<void>;
}

/** What the suite needs from one provider's test file besides the provider itself. */
export interface ContractHelpers<K extends Kind, P extends Provider<K>> {
  /** The kind's third state besides Running and Stopped: Frozen (containers) or Paused (VMs). */
  readonly holdState: PowerState;
  /** Makes an instance with `d`'s host name outside hyperlet (raw lxc-create, virsh define), stopped, unmarked. */
  createUnowned(provider: P, d: Desired<K>): Promise<void>;
  /** Removes what createUnowned made, if it is still there. */
  removeUnowned(provider: P, d: Desired<K>): Promise<void>;
  /**
   * What must not change in an instance hyperlet may not touch, read from outside the provider
   * (config files, domain XML, power state, processes), comparable with deep equality.
   */
  fingerprint(provider: P, d: Desired<K>): Promise<unknown>;
  /** Ways a create of this provider can be cut short, by label. */
  readonly killedCreates: Readonly<Record<string, KilledCreate<K, P>>>;
  /** What is left on the host of `d`'s instance (directories, volumes, processes), read from outside; [] when nothing. */
  leftovers(provider: P, d: Desired<K>): Promise<string[]>;
  /** Stops the running instance of `d` from outside hyperlet (lxc-stop -k, virsh destroy). */
  stopBehindBack(provider: P, d: Desired<K>): Promise<void>;
  /** Resolves once a changes() stream just opened on `provider` sees the next change (lxc-monitor connected). */
  changesReady?(provider: P): Promise<void>;
  /** How soon changes() must name an instance stopped from outside. */
  readonly changeWithinMs: number;
}

/** `promise`'s rejection, or undefined when it resolves. */
async function failureOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(() => undefined, (err: unknown) => err ?? new Error('rejected with nothing'));
}

/** Whether a delete of an instance that is not the object's answered as the contract allows: done without it, or NotOwned. */
function leftAlone(err: unknown): boolean {
  return err === undefined || (isTerminalError(err) && err.reason === 'NotOwned');
}

/** A change of memory, which every kind has: what the reconciler would ask of an instance that differs. */
function memoryChange(observed: ObservedInstance): FieldChange {
  const from = observed.fields['resources.memory'];
  const to = (typeof from === 'number' ? from : 128 * 2 ** 20) + 64 * 2 ** 20;
  return { path: 'resources.memory', from, to, apply: 'live' };
}

/** Reads a changes() stream into a set, with a wait for one name that ends on arrival, not on a timer's tick. */
class ChangeRecorder {
  readonly seen = new Set<string>();
  readonly done: Promise<void>;
  private wake: (() => void) | undefined;

  constructor(stream: AsyncIterable<string>) {
    this.done = (async () => {
      for await (const name of stream) {
        this.seen.add(name);
        this.wake?.();
      }
    })();
  }

  /** Resolves with the ms it took once `name` is seen; rejects after `withinMs`. */
  async waitFor(name: string, withinMs: number): Promise<number> {
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      const saw = (): string => [...this.seen].join(', ') || 'nothing';
      timer = setTimeout(() => reject(new Error(`changes() did not name ${name} within ${withinMs} ms (saw ${saw()})`)), withinMs);
    });
    try {
      while (!this.seen.has(name)) await Promise.race([new Promise<void>((r) => { this.wake = r; }), late]);
      return performance.now() - started;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Resolves when `done` does; rejects naming `what` after `withinMs`. */
async function within(what: string, done: Promise<unknown>, withinMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([done, new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not within ${withinMs} ms`)), withinMs);
    })]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Declares the contract's tests for one provider. `makeProvider` makes a new provider on the host
 * under test (one serves every test, others are made to be closed); `makeDesired(label)` makes an
 * object whose host name depends on `label` alone, with a fresh id on every call.
 */
export function describeProviderContract<K extends Kind, P extends Provider<K>>(
  name: string,
  makeProvider: () => P | Promise<P>,
  makeDesired: (label: string) => Desired<K>,
  helpers: ContractHelpers<K, P>,
): void {
  describe(`${name}: the provider contract`, function () {
    this.timeout(120_000);
    let provider: P;
    const made: Desired<K>[] = [];
    const unowned: Desired<K>[] = [];
    const desired = (label: string): Desired<K> => {
      const d = makeDesired(label);
      made.push(d);
      return d;
    };
    const observe = async (d: Desired<K>): Promise<ObservedInstance> => {
      const o = await provider.observe(d, AbortSignal.timeout(60_000));
      if (o === undefined) throw new Error(`${d.hostName} is not there`);
      return o;
    };
    const signal = (): AbortSignal => AbortSignal.timeout(60_000);

    before(async () => {
      provider = await makeProvider();
    });

    after(async () => {
      // Whatever a failed test left: ours by deleting it, the strangers by the subject's own means.
      for (const d of made) await provider.delete(d, signal()).catch(() => undefined);
      for (const d of unowned) await helpers.removeUnowned(provider, d).catch(() => undefined);
      await provider?.close();
    });

    // Each group in a describe of its own: mocha runs a suite's tests before its child suites, and the order matters here.
    describe('a missing instance', () => {
      it('is observed as undefined, and deleted without complaint', async () => {
        const d = desired('missing');
        expect(await provider.observe(d, signal())).to.equal(undefined);
        expect((await provider.observeAll(signal())).has(d.hostName), 'observeAll agrees').to.equal(false);
        await provider.delete(d, signal());
        await provider.delete(d, signal());
        expect(await helpers.leftovers(provider, d)).to.deep.equal([]);
      });
    });

    describe('an instance it created', () => {
      let d: Desired<K>;

      it('create twice is one instance: owned, complete, stopped; the second create changes nothing', async () => {
        d = desired('made');
        await provider.create(d, signal());
        const first = await helpers.fingerprint(provider, d);
        await provider.create(d, signal());
        expect(await helpers.fingerprint(provider, d), 'the second create touched nothing').to.deep.equal(first);
        const o = await observe(d);
        expect(o.ownerId).to.equal(d.id);
        expect(o.specHash).to.equal(d.specHash);
        expect(o.partial === true, 'complete').to.equal(false);
        expect(o.state).to.equal('Stopped');
        const all = await provider.observeAll(signal());
        expect([all.get(d.hostName)?.ownerId, all.get(d.hostName)?.state], 'observeAll agrees').to.deep.equal([d.id, 'Stopped']);
      });

      it('setState moves between states, and a repeated move succeeds and changes nothing', async () => {
        const moves: PowerState[] = ['Running', helpers.holdState, 'Running', 'Stopped', helpers.holdState, 'Stopped'];
        for (const to of moves) {
          const before = await observe(d);
          await provider.setState(d, to, before, signal());
          const after = await observe(d);
          expect(after.state, `moved to ${to}`).to.equal(to);
          await provider.setState(d, to, after, signal());
          expect((await observe(d)).state, `${to} again, observed afresh`).to.equal(to);
          await provider.setState(d, to, before, signal());
          expect((await observe(d)).state, `${to} again, with the observation from before the move`).to.equal(to);
        }
      });

      it('changes() names the instance when it is stopped from outside', async () => {
        await provider.setState(d, 'Running', await observe(d), signal());
        expect((await observe(d)).state).to.equal('Running');
        const stop = new AbortController();
        const recorder = new ChangeRecorder(provider.changes(stop.signal));
        try {
          await helpers.changesReady?.(provider);
          recorder.seen.clear();
          await helpers.stopBehindBack(provider, d);
          await recorder.waitFor(d.hostName, helpers.changeWithinMs);
          expect((await observe(d)).state).to.equal('Stopped');
        } finally {
          stop.abort();
          await within('a changes() stream ends when its signal aborts', recorder.done, 10_000);
        }
      });

      it('requestStop asks and returns, again and again; forceStop stops; both take a stopped instance as done', async () => {
        const { requestStop, forceStop } = { requestStop: provider.requestStop?.bind(provider), forceStop: provider.forceStop?.bind(provider) };
        expect([requestStop === undefined, forceStop === undefined], 'a provider has both or neither').to.deep.equal([
          forceStop === undefined, requestStop === undefined,
        ]);
        if (requestStop === undefined || forceStop === undefined) return;
        await provider.setState(d, 'Running', await observe(d), signal());
        const running = await observe(d);
        await requestStop(d, running, signal());
        // Asked again with the observation from before the first request: nothing breaks.
        await requestStop(d, running, signal());
        await forceStop(d, await observe(d), signal());
        expect((await observe(d)).state, 'forced').to.equal('Stopped');
        await requestStop(d, running, signal());
        await forceStop(d, running, signal());
        expect((await observe(d)).state, 'both again on the stopped instance').to.equal('Stopped');
      });

      it('an instance of another object with the same host name is never changed', async () => {
        const impostor = makeDesired('made');
        expect([impostor.hostName, impostor.id === d.id]).to.deep.equal([d.hostName, false]);
        const o = await observe(d);
        const before = await helpers.fingerprint(provider, d);
        const attempts: Record<string, () => Promise<unknown>> = {
          create: () => provider.create(impostor, signal()),
          update: () => provider.update(impostor, [memoryChange(o)], o, signal()),
          start: () => provider.setState(impostor, 'Running', o, signal()),
          hold: () => provider.setState(impostor, helpers.holdState, o, signal()),
          adopt: () => provider.adopt(impostor, o, signal()),
          ...(provider.requestStop === undefined ? {} : { requestStop: () => provider.requestStop!(impostor, o, signal()) }),
          ...(provider.forceStop === undefined ? {} : { forceStop: () => provider.forceStop!(impostor, o, signal()) }),
        };
        for (const [call, attempt] of Object.entries(attempts)) {
          const err = await failureOf(attempt());
          expect(isTerminalError(err) ? err.reason : err, `${call} is refused`).to.equal('NotOwned');
        }
        const err = await failureOf(provider.delete(impostor, signal()));
        expect(leftAlone(err), `delete leaves it or says NotOwned: ${String(err)}`).to.equal(true);
        expect(await helpers.fingerprint(provider, d), 'untouched').to.deep.equal(before);
        expect((await observe(d)).ownerId).to.equal(d.id);
      });

      it('delete removes it all, and delete again succeeds', async () => {
        await provider.delete(d, signal());
        expect(await provider.observe(d, signal())).to.equal(undefined);
        await provider.delete(d, signal());
        expect(await helpers.leftovers(provider, d)).to.deep.equal([]);
      });
    });

    describe('an instance made outside hyperlet', () => {
      it('is observed unowned and never changed, until adopted', async () => {
        const d = desired('stranger');
        unowned.push(d);
        await helpers.createUnowned(provider, d);
        const o = await observe(d);
        expect(o.ownerId, 'no marker: nobody\'s').to.equal(undefined);
        expect(o.partial === true, 'not taken for a create cut short').to.equal(false);
        expect((await provider.observeAll(signal())).get(d.hostName)?.ownerId, 'observeAll agrees').to.equal(undefined);
        const before = await helpers.fingerprint(provider, d);
        const attempts: Record<string, () => Promise<unknown>> = {
          create: () => provider.create(d, signal()),
          update: () => provider.update(d, [memoryChange(o)], o, signal()),
          start: () => provider.setState(d, 'Running', o, signal()),
          hold: () => provider.setState(d, helpers.holdState, o, signal()),
          stop: () => provider.setState(d, 'Stopped', { ...o, state: 'Running' }, signal()),
        };
        for (const [call, attempt] of Object.entries(attempts)) {
          const err = await failureOf(attempt());
          expect(isTerminalError(err) ? err.reason : err, `${call} is refused`).to.equal('NotOwned');
        }
        const err = await failureOf(provider.delete(d, signal()));
        expect(leftAlone(err), `delete leaves it or says NotOwned: ${String(err)}`).to.equal(true);
        expect(await helpers.fingerprint(provider, d), 'untouched').to.deep.equal(before);

        await provider.adopt(d, o, signal());
        const adopted = await observe(d);
        expect([adopted.ownerId, adopted.state], 'adopted, in the state it was').to.deep.equal([d.id, o.state]);
        await provider.delete(d, signal());
        expect(await provider.observe(d, signal()), 'adopted, it is ours to delete').to.equal(undefined);
        expect(await helpers.leftovers(provider, d)).to.deep.equal([]);
      });
    });

    describe('a create cut short', () => {
      for (const [label, killed] of Object.entries(helpers.killedCreates)) {
        it(`(${label}) is seen as ${killed.seen === 'partial' ? 'partial' : 'nothing'} and cleaned by delete`, async () => {
          const d = desired(`cut${Object.keys(helpers.killedCreates).indexOf(label)}`);
          await killed.leave(provider, d);
          expect(await helpers.leftovers(provider, d), 'something was left to clean').to.not.deep.equal([]);
          if (killed.seen === 'partial') {
            const o = await observe(d);
            expect([o.ownerId, o.partial], 'ours, and partial').to.deep.equal([d.id, true]);
            expect((await provider.observeAll(signal())).get(d.hostName)?.partial, 'observeAll agrees').to.equal(true);
          } else {
            expect(await provider.observe(d, signal())).to.equal(undefined);
          }
          await provider.delete(d, signal());
          expect(await provider.observe(d, signal())).to.equal(undefined);
          expect(await helpers.leftovers(provider, d), 'nothing left').to.deep.equal([]);
        });
      }
    });

    describe('close()', () => {
      it('ends every changes() stream, later ones at once, and closing again succeeds', async () => {
        const closing = await makeProvider();
        const open = new AbortController();
        const streams = [new ChangeRecorder(closing.changes(open.signal)), new ChangeRecorder(closing.changes(open.signal))];
        try {
          await closing.observeAll(signal()); // a provider that has done some work
          await closing.close();
          await within('streams end on close()', Promise.all(streams.map((s) => s.done)), 10_000);
          await within('a stream opened after close() ends at once', new ChangeRecorder(closing.changes(open.signal)).done, 10_000);
          await closing.close();
        } finally {
          open.abort();
        }
      });
    });
  });
}
