// The pang publisher's uplink estimate over a real socket: a strict pang peer behind a throttling
// TCP proxy; the estimate converges to the proxy's rate and is exposed in stats (and egress stats).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PangPublisher } from '../../runtime/egress/pang-publisher.js';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { StrictPangPeer } from '../sim/strict-pang-peer.js';
import { FakeSource, h264Fixture, playFixture } from '../egress/fake-source.js';
import { fastBackoff, tempDir, waitFor } from '../egress/helpers.js';
import { ThrottleProxy } from '../egress/throttle-proxy.js';

const CHAN = '0123456789abcdefghij';
const cam = { channel: 'cam', source: 'base', track: 'video' };

test('pang publisher: uplink estimate converges to a throttled link rate, lower bound when unthrottled', async (t) => {
  const dir = await tempDir(t, 'uplink-');
  const fx = await h264Fixture(dir, { seconds: 2, size: '1280x720', gop: 30, bitrate: '4M' });
  const trackRate = fx.aus.reduce((a, b) => a + b.data.length, 0) / (fx.aus.length / fx.fps);
  const peer = new StrictPangPeer({ channels: { [CHAN]: undefined } });
  await peer.listen();
  t.after(() => peer.close());
  const proxy = new ThrottleProxy(peer.port);
  await proxy.listen();
  t.after(() => proxy.close());
  const src = new FakeSource();
  const pub = new PangPublisher({
    name: 'est',
    endpoint: { url: `ws://127.0.0.1:${proxy.port}`, channel: CHAN, source: 'base', track: 'video' },
    from: cam,
    maxBufferedBytes: 256 * 1024,
    source: src,
    log: silentLog,
    backoff: fastBackoff,
  });
  t.after(() => pub.close());
  pub.start();
  const player = playFixture(src, cam, fx, { loop: true });
  t.after(() => player.stop());

  // Unthrottled: the link carries all we offer, so the estimate is a lower bound near the track rate.
  await waitFor(() => pub.stats().uplink.samples >= 6, 15_000, 'drain samples while live');
  const free = pub.stats().uplink;
  assert.ok(free.bytesPerSec !== null && free.bytesPerSec >= trackRate * 0.3, `lower bound ${free.bytesPerSec} vs track ${trackRate.toFixed(0)}`);

  const rate = Math.round(trackRate * 0.25);
  proxy.setRate(rate);
  const t0 = Date.now();
  let last = pub.stats().uplink;
  await waitFor(
    () => {
      last = pub.stats().uplink;
      return last.confident && last.bytesPerSec !== null && Math.abs(last.bytesPerSec - rate) / rate < 0.3;
    },
    50_000,
    () => `estimate within 30 % of ${rate} B/s, confident (last ${JSON.stringify(last)})`,
  );
  t.diagnostic(`track ${trackRate.toFixed(0)} B/s, link ${rate} B/s, estimate ${last.bytesPerSec?.toFixed(0)} B/s after ${Date.now() - t0} ms`);
  assert.ok(last.bytesPerSec! >= 0);
  assert.equal(pub.stats().state, 'connected');
});
