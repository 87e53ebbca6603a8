// Issue 8 scenario: the uplink flaps — cut for 5 s, up for 5 s, four times. Every IMU and GPS
// record reaches the strict pang peer (live or by backfill) with its capture wallclock,
// duplicates only from the confirm windows of killed sessions; a record captured while the link
// was down arrives twice only when a later cut killed the backfill session carrying it (counted);
// memory stays under the ceiling, and GET /api/gaps matches what the peer got.
import { test } from 'node:test';
import { waitFor } from '../egress/helpers.js';
import assert from 'node:assert/strict';
import { allArrive, checkDelivery, checkMemory, inDoubt, rig, sleep } from './scenario.js';

test('flapping every 5 s: sensors complete, gaps match the peer, memory bounded', { timeout: 150_000 }, async (t) => {
  const r = await rig(t, { priority: true });
  await waitFor(() => r.received(r.imu).live.length >= 100, 15_000, 'live before flapping');
  const cycles = 4;
  const outages: Array<[number, number]> = [];
  for (let i = 0; i < cycles; i++) {
    r.link.proxy.cut();
    const cutAt = Date.now();
    await sleep(5000);
    r.link.proxy.restore();
    outages.push([cutAt, Date.now()]);
    await sleep(5000);
  }
  r.stopAll();
  await allArrive(r, r.imu, r.imu.count() - 1, 45_000);
  await allArrive(r, r.gps, r.gps.count() - 1, 20_000);
  await waitFor(() => (r.eg.stats().uplink.backfill?.tracks ?? []).every((x) => x.link.inFlight === 0 && x.link.queued === 0), 10_000, 'backfill settled');
  const from = r.imu.walls.get(0)!;
  const to = Date.now() - 3000;
  // Duplicates: only records in doubt when a cut killed a session (counted by the senders).
  const imu = checkDelivery(r, r.imu, await r.gaps(r.imu.ref, from, to), inDoubt(r, r.imu));
  const gps = checkDelivery(r, r.gps, await r.gaps(r.gps.ref, from, to), inDoubt(r, r.gps));
  // Records captured while the link was down: never carried live, so each arrives exactly once —
  // unless a later cut killed the backfill session carrying it (counted by the backfill link).
  for (const s of [r.imu, r.gps]) {
    const got = r.received(s);
    const counts = new Map<number, number>();
    for (const q of [...got.live, ...got.backfill.map((b) => b.seq)]) counts.set(q, (counts.get(q) ?? 0) + 1);
    const inOutage = [...s.walls].filter(([, w]) => outages.some(([a, b]) => w > a && w < b));
    const dup = inOutage.filter(([q]) => (counts.get(q) ?? 0) > 1).length;
    const bfLost = r.eg.stats().uplink.backfill?.tracks.find((x) => x.track.endsWith(`/${s.ref.track}`))?.link.inDoubt ?? 0;
    assert.ok(inOutage.every(([q]) => (counts.get(q) ?? 0) >= 1), `${s.ref.track}: every outage record arrived`);
    assert.ok(dup <= bfLost, `${s.ref.track}: ${dup} outage records twice, only from backfill sessions a cut killed (${bfLost} in doubt)`);
    t.diagnostic(`${s.ref.track}: ${inOutage.length} outage records, ${dup} twice (backfill in doubt ${bfLost})`);
  }
  checkMemory(r);
  t.diagnostic(`imu backfilled ${imu.backfilled}, duplicates ${imu.duplicates} (in doubt ${inDoubt(r, r.imu)}); gps backfilled ${gps.backfilled}, duplicates ${gps.duplicates}; reconnects ${r.eg.upstream.map((u) => u.stats().reconnects).join('/')}; peak RSS +${Math.round((r.mem.peakRss - r.mem.rss0) / 1e6)} MB`);
});
