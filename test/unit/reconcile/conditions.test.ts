import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Status } from '../../../src/api/v1alpha1/types.js';
import type { ObservedInstance } from '../../../src/providers/provider.js';
import { type Plan, plan } from '../../../src/reconcile/plan.js';
import { RETRIES_BEFORE_STALLED, STALLED_REASONS } from '../../../src/reconcile/stalled-reasons.js';
import { type StatusFacts, computeStatus, sameStatus } from '../../../src/reconcile/conditions.js';
import type { Desired } from '../../../src/store/desired.js';
import { container, observedAs } from '../../fakes/desired-objects.js';

/** The repository root (this file runs from dist/test/unit/reconcile). */
const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const NOW = '2026-01-01T00:00:00.000Z';
const web = container('web');

type Want = { reconciling: ['True' | 'False', string]; stalled: ['True' | 'False', string] };

interface Case {
  readonly reason: string;
  readonly facts: Omit<StatusFacts, 'node' | 'previous' | 'now'>;
  readonly want: Want;
}

const planOf = (d: Desired, observed: ObservedInstance | undefined, options: Parameters<typeof plan>[2] = {}): Plan =>
  plan(d, observed, options);
const stopped = observedAs(web, 'Stopped');
const notOurs = observedAs(web, 'Running', { ownerId: undefined });

const cases: Record<string, Case> = {
  Converged: {
    reason: 'the instance is as declared: nothing under way, nothing blocked (kstatus Current)',
    facts: { d: web, observed: observedAs(web), plan: planOf(web, observedAs(web)) },
    want: { reconciling: ['False', 'Converged'], stalled: ['False', 'Converged'] },
  },
  ConvergedStopped: {
    reason: 'a deliberately stopped instance is converged too',
    facts: { d: container('web', { state: 'Stopped' }), observed: stopped, plan: { steps: [], changes: [], pending: [] } },
    want: { reconciling: ['False', 'Converged'], stalled: ['False', 'Converged'] },
  },
  Creating: {
    reason: 'create is about to run: Reconciling with the step as reason',
    facts: { d: web, observed: undefined, plan: planOf(web, undefined), acted: { step: 'create' } },
    want: { reconciling: ['True', 'Creating'], stalled: ['False', 'Progressing'] },
  },
  StartDue: {
    reason: 'a start is the next step: Starting',
    facts: { d: web, observed: observedAs(web, 'Stopped'), plan: planOf(web, observedAs(web, 'Stopped')) },
    want: { reconciling: ['True', 'Starting'], stalled: ['False', 'Progressing'] },
  },
  Settling: {
    reason: 'the instance is between states: still Reconciling',
    facts: { d: web, observed: observedAs(web, 'Starting'), plan: planOf(web, observedAs(web, 'Starting')) },
    want: { reconciling: ['True', 'Progressing'], stalled: ['False', 'Progressing'] },
  },
  FirstFailure: {
    reason: 'a step failed once: retried with backoff, so Reconciling with the failure as reason',
    facts: { d: web, observed: undefined, failure: { reason: 'CreateFailed', message: 'cannot create container web' }, failuresInARow: 1 },
    want: { reconciling: ['True', 'CreateFailed'], stalled: ['False', 'Progressing'] },
  },
  FailureJustBeforeExhausted: {
    reason: `${RETRIES_BEFORE_STALLED - 1} failures in a row are not yet exhausted`,
    facts: { d: web, observed: undefined, failure: { reason: 'StartFailed', message: 'm' }, failuresInARow: RETRIES_BEFORE_STALLED - 1 },
    want: { reconciling: ['True', 'StartFailed'], stalled: ['False', 'Progressing'] },
  },
  RetriesExhausted: {
    reason: `the same failure ${RETRIES_BEFORE_STALLED} times in a row stalls the object (kstatus Failed)`,
    facts: { d: web, observed: stopped, failure: { reason: 'StartFailed', message: 'm' }, failuresInARow: RETRIES_BEFORE_STALLED },
    want: { reconciling: ['False', 'Stalled'], stalled: ['True', 'RetriesExhausted'] },
  },
  ProviderUnavailableExhausted: {
    reason: 'a provider that stays unavailable stalls too, as retries exhausted',
    facts: {
      d: web, observed: undefined, failure: { reason: 'ProviderUnavailable', message: 'm' }, failuresInARow: RETRIES_BEFORE_STALLED + 3,
    },
    want: { reconciling: ['False', 'Stalled'], stalled: ['True', 'RetriesExhausted'] },
  },
  TerminalUnlisted: {
    reason: 'any TerminalError stalls, listed or not: it is never retried until the object changes',
    facts: { d: web, observed: undefined, failure: { reason: 'SomeFutureReason', message: 'm', terminal: true }, failuresInARow: 1 },
    want: { reconciling: ['False', 'Stalled'], stalled: ['True', 'SomeFutureReason'] },
  },
  TemplateNotFound: {
    reason: 'a missing template stalls at the first failure',
    facts: { d: web, observed: undefined, failure: { reason: 'TemplateNotFound', message: 'm', terminal: true }, failuresInARow: 1 },
    want: { reconciling: ['False', 'Stalled'], stalled: ['True', 'TemplateNotFound'] },
  },
  DependencyNotFound: {
    reason: 'a listed reason stalls even when the reconciler retries it (it looks again for the fix in another object)',
    facts: { d: web, observed: undefined, failure: { reason: 'DependencyNotFound', message: 'm' } },
    want: { reconciling: ['False', 'Stalled'], stalled: ['True', 'DependencyNotFound'] },
  },
  PolicyDenied: {
    reason: 'a host policy refusal stalls (one line in STALLED_REASONS)',
    facts: { d: web, observed: undefined, failure: { reason: 'PolicyDenied', message: 'm' } },
    want: { reconciling: ['False', 'Stalled'], stalled: ['True', 'PolicyDenied'] },
  },
  NameTakenByAnother: {
    reason: 'an instance of that name that is not ours: Stalled Conflict, never touched',
    facts: { d: web, observed: notOurs, plan: planOf(web, notOurs) },
    want: { reconciling: ['False', 'Stalled'], stalled: ['True', 'Conflict'] },
  },
  WaitingForDependencies: {
    reason: 'waiting for another object to turn Ready is progress',
    facts: { d: web, observed: undefined, plan: planOf(web, undefined, { dependenciesNotReady: ['default/db'] }) },
    want: { reconciling: ['True', 'WaitingForDependencies'], stalled: ['False', 'Progressing'] },
  },
  Paused: {
    reason: 'a paused object is neither under way nor blocked; Ready=False says it differs',
    facts: { d: web, observed: stopped, plan: planOf(web, stopped, { paused: true }), paused: 'annotation' },
    want: { reconciling: ['False', 'Paused'], stalled: ['False', 'Paused'] },
  },
  Deleting: {
    reason: 'removing the instance is work under way',
    facts: { d: { ...web, deleting: true }, observed: observedAs(web), plan: planOf({ ...web, deleting: true }, observedAs(web)) },
    want: { reconciling: ['True', 'Deleting'], stalled: ['False', 'Progressing'] },
  },
};

const get = (s: Status, type: string): [string, string] | undefined => {
  const c = s.conditions.find((x) => x.type === type);
  return c === undefined ? undefined : [c.status, c.reason];
};

describe('computeStatus: kstatus conditions Reconciling and Stalled', () => {
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const status = computeStatus({ ...tc.facts, node: 'node-a', previous: undefined, now: NOW });
      expect(get(status, 'Reconciling'), tc.reason).to.deep.equal(tc.want.reconciling);
      expect(get(status, 'Stalled'), tc.reason).to.deep.equal(tc.want.stalled);
      expect(get(status, 'Reconciling')?.[0] === 'True' && get(status, 'Stalled')?.[0] === 'True', 'never both True').to.equal(false);
    });
  }

  it('keeps Ready as it was: converged is Ready, a stalled create is not', () => {
    const ok = computeStatus({ ...cases.Converged!.facts, node: 'n', previous: undefined, now: NOW });
    expect(get(ok, 'Ready')).to.deep.equal(['True', 'Running']);
    const stalled = computeStatus({ ...cases.TemplateNotFound!.facts, node: 'n', previous: undefined, now: NOW });
    expect(get(stalled, 'Ready')).to.deep.equal(['False', 'TemplateNotFound']);
  });

  it('says RetriesExhausted with the failure it repeats, in a message that does not change with each retry', () => {
    const facts = cases.RetriesExhausted!.facts;
    const a = computeStatus({ ...facts, node: 'n', previous: undefined, now: NOW });
    const later = '2026-01-01T00:01:00.000Z';
    const b = computeStatus({ ...facts, failuresInARow: RETRIES_BEFORE_STALLED + 1, node: 'n', previous: a, now: later });
    expect(a.conditions.find((c) => c.type === 'Stalled')?.message).to.contain('StartFailed').and.contain(': m');
    expect(sameStatus(a, b), 'a further retry writes nothing').to.equal(true);
  });
});

describe('STALLED_REASONS', () => {
  it('lists every TerminalError reason thrown in src/, so the README table is complete', async () => {
    const thrown = new Set<string>();
    const walk = async (dir: string): Promise<void> => {
      for (const e of await readdir(dir, { withFileTypes: true })) {
        if (e.isDirectory()) await walk(join(dir, e.name));
        else if (e.name.endsWith('.ts')) {
          for (const m of readFileSync(join(dir, e.name), 'utf8').matchAll(/new TerminalError\(\s*'([A-Za-z]+)'/g)) thrown.add(m[1] ?? '');
        }
      }
    };
    await walk(join(REPO_ROOT, 'src'));
    expect(thrown.size, 'the scan finds the providers\' reasons').to.be.greaterThan(5);
    const missing = [...thrown].filter((r) => STALLED_REASONS[r] === undefined);
    expect(missing, 'TerminalError reasons missing from STALLED_REASONS').to.deep.equal([]);
  });

  it('is the README\'s table of Failed reasons, row for row', () => {
    const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
    const failedRows = [...readme.matchAll(/^\| `([A-Za-z]+)` \| Failed \|/gm)].map((m) => m[1]).sort();
    expect(failedRows).to.deep.equal(Object.keys(STALLED_REASONS).sort());
  });
});
