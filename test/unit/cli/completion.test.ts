import { expect } from 'chai';
import type { Kind } from '../../../src/api/v1alpha1/group.js';
import { complete } from '../../../src/cli/completion-command.js';

/** Object names as a state DB would list them, recording which DB was asked. */
class FakeNames {
  readonly asked: string[] = [];
  readonly names = (kind: Kind, state: string): string[] => {
    this.asked.push(state);
    return kind === 'Container' ? ['db', 'web-1', 'web-2'] : ['vm-a'];
  };
}

describe('complete', () => {
  const cases: Record<string, { reason: string; words: string[]; want: string[]; state?: string }> = {
    Commands: { reason: 'the first word is a command', words: ['w'], want: ['wait'] },
    AllCommandsOnEmpty: {
      reason: 'nothing typed: every command',
      words: [''], want: ['run', 'get', 'describe', 'wait', 'diff', 'validate', 'logs', 'exec', 'console', 'crds', 'completion', 'dashboard', 'reboot', 'restore',
        'backup', 'snapshot', 'refresh', 'scheduler', 'drain', 'uncordon', 'help'],
    },
    Kinds: { reason: 'get takes a kind (or sources) first', words: ['get', 'v'], want: ['virtualmachines', 'vm', 'vms'] },
    NamesOfTheKind: { reason: 'then names of that kind from the state DB', words: ['get', 'ct', 'web'], want: ['web-1', 'web-2'] },
    NamesNotTwice: { reason: 'a name already given is not offered again', words: ['wait', 'containers', 'web-1', 'web'], want: ['web-2'] },
    VmNames: { reason: 'vm names for vms', words: ['describe', 'vm', ''], want: ['vm-a'] },
    FlagsOfTheCommand: { reason: 'a dash: the flags of that command', words: ['get', 'ct', '--w'], want: ['--watch'] },
    FlagValues: { reason: 'a flag with known values: those values', words: ['get', 'ct', '-o', 'j'], want: ['json'] },
    WaitFor: {
      reason: '--for offers the conditions',
      words: ['wait', 'ct', 'web-1', '--for', 'c'], want: ['condition=Ready', 'condition=Ready=false'],
    },
    FreeValueIsFiles: {
      reason: 'a flag with a free value (a path): nothing, so the shell completes files',
      words: ['validate', '-f', ''], want: [],
    },
    LogsFollowIsNoValue: {
      reason: 'logs -f follows: the next word is still a container name',
      words: ['logs', '-f', 'w'], want: ['web-1', 'web-2'],
    },
    StateFlagIsUsed: {
      reason: 'names come from the DB --state names',
      words: ['get', 'ct', '--state', '/srv/s.db', 'd'], want: ['db'], state: '/srv/s.db',
    },
    ConsoleTakesContainerNames: {
      reason: 'console NAME: names after --kind and its value',
      words: ['console', '--kind', 'ct', 'w'], want: ['web-1', 'web-2'],
    },
    ConsoleKindValues: { reason: '--kind takes ct or vm', words: ['console', '--kind', ''], want: ['ct', 'vm'] },
    CompletionShells: { reason: 'completion takes a shell', words: ['completion', ''], want: ['bash', 'zsh'] },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const names = new FakeNames();
      expect(complete(tc.words, names.names), tc.reason).to.deep.equal(tc.want);
      if (tc.state !== undefined) expect(names.asked).to.deep.equal([tc.state]);
    });
  }
});
