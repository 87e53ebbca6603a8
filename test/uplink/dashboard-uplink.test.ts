// The dashboard's uplink view in headless Chromium (laptop and phone): the budget line, each
// upstream track's priority and mode, backfill progress and the 10-minute gap bars (live /
// backfilled / missing) drawn from GET /api/gaps — against the real engine, recorder and egress
// after a 6 s cut of the thin link. Screenshots are written next to the test's temp files.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { registerEgressRoutes } from '../../runtime/egress/http.js';
import { chromiumMissing, launchChromium } from '../egress/chromium.js';
import { tempDir, waitFor } from '../egress/helpers.js';
import { skipUnlessCi } from '../support/peer.js';
import { allArrive, rig, sleep } from './scenario.js';

test('dashboard uplink view: modes, budget, backfill and gap bars on laptop and phone', { timeout: 120_000 }, async (t) => {
  const missing = chromiumMissing();
  if (missing) return skipUnlessCi(t, missing);
  const shots = process.env.UPLINK_SHOTS ?? (await tempDir(t, "uplink-dash-"));
  const r = await rig(t, { priority: true });
  registerEgressRoutes(r.router, { overview: () => ({ engine: r.engine.stats(), egress: r.eg.stats() }), dashboard: true, source: r.engine });
  await waitFor(() => r.received(r.imu).live.length >= 50, 15_000, 'live before the cut');
  r.link.proxy.cut();
  await sleep(6000);
  r.link.proxy.restore();
  await allArrive(r, r.imu, r.imu.count() - 200, 30_000);
  const browser = await launchChromium();
  t.after(() => browser.close());
  for (const [name, viewport] of [['laptop', { width: 1280, height: 900 }], ['phone', { width: 390, height: 844 }]] as const) {
    const page = await browser.newPage({ viewport, deviceScaleFactor: 1 });
    await page.goto(`${r.base}/?autoplay=0`);
    await page.waitForFunction(() => (document.getElementById('uplink')?.textContent ?? '').includes('cam/base/imu'), null, { timeout: 15_000 });
    await page.waitForFunction(() => document.querySelectorAll('#gaps .g-back').length > 0 && document.querySelectorAll('#gaps .g-live').length > 0, null, { timeout: 20_000 });
    const table = await page.locator('#uplink').innerText();
    assert.match(table, /cam\/base\/video/);
    assert.match(table, /full|keyframes-only|paused/);
    assert.match(table, /\d+ sent/, 'backfill progress shown');
    const budget = await page.locator('#uplink-budget').innerText();
    assert.match(budget, /budget/);
    const gapText = await page.locator('#gaps').innerText();
    assert.match(gapText, /s backfilled/);
    // Nothing overflows the phone's width.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 1, `${name}: page wider than the viewport by ${overflow}px`);
    const file = join(shots, `uplink-${name}.png`);
    await page.locator('#uplink-h').scrollIntoViewIfNeeded();
    await page.screenshot({ path: file, fullPage: name === 'phone' });
    t.diagnostic(`${name} screenshot: ${file}`);
    await page.close();
  }
  r.stopAll();
});
