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
import { hlsConfigSchema } from '../../runtime/hls/config.js';
import { registerHlsRoutes } from '../../runtime/hls/http.js';
import { HlsService } from '../../runtime/hls/service.js';
import { registerHlsJsRoute } from '../../runtime/hls/timeline.js';
import { HttpServer } from '../../runtime/http/server.js';
import { feedEngine, testEngine } from '../egress/engine-fixture.js';
import { h264Fixture } from '../egress/fake-source.js';

const cam = { channel: 'cam', source: 'base', track: 'video' };

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

/** drawbox filters writing the frame number (mod 2^bits) as black/white 16×16 cells along the top. */
function barcodeFilter(bits: number): string {
  const boxes = [`drawbox=x=0:y=0:w=${16 * bits}:h=16:color=black:t=fill`];
  for (let k = 0; k < bits; k++) boxes.push(`drawbox=x=${16 * k}:y=0:w=16:h=16:color=white:t=fill:enable='eq(mod(floor(n/${2 ** k}),2),1)'`);
  return boxes.join(',');
}

test('Chromium + hls.js: glass-to-glass from the capture time burned into the picture agrees with PROGRAM-DATE-TIME', async (t) => {
  const missing = chromiumMissing();
  if (missing) return skipUnlessCi(t, missing);
  const { dir, cleanup } = tempDir('hls-g2g-');
  t.after(cleanup);
  const BITS = 10; // 1024 frames: 34 s at 30 fps, far longer than any latency here
  const fx = await h264Fixture(dir, { seconds: 10, size: '320x240', gop: 30, bitrate: '600k', vf: barcodeFilter(BITS) });
  const engine = testEngine();
  t.after(() => engine.close());
  // capture wallclock of each frame index as the engine gets it (the latest one per index: the fixture loops)
  const captured = new Map<number, number>();
  const feeder = feedEngine(engine, cam, fx, { loop: true, onFrame: (f, i) => captured.set(i % fx.aus.length, f.wallclock) });
  t.after(() => feeder.stop());
  const hls = new HlsService({ config: hlsConfigSchema.parse({}), source: engine, memory: engine.budget });
  t.after(() => hls.close());
  const http = new HttpServer({ host: '127.0.0.1', port: 0, maxConnections: 64 });
  registerHlsJsRoute(http.router);
  registerHlsRoutes(http.router, { service: hls, resolveChannel: (x) => engine.findChannel(x)?.id ?? null });
  http.router.route('GET', '/healthz', (ctx) => ctx.json(200, { status: 'ok' }));
  const { port } = await http.listen();
  t.after(() => http.close());
  const base = `http://127.0.0.1:${port}`;
  const browser = await launchChromium();
  t.after(() => browser.close());
  const page = await browser.newPage();
  await playLiveHls(page, base, `${base}/hls/cam/base/video/index.m3u8`);
  // read the barcode of each shown frame: [frame index, now, now − playingDate]
  await page.evaluate((bits) => {
    const w = window as unknown as { hls: { playingDate: Date | null }; seen: Array<[number, number, number]> };
    const v = document.querySelector('video') as HTMLVideoElement;
    const c = document.createElement('canvas');
    c.width = 16 * bits;
    c.height = 16;
    const g = c.getContext('2d', { willReadFrequently: true })!;
    w.seen = [];
    const tick = () => {
      const d = w.hls.playingDate;
      if (d && v.readyState >= 2 && w.seen.length < 10_000) {
        g.drawImage(v, 0, 0, 16 * bits, 16, 0, 0, 16 * bits, 16);
        const px = g.getImageData(0, 0, 16 * bits, 16).data;
        let n = 0;
        for (let k = 0; k < bits; k++) if (px[(8 * 16 * bits + 16 * k + 8) * 4]! > 128) n |= 1 << k;
        const now = Date.now();
        w.seen.push([n, now, now - d.getTime()]);
      }
      (v as any).requestVideoFrameCallback(tick);
    };
    (v as any).requestVideoFrameCallback(tick);
  }, BITS);
  await page.waitForFunction(() => (window as unknown as { seen: unknown[] }).seen.length > 150, undefined, { timeout: 45_000 });
  const seen = (await page.evaluate(() => (window as unknown as { seen: Array<[number, number, number]> }).seen)).slice(-120);
  const burned: number[] = [];
  const diff: number[] = [];
  for (const [n, now, pdtLat] of seen) {
    const at = captured.get(n);
    if (at === undefined || at > now) continue; // an index not (yet) sent again: a misread or the previous loop
    burned.push(now - at);
    diff.push(Math.abs(now - at - pdtLat));
  }
  burned.sort((a, b) => a - b);
  diff.sort((a, b) => a - b);
  assert.ok(burned.length > 60, `decoded the burned frame number of ${burned.length} of ${seen.length} frames`);
  const p50 = burned[Math.floor(burned.length / 2)]!;
  assert.ok(p50 > 0 && p50 < 10_000, `live, not a replay (${p50} ms)`);
  // the PROGRAM-DATE-TIME mapping (what the bench and the dashboard use) says the same within ~2 frames
  assert.ok(diff[Math.floor(diff.length / 2)]! < 150, `PDT vs burned clock: median |Δ| ${diff[Math.floor(diff.length / 2)]} ms`);
  t.diagnostic(`glass-to-glass from the burned frame number: p50 ${p50} ms, p90 ${burned[Math.floor(burned.length * 0.9)]} ms; PDT agrees within ${diff[Math.floor(diff.length / 2)]} ms (median)`);
});
