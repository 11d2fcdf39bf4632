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
    PeerFlagsGoTogether: {
      reason: 'a handover server nobody can reach, or a URL nothing serves, is a half-configured move',
      args: ['--source', 'kube', '--node', 'n1', '--peer-listen', '127.0.0.1:9442'], error: /--peer-listen, --peer-url and --peer-token-file go together/,
    },
    PeerNeedsNodeAgent: {
      reason: 'moves with data happen between per-node agents only',
      args: ['--source', 'kube', '--peer-listen', '127.0.0.1:9442', '--peer-url', 'http://127.0.0.1:9442', '--peer-token-file', '/nonexistent'],
      error: /--peer-listen needs --source kube and --node/,
    },
    PeerOffLoopbackNeedsTls: {
      reason: 'the peer token and instance data must not cross the network in the clear',
      args: ['--source', 'kube', '--node', 'n1', '--peer-listen', '0.0.0.0:9442', '--peer-url', 'http://10.0.0.1:9442', '--peer-token-file', '/nonexistent'],
      error: /not a loopback address; serving it needs TLS/,
    },
    PeerUrlShape: {
      reason: 'the URL other agents use is a base URL, nothing more',
      args: ['--source', 'kube', '--node', 'n1', '--peer-listen', '127.0.0.1:9442', '--peer-url', 'ftp://x/y', '--peer-token-file', '/nonexistent'],
      error: /--peer-url: expected http\(s\):\/\/HOST:PORT/,
    },
    PeerTokenFileUnreadable: {
      reason: 'a token that cannot be read is said at start, naming the file',
      args: ['--source', 'kube', '--node', 'n1', '--peer-listen', '127.0.0.1:9442', '--peer-url', 'http://127.0.0.1:9442', '--peer-token-file', '/nonexistent/t'],
      error: /--peer-token-file: cannot read \/nonexistent\/t: ENOENT/,
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
