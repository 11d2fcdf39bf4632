import { expect } from 'chai';
import { type PlacementNode, type PlacementRequest, placeAll } from '../../../src/scheduler/placement.js';

const GiB = 2 ** 30;

const node = (name: string, over: Partial<PlacementNode> = {}): PlacementNode => ({
  name, ready: true, labels: {}, kinds: ['Container', 'VirtualMachine'],
  allocatable: { cpu: 4, memoryBytes: 8 * GiB }, used: { cpu: 0, memoryBytes: 0 }, ...over,
});
const req = (key: string, over: Partial<PlacementRequest> = {}): PlacementRequest => ({
  key, kind: 'Container', cpu: 1, memoryBytes: 1 * GiB, ...over,
});

describe('placeAll', () => {
  const cases: Record<string, {
    reason: string; nodes: PlacementNode[]; requests: PlacementRequest[]; want: (string | { message: string })[];
  }> = {
    CordonedTakesNothing: {
      reason: 'a cordoned node (spec.unschedulable, hyperlet drain) takes nothing new, even when it is the least allocated',
      nodes: [node('a', { unschedulable: true }), node('b', { used: { cpu: 2, memoryBytes: 6 * GiB } })],
      requests: [req('x'), req('y', { memoryBytes: 4 * GiB })], want: ['b', { message: '0/2 nodes: 1 unschedulable, 1 insufficient memory' }],
    },
    TieByName: {
      reason: 'equally allocated nodes: the first by name wins, whatever the input order',
      nodes: [node('b'), node('a')], requests: [req('x')], want: ['a'],
    },
    SpreadsOwnPlacements: {
      reason: 'each placement counts for the next request, so equal nodes take turns',
      nodes: [node('a'), node('b')], requests: [req('x'), req('y'), req('z'), req('w')], want: ['a', 'b', 'a', 'b'],
    },
    LeastAllocatedFirst: {
      reason: 'the node with the smaller used share wins even when it comes later by name',
      nodes: [node('a', { used: { cpu: 2, memoryBytes: 4 * GiB } }), node('b', { used: { cpu: 1, memoryBytes: 1 * GiB } })],
      requests: [req('x')], want: ['b'],
    },
    SharesNotAbsolute: {
      reason: 'allocation compares shares of each node\'s allocatable, not absolute amounts',
      nodes: [node('a', { allocatable: { cpu: 4, memoryBytes: 4 * GiB }, used: { cpu: 2, memoryBytes: 2 * GiB } }),
        node('b', { allocatable: { cpu: 16, memoryBytes: 64 * GiB }, used: { cpu: 4, memoryBytes: 8 * GiB } })],
      requests: [req('x')], want: ['b'],
    },
    InsufficientMemory: {
      reason: 'an object larger than what is left fits nowhere, and the message says so per node',
      nodes: [node('a'), node('b', { used: { cpu: 0, memoryBytes: 7 * GiB } })],
      requests: [req('big', { memoryBytes: 9 * GiB })], want: [{ message: '0/2 nodes: 2 insufficient memory' }],
    },
    FillsThenUnschedulable: {
      reason: 'own placements use up capacity: the third 4Gi object finds both 8Gi nodes half full, the fifth finds them full',
      nodes: [node('a'), node('b')],
      requests: ['1', '2', '3', '4', '5'].map((k) => req(k, { cpu: 0, memoryBytes: 4 * GiB })),
      want: ['a', 'b', 'a', 'b', { message: '0/2 nodes: 2 insufficient memory' }],
    },
    InsufficientCpu: {
      reason: 'cpu counts like memory',
      nodes: [node('a', { used: { cpu: 4, memoryBytes: 0 } })], requests: [req('x')], want: [{ message: '0/1 nodes: 1 insufficient cpu' }],
    },
    NodeSelector: {
      reason: 'only nodes whose labels hold every selector key qualify, even if more allocated',
      nodes: [node('a'), node('b', { labels: { zone: 'z1', disk: 'ssd' }, used: { cpu: 3, memoryBytes: 6 * GiB } })],
      requests: [req('x', { nodeSelector: { zone: 'z1', disk: 'ssd' } })], want: ['b'],
    },
    NodeSelectorPartial: {
      reason: 'a node matching some keys only does not qualify',
      nodes: [node('a', { labels: { zone: 'z1' } })], requests: [req('x', { nodeSelector: { zone: 'z1', disk: 'ssd' } })],
      want: [{ message: '0/1 nodes: 1 did not match nodeSelector' }],
    },
    MixedReasons: {
      reason: 'the message counts each rule a node fails, like a Pod\'s FailedScheduling',
      nodes: [node('a', { labels: { zone: 'z1' }, used: { cpu: 0, memoryBytes: 8 * GiB } }), node('b')],
      requests: [req('x', { nodeSelector: { zone: 'z1' } })],
      want: [{ message: '0/2 nodes: 1 did not match nodeSelector, 1 insufficient memory' }],
    },
    NotReady: {
      reason: 'a node that is not Ready takes nothing and is counted only as not ready',
      nodes: [node('a', { ready: false }), node('b', { used: { cpu: 0, memoryBytes: 8 * GiB } })],
      requests: [req('x'), req('y', { memoryBytes: 0 })], want: [{ message: '0/2 nodes: 1 not ready, 1 insufficient memory' }, 'b'],
    },
    KindSupport: {
      reason: 'a VirtualMachine goes only to a node whose agent runs VirtualMachines',
      nodes: [node('a', { kinds: ['Container'] }), node('b', { used: { cpu: 3, memoryBytes: 0 } })],
      requests: [req('vm', { kind: 'VirtualMachine' }), req('c', { kind: 'Container' })], want: ['b', 'a'],
    },
    KindNowhere: {
      reason: 'no node runs the kind',
      nodes: [node('a', { kinds: ['Container'] })], requests: [req('vm', { kind: 'VirtualMachine' })],
      want: [{ message: '0/1 nodes: 1 does not run the kind' }],
    },
    NoNodes: {
      reason: 'without any HypervisorNode the message says so',
      nodes: [], requests: [req('x')], want: [{ message: '0/0 nodes: no HypervisorNode is registered' }],
    },
    ZeroRequest: {
      reason: 'an object declaring nothing fits even on a full node',
      nodes: [node('a', { used: { cpu: 4, memoryBytes: 8 * GiB } })], requests: [req('x', { cpu: 0, memoryBytes: 0 })], want: ['a'],
    },
  };
  for (const [name, c] of Object.entries(cases)) {
    it(`${name}: ${c.reason}`, () => {
      const got = placeAll(c.nodes, c.requests).map((r) => (r.nodeName !== undefined ? r.nodeName : { message: r.message }));
      expect(got).to.deep.equal(c.want);
    });
  }

  it('returns one result per request, keyed and in order', () => {
    const got = placeAll([node('a')], [req('k1'), req('k2')]);
    expect(got.map((r) => r.key)).to.deep.equal(['k1', 'k2']);
  });
});
