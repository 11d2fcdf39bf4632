/**
 * Leader election on a real coordination.k8s.io Lease, as the hyperlet ServiceAccount: two
 * candidates, one leader at a time; a cancelled leader hands over at once, a crashed one after
 * the lease duration.
 */
import { expect } from 'chai';
import { KubeLeaseClient, LeaderElector } from '../../src/kube/leader-election.js';
import { KubeSource } from '../../src/sources/kube-source.js';
import { DesiredStore } from '../../src/store/desired-store.js';
import { silentLogger } from '../../src/telemetry/logger.js';
import { AGENT_NAMESPACE, KubeTestEnv } from './support/kube-testenv.js';
import { until } from '../support/until.js';

const timing = { leaseDurationMs: 4_000, renewDeadlineMs: 3_000, retryPeriodMs: 500 };
const NS = `leader-e2e-${process.pid}`;

describe('leader election against a real kube-apiserver', function () {
  this.timeout(70 * 60_000);
  let env: KubeTestEnv;
  const running: { abort: AbortController; done: Promise<void> }[] = [];

  before(async () => {
    env = await KubeTestEnv.start();
    await env.installHyperlet();
    await env.kubectlOk(['create', 'namespace', NS]);
  });
  after(async () => {
    for (const r of running) r.abort.abort();
    await Promise.all(running.map((r) => r.done));
    if (env !== undefined) await env.stop();
  });

  function campaign(lease: string, identity: string, releaseOnCancel = true) {
    const elector = new LeaderElector({
      lease: new KubeLeaseClient(env.agent(), AGENT_NAMESPACE, lease), identity, logger: silentLogger(), ...timing, releaseOnCancel,
    });
    const abort = new AbortController();
    const events: string[] = [];
    const done = elector.run({ onStartedLeading: () => events.push('started'), onStoppedLeading: () => events.push('stopped') }, abort.signal);
    const r = { abort, done };
    running.push(r);
    return { elector, abort, done, events };
  }

  const holderOf = async (lease: string): Promise<string> =>
    (await env.kubectlOk(['get', 'lease', lease, '-n', AGENT_NAMESPACE, '-o', 'jsonpath={.spec.holderIdentity}'])).trim();

  it('elects one of two candidates, and hands over at once when the leader stops', async () => {
    const lease = `hyperlet-test-${process.pid}-a`;
    const a = campaign(lease, 'agent-a');
    await until('agent-a leads', () => a.elector.isLeader || undefined, 20_000);
    const b = campaign(lease, 'agent-b');
    await new Promise((r) => setTimeout(r, 3 * timing.leaseDurationMs));
    expect([a.elector.isLeader, b.elector.isLeader]).to.deep.equal([true, false]);
    expect(await holderOf(lease)).to.equal('agent-a');
    const stoppedAt = Date.now();
    a.abort.abort();
    await a.done;
    await until('agent-b leads', () => b.elector.isLeader || undefined, 20_000);
    expect(Date.now() - stoppedAt, 'a released Lease is taken without waiting for it to expire').to.be.below(timing.leaseDurationMs);
    expect(await holderOf(lease)).to.equal('agent-b');
    expect(a.events).to.deep.equal(['started', 'stopped']);
    b.abort.abort();
    await b.done;
  });

  it('takes over from a leader that vanished without releasing, after the lease duration', async () => {
    const lease = `hyperlet-test-${process.pid}-b`;
    const a = campaign(lease, 'agent-a', false);
    await until('agent-a leads', () => a.elector.isLeader || undefined, 20_000);
    const b = campaign(lease, 'agent-b');
    await new Promise((r) => setTimeout(r, timing.retryPeriodMs * 3));
    const crashedAt = Date.now();
    a.abort.abort(); // no release: as if the process died
    await a.done;
    await until('agent-b leads', () => b.elector.isLeader || undefined, 30_000);
    expect(Date.now() - crashedAt, 'not before the lease expired on agent-b\'s clock').to.be.at.least(timing.leaseDurationMs - timing.retryPeriodMs * 3);
    const transitions = Number(await env.kubectlOk(['get', 'lease', lease, '-n', AGENT_NAMESPACE, '-o', 'jsonpath={.spec.leaseTransitions}']));
    expect(transitions).to.equal(1);
    b.abort.abort();
    await b.done;
  });

  it('cluster-wide sources with leader election: only the leader syncs; a standby takes over', async () => {
    const lease = `hyperlet-test-${process.pid}-c`;
    await env.kubectlOk(['apply', '-f', '-'], { input: JSON.stringify({
      apiVersion: 'hyperlet.io/v1alpha1', kind: 'Container', metadata: { name: 'one', namespace: NS }, spec: { template: 'busybox' },
    }) });
    const replica = (identity: string) => {
      const abort = new AbortController();
      const store = new DesiredStore();
      const lost: string[] = [];
      const elector = new LeaderElector({ lease: new KubeLeaseClient(env.agent(), AGENT_NAMESPACE, lease), identity, logger: silentLogger(), ...timing });
      const source = new KubeSource({ kubeConfig: env.agent(), namespace: NS, logger: silentLogger(), leaderElection: { elector, onStoppedLeading: () => lost.push(identity) } });
      let synced = false;
      const started = source.start(store, abort.signal).then(() => { synced = !abort.signal.aborted; });
      running.push({ abort, done: started });
      return { abort, store, source, started, lost, get synced() { return synced; } };
    };
    const a = replica('replica-a');
    await until('replica-a synced', () => a.synced || undefined, 20_000);
    const b = replica('replica-b');
    await new Promise((r) => setTimeout(r, 2 * timing.leaseDurationMs));
    expect(a.store.keys().length).to.equal(1);
    expect([b.synced, b.store.keys().length]).to.deep.equal([false, 0]);
    expect(b.source.problems().map((p) => p.message)).to.deep.equal(['waiting to be elected leader']);
    a.abort.abort();
    await a.started;
    await until('replica-b synced after the leader stopped', () => b.synced || undefined, 20_000);
    expect(b.store.keys().length).to.equal(1);
    expect(b.source.problems()).to.deep.equal([]);
    expect([...a.lost, ...b.lost], 'a cancelled leader is not "lost"').to.deep.equal([]);
    b.abort.abort();
  });
});
