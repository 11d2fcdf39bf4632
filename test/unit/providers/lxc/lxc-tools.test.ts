import { expect } from 'chai';
import { instanceStateOf, parseInfo, parseLsFancy, summarizeLxcLog } from '../../../../src/providers/lxc/lxc-tools.js';

describe('parseLsFancy', () => {
  const cases = {
    Empty: { reason: 'lxc-ls prints nothing at all for an empty lxcpath', stdout: '', want: [] },
    HeaderOnly: { reason: 'the header row is not a container', stdout: 'NAME STATE PID IPV4 \n', want: [] },
    StoppedAndRunning: {
      reason: "'-' is an empty cell: no pid, no address",
      stdout: 'NAME STATE   PID  IPV4 \nr1   STOPPED -    -    \nt1   RUNNING 6442 -    \n',
      want: [{ name: 'r1', state: 'STOPPED', ipv4: [], ipv6: [] }, { name: 't1', state: 'RUNNING', pid: 6442, ipv4: [], ipv6: [] }],
    },
    SeveralAddresses: {
      reason: 'several addresses are joined by ", " in the last cell',
      stdout: 'NAME STATE PID IPV4\nweb RUNNING 77 10.0.3.5, 10.0.4.2\n',
      want: [{ name: 'web', state: 'RUNNING', pid: 77, ipv4: ['10.0.3.5', '10.0.4.2'], ipv6: [] }],
    },
    BothFamilies: {
      reason: 'with the ipv6 column: each family in its list, whatever the spacing, link-local left out',
      stdout: 'NAME STATE PID IPV4 IPV6\nweb RUNNING 77 10.0.3.5, 10.0.4.2 FD42:1::5, fe80::1\nold STOPPED - - -\n',
      want: [
        { name: 'web', state: 'RUNNING', pid: 77, ipv4: ['10.0.3.5', '10.0.4.2'], ipv6: ['fd42:1::5'] },
        { name: 'old', state: 'STOPPED', ipv4: [], ipv6: [] },
      ],
    },
    OnlyIpv6: {
      reason: 'no IPv4 ("-") and one IPv6 address',
      stdout: 'NAME STATE PID IPV4 IPV6\nv6 RUNNING 5 - 2001:db8::7\n',
      want: [{ name: 'v6', state: 'RUNNING', pid: 5, ipv4: [], ipv6: ['2001:db8::7'] }],
    },
    FrozenNamespaced: {
      reason: 'a namespaced host name holds a dot; FROZEN keeps its pid',
      stdout: 'NAME STATE PID IPV4\nteam-a.db FROZEN 9429 -\n',
      want: [{ name: 'team-a.db', state: 'FROZEN', pid: 9429, ipv4: [], ipv6: [] }],
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => expect(parseLsFancy(tc.stdout), tc.reason).to.deep.equal(tc.want));
  }
});

describe('parseInfo', () => {
  const cases = {
    Running: {
      reason: 'state, pid and each IP line are read; link-local IPv6 left out',
      stdout: 'State:          RUNNING\nPID:            11828\nIP:             10.0.3.7\nIP:             fe80::1\nIP:             fd42:7::9\n',
      want: { state: 'RUNNING', pid: 11828, ipv4: ['10.0.3.7'], ipv6: ['fd42:7::9'] },
    },
    Stopped: { reason: 'a stopped container prints only its state', stdout: 'State:          STOPPED\n', want: { state: 'STOPPED', ipv4: [], ipv6: [] } },
    Garbage: { reason: 'unknown lines are ignored', stdout: 'hello\nCPU use: 0.01 seconds\n', want: { ipv4: [], ipv6: [] } },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => expect(parseInfo(tc.stdout), tc.reason).to.deep.equal(tc.want));
  }
});

describe('instanceStateOf', () => {
  const cases = {
    STOPPED: { reason: 'settled', want: 'Stopped' },
    RUNNING: { reason: 'settled', want: 'Running' },
    THAWED: { reason: 'a thawed container runs', want: 'Running' },
    FROZEN: { reason: 'settled', want: 'Frozen' },
    STARTING: { reason: 'transitional: the reconciler waits', want: 'Starting' },
    STOPPING: { reason: 'transitional', want: 'Stopping' },
    ABORTING: { reason: 'a failed start on its way down', want: 'Stopping' },
    FREEZING: { reason: 'transitional without a name of its own', want: 'Unknown' },
    NEWSTATE: { reason: 'a state a later LXC may add', want: 'Unknown' },
  };
  for (const [state, tc] of Object.entries(cases)) {
    it(state, () => expect(instanceStateOf(state), tc.reason).to.equal(tc.want));
  }
});

describe('summarizeLxcLog', () => {
  const bridgeMissing = [
    'lxc-start t4 20261122015451.439 ERROR    network - ../src/lxc/network.c:netdev_configure_server_veth:711 - No such file or directory - Failed to attach "vethqoVN7T" to bridge "nobr0", bridge interface doesn\'t exist',
    'lxc-start t4 20261122015451.456 ERROR    network - ../src/lxc/network.c:lxc_create_network_priv:3427 - No such file or directory - Failed to create network device',
    'lxc-start t4 20261122015451.456 ERROR    start - ../src/lxc/start.c:lxc_spawn:1840 - Failed to create the network',
    'lxc-start t4 20261122015451.460 ERROR    lxc_start - ../src/lxc/tools/lxc_start.c:main:309 - To get more details, run the container in foreground mode',
  ].join('\n');
  const cases = {
    BridgeMissing: {
      reason: 'the first errors say why, without timestamps or source locations',
      text: bridgeMissing, max: 1,
      want: 'No such file or directory - Failed to attach "vethqoVN7T" to bridge "nobr0", bridge interface doesn\'t exist',
    },
    SeveralJoined: {
      reason: 'up to max messages, joined',
      text: bridgeMissing, max: 2,
      want: 'No such file or directory - Failed to attach "vethqoVN7T" to bridge "nobr0", bridge interface doesn\'t exist; No such file or directory - Failed to create network device',
    },
    AdviceDropped: {
      reason: "lxc-start's advice to run in the foreground is no reason",
      text: bridgeMissing.split('\n').slice(3).join('\n'), max: 3, want: '',
    },
    Empty: { reason: 'an empty log says nothing', text: '', max: 3, want: '' },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => expect(summarizeLxcLog(tc.text, tc.max), tc.reason).to.equal(tc.want));
  }
});
