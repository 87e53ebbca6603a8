// Span log and gap report arithmetic: joining, bounded ring/track cap, merge/subtract properties,
// report consistency (live + notLive tile the range; missing ⊆ recorded, disjoint from live).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { gapReport, mergeSpans, SpanLog, subtractSpans, type Span } from '../../runtime/uplink/spans.js';

test('frames closer than joinGap extend a span; a longer silence starts a new one', () => {
  const l = new SpanLog({ joinGapMs: 100 });
  for (const t of [1000, 1033, 1066, 1100, 1400, 1433]) l.add('c/s/v', t, 10);
  const r = l.live('c/s/v', 0, 5000);
  assert.deepEqual(r.spans, [
    { from: 1000, to: 1100, frames: 4, bytes: 40 },
    { from: 1400, to: 1433, frames: 2, bytes: 20 },
  ]);
  assert.deepEqual(l.live('c/s/v', 1050, 1420).spans.map((s) => [s.from, s.to]), [[1050, 1100], [1400, 1420]], 'clipped to the range');
  assert.equal(l.live('x/y/z', 0, 1).known, false);
});

test('bounded: ring per track and track cap, evictions counted, horizon reported', () => {
  const l = new SpanLog({ joinGapMs: 10, maxSpansPerTrack: 8, maxTracks: 3 });
  for (let i = 0; i < 100; i++) l.add('a/a/a', i * 100, 1);
  const r = l.live('a/a/a', 0, 1e9);
  assert.equal(r.spans.length, 8);
  assert.equal(r.spans[0]!.from, 9200, 'oldest first after wrap');
  assert.equal(r.horizon, 9100);
  for (const k of ['b/b/b', 'c/c/c', 'd/d/d']) l.add(k, 0, 1);
  assert.deepEqual(l.trackNames().sort(), ['b/b/b', 'c/c/c', 'd/d/d']);
  const st = l.stats();
  assert.equal(st.evictedSpans, 92);
  assert.equal(st.evictedTracks, 1);
  assert.ok(st.spans <= 3 * 8);
});

const spanArb: fc.Arbitrary<Span> = fc.tuple(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: 200 })).map(([a, d]) => ({ from: a, to: a + d }));
const covered = (s: Span[], x: number): boolean => s.some((y) => x >= y.from && x <= y.to);
const inside = (s: Span[], x: number): boolean => s.some((y) => x > y.from && x < y.to);

test('merge and subtract: point-wise set semantics', () => {
  fc.assert(
    fc.property(fc.array(spanArb, { maxLength: 12 }), fc.array(spanArb, { maxLength: 12 }), (a, b) => {
      const m = mergeSpans(a);
      for (let i = 1; i < m.length; i++) assert.ok(m[i]!.from > m[i - 1]!.to, 'sorted, disjoint');
      const d = subtractSpans(a, b);
      for (let x = 0; x <= 1200; x += 0.5) {
        assert.equal(covered(m, x), covered(a, x));
        // Interior points of the difference are in a and not in b; points in a and clearly out of b are covered.
        if (inside(d, x)) assert.ok(covered(a, x) && !inside(b, x), `x=${x}`);
        if (inside(a, x) && !covered(b, x)) assert.ok(covered(d, x), `x=${x} lost`);
      }
    }),
    { numRuns: 200 },
  );
});

test('gap report: live and notLive tile the range; missing is recorded minus live', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 2000 }), { maxLength: 60 }), fc.array(spanArb, { maxLength: 5 }), (frames, rec) => {
      const l = new SpanLog({ joinGapMs: 50 });
      for (const f of [...frames].sort((x, y) => x - y)) l.add('c/s/t', f, 1);
      const r = gapReport('c/s/t', 100, 1500, l.live('c/s/t', 100, 1500), rec);
      assert.ok(Math.abs(r.liveMs + r.notLiveMs - 1400) < 1e-9, `${r.liveMs} + ${r.notLiveMs}`);
      for (const f of frames) if (f >= 100 && f <= 1500) assert.ok(covered(r.live, f), `frame ${f} in a live span`);
      for (const s of r.missing!) assert.ok(!r.live.some((x) => x.from < s.to && x.to > s.from), 'missing disjoint from live');
      assert.ok(r.missingMs! <= rec.reduce((a, s) => a + Math.max(0, Math.min(s.to, 1500) - Math.max(s.from, 100)), 0) + 1e-9);
      assert.deepEqual(r.backfilled, []);
    }),
    { numRuns: 300 },
  );
});

test('hostile input: non-finite times ignored, negative bytes clamped', () => {
  const l = new SpanLog();
  l.add('a/b/c', NaN, 5);
  l.add('a/b/c', Infinity, 5);
  l.add('a/b/c', 10, -5);
  assert.deepEqual(l.live('a/b/c', 0, 100).spans, [{ from: 10, to: 10, frames: 1, bytes: 0 }]);
});

test('rekey: deliveries filed under an upstream name, so two upstreams of one track keep their own spans', async () => {
  const { rekey, teeSinks, SpanLog: Log } = await import('../../runtime/uplink/spans.js');
  const byTrack = new Log();
  const byUpstream = new Log();
  const a = teeSinks(byTrack, rekey(byUpstream, 'up0:c/s/imu'));
  const b = teeSinks(byTrack, rekey(byUpstream, 'up1:c/s/imu'));
  for (let t = 1000; t <= 5000; t += 100) a.add('c/s/imu', t, 10);
  for (let t = 1000; t <= 2000; t += 100) b.add('c/s/imu', t, 10);
  b.break?.('c/s/imu');
  assert.deepEqual(byUpstream.live('up0:c/s/imu', 0, 10_000).spans.map((s) => [s.from, s.to]), [[1000, 5000]]);
  assert.deepEqual(byUpstream.live('up1:c/s/imu', 0, 10_000).spans.map((s) => [s.from, s.to]), [[1000, 2000]], 'up1 still owes 2000–5000');
  assert.equal(byTrack.live('c/s/imu', 0, 10_000).spans.length >= 1, true);
});

test('issue 14: a live span and the backfill that took over join across one record interval (no phantom sliver)', () => {
  // 50 Hz: live to 2000, backfill from 2020 — the record after the live span's last one.
  const live = [{ from: 1000, to: 2000, frames: 51, bytes: 5100 }];
  const bf = [{ from: 2020, to: 3000, frames: 50, bytes: 5000 }];
  const rep = gapReport('c/s/imu', 1000, 3000, { spans: live, horizon: null }, [{ from: 1000, to: 3000 }], bf);
  assert.equal(rep.recordIntervalMs, 20);
  assert.equal(rep.missingMs, 0, `no sliver between the spans (${JSON.stringify(rep.missing)})`);
  // A real lost record between them (a 40 ms gap holds one record) stays missing.
  const lost = gapReport('c/s/imu', 1000, 3000, { spans: live, horizon: null }, [{ from: 1000, to: 3000 }], [{ from: 2040, to: 3000, frames: 49, bytes: 4900 }]);
  assert.deepEqual(lost.missing, [{ from: 2000, to: 2040 }]);
});

test('issue 14: live spans are listed once (memory and index copies), counts clipped to the range', () => {
  const mem = { from: 1000, to: 3000, frames: 101, bytes: 10_100 };
  const idx = { from: 1000, to: 2500, frames: 76, bytes: 7600 }; // the flushed copy, a second older
  const rep = gapReport('c/s/imu', 2000, 4000, { spans: [mem, idx], horizon: null }, null);
  assert.equal(rep.live.length, 1, JSON.stringify(rep.live));
  assert.equal(rep.liveMs, 1000, 'live time counted once');
  assert.ok(rep.live[0]!.frames >= 50 && rep.live[0]!.frames <= 52, `frames clipped to the half kept (${rep.live[0]!.frames})`);
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 0, max: 2000 }), fc.integer({ min: 1, max: 500 })), { maxLength: 20 }), fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 0, max: 5000 }), (raw, from, len) => {
      const spans = raw.map(([a, d, n]) => ({ from: a, to: a + d, frames: n, bytes: n * 10 }));
      const copies = [...spans, ...spans.map((s) => ({ ...s }))]; // every span twice
      const r = gapReport('c/s/t', from, from + len, { spans: copies, horizon: null }, null);
      assert.ok(r.liveMs <= len, `live ${r.liveMs} within the range ${len}`);
      for (let i = 1; i < r.live.length; i++) assert.ok(r.live[i]!.from > r.live[i - 1]!.to, 'disjoint, sorted');
    }),
  );
});
