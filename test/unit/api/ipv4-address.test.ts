import { expect } from 'chai';
import { broadcastOfCidr, gatewayProblem, ipv4CidrProblem } from '../../../src/api/v1alpha1/ipv4-address.js';

describe('static IPv4 addresses', () => {
  const broadcasts: Record<string, { reason: string; cidr: string; want: string | undefined }> = {
    Slash24: { reason: 'the last address of a /24', cidr: '10.0.3.10/24', want: '10.0.3.255' },
    Slash20: { reason: 'a prefix off the octet boundary', cidr: '10.0.5.10/20', want: '10.0.15.255' },
    Slash30: { reason: 'the smallest subnet with two hosts', cidr: '192.168.1.5/30', want: '192.168.1.7' },
    High: { reason: 'no sign trouble above 2^31', cidr: '203.0.113.9/8', want: '203.255.255.255' },
    NotCidr: { reason: 'no prefix, no broadcast', cidr: '10.0.3.10', want: undefined },
  };
  for (const [name, tc] of Object.entries(broadcasts)) {
    it(`broadcastOfCidr ${name}`, () => expect(broadcastOfCidr(tc.cidr), tc.reason).to.equal(tc.want));
  }

  const addresses: Record<string, { reason: string; cidr: string; want: RegExp | undefined }> = {
    Host: { reason: 'a host address of a private /24', cidr: '10.0.3.10/24', want: undefined },
    LeadingZero: { reason: 'octal-looking octets are refused', cidr: '10.0.03.10/24', want: /not an IPv4 address/ },
    PrefixLeadingZero: { reason: 'the prefix too', cidr: '10.0.3.10/024', want: /not an IPv4 address/ },
    Slash7: { reason: 'no NIC sits on a /7', cidr: '10.0.3.10/7', want: /out of range/ },
    Network: { reason: 'the network address', cidr: '10.0.0.0/20', want: /network address/ },
    Broadcast: { reason: 'the broadcast address', cidr: '10.0.15.255/20', want: /broadcast address/ },
    Multicast: { reason: 'multicast', cidr: '224.0.0.5/24', want: /not a unicast/ },
    ZeroNet: { reason: '0/8', cidr: '0.1.2.3/24', want: /not a unicast/ },
  };
  for (const [name, tc] of Object.entries(addresses)) {
    it(`ipv4CidrProblem ${name}`, () => {
      const p = ipv4CidrProblem(tc.cidr);
      if (tc.want === undefined) expect(p, tc.reason).to.equal(undefined);
      else expect(p, tc.reason).to.match(tc.want);
    });
  }

  const gateways: Record<string, { reason: string; gateway: string; ipv4: string; want: RegExp | undefined }> = {
    Inside: { reason: 'in the subnet', gateway: '10.0.3.1', ipv4: '10.0.3.10/24', want: undefined },
    InsideWide: { reason: 'in a /20, another third octet', gateway: '10.0.0.1', ipv4: '10.0.5.10/20', want: undefined },
    Outside: { reason: 'another subnet', gateway: '10.0.4.1', ipv4: '10.0.3.10/24', want: /outside the subnet/ },
    Self: { reason: 'its own address', gateway: '10.0.3.10', ipv4: '10.0.3.10/24', want: /own address/ },
    NotAddress: { reason: 'a CIDR is no gateway', gateway: '10.0.3.1/24', ipv4: '10.0.3.10/24', want: /not an IPv4 address/ },
  };
  for (const [name, tc] of Object.entries(gateways)) {
    it(`gatewayProblem ${name}`, () => {
      const p = gatewayProblem(tc.gateway, tc.ipv4);
      if (tc.want === undefined) expect(p, tc.reason).to.equal(undefined);
      else expect(p, tc.reason).to.match(tc.want);
    });
  }
});
