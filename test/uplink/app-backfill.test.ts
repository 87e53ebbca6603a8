// Issue 8 wiring, end to end through the real App (runtime/app.ts): a simulated 50 Hz IMU and the
// test-pattern camera are published upstream to a strict pang peer through a shared thin-link
// proxy, with store-and-forward backfill on for the IMU and the IMU recorded to a temp root. The
// link is cut for a few seconds, then restored. The App alone must then: send the outage's IMU
// records on `imu.backfill` (MIME ts+…, each message prefixed with its capture wallclock µs) so
// that, with the live records, every recorded record arrives at least once and duplicates stay
// within the App's own in-doubt count; report them backfilled on its GET /api/gaps; answer a
// `backfill_range` request on its own /pang/ws/ctl (and serve it); and — egress closing before
// the recordings — leave every delivery span in the recordings index after app.close().
// Ground truth is what the App's recorder wrote (read back after close), not the test's guesses.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import WebSocket from 'ws';
import type { App } from '../../runtime/app.js';
import { parseTsPrefixed, tsMime } from '../../runtime/uplink/backfill-plan.js';
import type { GapReport, Span } from '../../runtime/uplink/spans.js';
import { IndexDb } from '../../recordings/index-db.js';
import { readDeliverySpans } from '../../recordings/delivery-spans.js';
import { scanSegmentRecords } from '../../recordings/record-reader.js';
import { startApp } from '../support/app.js';
import { fastBackoff, waitFor } from '../egress/helpers.js';
import { inDoubtOf, sleep } from './scenario.js';
import { CHAN, thinLink } from './thin-link.js';

/** The App's static channel (rs/xid form). */
const CH = 'appbackfi11000000000';
const IMU = { channel: CH, source: 'base', track: 'imu' };
const IMU_PATH = `${CH}/base/imu`;
const CUT_MS = 4000;

/** Seconds of [a, b] covered by the union of spans (closed intervals). */
function coveredMs(spans: Span[], a: number, b: number): number {
  const s = spans.map((x) => ({ from: Math.max(a, x.from), to: Math.min(b, x.to) })).filter((x) => x.to >= x.from).sort((x, y) => x.from - y.from);
  let total = 0;
  let end = -Infinity;
  for (const x of s) {
    const from = Math.max(x.from, end);
    if (x.to > from) total += x.to - from;
    end = Math.max(end, x.to);
  }
  return total;
}

test('App wiring: cut link → IMU backfilled with capture timestamps, /api/gaps, ctl backfill_range, spans persisted at close', { timeout: 60_000 }, async (t) => {
  const link = await thinLink(t, 'shared');
  const dir = await mkdtemp(join(tmpdir(), 'app-backfill-'));
  const root = join(dir, 'rec');
  let app: App | null = null;
  // One hook, in this order whatever order node:test runs hooks in: the App, then its files.
  t.after(async () => {
    await app?.close();
    await rm(dir, { recursive: true, force: true });
  });
  const up = (track: string, from: string, backfill: boolean) => ({ url: link.url, channel: CHAN, source: 'base', track, from, maxBufferedBytes: 256 * 1024, backfill });
  app = await startApp({
    channels: [
      {
        id: CH,
        name: 'robot',
        sources: [
          { name: 'base', driver: { kind: 'simulated', track: 'imu', sensor: 'imu', rateHz: 50 } },
          { name: 'base', driver: { kind: 'testpattern', width: 320, height: 240, fps: 10, bitrateKbps: 200 } },
        ],
      },
    ],
    recordings: { enabled: true, root, tracks: [IMU_PATH], fsyncIntervalMs: 250, fragmentDurationMs: 250, discoverMs: 100, segmentDurationMs: 10_000 },
    egress: {
      upstream: [up('imu', IMU_PATH, true), up('video', `${CH}/base/video`, false)],
      whep: { enabled: false },
      backoff: fastBackoff,
      backfill: { settleMs: 1000 },
    },
  });
  const a = app;
  const eg = a.egress;
  assert.ok(eg.backfill, 'the App built a backfill service (recordings + an upstream with backfill)');
  const bfStats = () => eg.backfill!.stats().tracks.find((x) => x.track === IMU_PATH)!;

  // What the peer got, parsed: live IMU seqs, backfilled seqs with their prefix wallclock.
  const seqOf = (payload: Buffer): number => (JSON.parse(payload.toString()) as { seq: number }).seq;
  const live = (): number[] => link.received('imu').map(seqOf);
  const backfilled = (): Array<{ seq: number; wallUs: bigint }> =>
    link.received('imu.backfill').map((m) => {
      const p = parseTsPrefixed(m);
      return { seq: seqOf(p.payload), wallUs: p.wallUs };
    });
  const video = (): number => link.received('video').length;

  // Live first, long enough that the App confirmed some of it (a live span before the cut).
  const liveConfirmed = (): number => eg.upstream.find((u) => u.stats().track === IMU_PATH)!.stats().spans.delivered;
  await waitFor(() => liveConfirmed() >= 50 && video() >= 5, 20_000, () => `confirmed live before the cut (imu ${live().length} received, ${liveConfirmed()} confirmed; video ${video()})`);
  link.proxy.cut();
  const cutAt = Date.now();
  await sleep(CUT_MS); // the outage itself (a duration of the scenario, not a wait-then-assert)
  link.proxy.restore();
  const restoredAt = Date.now();
  const liveAtRestore = live().length;
  const videoAtRestore = video();
  await waitFor(() => live().length > liveAtRestore + 10 && video() > videoAtRestore, 15_000, 'IMU and video live again after the restore');

  // The App says everything recorded up to well past the restore is delivered, nothing pending.
  await waitFor(
    () => {
      const s = bfStats();
      return (s.doneBefore ?? -Infinity) >= restoredAt + 1500 && s.link.queued === 0 && s.link.inFlight === 0;
    },
    30_000,
    () => `backfill done past the outage (${JSON.stringify({ restoredAt, ...bfStats(), link: undefined, queued: bfStats().link.queued, inFlight: bfStats().link.inFlight })})`,
  );
  // One synchronous snapshot: the window's end, what the peer got, the App's in-doubt count.
  const windowEnd = bfStats().doneBefore!;
  const gotLive = live();
  const gotBackfill = backfilled();
  const doubt = inDoubtOf(eg, IMU);

  // The backfill track announces the ts+ subtype prefix (application/json → application/ts+json).
  const mimes = link.peer.messages(`${CHAN}/base/imu.backfill`).filter((m) => !m.binary).map((m) => m.data.toString());
  assert.equal(tsMime('application/json'), 'application/ts+json');
  assert.ok(mimes.length > 0 && mimes.every((m) => m === 'application/ts+json'), `backfill MIME application/ts+json (${JSON.stringify(mimes.slice(0, 3))})`);

  // GET /api/gaps on the App's own port: the outage is backfilled, nothing recorded is missing.
  const gaps = async (from: number, to: number): Promise<GapReport> => {
    const r = await fetch(`http://127.0.0.1:${a.port}/api/gaps?track=${IMU_PATH}&from=${Math.floor(from)}&to=${Math.ceil(to)}`);
    assert.equal(r.status, 200);
    return (await r.json()) as GapReport;
  };
  const outage = await gaps(cutAt + 1500, restoredAt - 500);
  assert.ok(outage.missing !== null, 'the report sees the recordings (recorded spans wired)');
  assert.ok(outage.backfilled.length > 0, `backfilled spans reported for the outage (${JSON.stringify(outage)})`);
  const outageMs = restoredAt - 500 - (cutAt + 1500);
  assert.ok(outage.backfilledMs >= outageMs - 200, `the outage is reported backfilled (${outage.backfilledMs} of ${outageMs} ms)`);
  assert.equal(outage.missingMs, 0, 'nothing of the outage is reported missing');
  assert.ok(outage.liveMs < 1000, `the outage is not reported live (${outage.liveMs} ms)`);

  // backfill_range on the App's own /pang/ws/ctl: acked with the req_id, then served.
  const rangeFrom = cutAt + 1000;
  const rangeTo = cutAt + 2000;
  const inRange = [...new Set(gotBackfill.filter((b) => Number(b.wallUs) / 1000 >= rangeFrom && Number(b.wallUs) / 1000 <= rangeTo).map((b) => b.seq))];
  assert.ok(inRange.length >= 30, `the range holds backfilled records (${inRange.length})`);
  const ctl = new WebSocket(`ws://127.0.0.1:${a.port}/pang/ws/ctl?channel=${CH}`);
  t.after(() => ctl.terminate());
  const replies: Array<Record<string, unknown>> = [];
  ctl.on('message', (d) => replies.push(JSON.parse(String(d)) as Record<string, unknown>));
  await new Promise<void>((res, rej) => ctl.once('open', () => res()).once('error', rej));
  ctl.send(JSON.stringify({ type: 'backfill_range', data: JSON.stringify({ track: IMU_PATH, from: rangeFrom, to: rangeTo }), req_id: 'r1' }));
  await waitFor(() => replies.some((r) => r.req_id === 'r1'), 5000, () => `a reply to r1 (${JSON.stringify(replies)})`);
  const ack = replies.find((r) => r.req_id === 'r1')!;
  assert.equal(ack.type, 'backfill_range', `acked, not refused: ${JSON.stringify(ack)}`);
  assert.deepEqual(JSON.parse(ack.data as string), { queued: 1, track: IMU_PATH, from: rangeFrom, to: rangeTo });
  const twice = (): number[] => {
    const n = new Map<number, number>();
    for (const b of backfilled()) n.set(b.seq, (n.get(b.seq) ?? 0) + 1);
    return inRange.filter((q) => (n.get(q) ?? 0) < 2);
  };
  await waitFor(() => eg.backfill!.stats().rangeRequests.completed === 1 && twice().length === 0, 15_000, () => `the range resent (${twice().length} of ${inRange.length} not yet; ${JSON.stringify(eg.backfill!.stats().rangeRequests)})`);
  ctl.terminate();

  // Close: egress first, so its last spans reach the index before the recordings close it.
  await a.close();
  const st = eg.stats().uplink.delivery;
  assert.equal(st.unpersisted, 0, 'no delivery span lost for want of an index');
  assert.equal(st.lastError, null);
  const memLiveTo = Math.max(...eg.spans.live(IMU_PATH, 0, Date.now() + 1).spans.map((s) => s.to));
  const memBackfill = eg.backfilled.live(IMU_PATH, 0, Date.now() + 1).spans;

  const idx = IndexDb.openReader(join(root, 'index.db'));
  try {
    // Delivery spans persisted: live and backfill rows, the outage covered, the last ones included.
    const rows = readDeliverySpans(idx, { ...IMU, fromMs: 0, toMs: Date.now() + 1 });
    const liveRows = rows.filter((r) => r.kind === 'live');
    const bfRows = rows.filter((r) => r.kind === 'backfill');
    assert.ok(liveRows.length > 0 && bfRows.length > 0, `live and backfill rows in the index (${liveRows.length}, ${bfRows.length})`);
    assert.ok(liveRows.some((r) => r.to_ms < cutAt) && liveRows.some((r) => r.from_ms > cutAt), 'live rows before and after the cut (the cut broke the span)');
    assert.ok(rows.every((r) => r.upstream === `up0:${IMU_PATH}`), 'rows carry the upstream name');
    const persistedBf = bfRows.map((r) => ({ from: r.from_ms, to: r.to_ms }));
    assert.ok(coveredMs(persistedBf, cutAt + 1500, restoredAt - 500) >= outageMs - 200, 'the persisted backfill rows cover the outage');
    // Spans confirmed right up to close (the live span's end, the range's resend) are on disk:
    // egress flushed its writer while the recordings index was still open.
    const diskLiveTo = Math.max(...liveRows.map((r) => r.to_ms));
    assert.ok(diskLiveTo >= Math.floor(memLiveTo), `last live span persisted (index ${diskLiveTo}, memory ${memLiveTo})`);
    assert.ok(coveredMs(persistedBf, rangeFrom, rangeTo) >= coveredMs(memBackfill, rangeFrom, rangeTo), 'backfilled spans persisted');

    // Ground truth: every IMU record the recorder wrote.
    const recorded = new Map<number, number>();
    for (const seg of idx.list({ ...IMU, limit: 1000 })) {
      for (const r of scanSegmentRecords(root, seg.path, { maxReadBytes: Infinity }).records) recorded.set(seqOf(r.payload), r.wallclock);
    }
    assert.ok(recorded.size > 200, `records recorded (${recorded.size})`);

    // Each backfilled record carries its capture wallclock (µs) from the recording.
    for (const b of backfilled()) {
      const w = recorded.get(b.seq);
      assert.ok(w !== undefined, `backfilled seq ${b.seq} was recorded`);
      assert.equal(b.wallUs, BigInt(Math.round(w * 1000)), `seq ${b.seq}: capture wallclock µs in the prefix`);
    }
    // The outage's records came on the backfill track.
    const viaBackfill = new Set(gotBackfill.map((b) => b.seq));
    const outageSeqs = [...recorded].filter(([, w]) => w > cutAt && w < restoredAt - 250).map(([q]) => q);
    assert.ok(outageSeqs.length >= (CUT_MS / 1000) * 50 * 0.8, `outage records recorded (${outageSeqs.length})`);
    const notBackfilled = outageSeqs.filter((q) => !viaBackfill.has(q));
    assert.deepEqual(notBackfilled, [], 'every outage record was backfilled');

    // Live + backfill: every recorded record of the window at least once; duplicates within the
    // records the App itself counted in doubt.
    const counts = new Map<number, number>();
    for (const q of [...gotLive, ...gotBackfill.map((b) => b.seq)]) counts.set(q, (counts.get(q) ?? 0) + 1);
    const missing = [...recorded].filter(([q, w]) => w <= windowEnd && !counts.has(q)).map(([q]) => q);
    assert.deepEqual(missing.slice(0, 20), [], `every recorded record up to ${windowEnd} arrived (${missing.length} missing)`);
    const duplicates = [...counts.values()].reduce((s, n) => s + n - 1, 0);
    assert.ok(duplicates <= doubt, `${duplicates} duplicates within the App's in-doubt count ${doubt}`);
    const windowCount = [...recorded.values()].filter((w) => w <= windowEnd).length;
    t.diagnostic(`window ${windowCount} records (${gotLive.length} live, ${gotBackfill.length} backfilled, outage ${outageSeqs.length}); duplicates ${duplicates} ≤ in doubt ${doubt}; range resent ${inRange.length}; rows live ${liveRows.length} backfill ${bfRows.length}`);
  } finally {
    idx.db.close();
  }
});
