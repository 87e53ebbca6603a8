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
import { CANVAS_PAGE, chromiumMissing, launchChromium, publishCanvasOverWhip } from './chromium.js';
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
    ctx.res.end(CANVAS_PAGE);
  });
  const { port } = await http.listen();
  t.after(() => http.close());
  const browser = await launchChromium();
  t.after(() => browser.close());
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${port}/blank`);
  const status = await publishCanvasOverWhip(page, '/whip/ingest/browser/video', { authorization: 'Bearer lan-token' });
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
