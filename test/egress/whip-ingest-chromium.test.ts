// WHIP publish INTO the runtime from a browser: headless Chromium captures a canvas, encodes
// H.264 and POSTs its offer to our WHIP ingest endpoint; the frames land in a local engine
// track and decode with the real ffprobe. DELETE from the browser ends the session.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { registerEgressRoutes } from '../../runtime/egress/http.js';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { WhipIngest } from '../../runtime/egress/whip-ingest.js';
import { HttpServer } from '../../runtime/http/server.js';
import { testEngine } from './engine-fixture.js';
import { chromiumMissing, launchChromium } from './chromium.js';
import { probeH264, tempDir, waitFor } from './helpers.js';
import { skipUnlessCi } from '../support/peer.js';

test('browser → WHIP ingest: a Chromium canvas stream becomes a local H.264 track', async (t) => {
  const missing = chromiumMissing();
  if (missing) return skipUnlessCi(t, missing);
  const dir = await tempDir(t);
  const engine = testEngine(['cam', 'ingest']);
  t.after(() => engine.close());
  const ingest = new WhipIngest({ engine, log: silentLog, token: 'lan-token', maxSessions: 2 });
  t.after(() => ingest.close());
  const http = new HttpServer({ host: '127.0.0.1', port: 0, maxConnections: 64 });
  registerEgressRoutes(http.router, { ingest: { server: ingest, channel: 'ingest' }, dashboard: false });
  http.router.route('GET', '/blank', (ctx) => {
    ctx.res.writeHead(200, { 'content-type': 'text/html' });
    ctx.res.end('<html><body><canvas id="c" width="640" height="360"></canvas></body></html>');
  });
  const { port } = await http.listen();
  t.after(() => http.close());
  const browser = await launchChromium();
  t.after(() => browser.close());
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${port}/blank`);
  const status = await page.evaluate(async () => {
    const c = document.getElementById('c') as HTMLCanvasElement;
    const g = c.getContext('2d')!;
    let n = 0;
    setInterval(() => {
      g.fillStyle = `hsl(${(n * 7) % 360} 80% 50%)`;
      g.fillRect(0, 0, 640, 360);
      g.fillStyle = '#fff';
      g.font = '48px sans-serif';
      g.fillText(`frame ${n++}`, 40, 120);
    }, 33);
    const stream = c.captureStream(30);
    const pc = new RTCPeerConnection();
    (window as unknown as { pc: RTCPeerConnection }).pc = pc;
    const tr = pc.addTransceiver(stream.getVideoTracks()[0]!, { direction: 'sendonly' });
    const h264 = RTCRtpSender.getCapabilities('video')!.codecs.filter((x) => /h264/i.test(x.mimeType) && /packetization-mode=1/.test(x.sdpFmtpLine ?? ''));
    if (h264.length === 0) return { status: 0, error: 'no H.264 encoder in this Chromium' };
    tr.setCodecPreferences(h264);
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise<void>((r) => {
      const to = setTimeout(r, 3000);
      pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && (clearTimeout(to), r()));
    });
    const res = await fetch('/whip/ingest/browser/video', { method: 'POST', headers: { 'content-type': 'application/sdp', authorization: 'Bearer lan-token' }, body: pc.localDescription!.sdp });
    if (res.status !== 201) return { status: res.status, error: await res.text() };
    (window as unknown as { loc: string }).loc = res.headers.get('location')!;
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    return { status: 201, error: '' };
  });
  assert.equal(status.status, 201, status.error);
  const ref = { channel: 'ingest', source: 'browser', track: 'video' };
  await waitFor(() => engine.listTracks().some((x) => x.channel === 'ingest' && x.mime?.startsWith('video/h264;width=640')), 20_000, () => `ingested MIME (${JSON.stringify(ingest.stats())})`);
  const c = engine.subscribe(ref, { label: 'test' });
  const got: Buffer[] = [];
  const take = (): void => {
    for (let it = c.next(); it; it = c.next()) if (it.type === 'frame') got.push(it.frame.data);
  };
  c.onReadable(take);
  take();
  await waitFor(() => got.length >= 45, 20_000, () => `45 frames from the browser (${got.length})`);
  await writeFile(join(dir, 'browser.h264'), Buffer.concat(got));
  const p = await probeH264(join(dir, 'browser.h264'));
  assert.equal(p.width, 640);
  assert.ok(p.frames >= 45, `ffprobe decoded ${p.frames}`);
  const del = await page.evaluate(async () => (await fetch((window as unknown as { loc: string }).loc, { method: 'DELETE', headers: { authorization: 'Bearer lan-token' } })).status);
  assert.equal(del, 200);
  assert.equal(ingest.stats().sessions.length, 0);
});
