import { expect } from 'chai';
import { missingDocs } from '../../../scripts/check-docs.js';

describe('check-docs', () => {
  const cases = {
    DocumentedFunctionPasses: { reason: 'a TSDoc line before it', source: '/** Adds. */\nexport function add(): void {}', want: [] },
    UndocumentedFunctionFails: { reason: 'no comment at all', source: 'export function add(): void {}', want: ['add'] },
    LineCommentIsNotADoc: { reason: 'a // comment is not TSDoc', source: '// adds\nexport function add(): void {}', want: ['add'] },
    PlainBlockCommentIsNotADoc: { reason: '/* */ is not TSDoc', source: '/* adds */\nexport class Adder {}', want: ['Adder'] },
    EveryKindIsChecked: {
      reason: 'interfaces, types, consts and enums are exports too',
      source: 'export interface A {}\nexport type B = string;\nexport const c = 1, d = 2;\nexport enum E { X }',
      want: ['A', 'B', 'c', 'd', 'E'],
    },
    PrivateDeclarationsAreNotChecked: {
      reason: 'only exports carry a contract', source: 'function helper(): void {}\nclass Inner {}', want: [],
    },
    ReExportsAreNotChecked: {
      reason: 'checked where they are declared', source: "export { add } from './add.js';\nexport type { A } from './a.js';", want: [],
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    it(name, () => {
      expect(missingDocs('x.ts', tc.source).map((m) => m.name), tc.reason).to.deep.equal(tc.want);
    });
  }

  it('NamesTheLine', () => {
    const source = '/** ok */\nexport const a = 1;\n\nexport const b = 2;';
    expect(missingDocs('x.ts', source)).to.deep.equal([{ file: 'x.ts', line: 4, name: 'b' }]);
  });
});
