// WHEP + dashboard in headless Chromium: the dashboard at / plays the camera over WHEP
// (framesDecoded > 0), its stats update, upstream link state and sensor values show, and it fits
// a laptop and a phone (screenshots in test-artifacts/). Also /api/shot and /shot/ws stills.
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import WebSocket from 'ws';
import { captureClockUs } from '../../runtime/engine/api.js';
import { createShotWs, registerEgressRoutes } from '../../runtime/egress/http.js';
import { PangPublisher } from '../../runtime/egress/pang-publisher.js';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { HttpServer } from '../../runtime/http/server.js';
import { TranscodeService } from '../../runtime/transcode/service.js';
import { WhepServer } from '../../runtime/whep/server.js';
import { StrictPangPeer } from '../sim/strict-pang-peer.js';
import { h264Fixture } from './fake-source.js';
import { feedEngine, testEngine } from './engine-fixture.js';
import { chromiumMissing, launchChromium } from './chromium.js';
import { fastBackoff, tempDir, waitFor } from './helpers.js';
import { skipUnlessCi } from '../support/peer.js';

const cam = { channel: 'cam', source: 'base', track: 'video' };
const gps = { channel: 'cam', source: 'base', track: 'gps' };
const CHAN = '0123456789abcdefghij';
const ARTIFACTS = join(process.cwd(), 'test-artifacts');

test('dashboard plays WHEP in Chromium, updates stats, shows links and sensors; laptop + phone screenshots', async (t) => {
  const missing = chromiumMissing();
  if (missing) return skipUnlessCi(t, missing);
  await mkdir(ARTIFACTS, { recursive: true });
  const dir = await tempDir(t);
  const fx = await h264Fixture(dir, { seconds: 3, size: '1280x720' });
  const engine = testEngine();
  t.after(() => engine.close());
  const feeder = feedEngine(engine, cam, fx, { loop: true });
  t.after(() => feeder.stop());
  const gpsPub = engine.publisher(gps, { label: 'gps' });
  gpsPub.setMime('application/json');
  let n = 0;
  const gpsTimer = setInterval(() => {
    const rec = { lat: 37.5665 + n * 1e-5, lon: 126.978 + n * 1e-5, fix: 3, sats: 11, speedKmh: 4.2 };
    n++;
    gpsPub.write({ ts: captureClockUs(), wallclock: Date.now(), key: true, data: Buffer.from(JSON.stringify(rec)) });
  }, 200);
  t.after(() => (clearInterval(gpsTimer), gpsPub.close()));

  // Upstream links: one healthy (strict peer), one refused (wrong key) → backoff with an error.
  const peer = new StrictPangPeer({ channels: { [CHAN]: 'k' } });
  await peer.listen();
  t.after(() => peer.close());
  const up = new PangPublisher({ name: 'moth', endpoint: { url: peer.url, channel: CHAN, key: 'k', source: 'base', track: 'video' }, from: cam, maxBufferedBytes: 512 * 1024, source: engine, log: silentLog, backoff: fastBackoff });
  const bad = new PangPublisher({ name: 'cloud', endpoint: { url: peer.url, channel: CHAN, key: 'wrong-key-zz9', source: 'base', track: 'gps' }, from: gps, maxBufferedBytes: 65536, source: engine, log: silentLog, backoff: { initialMs: 2000, maxMs: 60_000 } });
  t.after(() => (up.close(), bad.close()));
  up.start();
  bad.start();

  const whep = new WhepServer({ source: engine, log: silentLog, maxSessions: 4 });
  t.after(() => whep.close());
  const transcode = new TranscodeService({ engine, log: silentLog });
  t.after(() => transcode.close());
  const http = new HttpServer({ host: '127.0.0.1', port: 0, maxConnections: 64 });
  const startedAt = Date.now();
  http.router.route('GET', '/api/stats', (ctx) =>
    ctx.json(200, { uptimeS: Math.round((Date.now() - startedAt) / 1000), engine: engine.stats(), drivers: [{ name: 'cam', state: 'running' }], egress: { upstream: [up.stats(), bad.stats()], whip: [], pull: [], whep: whep.stats() } }),
  );
  registerEgressRoutes(http.router, { whep, transcode, source: engine });
  // The control and recordings APIs as their owners serve them (shapes from runtime/control and
  // runtime/recordings), recording what the dashboard sends.
  const ptzCalls: Array<{ op: string; body: string }> = [];
  http.router.route('GET', '/ptz/cameras', (ctx) => ctx.json(200, { cameras: [{ id: 'mast', kind: 'onvif', capabilities: {}, holder: null }] }));
  http.router.route('POST', '/ptz/:camera/move', async (ctx) => {
    ptzCalls.push({ op: `move ${ctx.params.camera}`, body: (await ctx.readBody(1024)).toString() });
    ctx.json(200, { ok: true });
  });
  http.router.route('POST', '/ptz/:camera/stop', async (ctx) => {
    await ctx.readBody(1024);
    ptzCalls.push({ op: `stop ${ctx.params.camera}`, body: '' });
    ctx.json(200, { ok: true });
  });
  http.router.route('GET', '/api/recordings', (ctx) =>
    ctx.json(200, { count: 1, segments: [{ id: 1, channel: 'cam', source: 'base', track: 'video', startMs: Date.now() - 60_000, durationMs: 60_000, bytes: 31_000_000, state: 'uploaded' }] }),
  );
  const shotWs = createShotWs({ transcode, log: silentLog });
  http.onUpgrade('/shot/ws', shotWs.upgrade);
  t.after(() => shotWs.close());
  const { port } = await http.listen();
  t.after(() => http.close());
  const base = `http://127.0.0.1:${port}`;

  const browser = await launchChromium();
  t.after(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${base}/`);
  const decoded = (): Promise<number> =>
    page.evaluate(async () => {
      const pc = (window as unknown as { mothEdge: { pc: RTCPeerConnection | null } }).mothEdge.pc;
      if (!pc) return 0;
      let f = 0;
      (await pc.getStats()).forEach((s: { type: string; kind?: string; framesDecoded?: number }) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') f = s.framesDecoded ?? 0;
      });
      return f;
    });
  const deadline = Date.now() + 30_000;
  let frames = 0;
  while ((frames = await decoded()) < 30) {
    if (Date.now() > deadline) assert.fail(`dashboard video decoded only ${frames} frames`);
    await new Promise((r) => setTimeout(r, 200));
  }
  await page.waitForFunction(() => (document.querySelector('video') as HTMLVideoElement).videoWidth === 1280, undefined, { timeout: 10_000 });
  // Stats update: the tracks table shows live fps, the link list shows both states, sensors show.
  await page.waitForFunction(
    () =>
      Array.from(document.querySelectorAll('#tracks tr')).some((tr) => {
        const td = tr.querySelectorAll('td');
        return td[0]?.textContent === 'cam/base/video' && Number(td[2]?.textContent) >= 20 && /bit\/s/.test(td[3]?.textContent ?? '');
      }),
    undefined,
    { timeout: 10_000 },
  );
  await page.waitForFunction(() => /connected/.test(document.getElementById('links')!.textContent ?? '') && /UPSTREAM_REFUSED/.test(document.getElementById('links')!.textContent ?? ''), undefined, { timeout: 15_000 });
  await page.waitForFunction(() => /lat/.test(document.getElementById('sensors')!.textContent ?? ''), undefined, { timeout: 10_000 });
  // PTZ pad: hold ▶ → repeated moves with pan > 0 and a short lease; release → stop.
  await page.waitForSelector('.ptz [data-v="1,0,0"]', { timeout: 10_000 });
  const right = await page.$('.ptz [data-v="1,0,0"]');
  await right!.scrollIntoViewIfNeeded();
  const box = (await right!.boundingBox())!;
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down();
  await waitFor(() => ptzCalls.filter((c) => c.op === 'move mast').length >= 2, 5000, 'held pad repeats the move');
  await page.mouse.up();
  await waitFor(() => ptzCalls.some((c) => c.op === 'stop mast'), 5000, 'release stops');
  const mv = JSON.parse(ptzCalls.find((c) => c.op === 'move mast')!.body) as { pan: number; tilt: number; lease_ms: number };
  assert.ok(mv.pan > 0 && mv.tilt === 0 && mv.lease_ms <= 1000, JSON.stringify(mv));
  await page.waitForFunction(() => /cam\/base\/video/.test(document.getElementById('recordings')!.textContent ?? ''), undefined, { timeout: 20_000 });
  const v1 = await page.textContent('#v-frames');
  await page.waitForFunction((prev) => document.getElementById('v-frames')!.textContent !== prev, v1, { timeout: 10_000 });
  assert.equal(whep.stats().sessions, 1);
  const linksText = (await page.textContent('#links')) ?? '';
  assert.ok(!linksText.includes('wrong-key-zz9') && !linksText.includes('key=k'), 'no key on the dashboard');
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(ARTIFACTS, 'dashboard-laptop.png'), fullPage: true });

  // Phone: no horizontal overflow, video still playing.
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `phone layout overflows by ${overflow}px`);
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(ARTIFACTS, 'dashboard-phone.png'), fullPage: true });

  // Still over HTTP, from the page.
  const shot = await page.evaluate(async () => {
    const r = await fetch('/api/shot/cam/base/video.jpg');
    const b = new Uint8Array(await r.arrayBuffer());
    return { status: r.status, type: r.headers.get('content-type'), soi: b[0] === 0xff && b[1] === 0xd8, len: b.length };
  });
  assert.deepEqual({ status: shot.status, type: shot.type, soi: shot.soi }, { status: 200, type: 'image/jpeg', soi: true });
  const missingShot = await fetch(`${base}/api/shot/cam/base/nope.jpg`);
  assert.equal(missingShot.status, 404);

  // Leaving the page DELETEs the WHEP session.
  await page.close();
  await waitFor(() => whep.stats().sessions === 0, 10_000, 'WHEP session ended with the page');
  assert.deepEqual(errors, [], 'no page errors');
  t.diagnostic(`dashboard decoded ${frames}+ frames; screenshots in ${ARTIFACTS}`);

  // /shot/ws: a JPEG per request, typed errors for bad requests.
  const ws = new WebSocket(`ws://127.0.0.1:${port}/shot/ws?channel=cam&source=base&track=video`);
  t.after(() => ws.terminate());
  await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
  const replies: Array<{ binary: boolean; data: Buffer }> = [];
  ws.on('message', (d, binary) => replies.push({ binary, data: d as Buffer }));
  ws.send('shot');
  await waitFor(() => replies.length === 1, 15_000, 'still over /shot/ws');
  assert.ok(replies[0]!.binary && replies[0]!.data[0] === 0xff && replies[0]!.data[1] === 0xd8);
  ws.send(JSON.stringify({ channel: 'cam', source: 'base', track: '../etc' }));
  await waitFor(() => replies.length === 2, 5000, 'error reply');
  assert.equal(JSON.parse(replies[1]!.data.toString()).error.code, 'BAD_TRACK_REF');
  ws.send('{not json');
  await waitFor(() => replies.length === 3, 5000, 'error reply');
  assert.equal(JSON.parse(replies[2]!.data.toString()).error.code, 'BAD_JSON');
});
