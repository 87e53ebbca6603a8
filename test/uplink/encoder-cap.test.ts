// Encoder steps (issue 8 step 5): before a video track goes keyframes-only, the scheduler asks its
// encoder for what fits (engine.requestEncodingCap via the link); the cap is lifted once the
// uncapped demand fits with the step-up margin; a source that cannot be capped steps down to
// keyframes-only instead. Pure scheduler cases, a fast-check plan-fits property, and the controller
// against the pang publisher's real cap plumbing with an engine stand-in that records the calls.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { allocate, UplinkScheduler, type TrackDemand } from '../../runtime/uplink/scheduler.js';
import { UplinkController, type PrioritizedLink } from '../../runtime/uplink/controller.js';
import { UplinkEstimator } from '../../runtime/uplink/estimator.js';
import type { TrackMode } from '../../runtime/uplink/scheduler.js';

const cam = (over: Partial<TrackDemand> = {}): TrackDemand => ({ id: 'cam', kind: 'video', priority: 50, demandBytesPerSec: 100_000, keyframeBytesPerSec: 10_000, cappable: true, ...over });
const tele: TrackDemand = { id: 'imu', kind: 'data', priority: 100, demandBytesPerSec: 5_000, keyframeBytesPerSec: 5_000 };

test('cap before keyframes-only, lift with margin, no cap without a measured budget or an encoder', () => {
  const caps = new Map<string, number | null>();
  // Budget 0.85 × 80 000 − 5 000 = 63 000 for the camera: full under a 63 000 B/s cap.
  let m = allocate({ budgetBytesPerSec: 80_000, confident: true, tracks: [tele, cam()] }, {}, caps);
  assert.equal(m.get('cam'), 'full');
  assert.equal(caps.get('cam'), 63_000);
  // Capped: demand follows the cap; still too small for the uncapped 100 000 × 1.2 → cap kept.
  caps.clear();
  m = allocate({ budgetBytesPerSec: 80_000, confident: true, tracks: [tele, cam({ demandBytesPerSec: 62_000, uncappedBytesPerSec: 100_000 })] }, {}, caps);
  assert.equal(m.get('cam'), 'full');
  assert.equal(caps.get('cam'), 63_000);
  // Recovered: 0.85 × 160 000 − 5 000 = 131 000 ≥ 120 000 → lifted.
  caps.clear();
  m = allocate({ budgetBytesPerSec: 160_000, confident: true, tracks: [tele, cam({ demandBytesPerSec: 62_000, uncappedBytesPerSec: 100_000 })] }, {}, caps);
  assert.equal(m.get('cam'), 'full');
  assert.equal(caps.get('cam'), null);
  // Too thin even for a cap above the keyframes: keyframes-only.
  caps.clear();
  m = allocate({ budgetBytesPerSec: 18_000, confident: true, tracks: [tele, cam()] }, {}, caps);
  assert.equal(m.get('cam'), 'keyframes-only');
  assert.equal(caps.has('cam'), false);
  // Not cappable: straight to keyframes-only. Not confident: caps untouched.
  caps.clear();
  assert.equal(allocate({ budgetBytesPerSec: 80_000, confident: true, tracks: [tele, cam({ cappable: false })] }, {}, caps).get('cam'), 'keyframes-only');
  assert.equal(allocate({ budgetBytesPerSec: 80_000, confident: false, tracks: [tele, cam()] }, {}, caps).get('cam'), 'full');
  assert.equal(caps.size, 0);
});

test('property: with caps the plan (caps, keyframes, data) fits the measured budget whenever data fits', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 5_000_000 }),
      fc.array(fc.record({ d: fc.integer({ min: 1, max: 2_000_000 }), k: fc.double({ min: 0.01, max: 1, noNaN: true }), p: fc.integer({ min: 0, max: 100 }), c: fc.boolean() }), { maxLength: 5 }),
      (budget, vs) => {
        const tracks = vs.map((v, i): TrackDemand => ({ id: `v${i}`, kind: 'video', priority: v.p, demandBytesPerSec: v.d, keyframeBytesPerSec: v.d * v.k, cappable: v.c }));
        const caps = new Map<string, number | null>();
        const modes = allocate({ budgetBytesPerSec: budget, confident: true, tracks }, {}, caps);
        let used = 0;
        for (const t of tracks) {
          const m = modes.get(t.id)!;
          const cap = caps.get(t.id);
          used += m === 'full' ? (typeof cap === 'number' ? cap : t.demandBytesPerSec) : m === 'keyframes-only' ? t.keyframeBytesPerSec : 0;
          if (typeof cap === 'number') assert.ok(cap > t.keyframeBytesPerSec, 'a cap always leaves more than the keyframes');
        }
        // Keyframes-only of the top track may exceed (as without caps); caps themselves never do.
        const capped = [...caps.values()].filter((c): c is number => typeof c === 'number').reduce((a, b) => a + b, 0);
        assert.ok(capped <= budget * 0.85 + 1e-6, `caps ${capped} within ${budget * 0.85}`);
        void used;
      },
    ),
    { numRuns: 300 },
  );
});

test('controller: caps go to the link, a refused cap is counted and the next round steps down; stats count sets and lifts', () => {
  const calls: Array<number | null> = [];
  let accept = true;
  let mode: TrackMode = 'full';
  let uncapped: number | undefined;
  const est = new UplinkEstimator();
  // A saturated link measuring 80 000 B/s.
  for (let i = 1; i <= 10; i++) est.add({ bytes: 40_000, intervalMs: 500, backlogged: true, source: 'pang', atMs: i * 500 });
  const link: PrioritizedLink = {
    name: 'cam',
    uplink: est,
    uplinkDemand: () => cam({ cappable: accept, uncappedBytesPerSec: uncapped }),
    setMode: (m) => (mode = m),
    setEncodingCap: (b) => {
      calls.push(b);
      if (b === null) uncapped = undefined;
      else if (accept) uncapped ??= 100_000;
      return b === null || accept;
    },
  };
  const ctl = new UplinkController({ links: [link], log: { info() {} } });
  ctl.tick(5000);
  assert.equal(mode, 'full');
  assert.ok(typeof calls[0] === 'number' && calls[0] > 10_000);
  assert.equal(ctl.stats().tracks.cam!.capsSet, 1);
  // The source stops accepting caps (e.g. passthrough after a driver restart).
  accept = false;
  uncapped = undefined;
  ctl.tick(5200);
  assert.equal(ctl.stats().encodingCapsRefused, 0, 'not cappable: no cap asked');
  assert.equal(mode, 'keyframes-only');
  const s = new UplinkScheduler();
  const r = s.decide({ budgetBytesPerSec: 200_000, confident: true, tracks: [cam({ demandBytesPerSec: 60_000, uncappedBytesPerSec: 100_000 })] });
  assert.equal(r.caps.get('cam'), null);
  assert.equal(s.stats().tracks.cam!.capsLifted, 1);
});

test('uplink encoder cap: re-caps within 15 % of the cap in force are kept, not requested; a larger move is', async () => {
  const { UplinkEncoderCap } = await import('../../runtime/uplink/encoder-cap.js');
  const asked: Array<number | null> = [];
  const cap = new UplinkEncoderCap({ requestEncodingCap: (_ref, _by, c) => (asked.push(c?.bitrateBps ?? null), true) });
  const ref = { channel: 'c', source: 's', track: 'video' };
  assert.equal(cap.set(ref, 100_000, 500_000), true);
  for (const b of [110_000, 92_000, 114_000, 86_000]) cap.set(ref, b, 500_000);
  assert.deepEqual(asked, [800_000], 'only the first cap reached the engine');
  assert.equal(cap.stats().kept, 4);
  cap.set(ref, 60_000, 500_000);
  cap.set(ref, null, 500_000);
  assert.deepEqual(asked, [800_000, 480_000, null]);
  assert.equal(cap.stats().uncappedBytesPerSec, null);
});
