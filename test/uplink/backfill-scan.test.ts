// The backfill reads record files in bounded windows and continues by byte offset: a 6 MB
// segment backfilled with a 256 KiB read budget per scan round arrives whole, once, in order; a
// range request whose batch edges fall inside one millisecond (three records per ms, 7 records
// per batch) sends every record of the range exactly once. Real record files, a real strict
// pang peer; the index is a fixed row list (the reader's list() contract).
import assert from 'node:assert/strict';
import { appendFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { BackfillService } from '../../runtime/uplink/backfill.js';
import { parseTsPrefixed } from '../../runtime/uplink/backfill-plan.js';
import { SpanLog } from '../../runtime/uplink/spans.js';
import { encodeFileHeader, encodeRecord } from '../../recordings/record-file.js';
import type { SegmentRow } from '../../recordings/index-db.js';
import { fastBackoff, tempDir, waitFor } from '../egress/helpers.js';
import { CHAN, thinLink } from './thin-link.js';

const imu = { channel: 'cam', source: 'base', track: 'imu' };

/** One closed record segment of `n` records (`pad` bytes each), three per millisecond. */
function segment(root: string, rel: string, n: number, wall0: number, pad: number): { row: SegmentRow; walls: number[] } {
  mkdirSync(join(root, rel, '..'), { recursive: true });
  const file = join(root, rel);
  writeFileSync(file, encodeFileHeader({ v: 1, channel: imu.channel, source: imu.source, track: imu.track, mime: 'application/json', startUs: 0, wallMs: wall0, offsetUs: 0, run: 'r' }));
  const walls: number[] = [];
  const chunk: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const wall = wall0 + Math.floor(i / 3);
    walls.push(wall);
    chunk.push(encodeRecord(i * 333, wall, Buffer.from(JSON.stringify({ seq: i, pad: 'x'.repeat(pad) }))));
    if (chunk.length === 500) appendFileSync(file, Buffer.concat(chunk.splice(0)));
  }
  appendFileSync(file, Buffer.concat(chunk));
  const row = { path: rel, channel: imu.channel, source: imu.source, track: imu.track, mime: 'application/json', kind: 'data', state: 'closed', wall_start_ms: wall0, wall_end_ms: walls[walls.length - 1]!, present: 1 } as SegmentRow;
  return { row, walls };
}

async function service(t: TestContext, root: string, rows: SegmentRow[], auto: boolean, opts: { batchRecords: number; maxReadBytesPerScan: number }) {
  const link = await thinLink(t, 'shared');
  const bf = new BackfillService({
    tracks: [{ upstream: 'up0:cam/base/imu', from: imu, endpoint: { url: link.url, channel: CHAN, source: 'base', track: 'imu.backfill' }, auto, live: null }],
    recordings: () => ({
      root,
      reader: () => ({
        list: (q: { fromMs?: number; toMs?: number }) => rows.filter((r) => r.wall_end_ms >= (q.fromMs ?? -Infinity) && r.wall_start_ms <= (q.toMs ?? Infinity)),
        db: null as never, // delivery spans unreadable: the in-memory logs hold this run's deliveries
      }),
    }),
    liveSpans: new SpanLog(),
    backfilled: new SpanLog(),
    log: silentLog,
    backoff: fastBackoff,
    liveLinks: () => [],
    settleMs: 0,
    scanMs: 20,
    // The read budget is under test here, not the Moth-relay pacing (20 ms/message would make 3000
    // records a minute): the pacing has its own scenario against a strict ring relay.
    minIntervalMs: 2,
    ...opts,
  });
  bf.start();
  t.after(() => bf.close());
  const got = (): Array<{ seq: number; wall: number }> =>
    link.received('imu.backfill').map((m) => {
      const p = parseTsPrefixed(m);
      return { seq: (JSON.parse(p.payload.toString()) as { seq: number }).seq, wall: p.wallMs };
    });
  return { bf, got };
}

test('a 6 MB segment backfilled with a 256 KiB read budget per round: every record once, in order, with its wallclock', { timeout: 120_000 }, async (t) => {
  const root = await tempDir(t, 'bf-scan-');
  const wall0 = Date.now() - 3600_000;
  const seg = segment(root, 'cam/base/imu/a.rec', 3000, wall0, 2000);
  const { bf, got } = await service(t, root, [seg.row], true, { batchRecords: 400, maxReadBytesPerScan: 256 * 1024 });
  await waitFor(() => got().length >= 3000, 90_000, () => { const s = new Set(got().map((x) => x.seq)); const m = seg.walls.map((_, i) => i).filter((i) => !s.has(i)); return `${got().length} of 3000 backfilled; missing ${m.length}: ${m.slice(0, 30).join(',')} stats ${JSON.stringify(bf.stats().tracks[0])}`; });
  const g = got();
  assert.deepEqual(g.map((x) => x.seq), seg.walls.map((_, i) => i), 'every record once, in file order');
  assert.deepEqual(g.map((x) => x.wall), seg.walls, 'each with its capture wallclock');
  const st = bf.stats().tracks[0]!;
  assert.equal(st.readErrors, 0);
  assert.ok(st.batches >= 8, `${st.batches} batches of ≤ 400 records`);
});

test('a range whose batch edges fall inside one millisecond sends every record of the range exactly once', { timeout: 60_000 }, async (t) => {
  const root = await tempDir(t, 'bf-scan-');
  const wall0 = Date.now() - 3600_000;
  const seg = segment(root, 'cam/base/imu/b.rec', 300, wall0, 20);
  const { bf, got } = await service(t, root, [seg.row], false, { batchRecords: 7, maxReadBytesPerScan: 4096 });
  const from = wall0 + 10;
  const to = wall0 + 60;
  const want = seg.walls.flatMap((w, i) => (w >= from && w <= to ? [i] : []));
  const r = bf.requestRange({ id: 'r1', track: 'cam/base/imu', fromMs: from, toMs: to });
  assert.ok(r.ok);
  await waitFor(() => bf.stats().rangeRequests.completed === 1, 30_000, 'range completed');
  await waitFor(() => got().length >= want.length, 10_000, () => `${got().length} of ${want.length}`);
  assert.deepEqual(got().map((x) => x.seq), want, 'every record of the range, once, in order (3 per ms, batches of 7)');
});
