// Recordings when the source misbehaves, through the real runtime (App, shipped defaults) and real
// peers: the test pattern's ffmpeg stopped and continued (SIGSTOP/SIGCONT), an RTMP publisher
// (ffmpeg) that leaves and comes back, a browser (headless Chromium) publishing over WHIP and then
// killed. After each: every closed segment decodes with the real ffmpeg with increasing DTS, no
// segment is left open, and frames in = frames on disk + frames dropped by reason.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import type { App } from '../../runtime/app.js';
import type { SegmentRow } from '../../recordings/index-db.js';
import { listSegmentFiles } from '../../recordings/recovery.js';
import type { RecordingService } from '../../recordings/service.js';
import { startApp } from '../support/app.js';
import { CANVAS_PAGE, chromiumMissing, launchChromium, publishCanvasOverWhip } from '../egress/chromium.js';
import { skipUnlessCi } from '../support/peer.js';
import { assertAccounted, decodeStrict, descendantsOf, FFMPEG, indexRows, tempDir, waitFor } from './helpers.js';

const CH = 'recfau1ts00000000000';

async function app(t: TestContext, config: Record<string, unknown>): Promise<{ a: App; rec: RecordingService; root: string }> {
  const dir = await tempDir(t, 'rec-src-');
  const root = path.join(dir, 'rec');
  let a: App | null = null;
  // one hook, in order: the App (it closes the recordings), then its files (tempDir's hook)
  t.after(async () => {
    await a?.close();
  });
  a = await startApp({ ...config, recordings: { enabled: true, root, ...((config.recordings as object) ?? {}) } });
  return { a, rec: a.components.get('recordings') as unknown as RecordingService, root };
}

const rowsOf = indexRows;

/** Every row closed with its file, no .part, every video segment decodes with increasing DTS. */
async function checkClosed(root: string, track: string): Promise<{ rows: SegmentRow[]; dtsSteps: number[] }> {
  const rows = rowsOf(root).filter((r) => `${r.channel}/${r.source}/${r.track}` === track);
  assert.deepEqual(listSegmentFiles(root).filter((f) => f.endsWith('.part')), [], 'no segment left open');
  assert.ok(rows.length > 0);
  const dtsSteps: number[] = [];
  for (const r of rows) {
    assert.equal(r.state, 'closed', `${r.path} closed`);
    const d = await decodeStrict(path.join(root, r.path));
    assert.equal(d.frames, r.frames, `${r.path}: decoded = indexed frames`);
    for (let i = 1; i < d.dts.length; i++) dtsSteps.push(d.dts[i]! - d.dts[i - 1]!);
  }
  return { rows, dtsSteps };
}

function cmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

const trackStats = (rec: RecordingService, track: string) => rec.stats().tracks.find((x) => x.track === track);

test('SIGSTOP/SIGCONT of the test pattern encoder: frames keep the encoder\'s spacing (no burst of equal times), every segment decodes, every frame counted', async (t) => {
  const { a, rec, root } = await app(t, {
    channels: [{ id: CH, name: 'robot', sources: [{ name: 'base', driver: { kind: 'testpattern', width: 320, height: 240, fps: 30, bitrateKbps: 400 } }] }],
    recordings: { segmentDurationMs: 4000 },
  });
  const track = `${CH}/base/video`;
  await waitFor(() => (trackStats(rec, track)?.framesWritten ?? 0) >= 60, 'recording the test pattern', 30_000);
  const ffmpeg = descendantsOf(process.pid).find((p) => /ffmpeg .*testsrc2/.test(cmdline(p)));
  assert.ok(ffmpeg, 'the encoder child');
  // a short stall, then one past a second (below the driver's 5 s stall timeout: no restart)
  for (const stallMs of [400, 1500]) {
    const before = trackStats(rec, track)!.framesWritten;
    process.kill(ffmpeg, 'SIGSTOP');
    await new Promise((r) => setTimeout(r, stallMs)); // the fault itself lasts this long
    process.kill(ffmpeg, 'SIGCONT');
    await waitFor(() => trackStats(rec, track)!.framesWritten >= before + 90, `recording on after a ${stallMs} ms stall`, 30_000);
  }
  const closedBefore = trackStats(rec, track)!.segmentsClosed;
  await waitFor(() => trackStats(rec, track)!.segmentsClosed >= closedBefore + 1, 'one more segment', 30_000);
  const drv = a.supervisors[0]!.driver;
  await a.close();
  const driver = drv.stats();
  const st = trackStats(rec, track)!;
  assertAccounted(st);
  assert.equal(st.queueDropped, 0, 'the engine dropped nothing from the recorder\'s queue');
  assert.equal(st.framesPending, 0);
  assert.equal(st.ticksBumped, 0, 'no two frames needed moving apart');
  assert.equal(driver.restarts, 0, 'the stall did not restart the encoder');
  assert.ok(st.framesIn <= Number(driver.frames));
  const { rows, dtsSteps } = await checkClosed(root, track);
  assert.equal(rows.reduce((n, r) => n + r.frames, 0), st.framesWritten, 'frames written = frames in the segments');
  // 30 fps with FLV's millisecond times: 33 or 34 ms apart, also for the frames that came in a burst after each stall
  const off = dtsSteps.filter((d) => d < 0.025 || d > 0.045);
  assert.deepEqual(off, [], `frame spacing off the encoder's (${dtsSteps.length} steps)`);
});

test('an RTMP publisher (ffmpeg) that leaves, comes back and leaves again: each visit\'s segment closes after the linger, decodes, counts add up', async (t) => {
  const KEY = 'rec-fault-9f2c';
  const { a, rec, root } = await app(t, {
    channels: [{ id: CH, name: 'robot', sources: [] }],
    rtmp: { host: '127.0.0.1', port: 0, streams: [{ app: 'live', key: KEY, channel: 'robot', track: 'front' }] },
  });
  const rtmp = a.components.get('rtmp') as unknown as { stats(): { port: number; frames: number; publishes: number } };
  const port = rtmp.stats().port;
  const track = `${CH}/base/front`;
  const publish = (seconds: number) =>
    new Promise<void>((resolve, reject) => {
      const p = spawn(FFMPEG, ['-hide_banner', '-loglevel', 'error', '-nostdin', '-re', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25', '-t', String(seconds), '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '25', '-pix_fmt', 'yuv420p', '-f', 'flv', `rtmp://127.0.0.1:${port}/live/${KEY}`], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      p.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-2000)));
      p.on('error', reject);
      p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`ffmpeg exited ${code}: ${err}`))));
    });
  for (let visit = 1; visit <= 2; visit++) {
    await publish(4);
    // the publisher left: engine linger (5 s) + the recorder's own linger (10 s), shipped defaults
    await waitFor(() => {
      const rows = rowsOf(root).filter((r) => r.track === 'front');
      return rows.length === visit && rows.every((r) => r.state === 'closed') && !listSegmentFiles(root).some((f) => f.endsWith('.part'));
    }, `visit ${visit}'s segment to close after the publisher left`, 40_000);
  }
  const ingested = rtmp.stats().frames;
  assert.equal(rtmp.stats().publishes, 2);
  await a.close();
  const st = trackStats(rec, track)!;
  assertAccounted(st);
  assert.equal(st.queueDropped, 0, 'the engine dropped nothing from the recorder\'s queue');
  const { rows } = await checkClosed(root, track);
  assert.equal(rows.length, 2, 'one segment per visit');
  assert.equal(rows.reduce((n, r) => n + r.frames, 0), st.framesWritten);
  // the recorder joins within discoverMs of the publish, at the cached GOP: at most one GOP (25) missed per visit
  assert.ok(st.framesWritten >= ingested - 2 * 25, `written ${st.framesWritten} of ${ingested} ingested`);
  assert.ok(st.keyframeRequests >= 2, 'asked for a keyframe at each recording start');
});

test('a browser publishing over WHIP is asked for keyframes, so its fragments reach the disk while it publishes; killed, its segment closes', async (t) => {
  const missing = chromiumMissing();
  if (missing) return skipUnlessCi(t, missing);
  const { a, rec, root } = await app(t, {
    channels: [{ id: CH, name: 'robot', sources: [] }],
    egress: { whipIngest: { enabled: true, channel: 'robot' }, whep: { enabled: false } },
  });
  const base = `http://127.0.0.1:${a.port}`;
  a.http.router.route('GET', '/blank', (ctx) => {
    ctx.res.writeHead(200, { 'content-type': 'text/html' });
    ctx.res.end(CANVAS_PAGE);
  });
  const browser = await launchChromium();
  t.after(() => browser.close().catch(() => undefined));
  const page = await browser.newPage();
  await page.goto(`${base}/blank`);
  const status = await publishCanvasOverWhip(page, '/whip/robot/browser/video');
  assert.equal(status.status, 201, status.error);
  const track = `${CH}/browser/video`;
  // while the browser publishes: complete fragments on disk (the browser sends keyframes only when asked)
  await waitFor(() => (trackStats(rec, track)?.framesWritten ?? 0) >= 150, '5 s of fragments on disk while publishing', 60_000);
  const live = trackStats(rec, track)!;
  assert.ok(live.keyframeRequests > live.keyframeRequestsUnserved, `keyframes asked and served: ${live.keyframeRequests}/${live.keyframeRequestsUnserved}`);
  const part = listSegmentFiles(root).find((f) => f.endsWith('.part') && f.includes('/browser/'));
  assert.ok(part, 'the open segment');
  assert.ok(fs.statSync(path.join(root, part)).size > 100_000, 'its fragments are in the file, not in memory');

  // kill -9 the browser (every process of it): no DELETE, no goodbye
  for (const pid of descendantsOf(process.pid).filter((p) => /chrom/.test(cmdline(p)))) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  await waitFor(() => {
    const rows = rowsOf(root).filter((r) => r.source === 'browser');
    return rows.length >= 1 && rows.every((r) => r.state === 'closed') && !listSegmentFiles(root).some((f) => f.endsWith('.part'));
  }, 'the segment to close after the browser died (session end + lingers)', 90_000);
  await a.close();
  const st = trackStats(rec, track)!;
  assertAccounted(st);
  assert.equal(st.queueDropped, 0, 'the engine dropped nothing from the recorder\'s queue');
  const { rows } = await checkClosed(root, track);
  assert.equal(rows.reduce((n, r) => n + r.frames, 0), st.framesWritten);
});
