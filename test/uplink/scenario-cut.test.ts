// Issue 8 scenario: the uplink is cut for 30 s, then restored (a shared thin-link proxy whose cut
// destroys every connection and refuses new ones, like a lost cell). After recovery every IMU and
// GPS record of the outage reaches the strict pang peer — live before the cut, by backfill for the
// outage, live after — with its original capture wallclock; every record captured after the cut
// exactly once, duplicates only of records in the confirm window of the sessions the cut killed; the camera is live again; memory stays under the ceiling; and
// GET /api/gaps matches what the peer actually got.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitFor } from '../egress/helpers.js';
import { allArrive, checkDelivery, checkMemory, inDoubt, notExactlyOnceAfter, rig, sleep } from './scenario.js';

test('cut for 30 s then restored: sensors complete via backfill, video live again, gaps match the peer', { timeout: 150_000 }, async (t) => {
  const r = await rig(t, { priority: true });
  await waitFor(() => r.received(r.imu).live.length >= 100 && r.videoTags().length >= 30, 15_000, 'live before the cut');
  r.link.proxy.cut();
  const cutAt = Date.now();
  await sleep(30_000); // the outage (a duration of the scenario, not a wait-then-assert)
  r.link.proxy.restore();
  const restoredAt = Date.now();
  const videoBefore = r.videoTags().length;
  await waitFor(() => r.videoTags().length > videoBefore, 20_000, 'video live again after the restore');
  const timeToLive = Date.now() - restoredAt;
  // Keep running a little, then stop the sensors: everything up to the last record must arrive.
  await sleep(2000);
  r.stopAll();
  const lastImu = r.imu.count() - 1;
  const lastGps = r.gps.count() - 1;
  await allArrive(r, r.imu, lastImu, 40_000);
  await allArrive(r, r.gps, lastGps, 20_000);
  await waitFor(() => (r.eg.stats().uplink.backfill?.tracks ?? []).every((x) => x.link.inFlight === 0 && x.link.queued === 0), 10_000, 'backfill settled');
  const from = r.imu.walls.get(0)!;
  const to = Date.now() - 3000;
  // Duplicates: only records in doubt when the cut killed a session (counted by the senders).
  const imu = checkDelivery(r, r.imu, await r.gaps(r.imu.ref, from, to), inDoubt(r, r.imu));
  const gps = checkDelivery(r, r.gps, await r.gaps(r.gps.ref, from, to), inDoubt(r, r.gps));
  // Every record captured after the cut — the outage and live again after it — arrived exactly once.
  for (const s of [r.imu, r.gps]) {
    const bad = notExactlyOnceAfter(r, s, cutAt);
    assert.deepEqual(bad.slice(0, 10), [], `${s.ref.track}: ${bad.length} records after the cut not received exactly once ([seq, times])`);
  }
  const outage = [...r.imu.walls.values()].filter((w) => w > cutAt + 1500 && w < restoredAt - 500).length;
  assert.ok(imu.backfilled >= outage, `the IMU outage (${outage} records) came by backfill (${imu.backfilled})`);
  const rep = await r.gaps(r.imu.ref, cutAt + 2000, restoredAt - 1000);
  assert.ok(rep.backfilledMs > 20_000, `the outage is reported backfilled (${rep.backfilledMs} ms)`);
  assert.equal(rep.missingMs, 0, 'nothing of the outage is missing');
  checkMemory(r);
  t.diagnostic(`time to live after the cut ${timeToLive} ms; imu backfilled ${imu.backfilled}, duplicates ${imu.duplicates} (in doubt ${inDoubt(r, r.imu)}); gps backfilled ${gps.backfilled}, duplicates ${gps.duplicates}; peak RSS +${Math.round((r.mem.peakRss - r.mem.rss0) / 1e6)} MB, engine peak ${Math.round(r.mem.peakEngine / 1e6)} MB`);
});
