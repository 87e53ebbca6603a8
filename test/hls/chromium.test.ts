// Headless Chromium with hls.js against the whole runtime: live LL-HLS plays, with its latency
// measured from the frame's capture time (PROGRAM-DATE-TIME is capture µs + the run's offset, so
// hls.js's playingDate is the capture time of the frame on screen); the dashboard timeline lists
// the recordings, a click plays from that moment, the sensor values of that moment show beside the
// video from the same clock, and a dragged range exports as MP4 and MCAP.
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { EMBEDDED_CHANNEL_ID } from '../../runtime/config/schema.js';
import { chromiumMissing, launchChromium } from '../egress/chromium.js';
import { skipUnlessCi } from '../support/peer.js';
import { startApp, tempDir, waitFor } from '../support/app.js';
import { latencies, playLiveHls } from './hls-page.js';

const ARTIFACTS = join(process.cwd(), 'test-artifacts');

test('Chromium + hls.js: live LL-HLS plays (latency from capture time); dashboard timeline plays a recording from a clicked moment with its sensor values; exports', async (t) => {
  const missing = chromiumMissing();
  if (missing) return skipUnlessCi(t, missing);
  await mkdir(ARTIFACTS, { recursive: true });
  const { dir, cleanup } = tempDir('hls-chromium-');
  t.after(cleanup);
  const app = await startApp({
    recordings: { enabled: true, root: join(dir, 'rec'), segmentDurationMs: 3000 },
    channels: [
      {
        id: EMBEDDED_CHANNEL_ID,
        name: 'robot',
        sources: [
          { name: 'base', driver: { kind: 'testpattern', width: 640, height: 360, fps: 30, bitrateKbps: 600 } },
          { name: 'base', driver: { kind: 'simulated', track: 'imu', sensor: 'imu', rateHz: 20 } },
        ],
      },
    ],
  });
  t.after(() => app.close());
  const base = `http://127.0.0.1:${app.port}`;
  const browser = await launchChromium();
  t.after(() => browser.close());

  // --- live: a bare page with the hls.js the runtime serves
  const live = await browser.newPage();
  const errors: string[] = [];
  live.on('pageerror', (e) => errors.push(String(e)));
  await playLiveHls(live, base, `${base}/hls/robot/base/video/index.m3u8`);
  await live.waitForFunction(() => (document.querySelector('video') as HTMLVideoElement).getVideoPlaybackQuality().totalVideoFrames > 120, undefined, { timeout: 45_000 });
  const lat = await latencies(live, 90);
  const p50 = lat[Math.floor(lat.length / 2)]!;
  assert.ok(lat.length > 30, 'latency samples');
  // A timed test asserts no speed (the bench measures it): only that this is live, not a replay.
  assert.ok(p50 > 0 && p50 < 10_000, `live latency p50 ${p50} ms`);
  const width = await live.evaluate(() => (document.querySelector('video') as HTMLVideoElement).videoWidth);
  assert.equal(width, 640);
  t.diagnostic(`hls.js live latency from capture: p50 ${p50} ms, max ${lat[lat.length - 1]} ms (loaded shared machine)`);
  await live.close();

  // --- timeline: wait for recordings of video and imu, then use the dashboard
  const closedVideo = async () =>
    ((await (await fetch(`${base}/api/recordings?kind=video&order=asc`)).json()) as { segments: Array<{ state: string; startMs: number; endMs: number }> }).segments.filter((s) => s.state !== 'recording');
  await waitFor(async () => (await closedVideo()).length >= 2, 30_000, 'two closed video recordings');
  const rec = (await closedVideo())[0]!;
  const page = await browser.newPage({ viewport: { width: 1366, height: 1000 } });
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${base}/?autoplay=0`);
  await page.waitForSelector('#timeline .tl-bar[data-kind="video"]', { timeout: 20_000 });
  // zoom to 1 h, then in to ~1 min around now
  await page.selectOption('#tl-range', '3600000');
  for (let i = 0; i < 6; i++) await page.click('#tl-in');
  await page.waitForFunction(() => (window as unknown as { mothEdgeTimeline: { span: number } }).mothEdgeTimeline.span <= 120_000);
  await page.waitForSelector('#timeline .tl-bar[data-kind="video"] .tl-rec', { timeout: 20_000 });
  const target = rec.startMs + 1500;
  const bar = page.locator('#timeline .tl-bar[data-kind="video"]').first();
  await bar.scrollIntoViewIfNeeded();
  const box = (await bar.boundingBox())!;
  const view = await page.evaluate(() => {
    const s = (window as unknown as { mothEdgeTimeline: { to: number; span: number } }).mothEdgeTimeline;
    return { to: s.to, span: s.span };
  });
  const x = box.x + ((target - (view.to - view.span)) / view.span) * box.width;
  assert.ok(x > box.x && x < box.x + box.width, 'the recording is in view');
  await page.mouse.click(x, box.y + box.height / 2);
  await page.waitForFunction(() => {
    const v = document.getElementById('tl-video') as HTMLVideoElement;
    return v.currentTime > 1 && !v.paused;
  }, undefined, { timeout: 30_000 });
  const shown = await page.evaluate(() => (window as unknown as { mothEdgeTimeline: { hls: { playingDate: Date } } }).mothEdgeTimeline.hls.playingDate.getTime());
  const clicked = view.to - view.span + ((x - box.x) / box.width) * view.span;
  assert.ok(shown >= clicked - 1500 && shown <= clicked + 15_000, `plays from the clicked moment (${new Date(clicked).toISOString()} → showing ${new Date(shown).toISOString()})`);
  // sensor values of the moment on screen, from the same clock
  await page.waitForSelector('#tl-values .sensor[data-path$="/imu"]', { timeout: 15_000 });
  const valueAt = Number(await page.getAttribute('#tl-values .sensor[data-path$="/imu"]', 'data-at'));
  const playingAt = await page.evaluate(() => (window as unknown as { mothEdgeTimeline: { playing: { atMs: number } } }).mothEdgeTimeline.playing.atMs);
  assert.ok(Math.abs(playingAt - valueAt) < 2000, `imu value at ${valueAt} beside video at ${playingAt}`);
  await page.screenshot({ path: join(ARTIFACTS, 'dashboard-timeline.png'), fullPage: true });

  // drag a range → export links that return an MP4 and an MCAP
  const a = box.x + ((rec.startMs - (view.to - view.span)) / view.span) * box.width + 2;
  const b = box.x + ((rec.endMs - (view.to - view.span)) / view.span) * box.width - 2;
  await page.mouse.move(a, box.y + 5);
  await page.mouse.down();
  await page.mouse.move(b, box.y + 5, { steps: 5 });
  await page.mouse.up();
  await page.waitForSelector('#tl-export:not([hidden])');
  const got = await page.evaluate(async () => {
    const fetchHead = async (id: string) => {
      const r = await fetch((document.getElementById(id) as HTMLAnchorElement).href);
      const b = new Uint8Array(await r.arrayBuffer());
      return { status: r.status, head: String.fromCharCode(...b.slice(0, 8)), len: b.length };
    };
    return { mp4: await fetchHead('tl-mp4'), mcap: await fetchHead('tl-mcap') };
  });
  assert.equal(got.mp4.status, 200);
  assert.equal(got.mp4.head.slice(4, 8), 'ftyp');
  assert.equal(got.mcap.status, 200);
  assert.equal(got.mcap.head.slice(1, 5), 'MCAP');
  assert.deepEqual(errors, []);
});
