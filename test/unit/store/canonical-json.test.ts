import { expect } from 'chai';
import { canonicalEqual, canonicalJson } from '../../../src/store/desired.js';

/** The definition canonicalJson must keep matching byte for byte: spec hashes made with it are stored. */
function reference(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v);
}

describe('canonicalJson', () => {
  const cases: Record<string, { reason: string; value: unknown; want?: string }> = {
    SortedKeys: { reason: 'key order does not matter', value: { b: 1, a: { d: [3, { z: 1, y: 2 }], c: null } }, want: '{"a":{"c":null,"d":[3,{"y":2,"z":1}]},"b":1}' },
    IndexKeysFirst: { reason: 'array-index keys come first in numeric order, as in any JavaScript object', value: { b: 1, 10: 'x', 9: 'y', '01': 'z', a: 2 } },
    BigIndex: { reason: '4294967295 is no array index; 4294967294 is', value: { 4294967295: 1, 4294967294: 2, a: 3 } },
    Undefined: { reason: 'undefined properties are left out, undefined elements are null', value: { a: undefined, b: [undefined, () => 1], c: 1 }, want: '{"b":[null,null],"c":1}' },
    Numbers: { reason: 'non-finite numbers are null, -0 is 0, exponents as JSON writes them', value: [NaN, Infinity, -0, 1e21, 1.5e-7, 268435456] },
    Strings: { reason: 'escapes as JSON does, lone surrogates too', value: { 'k"ey': 'a\n"b"\u2028\ud800', ü: 'ß' } },
    Dates: { reason: 'toJSON is called', value: { at: new Date(Date.UTC(2026, 0, 1)) } },
    Empty: { reason: 'empty objects and arrays', value: { a: {}, b: [] }, want: '{"a":{},"b":[]}' },
    TopLevel: { reason: 'scalars and null at the top', value: [null, 'x', 1, true] },
    UnicodeOrder: { reason: 'keys sort by UTF-16 code units, not by locale', value: { é: 1, z: 2, Z: 3, '\ud83d\ude00': 4, 'ﬀ': 5 } },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      expect(canonicalJson(tc.value), tc.reason).to.equal(reference(tc.value));
      if (tc.want !== undefined) expect(canonicalJson(tc.value), tc.reason).to.equal(tc.want);
    });
  }

  it('matches the definition on many generated documents', () => {
    let seed = 42;
    const random = (): number => { seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31; return seed / 2 ** 31; };
    const keys = ['a', 'b', 'Z', '0', '1', '10', '2', 'name', 'é', '-1', '1.5', 'spec', '007'];
    const gen = (depth: number): unknown => {
      const r = random();
      if (depth > 3 || r < 0.3) return [1, -2.5, 'text', null, true, undefined][Math.floor(random() * 6)];
      if (r < 0.6) return Array.from({ length: Math.floor(random() * 4) }, () => gen(depth + 1));
      return Object.fromEntries(Array.from({ length: Math.floor(random() * 6) }, () => [keys[Math.floor(random() * keys.length)] ?? 'k', gen(depth + 1)]));
    };
    for (let i = 0; i < 2_000; i++) {
      const doc = gen(0);
      expect(canonicalJson(doc), JSON.stringify(doc)).to.equal(reference(doc));
    }
  });
});

describe('canonicalEqual', () => {
  const cases: Record<string, { reason: string; a: unknown; b: unknown; want: boolean }> = {
    KeyOrder: { reason: 'key order does not matter', a: { a: 1, b: [1, { c: 2, d: 3 }] }, b: { b: [1, { d: 3, c: 2 }], a: 1 }, want: true },
    UndefinedIsAbsent: { reason: 'JSON leaves undefined properties out', a: { a: 1, b: undefined }, b: { a: 1 }, want: true },
    UndefinedElementIsNull: { reason: 'JSON writes an undefined element as null', a: [undefined], b: [null], want: true },
    NonFiniteIsNull: { reason: 'NaN and Infinity are null in JSON', a: { n: NaN }, b: { n: null }, want: true },
    ValueDiffers: { reason: 'one nested value differs', a: { c: [{ m: 'x' }] }, b: { c: [{ m: 'y' }] }, want: false },
    ExtraKey: { reason: 'a key only one side has', a: { a: 1 }, b: { a: 1, b: 2 }, want: false },
    ArrayVsObject: { reason: 'an array is no object', a: { 0: 1 }, b: [1], want: false },
    Dates: { reason: 'toJSON decides', a: { at: new Date(0) }, b: { at: '1970-01-01T00:00:00.000Z' }, want: true },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      expect(canonicalEqual(tc.a, tc.b), tc.reason).to.equal(tc.want);
      expect(canonicalJson(tc.a) === canonicalJson(tc.b), `the definition: ${tc.reason}`).to.equal(tc.want);
    });
  }

  it('agrees with comparing canonicalJson on many generated pairs', () => {
    let seed = 7;
    const random = (): number => { seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31; return seed / 2 ** 31; };
    const leaves = [1, 2, 'a', 'b', null, true, undefined, NaN];
    const gen = (depth: number): unknown => {
      const r = random();
      if (depth > 2 || r < 0.35) return leaves[Math.floor(random() * leaves.length)];
      if (r < 0.6) return Array.from({ length: Math.floor(random() * 3) }, () => gen(depth + 1));
      return Object.fromEntries(Array.from({ length: Math.floor(random() * 4) }, () => [['a', 'b', 'c', '0'][Math.floor(random() * 4)] ?? 'a', gen(depth + 1)]));
    };
    let equalPairs = 0;
    for (let i = 0; i < 5_000; i++) {
      const a = gen(0);
      const b = random() < 0.5 ? JSON.parse(JSON.stringify(a ?? null)) as unknown : gen(0);
      const want = canonicalJson(a) === canonicalJson(b);
      if (want) equalPairs++;
      expect(canonicalEqual(a, b), `${canonicalJson(a)} vs ${canonicalJson(b)}`).to.equal(want);
    }
    expect(equalPairs, 'the pairs cover both answers').to.be.greaterThan(500);
  });
});
