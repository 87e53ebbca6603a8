// Issue 8 scenario: the shared uplink runs at 20 % of the total demand for 60 s. The top-priority
// tracks (IMU 100, GPS 90) lose nothing and arrive live, exactly once, in order; the camera gives
// way (counted decisions); memory stays under the ceiling; after the lift the camera is back at
// full rate; GET /api/gaps matches what the peer got.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitFor } from '../egress/helpers.js';
import { checkDelivery, checkMemory, rig, sleep } from './scenario.js';

test('20 % of demand for 60 s: sensors lose nothing, video gives way (counted), back to full after the lift', { timeout: 150_000 }, async (t) => {
  const r = await rig(t, { priority: true });
  await waitFor(() => r.received(r.imu).live.length >= 100 && r.videoTags().length >= 60, 15_000, 'live before the throttle');
  const demand = r.videoRate + 50 * 150 + 5 * 90;
  r.link.proxy.setRate(Math.round(demand * 0.2));
  const throttledAt = Date.now();
  const firstThrottledImu = r.imu.count();
  await sleep(60_000);
  const lastThrottledImu = r.imu.count() - 1;
  r.link.proxy.setRate(null);
  const liftedAt = Date.now();
  const sched = r.eg.stats().uplink.scheduler!;
  const cam = Object.entries(sched.tracks).find(([k]) => k.endsWith('cam/base/video'))![1];
  assert.ok(cam.keyframesOnly + cam.paused > 0, `the camera gave way (${JSON.stringify(cam)})`);
  // Back to full: consecutive (non-keyframe) AUs arrive again.
  const tagsAt = r.videoTags().length;
  await waitFor(
    () => {
      const tags = r.videoTags().slice(tagsAt);
      let run = 0;
      for (let i = 1; i < tags.length; i++) run = tags[i] === tags[i - 1]! + 1 ? run + 1 : 0;
      return run >= 30 || tags.slice(-31).every((x, i, a) => i === 0 || x === a[i - 1]! + 1);
    },
    30_000,
    () => `camera back to full rate after the lift (${JSON.stringify(r.eg.stats().uplink.scheduler?.tracks)})`,
  );
  const timeToFull = Date.now() - liftedAt;
  r.stopAll();
  await sleep(1500);
  // Top priority: every IMU/GPS record of the throttled minute arrived LIVE, once, in order.
  for (const s of [r.imu, r.gps]) {
    const live = r.received(s).live;
    const first = s === r.imu ? firstThrottledImu : Math.floor(firstThrottledImu / 10);
    const last = s === r.imu ? lastThrottledImu : Math.floor(lastThrottledImu / 10);
    const during = live.filter((q) => q >= first && q <= last);
    assert.deepEqual(during, Array.from({ length: last - first + 1 }, (_, i) => first + i), `${s.ref.track}: complete, once, in order while throttled`);
  }
  const to = liftedAt - 2000;
  checkDelivery(r, r.imu, await r.gaps(r.imu.ref, throttledAt, to), 0);
  checkDelivery(r, r.gps, await r.gaps(r.gps.ref, throttledAt, to), 0);
  checkMemory(r);
  const vs = r.eg.upstream[0]!.stats();
  t.diagnostic(`camera decisions ${JSON.stringify(cam)}; camera dropped ${JSON.stringify(vs.priority.dropped)} gop-tail ${vs.dropped.gopTail}; time to full after the lift ${timeToFull} ms; peak RSS +${Math.round((r.mem.peakRss - r.mem.rss0) / 1e6)} MB, engine peak ${Math.round(r.mem.peakEngine / 1e6)} MB`);
});
