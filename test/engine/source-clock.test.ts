// SourceClock: a source's media clock mapped onto the capture clock (issue 15: repeated
// timestamps after a stall). Tables for the cases, fast-check for the invariants.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { MsUnwrapper, SourceClock } from '../../runtime/engine/source-clock.js';

test('a stall: frames that arrive in one burst keep the source spacing', () => {
  const c = new SourceClock();
  const out: number[] = [];
  // 30 fps source; frames 0..9 on time (+20 ms pipe delay), 10..21 held 0.4 s then written within 5 µs
  for (let n = 0; n < 22; n++) {
    const src = n * 33_333;
    const arrival = n < 10 ? 1_000_000 + src + 20_000 : 1_000_000 + 21 * 33_333 + 20_000 + (n - 10) * 0.5;
    out.push(c.map(src, arrival));
  }
  const steps = out.slice(1).map((v, i) => v - out[i]!);
  // the slew may add its 1000 ppm to late frames; nothing near the µs apart they arrived with
  assert.ok(steps.every((s) => Math.abs(s - 33_333) <= 500), `steps ${steps}`);
  assert.equal(c.stats().bumped, 0);
  assert.equal(c.stats().reanchors, 0);
});

test('never in the future, re-anchors on a restart of the source clock, strictly increasing', () => {
  const c = new SourceClock({ notBeforeUs: 5_000_000 });
  assert.equal(c.map(0, 4_000_000), 5_000_001, 'above the previous run');
  assert.equal(c.map(1_200_000, 5_200_000), 5_200_000);
  const b = c.map(1_300_000, 5_350_000);
  assert.ok(b >= 5_300_000 && b <= 5_300_100, `the source spacing (+ ≤ 1000 ppm slew), not the arrival spacing: ${b}`);
  // the encoder restarted: its clock goes back to 0
  assert.equal(c.map(0, 5_400_000), 5_400_000);
  assert.equal(c.stats().reanchors, 1);
  // equal source times (no clock: arrival only) never give equal output
  const d = new SourceClock();
  assert.ok(d.map(10, 10) < d.map(10, 10));
  assert.equal(d.stats().bumped, 1);
  // a source far behind arrival (> maxLag) re-anchors
  const e = new SourceClock({ maxLagUs: 1_000_000 });
  e.map(0, 0);
  assert.equal(e.map(33_000, 2_000_000), 2_000_000);
  assert.equal(e.stats().reanchors, 1);
});

test('a slower source clock is followed (slew), not left behind without bound', () => {
  const c = new SourceClock();
  let lag = 0;
  // the source clock runs 200 ppm slow for an hour of 30 fps frames
  for (let n = 0; n < 108_000; n++) {
    const src = n * 33_333;
    const arrival = src * 1.0002 + 10_000;
    lag = arrival - c.map(src, arrival);
  }
  assert.ok(lag < 50_000, `lag after an hour ${lag} µs`);
  assert.equal(c.stats().reanchors, 0);
});

test('property: output strictly increases and never runs ahead of arrival by more than the bumps', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ dSrc: fc.integer({ min: -2_000_000, max: 2_000_000 }), dArr: fc.integer({ min: 0, max: 3_000_000 }) }), { minLength: 1, maxLength: 300 }),
      (steps) => {
        const c = new SourceClock();
        let src = 0;
        let arr = 0;
        let last = -Infinity;
        for (const s of steps) {
          src += s.dSrc;
          arr += s.dArr;
          const out = c.map(src, arr);
          assert.ok(out > last);
          assert.ok(out <= Math.max(arr, last + 1), `${out} > arrival ${arr}`);
          last = out;
        }
      },
    ),
  );
});

test('MsUnwrapper: 32-bit millisecond clock across the wrap, small steps back kept signed', () => {
  const u = new MsUnwrapper();
  assert.equal(u.push(0xffff_fff0), 0xffff_fff0);
  assert.equal(u.push(0x10), 0x1_0000_0010);
  assert.equal(u.push(0x8), 0x1_0000_0008);
});
