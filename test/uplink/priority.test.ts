// Per-track priority over a real shared thin link: a 50 Hz telemetry track (priority 100) and a
// 720p video track (priority 50) published to a strict pang peer through one shared-FIFO link
// proxy at 20 % of demand. The scheduler steps video down (counted), telemetry arrives complete, in order,
// exactly once; after the throttle lifts, probing brings video back to full at a keyframe.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { captureClockUs } from '../../runtime/engine/api.js';
import { PangPublisher } from '../../runtime/egress/pang-publisher.js';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { UplinkController } from '../../runtime/uplink/controller.js';
import { FakeSource, h264Fixture, playFixture, readTag } from '../egress/fake-source.js';
import { fastBackoff, tempDir, waitFor } from '../egress/helpers.js';
import { CHAN, thinLink } from './thin-link.js';

const cam = { channel: 'cam', source: 'base', track: 'video' };
const imu = { channel: 'cam', source: 'base', track: 'imu' };

test('thin shared link at 20 %: video gives way (counted), telemetry loses nothing, video back to full after the lift', async (t) => {
  const dir = await tempDir(t, 'uplink-prio-');
  const fx = await h264Fixture(dir, { seconds: 2, size: '1280x720', gop: 30, bitrate: '4M' });
  const videoRate = fx.aus.reduce((a, b) => a + b.data.length, 0) / (fx.aus.length / fx.fps);
  const { peer, proxy } = await thinLink(t, 'shared');
  const src = new FakeSource();
  src.requestEncodingCap = () => false; // a replayed fixture has no encoder to cap
  const mk = (name: string, from: typeof cam, track: string, priority: number): PangPublisher => {
    const p = new PangPublisher({
      name,
      endpoint: { url: `ws://127.0.0.1:${proxy.port}`, channel: CHAN, source: 'base', track },
      from,
      maxBufferedBytes: 256 * 1024,
      source: src,
      log: silentLog,
      backoff: fastBackoff,
      priority,
    });
    t.after(() => p.close());
    return p;
  };
  const video = mk('video', cam, 'video', 50);
  const tele = mk('imu', imu, 'imu', 100);
  const changes: string[] = [];
  const ctl = new UplinkController({ links: [video, tele], log: { info: (o) => changes.push(`${String(o.link)}:${String(o.from)}→${String(o.to)}`) }, intervalMs: 500, probeIntervalMs: 2000 });
  t.after(() => ctl.close());
  video.start();
  tele.start();
  ctl.start();

  // Telemetry: 50 Hz JSON records of ~200 B with a sequence number.
  src.setMime(imu, 'application/json');
  let seq = 0;
  const teleTimer = setInterval(() => {
    const rec = JSON.stringify({ seq, ax: Math.sin(seq), pad: 'x'.repeat(160) });
    src.publish(imu, { ts: captureClockUs(), wallclock: Date.now(), key: true, data: Buffer.from(rec) });
    seq++;
  }, 20);
  t.after(() => clearInterval(teleTimer));
  const player = playFixture(src, cam, fx, { loop: true, tag: true });
  t.after(() => player.stop());

  const got = (track: string): Buffer[] => peer.messages(`${CHAN}/base/${track}`).filter((m) => m.binary && m.data.length > 0).map((m) => m.data);
  await waitFor(() => got('video').length >= 30 && got('imu').length >= 50, 15_000, 'both tracks live');

  const demand = videoRate + 50 * 200;
  const rate = Math.round(demand * 0.2);
  proxy.setRate(rate);
  const seqAtThrottle = seq;
  await waitFor(() => video.stats().priority.mode !== 'full', 45_000, () => `video stepped down (uplink ${JSON.stringify(video.stats().uplink)})`);
  // Hold the thin link long enough that a starving telemetry track would show.
  const hold = seq + 250; // 5 s of records
  await waitFor(() => seq >= hold, 20_000, 'telemetry keeps being produced');
  // Still on the thin link: telemetry keeps flowing within about a queue's delay (not only after the lift).
  const lastTele = (): number => {
    const g = got('imu');
    return g.length ? (JSON.parse(g[g.length - 1]!.toString()) as { seq: number }).seq : -1;
  };
  await waitFor(() => lastTele() >= hold - 100, 10_000, () => `telemetry current on the thin link (last ${lastTele()}, produced ${seq})`);
  assert.ok(proxy.rate !== null, 'still throttled');
  const sv = video.stats();
  assert.ok(sv.priority.dropped.keyframesOnly + sv.priority.dropped.paused > 0, 'video frames held back by the scheduler are counted');
  assert.equal(tele.stats().priority.mode, 'full', 'telemetry never reduced');
  const cs = ctl.stats();
  assert.ok(cs.tracks.video!.keyframesOnly + cs.tracks.video!.paused > 0, 'decisions counted');
  assert.ok(cs.tracks.imu!.full > 0 && cs.tracks.imu!.paused === 0 && cs.tracks.imu!.keyframesOnly === 0);

  const liftSeq = seq;
  proxy.setRate(null);
  await waitFor(() => video.stats().priority.mode === 'full' && !video.stats().priority.waitingForKeyframe, 45_000, () => `video back to full (${JSON.stringify(ctl.stats())})`);
  const liftFrame = player.sent();
  await waitFor(() => got('video').some((d) => (readTag(d) ?? -1) >= liftFrame + 30), 20_000, 'live video after recovery');
  // Every telemetry record up to after the lift arrived exactly once, in order.
  await waitFor(() => got('imu').some((d) => (JSON.parse(d.toString()) as { seq: number }).seq >= liftSeq + 25), 20_000, 'telemetry after the lift');
  const seqs = got('imu').map((d) => (JSON.parse(d.toString()) as { seq: number }).seq);
  const first = seqs[0]!;
  for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1]! + 1, `telemetry contiguous at ${i} (${seqs[i - 1]} → ${seqs[i]})`);
  assert.ok(first <= seqAtThrottle);
  assert.equal(tele.stats().dropped.bufferFull, 0);
  // After a scheduler gap the video resumes at a keyframe.
  const vseqs = got('video').map((d) => readTag(d)!);
  const keyBySeq = (s: number): boolean => fx.aus[s % fx.aus.length]!.key;
  for (let i = 1; i < vseqs.length; i++) if (vseqs[i] !== vseqs[i - 1]! + 1 && !keyBySeq(vseqs[i - 1]!)) assert.ok(keyBySeq(vseqs[i]!), `gap resumes at a keyframe (seq ${vseqs[i]})`);
  t.diagnostic(`video ${(videoRate / 1000).toFixed(0)} kB/s, link ${(rate / 1000).toFixed(0)} kB/s; mode changes: ${changes.join(', ')}; video scheduler drops kf-only ${sv.priority.dropped.keyframesOnly} paused ${sv.priority.dropped.paused}`);
});
