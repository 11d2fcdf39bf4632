import { expect } from 'chai';
import { MAX_TARGET_CHARS, parseRequestTarget } from '../../../src/server/request-target.js';

describe('parseRequestTarget', () => {
  const cases: Record<string, { reason: string; raw: string | undefined; want: { segments?: string[]; query?: Record<string, string>; status?: number } }> = {
    Root: { reason: 'the root has no segments', raw: '/', want: { segments: [] } },
    Plain: { reason: 'segments are split on /', raw: '/apis/hyperlet.io/v1alpha1/containers', want: { segments: ['apis', 'hyperlet.io', 'v1alpha1', 'containers'] } },
    TrailingSlash: { reason: 'one trailing slash names the same resource', raw: '/healthz/', want: { segments: ['healthz'] } },
    Encoded: { reason: 'a segment is percent-decoded once', raw: '/sources/git%2D2/refresh', want: { segments: ['sources', 'git-2', 'refresh'] } },
    Query: { reason: 'the query is parsed, + is a space', raw: '/x?labelSelector=tier%3Dweb&phase=Running+now', want: { segments: ['x'], query: { labelSelector: 'tier=web', phase: 'Running now' } } },
    BadPercent: { reason: 'URIError from a broken escape must be a 400, not a 500', raw: '/sources/%E0%A4%A/refresh', want: { status: 400 } },
    LonePercent: { reason: 'a lone % is not an escape', raw: '/sources/100%/refresh', want: { status: 400 } },
    BadPercentInQuery: { reason: 'the query follows the same rule', raw: '/apis/hyperlet.io/v1alpha1/containers?limit=%zz', want: { status: 400 } },
    EncodedSlash: { reason: '%2F would let one segment hold two', raw: '/sources/a%2Fb/refresh', want: { status: 400 } },
    EncodedNul: { reason: 'control characters never reach a lookup', raw: '/sources/git%00/refresh', want: { status: 400 } },
    DotDot: { reason: 'dot segments have no meaning here', raw: '/apis/..%2f..', want: { status: 400 } },
    DotSegment: { reason: 'a plain .. segment is refused too', raw: '/apis/../healthz', want: { status: 400 } },
    EmptySegment: { reason: '// is no path the API serves', raw: '//healthz', want: { status: 400 } },
    AbsoluteForm: { reason: 'a proxy-style absolute target is not served', raw: 'http://evil.example/healthz', want: { status: 400 } },
    Asterisk: { reason: 'OPTIONS * is not served', raw: '*', want: { status: 400 } },
    Missing: { reason: 'no target at all', raw: undefined, want: { status: 400 } },
    TooLong: { reason: 'a huge target is refused before any work', raw: `/${'a'.repeat(MAX_TARGET_CHARS)}`, want: { status: 414 } },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      const got = parseRequestTarget(tc.raw);
      if (tc.want.status !== undefined) {
        expect(got.ok, tc.reason).to.equal(false);
        if (!got.ok) expect(got.status, tc.reason).to.equal(tc.want.status);
        return;
      }
      expect(got.ok, tc.reason).to.equal(true);
      if (!got.ok) return;
      expect(got.segments, tc.reason).to.deep.equal(tc.want.segments);
      for (const [k, v] of Object.entries(tc.want.query ?? {})) expect(got.query.get(k), tc.reason).to.equal(v);
    });
  }
});
