// The dashboard walked in headless Chromium against the real runtime (recordings on, an upstream to a
// second real moth-edge acting as the Moth server): the Recordings card lists the newest segments,
// "live" never exceeds the uptime, tracks show channel names, a link that is connected again shows no
// old error, and every card links to the API it reads.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import type { App } from '../../runtime/app.js';
import { chromiumMissing, launchChromium } from '../egress/chromium.js';
import { skipUnlessCi } from '../support/peer.js';
import { closedPort, startApp, tempDir, waitFor } from '../support/app.js';

type Seg = { id: number; startMs: number };
const segments = async (base: string, q: string): Promise<Seg[]> => ((await (await fetch(`${base}/api/recordings?${q}`)).json()) as { segments: Seg[] }).segments;

test('dashboard in Chromium: newest recordings listed, live ≤ uptime, names, no stale link error, API links', { timeout: 120_000 }, async (t) => {
  const missing = chromiumMissing();
  if (missing) return skipUnlessCi(t, missing);
  const { dir, cleanup } = tempDir('moth-edge-dash-');
  t.after(cleanup);
  const mothPort = await closedPort();
  // The robot starts while its upstream is down: the link fails first (a lastError), then connects.
  const robot = await startApp({
    channels: [
      {
        name: 'robot',
        sources: [
          { driver: { kind: 'testpattern', width: 160, height: 120, fps: 10, bitrateKbps: 100, keyintSeconds: 0.5 } },
          { driver: { kind: 'simulated', track: 'imu', rateHz: 20 } },
        ],
      },
    ],
    recordings: { enabled: true, root: join(dir, 'rec'), segmentDurationMs: 1000, fragmentDurationMs: 250, discoverMs: 100 },
    egress: { upstream: [{ url: `ws://127.0.0.1:${mothPort}`, instant: 'robot1', from: 'robot/base/imu' }] },
  });
  let moth: App | null = null;
  t.after(async () => {
    await robot.close();
    await moth?.close();
  });
  const base = `http://127.0.0.1:${robot.port}`;
  const link = () => robot.egress.upstream[0]!.stats();
  await waitFor(() => link().lastError !== null, 15_000, 'the upstream failing while the server is down');
  moth = await startApp({ server: { port: mothPort } });
  await waitFor(() => link().state === 'connected', 20_000, 'the upstream connected');
  // More segments than the card shows, so "the oldest six" and "the newest six" differ.
  await waitFor(async () => (await segments(base, 'limit=20')).length >= 12, 40_000, '12 recorded segments');
  await waitFor(() => link().spans.delivered > 20, 20_000, 'live records delivered');

  const browser = await launchChromium();
  t.after(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const newestBefore = (await segments(base, 'limit=1&order=desc'))[0]!;
  await page.goto(`${base}/?autoplay=0`);

  // Recordings: newest first, the newest one there.
  await page.waitForSelector('#recordings li[data-id]', { timeout: 20_000 });
  const listed = await page.$$eval('#recordings li[data-id]', (els) => els.map((e) => ({ id: Number(e.getAttribute('data-id')), startMs: Number(e.getAttribute('data-start-ms')) })));
  assert.ok(listed.length > 0 && listed.length <= 6, `${listed.length} listed`);
  assert.ok(listed[0]!.id >= newestBefore.id, `the first listed (${listed[0]!.id}) is at least the newest when the page opened (${newestBefore.id})`);
  for (let i = 1; i < listed.length; i++) assert.ok(listed[i - 1]!.startMs >= listed[i]!.startMs, 'newest first');
  const oldest = (await segments(base, 'limit=6')).map((s) => s.id);
  assert.ok(!listed.some((s) => oldest.includes(s.id)), 'none of the oldest six');

  // Live ≤ uptime, as the page shows them (the gap report's own merged total).
  await page.waitForSelector('#gaps .gap-row[data-live-s]', { timeout: 20_000 });
  await page.waitForFunction(() => Number(document.querySelector('#gaps .gap-row')?.getAttribute('data-live-s')) > 0, null, { timeout: 20_000 });
  const liveS = Number(await page.getAttribute('#gaps .gap-row', 'data-live-s'));
  const uptimeS = Number(await page.getAttribute('#uptime', 'data-s'));
  assert.ok(liveS > 0 && liveS <= uptimeS + 1, `live ${liveS} s ≤ uptime ${uptimeS} s`);
  assert.match((await page.textContent('#gaps'))!, /robot\/base\/imu/, 'the gap row is named');

  // Names, not ids: tracks table, video select, uplink table.
  const id = robot.engine.findChannel('robot')!.id;
  await page.waitForFunction(() => document.querySelectorAll('#tracks tr td.mono').length >= 2, null, { timeout: 10_000 });
  const trackCells = await page.$$eval('#tracks td.mono', (els) => els.map((e) => e.textContent));
  assert.ok(trackCells.includes('robot/base/video') && trackCells.includes('robot/base/imu'), `tracks by name: ${trackCells.join(', ')}`);
  assert.ok(!trackCells.some((c) => c?.includes(id)), 'no channel id shown');
  assert.match((await page.textContent('#track-select'))!, /robot\/base\/video/);
  assert.match((await page.textContent('#uplink'))!, /robot\/base\/imu/);

  // The link connected again: no old error shown, though /api/stats still has it.
  await page.waitForFunction(() => /connected/.test(document.querySelector('#links')?.textContent ?? ''), null, { timeout: 10_000 });
  assert.equal(await page.$$eval('#links .link-err', (els) => els.length), 0, 'no lastError shown on a connected link');

  // Every card links to its API, and each link answers.
  const apis = await page.$$eval('.card-head a.api', (els) => els.map((e) => (e as HTMLAnchorElement).getAttribute('href')!));
  assert.equal(apis.length, await page.$$eval('.card', (els) => els.length), 'one API link per card');
  for (const href of apis) {
    const r = await fetch(`${base}${href}`);
    assert.equal(r.status, 200, `${href} → ${r.status}`);
  }
});
