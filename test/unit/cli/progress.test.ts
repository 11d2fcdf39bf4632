import { expect } from 'chai';
import sinon from 'sinon';
import { Progress } from '../../../src/cli/progress.js';
import { systemClock } from '../../../src/shared/clock.js';

/** A stream that records what is written; a terminal when `isTTY`. */
class FakeStream {
  readonly writes: string[] = [];
  constructor(readonly isTTY: boolean, readonly columns = 100) {}
  write(text: string): boolean { this.writes.push(text); return true; }
  get text(): string { return this.writes.join(''); }
}

describe('Progress', () => {
  let clock: sinon.SinonFakeTimers;
  beforeEach(() => { clock = sinon.useFakeTimers({ now: 0 }); });
  afterEach(() => clock.restore());

  it('writes plain lines elsewhere than a terminal: one per change, none for repeats', () => {
    const out = new FakeStream(false);
    const p = new Progress({ stream: out, label: 'waiting for Ready', total: 3, unit: 'containers', clock: systemClock });
    p.update(0, 'waiting for a, b, c');
    p.update(0, 'waiting for a, b, c');
    p.update(2, 'waiting for c');
    clock.tick(3_000);
    p.finish('3 containers done');
    expect(out.writes).to.deep.equal([
      'waiting for Ready: 0/3 containers waiting for a, b, c\n',
      'waiting for Ready: 2/3 containers waiting for c\n',
      'waiting for Ready: 3 containers done (3s)\n',
    ]);
  });

  it('on a terminal redraws one line with a bar, at most every 100 ms, and ends on a fresh line', () => {
    const out = new FakeStream(true);
    const p = new Progress({ stream: out, label: 'pulling', total: 4, unit: 'MiB', clock: systemClock });
    p.update(1, 'layer 1');
    p.update(2, 'layer 2');
    p.update(3, 'layer 3');
    expect(out.writes).to.deep.equal(['\r\x1b[2Kpulling [#####...............] 1/4 MiB 25% 0s  layer 1']);
    clock.tick(100);
    expect(out.writes[1]).to.equal('\r\x1b[2Kpulling [###############.....] 3/4 MiB 75% 0s  layer 3');
    clock.tick(65_000);
    p.finish('done');
    expect(out.writes.at(-1)).to.equal('\r\x1b[2Kpulling: done (1m05s)\n');
    expect(out.text).to.not.include('\n\r');
  });

  it('never draws wider than the terminal', () => {
    const out = new FakeStream(true, 30);
    new Progress({ stream: out, label: 'a long label that does not fit', clock: systemClock }).update(7, 'and a long step');
    const line = out.writes[0]!.replace('\r\x1b[2K', '');
    expect(line.length).to.be.below(30);
    expect(line.endsWith('…')).to.equal(true);
  });
});
