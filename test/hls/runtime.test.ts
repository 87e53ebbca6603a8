// HLS through the whole runtime (testpattern camera → engine → /hls), against real ffmpeg/ffprobe:
// live LL-HLS plays, every reload passes the RFC validator, blocking reload and the preload hint
// block until the part exists, bad directives are refused, muxing stops when nobody asks and its
// bytes leave the engine's count; recorded HLS plays a range of recordings, a lost file becomes
// EXT-X-GAP and ffmpeg plays across it.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { App } from '../../runtime/app.js';
import { EMBEDDED_CHANNEL_ID } from '../../runtime/config/schema.js';
import { ffprobe, run, startApp, tempDir, waitFor } from '../support/app.js';
import { firstSampleIsSync, parsePlaylist, PlaylistHistory, validatePlaylist as validateAll, type ValidateOptions } from './validator.js';

// Capture times here are arrival times on a loaded shared machine: frames come in bursts, so the
// 85 % part floor (a timing property, checked with steady timing in playlist.test.ts) is left out;
// every other rule is checked.
const validatePlaylist = (text: string, o: ValidateOptions = {}) => validateAll(text, { ...o, partFloor: false });

const camera = (extra: Record<string, unknown> = {}) => ({
  channels: [{ id: EMBEDDED_CHANNEL_ID, name: 'robot', sources: [{ name: 'base', driver: { kind: 'testpattern', width: 320, height: 240, fps: 30, bitrateKbps: 300 } }] }],
  ...extra,
});

type HlsStats = { tracks: number; idleStopped: number; heldBytes: number; live: Array<{ window: { heldBytes: number; targetDurationS: number }; requests: Record<string, number> }> };
const hlsStats = (app: App) => (app.stats() as unknown as { hls: HlsStats }).hls;

test('live LL-HLS: ffmpeg plays it; reloads pass the validator; blocking reload, preload hint, INDEPENDENT flags, refusals; idle stop returns the bytes', async (t) => {
  const app = await startApp(camera({ hls: { idleTimeoutSeconds: 2 } }));
  t.after(() => app.close());
  const base = `http://127.0.0.1:${app.port}/hls/robot/base/video`;
  // Names and ids both address the channel.
  const first = await fetch(`${base}/index.m3u8`);
  assert.equal(first.status, 200);
  assert.equal(first.headers.get('content-type'), 'application/vnd.apple.mpegurl');
  const text0 = await first.text();
  assert.deepEqual(validatePlaylist(text0, { live: true }), [], text0);
  assert.equal((await fetch(`http://127.0.0.1:${app.port}/hls/${EMBEDDED_CHANNEL_ID}/base/video/index.m3u8`)).status, 200);

  // ffmpeg reads the live playlist for 3 s of media and decodes it.
  const { dir, cleanup } = tempDir('hls-live-');
  t.after(cleanup);
  const out = join(dir, 'live.mp4');
  await run('ffmpeg', ['-v', 'error', '-i', `${base}/index.m3u8`, '-t', '3', '-c', 'copy', '-y', out], { timeout: 60_000 });
  const probe = await ffprobe(out);
  assert.equal(probe.codec, 'h264');
  assert.equal(probe.width, 320);
  assert.ok(probe.frames >= 80, `ffmpeg got ${probe.frames} frames of 3 s`);

  // Blocking reload, part by part, for ~3 s: each answer holds the asked part; every playlist is valid.
  const hist = new PlaylistHistory();
  let p = hist.add(text0);
  let checkedParts = 0;
  for (let k = 0; k < 15; k++) {
    const segs = p.segments;
    const lastSeg = segs[segs.length - 1]!;
    const open = p.openParts;
    const msn = open.length ? lastSeg.msn + 1 : lastSeg.msn + 1;
    const part = open.length;
    const started = Date.now();
    const r = await fetch(`${base}/index.m3u8?_HLS_msn=${msn}&_HLS_part=${part}`);
    assert.equal(r.status, 200);
    const text = await r.text();
    assert.deepEqual(validatePlaylist(text, { live: true }), [], text);
    p = hist.add(text);
    const has = p.segments.some((s) => s.msn > msn || (s.msn === msn && s.parts.length > part)) || p.openParts.length > part;
    assert.ok(has, `the answer to msn=${msn} part=${part} holds that part\n${text}`);
    assert.ok(Date.now() - started < 3000, 'answered within 3 target durations');
    // INDEPENDENT=YES exactly on parts starting with a sync sample (the media says so)
    for (const pt of [...(p.segments[p.segments.length - 1]?.parts ?? []), ...p.openParts]) {
      const b = Buffer.from(await (await fetch(`${base}/${pt.uri}`)).arrayBuffer());
      assert.equal(pt.independent, firstSampleIsSync(b), pt.uri);
      checkedParts++;
    }
  }
  assert.deepEqual(hist.errors, []);
  assert.ok(checkedParts > 10);

  // The preload hint: a request for it is held until the part exists, then served.
  const hinted = /URI="([^"]+)"/.exec(p.preloadHints.length ? `URI="${p.preloadHints[0]!.URI}"` : '')![1]!;
  const hr = await fetch(`${base}/${hinted}`);
  assert.equal(hr.status, 200);
  assert.ok(firstSampleIsSync(Buffer.from(await hr.arrayBuffer())) !== undefined);
  // Whole segments for non-LL clients; the init section.
  const seg = p.segments[p.segments.length - 1]!;
  const sr = await fetch(`${base}/${seg.uri}`);
  assert.equal(sr.status, 200);
  const mapUri = parsePlaylist(text0).segments[0]!.map!;
  const ir = await fetch(`${base}/${mapUri}`);
  assert.equal(ir.status, 200);
  assert.equal(Buffer.from(await ir.arrayBuffer()).toString('latin1', 4, 8), 'ftyp');

  // Refusals: part without msn, msn too far, unknown files, stale session, unknown track, non-H.264.
  const last = p.segments[p.segments.length - 1]!.msn;
  assert.equal((await fetch(`${base}/index.m3u8?_HLS_part=1`)).status, 400);
  assert.equal((await fetch(`${base}/index.m3u8?_HLS_msn=${last + 10}`)).status, 400);
  assert.equal((await fetch(`${base}/index.m3u8?_HLS_msn=abc`)).status, 400);
  assert.equal((await fetch(`${base}/part-00000000-1.m4s`)).status, 404);
  assert.equal((await fetch(`${base}/../../etc/passwd`)).status, 404);
  assert.equal((await fetch(`http://127.0.0.1:${app.port}/hls/robot/base/nope/index.m3u8`)).status, 404);
  assert.equal((await fetch(`http://127.0.0.1:${app.port}/hls/nochannel/base/video/index.m3u8`)).status, 404);

  // Memory: the window's bytes are in the engine's count; muxing stops when nobody asks and gives them back.
  const st = hlsStats(app);
  assert.equal(st.tracks, 1);
  assert.ok(st.heldBytes > 0 && st.heldBytes <= 8 * 1024 * 1024);
  const engineUsed = () => (app.stats() as unknown as { engine: { memory: { usedBytes: number } } }).engine.memory.usedBytes;
  assert.ok(engineUsed() >= st.heldBytes, 'the window is counted against the engine ceiling');
  await waitFor(() => hlsStats(app).tracks === 0, 15_000, 'idle stop');
  assert.equal(hlsStats(app).idleStopped, 1);
  assert.ok(engineUsed() < st.heldBytes, `engine count fell back (${engineUsed()} < ${st.heldBytes})`);
  // The old session's URIs are gone; a new request starts a new session.
  assert.equal((await fetch(`${base}/${seg.uri}`)).status, 404);
  assert.equal((await fetch(`${base}/index.m3u8`)).status, 200);
});

test('live LL-HLS: a small windowBytes bounds memory and counts the drops', async (t) => {
  const app = await startApp(camera({ hls: { windowBytes: 256 * 1024, windowSegments: 30 } }));
  t.after(() => app.close());
  const base = `http://127.0.0.1:${app.port}/hls/robot/base/video`;
  assert.equal((await fetch(`${base}/index.m3u8`)).status, 200);
  let peak = 0;
  // Ask along for ~6 s so the window fills past its bound.
  const end = Date.now() + 6000;
  while (Date.now() < end) {
    const p = parsePlaylist(await (await fetch(`${base}/index.m3u8`)).text());
    const last = p.segments[p.segments.length - 1]!;
    await fetch(`${base}/index.m3u8?_HLS_msn=${last.msn + 1}`);
    peak = Math.max(peak, hlsStats(app).heldBytes);
  }
  const w = (app.stats() as unknown as { hls: { live: Array<{ window: { dropped: { bytes: number }; heldBytes: number } }> } }).hls.live[0]!.window;
  assert.ok(w.dropped.bytes > 0, 'segments beyond windowBytes dropped, counted');
  assert.ok(peak <= 256 * 1024 + 200 * 1024, `held at most the bound plus one segment (${peak})`);
});

test('recorded HLS: a VOD playlist over the recordings plays in ffmpeg; a lost file becomes EXT-X-GAP and playback crosses it', async (t) => {
  const { dir, cleanup } = tempDir('hls-rec-');
  t.after(cleanup);
  const app = await startApp(camera({ recordings: { enabled: true, root: join(dir, 'rec'), segmentDurationMs: 2000, fragmentDurationMs: 1000 } }));
  t.after(() => app.close());
  const t0 = Date.now();
  const rows = async () => ((await (await fetch(`http://127.0.0.1:${app.port}/api/recordings?kind=video&order=asc`)).json()) as { segments: Array<{ id: number; state: string; path: string; startMs: number; endMs: number }> }).segments.filter((s) => s.state !== 'recording');
  await waitFor(async () => (await rows()).length >= 5, 30_000, 'five closed 2 s recordings');
  const closed = await rows();
  const vod = `http://127.0.0.1:${app.port}/hls/recordings/robot/base/video/index.m3u8?from=${t0 - 1000}&to=${closed[4]!.endMs}`;
  const text = await (await fetch(vod)).text();
  assert.deepEqual(validatePlaylist(text), [], text);
  const p = parsePlaylist(text);
  assert.ok(p.endList && p.playlistType === 'VOD' && p.segments.length >= 3);
  assert.ok(p.segments.every((s) => !s.gap));
  const total = p.segments.reduce((a, s) => a + s.duration, 0);
  assert.ok(Math.abs(total - (closed[4]!.endMs - closed[0]!.startMs) / 1000) < 1.5, `playlist covers the recordings (${total} s)`);
  const out = join(dir, 'vod.mp4');
  await run('ffmpeg', ['-v', 'error', '-i', vod, '-c', 'copy', '-y', out], { timeout: 60_000 });
  const probe = await ffprobe(out);
  assert.ok(Math.abs(probe.frames - total * 30) < 45, `ffmpeg decoded ${probe.frames} frames for ${total} s`);

  // Lose the third file (the index still says present): its time becomes EXT-X-GAP segments.
  rmSync(join(dir, 'rec', closed[2]!.path));
  const text2 = await (await fetch(vod)).text();
  assert.deepEqual(validatePlaylist(text2), [], text2);
  const p2 = parsePlaylist(text2);
  const gaps = p2.segments.filter((s) => s.gap);
  assert.ok(gaps.length >= 1, text2);
  const total2 = p2.segments.reduce((a, s) => a + s.duration, 0);
  assert.ok(Math.abs(total2 - total) < 0.1, 'the timeline keeps the real time across the gap');
  const out2 = join(dir, 'vod-gap.mp4');
  await run('ffmpeg', ['-v', 'error', '-i', text2.length ? vod : '', '-c', 'copy', '-y', out2], { timeout: 60_000 }).catch((e: { stderr?: string }) => {
    // ffmpeg fetches the gap URI (it does not know EXT-X-GAP), gets 404 and goes on: only that may be logged
    assert.ok(!/Invalid data|moov atom not found/.test(e.stderr ?? ''), e.stderr);
  });
  const probe2 = await ffprobe(out2);
  assert.ok(probe2.frames > 0.6 * probe.frames && probe2.frames < probe.frames, `frames before and after the gap (${probe2.frames} of ${probe.frames})`);

  // Bad input: range too long, bad times, foreign segment ids, hostile counts.
  const api = `http://127.0.0.1:${app.port}/hls/recordings/robot/base/video`;
  assert.equal((await fetch(`${api}/index.m3u8?from=0&to=${Date.now()}`)).status, 400);
  assert.equal((await fetch(`${api}/index.m3u8?from=nope`)).status, 400);
  assert.equal((await fetch(`${api}/index.m3u8?from=1000&to=2000`)).status, 404);
  assert.equal((await fetch(`${api}/frag-${closed[0]!.id}-0-999.m4s`)).status, 404);
  assert.equal((await fetch(`${api}/frag-999999-0-1.m4s`)).status, 404);
  assert.equal((await fetch(`${api}/frag-${closed[0]!.id}-0-1.m4s?t0=-5`)).status, 400);
  assert.equal((await fetch(`${api}/gap.m4s`)).status, 404);
});
