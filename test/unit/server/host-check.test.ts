import { expect } from 'chai';
import { type HostAllowList, isAllowedHost, isLoopback } from '../../../src/server/host-check.js';

describe('isAllowedHost', () => {
  const none: HostAllowList = { names: [] };
  const cases: Record<string, { reason: string; header: string | undefined; allow?: HostAllowList; want: boolean }> = {
    Localhost: { reason: 'the name the CLI and curl use', header: 'localhost:9440', want: true },
    LocalhostUpper: { reason: 'host names are case-insensitive', header: 'LOCALHOST', want: true },
    Loopback4: { reason: 'any 127/8 address', header: '127.0.0.1:9440', want: true },
    Loopback4Other: { reason: '127.1.2.3 is loopback too', header: '127.1.2.3', want: true },
    Loopback6: { reason: 'IPv6 loopback in brackets', header: '[::1]:9440', want: true },
    RebindingName: { reason: 'a rebinding page sends its own name', header: 'attacker.example:9440', want: false },
    NameEndingLocalhost: { reason: 'only the name localhost itself, not a look-alike', header: 'evil-localhost', want: false },
    SubdomainOfLocalhost: { reason: 'names under localhost are not served unless allowed', header: 'app.localhost', want: false },
    Missing: { reason: 'HTTP/1.0 without Host is refused', header: undefined, want: false },
    Empty: { reason: 'an empty Host is refused', header: '', want: false },
    Malformed: { reason: 'junk is refused', header: 'a b', want: false },
    BadPort: { reason: 'a port out of range is malformed', header: 'localhost:99999', want: false },
    UserinfoTrick: { reason: 'no userinfo in a Host header', header: 'localhost@evil.example', want: false },
    Configured: { reason: 'an operator-allowed name', header: 'hyperlet.lan:9440', allow: { names: ['hyperlet.lan'] }, want: true },
    ConfiguredTrailingDot: { reason: 'a trailing dot names the same host', header: 'hyperlet.lan.', allow: { names: ['Hyperlet.LAN'] }, want: true },
    BoundAddress: { reason: 'the address the server is bound to cannot be rebound', header: '10.1.2.3:9440', allow: { names: [], boundAddress: '10.1.2.3' }, want: true },
    OtherAddress: { reason: 'another address is not ours', header: '10.1.2.4', allow: { names: [], boundAddress: '10.1.2.3' }, want: false },
    WildcardBind: { reason: 'bound to 0.0.0.0, the address must be allowed by name', header: '0.0.0.0', allow: { names: [], boundAddress: '0.0.0.0' }, want: false },
  };
  for (const [name, tc] of Object.entries(cases)) it(name, () => expect(isAllowedHost(tc.header, tc.allow ?? none), tc.reason).to.equal(tc.want));
});

describe('isLoopback', () => {
  const cases: Record<string, { address: string; want: boolean }> = {
    V4: { address: '127.0.0.1', want: true }, V4Net: { address: '127.9.9.9', want: true }, V6: { address: '::1', want: true },
    V6Bracket: { address: '[::1]', want: true }, Name: { address: 'localhost', want: true }, Mapped: { address: '::ffff:127.0.0.1', want: true },
    Any4: { address: '0.0.0.0', want: false }, Any6: { address: '::', want: false }, Lan: { address: '192.168.1.2', want: false },
    Hostname: { address: 'myhost', want: false },
  };
  for (const [name, tc] of Object.entries(cases)) it(name, () => expect(isLoopback(tc.address)).to.equal(tc.want));
});
