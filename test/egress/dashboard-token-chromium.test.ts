// Headless Chromium uses the dashboard of the real runtime over https (a certificate from the
// runtime's own local CA, trusted for this browser by its public key) with server.token set:
// the dashboard asks for the token once, a wrong one is refused without piling up attempts, the
// right one plays WHEP video and drives the PTZ pad (an ISAPI camera simulator with digest auth),
// the pad shows the head's link going down, and a reload needs no token again.
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { IsapiDeviceSim } from '../sim/isapi-device.js';
import { startApp, tempDir, waitFor } from '../support/app.js';
import { skipUnlessCi } from '../support/peer.js';
import { chromiumMissing, launchChromium } from './chromium.js';

const TOKEN = 'dashboard-token-0123456789';
const CH = 'c0ffee00000000000000';
const ARTIFACTS = join(process.cwd(), 'test-artifacts');

test('dashboard over https with a token: asked once, wrong one refused, video + PTZ work, link down shown, reload keeps it', async (t) => {
  const missing = chromiumMissing();
  if (missing) return skipUnlessCi(t, missing);
  await mkdir(ARTIFACTS, { recursive: true });
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const dome = new IsapiDeviceSim({ username: 'admin', password: 'dome-pw' });
  await dome.start();
  t.after(() => dome.stop());
  const app = await startApp({
    server: { token: TOKEN, tls: { cert: join(dir, 'tls', 'cert.pem'), key: join(dir, 'tls', 'key.pem'), generate: true, hosts: ['127.0.0.1', 'localhost'] } },
    channels: [{ id: CH, name: 'robot', sources: [{ name: 'base', driver: { kind: 'testpattern', width: 640, height: 360, fps: 15 } }] }],
    control: { ptz: [{ kind: 'isapi', name: 'dome', url: dome.url, username: 'admin', password: 'dome-pw', timeoutMs: 800 }] },
  });
  t.after(() => app.close());
  const base = `https://127.0.0.1:${app.port}`;
  await waitFor(() => app.supervisors[0]!.stats().ready, 20_000, 'camera ready');

  // Trusted for this browser only: the certificate's public key (what a user does by installing ca.pem).
  const browser = await launchChromium([`--ignore-certificate-errors-spki-list=${app.tls!.spkiSha256}`]);
  t.after(() => browser.close());
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const bodies: string[] = [];
  page.on('request', (r) => {
    if (r.url().includes('/ptz/dome/move')) bodies.push(r.postData() ?? '');
  });
  await page.goto(`${base}/`);
  await page.waitForSelector('#auth:not([hidden])', { timeout: 10_000 });
  assert.match((await page.textContent('#auth-msg')) ?? '', /needs its access token/);

  // A wrong token: refused, forgotten at once, so the polling that follows does not count as guesses.
  const wrongBefore = app.stats().http.access!.doors.api.wrong;
  await page.fill('#auth-token', 'not-the-token-000000000');
  await page.click('#auth button[type=submit]');
  await page.waitForFunction(() => /refused/.test(document.getElementById('auth-msg')!.textContent ?? ''), undefined, { timeout: 10_000 });
  await new Promise((r) => setTimeout(r, 3000)); // three polling rounds
  const access = app.stats().http.access!;
  const wrongNow = Object.values(access.doors).reduce((a, d) => a + d.wrong, 0) - wrongBefore;
  assert.ok(wrongNow <= 6, `${wrongNow} wrong attempts: one round of the dashboard's calls, no more`);
  assert.equal(access.blockedAddresses, 0);
  assert.equal(await page.evaluate(() => localStorage.getItem('moth-edge.token')), null);

  // The right token: the form goes away, video plays over WHEP, the PTZ pad appears with the head's link.
  await page.fill('#auth-token', TOKEN);
  await page.click('#auth button[type=submit]');
  await page.waitForSelector('#auth[hidden]', { state: 'attached', timeout: 10_000 });
  const decoded = (): Promise<number> =>
    page.evaluate(async () => {
      const pc = (window as unknown as { mothEdge: { pc: RTCPeerConnection | null } }).mothEdge.pc;
      let f = 0;
      if (pc) (await pc.getStats()).forEach((s: { type: string; kind?: string; framesDecoded?: number }) => s.type === 'inbound-rtp' && s.kind === 'video' && (f = s.framesDecoded ?? 0));
      return f;
    });
  const deadline = Date.now() + 30_000;
  let frames = 0;
  while ((frames = await decoded()) < 15) {
    if (Date.now() > deadline) assert.fail(`decoded only ${frames} frames over WHEP with the token`);
    await new Promise((r) => setTimeout(r, 200));
  }
  await page.waitForFunction(() => /link up/i.test(document.querySelector('.ptz .link-badge')?.textContent ?? ''), undefined, { timeout: 10_000 });

  // Hold ▶: repeated moves (with their send time) reach the camera; release: Stop.
  const right = (await page.$('.ptz [data-v="1,0,0"]'))!;
  await right.scrollIntoViewIfNeeded();
  const box = (await right.boundingBox())!;
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down();
  // The camera gets the move once; the pad's refreshes (every 250 ms) keep its lease (the same
  // velocity is not re-sent to an HTTP camera: it keeps moving until Stop).
  const routerIn = () => ((app.control.stats()['router'] as Record<string, Record<string, number>>)['ptz/dome']!)['commandsIn']!;
  await waitFor(() => dome.log.some((e) => e.op === 'continuous' && (e.pan ?? 0) > 0) && routerIn() >= 3, 5000, 'held pad moves the camera and refreshes');
  await page.mouse.up();
  await waitFor(() => !dome.moving, 5000, 'release stops the camera');
  const mv = JSON.parse(bodies[0]!) as { pan: number; ts: number; lease_ms: number };
  assert.ok(mv.pan > 0 && Math.abs(mv.ts - Date.now()) < 60_000 && mv.lease_ms <= 1000, JSON.stringify(mv));
  await page.screenshot({ path: join(ARTIFACTS, 'dashboard-token-https.png'), fullPage: true });

  // The camera goes away: the pad says so.
  const domePort = dome.port;
  await dome.stop();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down();
  await page.waitForFunction(() => /link down/i.test(document.querySelector('.ptz .link-badge')?.textContent ?? '') && /no answer|failed/.test(document.querySelector('.ptz .ptz-msg')?.textContent ?? ''), undefined, { timeout: 15_000 });
  await page.mouse.up();
  await page.screenshot({ path: join(ARTIFACTS, 'dashboard-ptz-link-down.png'), fullPage: true });
  // and it comes back by itself (the runtime probes the camera; the pad polls the link)
  await dome.start(domePort);
  await page.waitForFunction(() => /link up/i.test(document.querySelector('.ptz .link-badge')?.textContent ?? ''), undefined, { timeout: 15_000 });

  // Reload: the browser kept the token; no form, video again.
  await page.reload();
  await waitFor(async () => (await decoded()) > 5, 30_000, 'video after reload without asking again');
  assert.equal(await page.isHidden('#auth'), true);
  assert.equal(await page.evaluate(() => localStorage.getItem('moth-edge.token')), TOKEN);
  await page.close();
  await waitFor(() => (app.egress.stats().whep?.sessions ?? 0) === 0, 10_000, 'WHEP sessions ended with the page');
  assert.deepEqual(errors, []);
  t.diagnostic(`decoded ${frames}+ frames over https with a token; screenshots in ${ARTIFACTS}`);
});
