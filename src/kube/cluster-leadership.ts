/**
 * Once-per-cluster work for per-node agents (`hyperlet run --node N --leader-elect`): every agent
 * campaigns for one Lease; the leader runs the registered tasks, each with a signal that aborts
 * when leadership ends. Unlike a cluster-wide replica, a per-node agent that loses leadership
 * keeps doing its own node's work and campaigns again.
 *
 * Guarantees: at most one agent runs the tasks at a time (LeaderElector's guarantee); a task's
 * signal aborts before the next campaign starts; a task that throws is logged and restarted
 * after `restartMs` while leadership lasts. Assumes tasks honour their signal.
 */
import type { Logger } from 'pino';
import { type Clock, sleep, systemClock } from '../shared/clock.js';
import type { LeaderElector } from './leader-election.js';

/** One piece of work that must run once per cluster, for as long as `signal` is not aborted. */
export interface ClusterTask {
  readonly name: string;
  run(signal: AbortSignal): Promise<void>;
}

/** The election and the tasks it gates. */
export interface ClusterLeadershipOptions {
  readonly elector: LeaderElector;
  readonly logger: Logger;
  readonly tasks?: readonly ClusterTask[];
  /** Wait before a failed task runs again, and before campaigning again after losing (default 2 s). */
  readonly restartMs?: number;
  readonly clock?: Clock;
}

/** Campaigns until cancelled; runs the tasks while it leads. See the file comment. */
export class ClusterLeadership {
  private readonly tasks: ClusterTask[];
  private readonly log: Logger;
  private readonly clock: Clock;
  private terms = 0;

  constructor(private readonly options: ClusterLeadershipOptions) {
    this.tasks = [...(options.tasks ?? [])];
    this.log = options.logger.child({ component: 'cluster-leadership' });
    this.clock = options.clock ?? systemClock;
  }

  /** Adds a task; it runs from the next term of leadership on. */
  add(task: ClusterTask): void {
    this.tasks.push(task);
  }

  /** Whether this agent leads now. */
  get isLeader(): boolean {
    return this.options.elector.isLeader;
  }

  /** How many times this agent has become leader. */
  get termsLed(): number {
    return this.terms;
  }

  /** Campaigns and leads, again and again, until `signal` aborts; never throws. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const running: Promise<void>[] = [];
      await this.options.elector.run({
        onStartedLeading: (leadership) => {
          this.terms++;
          this.log.info({ tasks: this.tasks.map((t) => t.name) }, 'leading: starting the once-per-cluster tasks');
          for (const task of this.tasks) running.push(this.keepRunning(task, leadership));
        },
        onStoppedLeading: () => {
          if (!signal.aborted) this.log.warn('leadership lost: the once-per-cluster tasks stop; campaigning again');
        },
      }, signal);
      await Promise.all(running);
      if (!signal.aborted) await sleep(this.clock, this.options.restartMs ?? 2_000, signal);
    }
  }

  private async keepRunning(task: ClusterTask, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await task.run(signal);
      } catch (err) {
        if (!signal.aborted) this.log.warn({ err, task: task.name }, 'cannot run a once-per-cluster task; restarting it');
      }
      if (!signal.aborted) await sleep(this.clock, this.options.restartMs ?? 2_000, signal);
    }
  }

}
