import { expect } from 'chai';
import { runCommand } from '../../../src/cli/run-command.js';
import { UsageError } from '../../../src/cli/usage-error.js';

describe('hyperlet run: fleet flags', () => {
  const cases: Record<string, { reason: string; args: string[]; error: RegExp }> = {
    LeaderElectNeedsKube: {
      reason: 'leader election is a Lease on the API server: without the kube source there is none',
      args: ['--leader-elect', '--source', 'dir:/nonexistent'], error: /--leader-elect needs --source kube/,
    },
    SchedulerNeedsLeaderElect: {
      reason: 'the scheduler is a once-per-cluster task of the elected agent: without election two could place at once',
      args: ['--source', 'kube', '--node', 'n1', '--scheduler'], error: /--scheduler needs --source kube, --node and --leader-elect/,
    },
    SchedulerNeedsNode: {
      reason: 'a cluster-wide replica has no once-per-cluster task list to run the scheduler in',
      args: ['--source', 'kube', '--leader-elect', '--scheduler'], error: /--scheduler needs --source kube, --node and --leader-elect/,
    },
    HeartbeatTooShort: {
      reason: 'a heartbeat below 250 ms would hammer the API server',
      args: ['--source', 'kube', '--node', 'n1', '--heartbeat', '100ms'], error: /--heartbeat: must be at least 250 ms/,
    },
    MaxPerScopeOverConcurrency: {
      reason: 'one namespace cannot have more workers than there are',
      args: ['--source', 'dir:/nonexistent', '--concurrency', '2', '--max-per-scope', '3'],
      error: /--max-per-scope: must be at most --concurrency \(2\)/,
    },
    MaxPerScopeNotPositive: {
      reason: 'a namespace needs at least one worker',
      args: ['--source', 'dir:/nonexistent', '--max-per-scope', '0'], error: /--max-per-scope: must be a positive integer/,
    },
    HeartbeatNotADuration: {
      reason: 'the heartbeat is a duration such as 10s',
      args: ['--source', 'kube', '--node', 'n1', '--heartbeat', 'often'], error: /--heartbeat/,
    },
  };
  for (const [name, c] of Object.entries(cases)) {
    it(name, async () => {
      const err = await runCommand(c.args).then(() => undefined, (e: unknown) => e);
      expect(err, c.reason).to.be.instanceOf(UsageError);
      expect((err as Error).message, c.reason).to.match(c.error);
    });
  }
});
