import { expect } from 'chai';
import type { Step } from '../../../src/reconcile/plan.js';
import { type Admission, StepGuard, stepIntent } from '../../../src/reconcile/step-guard.js';
import type { Clock } from '../../../src/shared/clock.js';

/** A clock the test moves by hand; the guard sets no timers, so now() is all it reads. */
function manualClock(): Clock & { advance(ms: number): void } {
  let nowMs = 1_000_000;
  return {
    now: () => nowMs,
    setTimeout: () => { throw new Error('the step guard sets no timers'); },
    clearTimeout: () => undefined,
    advance: (ms) => { nowMs += ms; },
  };
}

const memory = (from: number, to: number): Step => ({ op: 'update', changes: [{ path: 'resources.memory', from, to, apply: 'live' }] });
const start: Step = { op: 'setState', to: 'Running' };
const stop: Step = { op: 'setState', to: 'Stopped' };
const MiB = 2 ** 20;
const change = (path: string, from: number, to: number) => ({ path, from, to, apply: 'live' as const });

/** What a pass got: 'act', 'repeat' (acted again), 'effect' (waited for the effect), 'rate:N' (waits N ms). */
function outcome(a: Admission): string {
  if (a.act) return a.repeat ? 'repeat' : 'act';
  return a.waitingFor === 'effect' ? 'effect' : `rate:${a.afterMs}`;
}

describe('stepIntent', () => {
  const cases = {
    ObservedValueIsNotPartOfIt: {
      reason: 'a guest ballooning reports a new memory size every pass; the step still asks for the same thing',
      a: stepIntent(memory(250 * MiB, 128 * MiB), 1), b: stepIntent(memory(190 * MiB, 128 * MiB), 1), same: true,
    },
    DesiredValueIsPartOfIt: {
      reason: 'a new desired size is a new request',
      a: stepIntent(memory(256 * MiB, 128 * MiB), 1), b: stepIntent(memory(256 * MiB, 192 * MiB), 1), same: false,
    },
    FieldOrderDoesNotMatter: {
      reason: 'the same fields listed in another order ask for the same thing',
      a: stepIntent({ op: 'update', changes: [change('a', 1, 2), change('b', 1, 3)] }, 1),
      b: stepIntent({ op: 'update', changes: [change('b', 0, 3), change('a', 0, 2)] }, 1),
      same: true,
    },
    GenerationIsPartOfIt: {
      reason: 'a new generation asks again, even for the same step', a: stepIntent(start, 1), b: stepIntent(start, 2), same: false,
    },
    TargetStateIsPartOfIt: { reason: 'start and stop differ', a: stepIntent(start, 1), b: stepIntent(stop, 1), same: false },
    DeleteReasonIsPartOfIt: {
      reason: 'cleaning up a partial instance is not deleting a removed object',
      a: stepIntent({ op: 'delete', reason: 'partial' }, 1), b: stepIntent({ op: 'delete', reason: 'deleted' }, 1), same: false,
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => expect(tc.a === tc.b, tc.reason).to.equal(tc.same));
  }
});

describe('StepGuard', () => {
  type Pass = { readonly step: Step; readonly afterMs?: number; readonly then?: 'settled' | 'failed' };
  const cases: Record<string, { reason: string; passes: Pass[]; want: string[] }> = {
    FirstStepRunsAtOnce: {
      reason: 'nothing ran before: act',
      passes: [{ step: start }], want: ['act'],
    },
    SequenceRunsAtOnce: {
      reason: 'delete, create, start of a re-created instance go back to back (within the burst)',
      passes: [{ step: { op: 'delete', reason: 'recreate' } }, { step: { op: 'create' } }, { step: start }], want: ['act', 'act', 'act'],
    },
    RepeatedStepWaitsForItsEffect: {
      reason: 'the step asked for again right after it ran has not shown its effect: wait, then run it again once',
      passes: [{ step: memory(256 * MiB, 128 * MiB) }, { step: memory(250 * MiB, 128 * MiB) }, { step: memory(240 * MiB, 128 * MiB) }],
      want: ['act', 'effect', 'repeat'],
    },
    RepeatAlternatesWaitAndRun: {
      reason: 'bounded: every other pass waits, so the queue backoff between passes spaces the runs',
      passes: Array.from({ length: 6 }, (_, i) => ({ step: memory((256 - i) * MiB, 128 * MiB), afterMs: 1_000 })),
      want: ['act', 'effect', 'repeat', 'effect', 'repeat', 'effect'],
    },
    NewDesiredValueRunsAtOnce: {
      reason: 'the object asks for another size while the first is in progress: that is a new step',
      passes: [{ step: memory(256 * MiB, 128 * MiB) }, { step: memory(250 * MiB, 192 * MiB) }], want: ['act', 'act'],
    },
    SettledForgetsTheStep: {
      reason: 'the step took effect (nothing due); the same step later (drift repaired again) runs at once',
      passes: [{ step: start, then: 'settled' }, { step: start, afterMs: 5_000 }], want: ['act', 'act'],
    },
    FailedForgetsTheStep: {
      reason: 'a step that threw is retried by the error backoff, not waited for as if in progress',
      passes: [{ step: start, then: 'failed' }, { step: start, afterMs: 1_000 }], want: ['act', 'act'],
    },
    FailuresDoNotUseTheBucket: {
      reason: 'errors are spaced by the queue backoff: five failed runs in a row leave the bucket full',
      passes: [1, 2, 3, 4, 5].map((): Pass => ({ step: start, then: 'failed' })), want: ['act', 'act', 'act', 'act', 'act'],
    },
    AlternatingStepsAreRateLimited: {
      reason: 'a provider flapping between two states: four runs at once, then at most four a second',
      passes: [start, stop, start, stop, start].map((step): Pass => ({ step })).concat([{ step: start, afterMs: 250 }, { step: stop }]),
      want: ['act', 'act', 'act', 'act', 'rate:250', 'act', 'rate:250'],
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const clock = manualClock();
      const guard = new StepGuard({ clock });
      const got: string[] = [];
      for (const pass of tc.passes) {
        clock.advance(pass.afterMs ?? 0);
        got.push(outcome(guard.admit('k', stepIntent(pass.step, 1))));
        if (pass.then === 'settled') guard.settled('k');
        if (pass.then === 'failed') guard.failed('k');
      }
      expect(got, tc.reason).to.deep.equal(tc.want);
    });
  }

  it('never acts more than the burst plus four a second for one object, whatever the provider reports', () => {
    // Eight seconds of passes every 5 ms, each seeing a new observed value or flapping between steps.
    const scenarios = {
      Ballooning: (i: number): Step => memory((256 - (i % 128)) * MiB, 128 * MiB),
      Flapping: (i: number): Step => (i % 2 === 0 ? start : stop),
    };
    for (const [name, stepAt] of Object.entries(scenarios)) {
      const clock = manualClock();
      const guard = new StepGuard({ clock });
      let acts = 0;
      for (let i = 0; i < 1_600; i++) {
        if (guard.admit('k', stepIntent(stepAt(i), 1)).act) acts++;
        clock.advance(5);
      }
      expect(acts, name).to.be.at.most(4 + 4 * 8);
    }
  });

  it('forgets an object that settled with a full bucket, keeps one that acted lately', () => {
    const clock = manualClock();
    const guard = new StepGuard({ clock });
    guard.admit('a', stepIntent(start, 1));
    guard.admit('b', stepIntent(start, 1));
    clock.advance(1_000);
    guard.settled('a');
    expect(guard.size).to.equal(1);
    guard.admit('c', stepIntent(start, 1));
    guard.settled('c');
    expect(guard.size, 'c acted just now: its bucket is not full').to.equal(2);
    guard.forget('c');
    expect(guard.size).to.equal(1);
  });

  it('sweeps settled objects whose bucket refilled, so the table follows busy objects only', () => {
    const clock = manualClock();
    const guard = new StepGuard({ clock });
    for (let i = 0; i < 10_000; i++) {
      const key = `k${i}`;
      guard.admit(key, stepIntent({ op: 'create' }, 1));
      guard.admit(key, stepIntent(start, 1));
      guard.settled(key);
      clock.advance(1); // 10,000 objects created and started over 10 s
    }
    expect(guard.size, 'only the objects that acted in about the last second or two').to.be.below(2_600);
    expect(guard.admit('k9999', stepIntent(start, 1)).act, 'a recent object keeps its bucket: 2 tokens left').to.equal(true);
  });

  it('rejects limits that would let an object never act or act without bound', () => {
    expect(() => new StepGuard({ actBurst: 0 })).to.throw(TypeError);
    expect(() => new StepGuard({ actsPerSecond: 0 })).to.throw(TypeError);
  });
});
