// Uplink estimator: never negative, converges to the true rate of a synthetic drain, O(1) state,
// lower-bound vs confident, the drain meter's arithmetic.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { AckMeter, CounterMeter, UplinkEstimator, wsClientFrameBytes, type DrainSample } from '../../runtime/uplink/estimator.js';

const sampleArb: fc.Arbitrary<DrainSample> = fc.record({
  bytes: fc.oneof(fc.double({ noNaN: false }), fc.integer({ min: -1e9, max: 1e9 })),
  intervalMs: fc.oneof(fc.double({ noNaN: false }), fc.integer({ min: -10, max: 60_000 })),
  backlogged: fc.boolean(),
  source: fc.constantFrom('pang' as const, 'sync' as const),
  atMs: fc.oneof(fc.double({ noNaN: false }), fc.integer({ min: 0, max: 1e12 })),
});

test('never negative, never NaN, for arbitrary (hostile) samples', () => {
  fc.assert(
    fc.property(fc.array(sampleArb, { maxLength: 200 }), (samples) => {
      const e = new UplinkEstimator();
      for (const s of samples) {
        e.add(s);
        const r = e.estimate();
        if (r.bytesPerSec !== null) assert.ok(Number.isFinite(r.bytesPerSec) && r.bytesPerSec >= 0, `estimate ${r.bytesPerSec}`);
        assert.ok(Number.isFinite(r.carriedBytesPerSec) && r.carriedBytesPerSec >= 0);
      }
      const r = e.estimate();
      assert.equal(r.samples + r.rejected, samples.length);
    }),
  );
});

test('converges to the true rate of a synthetic backlogged drain (with jitter)', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1_000, max: 50_000_000 }), // true bytes/s
      fc.integer({ min: 100, max: 1000 }), // tick ms
      fc.array(fc.double({ min: -0.2, max: 0.2, noNaN: true }), { minLength: 8, maxLength: 8 }), // jitter pattern
      fc.option(fc.integer({ min: 1, max: 100_000_000 }), { nil: undefined }), // stale earlier rate
      (rate, tick, jitter, earlier) => {
        const e = new UplinkEstimator();
        let t = 0;
        if (earlier !== undefined) for (let i = 0; i < 20; i++) e.add({ bytes: (earlier * tick) / 1000, intervalMs: tick, backlogged: true, source: 'pang', atMs: (t += tick) });
        // 60 s of drain at `rate`, each tick's bytes jittered ±20 % (zero-mean over the pattern cycle)
        const zeroMean = jitter.map((j) => j - jitter.reduce((a, b) => a + b, 0) / jitter.length);
        for (let i = 0; t < 60_000 + (earlier ? 20 * tick : 0); i++) {
          const iv = tick;
          e.add({ bytes: ((rate * iv) / 1000) * (1 + zeroMean[i % zeroMean.length]!), intervalMs: iv, backlogged: true, source: 'pang', atMs: (t += iv) });
        }
        const r = e.estimate(t);
        assert.ok(r.confident, 'confident after a minute of backlogged samples');
        const err = Math.abs(r.bytesPerSec! - rate) / rate;
        assert.ok(err < 0.25, `estimate ${r.bytesPerSec} vs true ${rate} (err ${(err * 100).toFixed(1)} %)`);
      },
    ),
    { numRuns: 200 },
  );
});

test('a rate drop is followed within a few half-lives', () => {
  const e = new UplinkEstimator({ halfLifeMs: 3000 });
  let t = 0;
  for (let i = 0; i < 100; i++) e.add({ bytes: 1_000_000 / 2, intervalMs: 500, backlogged: true, source: 'pang', atMs: (t += 500) });
  for (let i = 0; i < 30; i++) e.add({ bytes: 100_000 / 2, intervalMs: 500, backlogged: true, source: 'pang', atMs: (t += 500) });
  const r = e.estimate(t);
  assert.ok(r.bytesPerSec! < 130_000, `followed the drop to 100 kB/s: ${r.bytesPerSec}`);
});

test('bounded memory: state size does not grow with the number of samples', () => {
  fc.assert(
    fc.property(fc.array(sampleArb, { minLength: 1, maxLength: 50 }), (samples) => {
      const e = new UplinkEstimator();
      for (const s of samples) e.add(s);
      const before = JSON.stringify(e).length;
      for (let i = 0; i < 5000; i++) e.add(samples[i % samples.length]!);
      // Counters may gain digits; no per-sample storage.
      assert.ok(JSON.stringify(e).length <= before + 64, `state grew from ${before} to ${JSON.stringify(e).length}`);
    }),
    { numRuns: 50 },
  );
});

test('unbacklogged samples are a lower bound: raise the estimate, never confident', () => {
  const e = new UplinkEstimator();
  let t = 0;
  for (let i = 0; i < 100; i++) e.add({ bytes: 50_000, intervalMs: 500, backlogged: false, source: 'pang', atMs: (t += 500) });
  let r = e.estimate(t);
  assert.equal(r.bytesPerSec, 100_000);
  assert.equal(r.confident, false);
  // Capacity measured at 80 kB/s (backlogged), then an idle carried 100 kB/s proves more.
  for (let i = 0; i < 20; i++) e.add({ bytes: 40_000, intervalMs: 500, backlogged: true, source: 'pang', atMs: (t += 500) });
  r = e.estimate(t);
  assert.ok(r.bytesPerSec! < 100_000 && r.confident);
  // A short unbacklogged burst is no proof (acks arrive in bursts); a whole second of it is.
  e.add({ bytes: 60_000, intervalMs: 250, backlogged: false, source: 'pang', atMs: (t += 250) });
  assert.ok(e.estimate(t).bytesPerSec! < 100_000, 'one 250 ms burst of 240 kB/s does not raise the estimate');
  e.add({ bytes: 120_000, intervalMs: 1000, backlogged: false, source: 'sync', atMs: (t += 1000) });
  assert.equal(e.estimate(t).bytesPerSec, 120_000);
  assert.equal(e.estimate(t).bySource.sync, 1);
  assert.equal(e.estimate(t + 60_000).confident, false, 'stale after silence');
});

test('ack meter: acknowledged bytes per interval; backlogged only when bytes waited at both ends', () => {
  const m = new AckMeter();
  assert.equal(m.observe(0, 0, false), null);
  assert.deepEqual(m.observe(500, 6_000, true), { bytes: 6_000, intervalMs: 500, backlogged: false, source: 'pang', atMs: 500 });
  assert.deepEqual(m.observe(1000, 12_000, true), { bytes: 6_000, intervalMs: 500, backlogged: true, source: 'pang', atMs: 1000 });
  assert.equal(m.observe(1000, 15_000, true), null, 'zero interval');
  assert.equal(m.observe(1500, 10, true), null, 'a counter going back (new session) restarts');
  m.reset();
  assert.equal(m.observe(2000, 0, false), null, 'fresh after reset');
  const c = new CounterMeter();
  assert.equal(c.observe(0, 100), null);
  assert.equal(c.observe(1000, 600)!.bytes, 500);
  assert.equal(c.observe(2000, 10), null, 'a counter reset restarts');
  assert.equal(wsClientFrameBytes(0), 6);
  assert.equal(wsClientFrameBytes(126), 126 + 8);
  assert.equal(wsClientFrameBytes(70_000), 70_000 + 14);
});

test('ack meter + estimator against a simulated link acknowledging at a fixed rate', () => {
  fc.assert(
    fc.property(fc.integer({ min: 10_000, max: 5_000_000 }), fc.integer({ min: 2, max: 5 }), (linkRate, overload) => {
      // Offer `overload`× the link rate; the link acknowledges linkRate and the rest waits.
      const m = new AckMeter();
      const e = new UplinkEstimator();
      let acked = 0;
      let buffered = 0;
      for (let t = 0; t <= 30_000; t += 100) {
        const offer = (linkRate * overload) / 10;
        buffered += offer;
        const carried = Math.min(buffered, linkRate / 10);
        buffered -= carried;
        acked += carried;
        const s = m.observe(t, acked, buffered > 0);
        if (s) e.add(s);
      }
      const r = e.estimate(30_000);
      assert.ok(r.confident);
      assert.ok(Math.abs(r.bytesPerSec! - linkRate) / linkRate < 0.01, `${r.bytesPerSec} vs ${linkRate}`);
    }),
    { numRuns: 100 },
  );
});
