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
  assert.ok(steps.every((s) => Math.abs(s - 33_333) <= 1), `steps ${steps}`);
  assert.equal(c.stats().bumped, 0);
  assert.equal(c.stats().reanchors, 0);
});

test('re-anchors on a restart or a jump of the source clock; strictly increasing, also above the previous run', () => {
  const c = new SourceClock({ notBeforeUs: 5_000_000 });
  assert.equal(c.map(0, 4_000_000), 5_000_001, 'above the previous run');
  assert.equal(c.map(1_200_000, 5_200_000), 5_200_000);
  assert.equal(c.map(1_300_000, 5_350_000), 5_300_000, 'the source spacing, not the arrival spacing');
  // the encoder restarted: its clock goes back to 0
  assert.equal(c.map(0, 5_400_000), 5_400_000);
  assert.equal(c.stats().reanchors, 1);
  // a jump ahead beyond maxLead (1 s): re-anchor at arrival
  assert.equal(c.map(3_000_000, 5_500_000), 5_500_000);
  assert.equal(c.stats().reanchors, 2);
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

test('an encoder flushing its lookahead at the end (frames arrive before their time) keeps the spacing', () => {
  const c = new SourceClock();
  const out: number[] = [];
  // 25 fps, 10 frames of encoder delay in steady state; at the end the last 10 come out at once
  for (let n = 0; n < 100; n++) {
    const src = n * 40_000;
    const arrival = n < 90 ? src + 400_000 : 90 * 40_000 + 400_000 + (n - 90) * 10;
    out.push(c.map(src, arrival));
  }
  const steps = out.slice(1).map((v, i) => v - out[i]!);
  assert.ok(steps.every((s) => s === 40_000), `steps ${steps.filter((s) => s !== 40_000)}`);
  assert.equal(c.stats().reanchors, 0);
});

test('a slower source clock is followed (window minimum), not left behind without bound; jitter does not bend the spacing', () => {
  const c = new SourceClock();
  let lag = 0;
  let prev = 0;
  let odd = 0;
  // the source clock runs 200 ppm slow for an hour of 30 fps frames, arriving 10..14 ms late (jitter)
  for (let n = 0; n < 108_000; n++) {
    const src = n * 33_333;
    const arrival = src * 1.0002 + 10_000 + ((n * 7919) % 4000);
    const out = c.map(src, arrival);
    lag = arrival - out;
    if (n > 0 && Math.abs(out - prev - 33_333) > 10) odd++;
    prev = out;
  }
  assert.ok(lag < 10_000, `lag after an hour ${lag} µs`);
  assert.equal(c.stats().reanchors, 0);
  // only the drift steps (one per 10 s window) and the rare earliest arrival move a frame off the source spacing
  assert.ok(odd < 108_000 / 100, `frames off the source spacing: ${odd}`);
});

test('property: output strictly increases and never runs more than maxLead ahead of arrival (bumps aside)', () => {
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
          assert.ok(out <= Math.max(arr + 1_000_000, last + 1), `${out} > arrival ${arr} + 1 s`);
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
