// Upstream accepts, then stalls at 10 % of the track's rate: memory stays bounded, drops are
// whole GOP tails and counted, and the link is back to live at the next keyframe after the lift.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PangPublisher } from '../../runtime/egress/pang-publisher.js';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { FakeSource, h264Fixture, playFixture, readTag } from './fake-source.js';
import { fastBackoff, tempDir, waitFor } from './helpers.js';
import { CHAN, thinLink } from '../uplink/thin-link.js';

const cam = { channel: 'cam', source: 'base', track: 'video' };

test('throttled upstream at 10 %: bounded RSS, counted GOP-tail drops, live again at the next keyframe', async (t) => {
  const dir = await tempDir(t);
  const fx = await h264Fixture(dir, { seconds: 4, size: '1280x720', gop: 30, bitrate: '4M' });
  const trackRate = fx.aus.reduce((a, b) => a + b.data.length, 0) / (fx.aus.length / fx.fps); // bytes/s
  const keyBySeq = (seq: number): boolean => fx.aus[seq % fx.aus.length]!.key;

  const { peer, proxy } = await thinLink(t, 'per-read');

  const src = new FakeSource();
  const ceiling = 256 * 1024;
  const pub = new PangPublisher({
    name: 'thin',
    endpoint: { url: `ws://127.0.0.1:${proxy.port}`, channel: CHAN, source: 'base', track: 'video' },
    from: cam,
    maxBufferedBytes: ceiling,
    source: src,
    log: silentLog,
    backoff: fastBackoff,
  });
  t.after(() => pub.close());
  pub.start();
  const player = playFixture(src, cam, fx, { loop: true, tag: true });
  t.after(() => player.stop());
  const path = `${CHAN}/base/video`;
  const received = (): number[] =>
    peer.messages(path).filter((m) => m.binary && m.data.length > 0).map((m) => readTag(m.data)!);

  await waitFor(() => received().length >= 30, 10_000, 'live before the throttle');
  const rss0 = process.memoryUsage().rss;
  proxy.setRate(Math.round(trackRate * 0.1));
  let peakRss = rss0;
  const sample = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
  t.after(() => clearInterval(sample));
  // Enough stalled time for kernel buffers to fill and the gate to drop several GOPs.
  await waitFor(() => pub.stats().dropped.gopTail >= 90, 40_000, '90 frames dropped as GOP tails');
  const s1 = pub.stats();
  assert.ok(s1.peakBufferedBytes <= ceiling + 512 * 1024, `socket backlog bounded (${s1.peakBufferedBytes})`);
  assert.ok(peakRss - rss0 < 96 * 1024 * 1024, `RSS bounded: grew ${((peakRss - rss0) / 1e6).toFixed(1)} MB`);
  assert.equal(s1.state, 'connected', 'a slow link is not a failure');

  const liftSeq = player.sent();
  proxy.setRate(null);
  // Back to live: a run of 30 contiguous frames published after the lift (it starts at the first
  // keyframe once the backlog drained; where that keyframe falls depends on the GOP phase).
  const liveRun = (): number => {
    const r = received().filter((s) => s >= liftSeq);
    let run = r.length > 0 ? 1 : 0;
    for (let i = r.length - 1; i > 0 && r[i] === r[i - 1]! + 1; i--) run++;
    return run;
  };
  await waitFor(() => liveRun() >= 30, 20_000, () => `30 contiguous frames after the lift (run ${liveRun()})`);
  const seqs = received();
  // Whole GOP tails only: after every gap the next frame received is a keyframe.
  let gaps = 0;
  for (let i = 1; i < seqs.length; i++) {
    assert.ok(seqs[i]! > seqs[i - 1]!, 'in order, no duplicates');
    if (seqs[i] !== seqs[i - 1]! + 1) {
      gaps++;
      assert.ok(keyBySeq(seqs[i]!), `resumed at a keyframe after a gap (seq ${seqs[i]})`);
    }
  }
  assert.ok(gaps >= 1, 'the throttle caused drops');
  // Back to live: the frames since the lift arrive contiguous from a keyframe on.
  const firstAfter = seqs.findIndex((s) => s >= liftSeq);
  const tail = seqs.slice(firstAfter);
  const lastGap = tail.findLastIndex((s, i) => i > 0 && s !== tail[i - 1]! + 1);
  assert.ok(tail.length - Math.max(0, lastGap) >= 30, `contiguous live frames after the lift: ${JSON.stringify(tail)}`);
  const s2 = pub.stats();
  assert.equal(s2.waitingForKeyframe, false);
  assert.equal(s2.reconnects, 0);
  t.diagnostic(`track ${(trackRate * 8 / 1e6).toFixed(2)} Mbit/s, drops ${s2.dropped.gopTail}, peak socket backlog ${s2.peakBufferedBytes} B, RSS +${((peakRss - rss0) / 1e6).toFixed(1)} MB`);
});

test('upstream that stops reading entirely: stalled link detected, reconnected, live again', async (t) => {
  const dir = await tempDir(t);
  const fx = await h264Fixture(dir, { seconds: 2, size: '640x360', gop: 15, bitrate: '2M' });
  const { peer, proxy } = await thinLink(t, 'per-read');
  const src = new FakeSource();
  const pub = new PangPublisher({
    name: 'stall',
    endpoint: { url: `ws://127.0.0.1:${proxy.port}`, channel: CHAN, source: 'base', track: 'video' },
    from: cam,
    maxBufferedBytes: 64 * 1024,
    source: src,
    log: silentLog,
    backoff: fastBackoff,
    tcp: { deadAfterMs: 1500 },
  });
  t.after(() => pub.close());
  pub.start();
  const player = playFixture(src, cam, fx, { loop: true, tag: true });
  t.after(() => player.stop());
  const path = `${CHAN}/base/video`;
  await waitFor(() => peer.messages(path).length >= 20, 10_000, 'live before the stall');
  proxy.setRate(1); // 1 byte/s: the server side has stopped reading
  await waitFor(() => (pub.stats().failures.UPSTREAM_STALLED ?? 0) >= 1, 30_000, 'stall detected');
  proxy.setRate(null);
  const n0 = peer.messages(path).length;
  await waitFor(() => pub.stats().state === 'connected' && peer.messages(path).length >= n0 + 30, 20_000, 'live again on a new session');
  assert.ok(pub.stats().reconnects >= 1);
});
