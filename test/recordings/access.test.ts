// Access: HTTP list / Range download / continuous fMP4 playback, the CLI (list, verify, sync,
// export) and the MCAP export read back with @mcap/core, its video decoded by ffprobe.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { test } from 'node:test';
import { McapIndexedReader, type IReadable } from '@mcap/core';
import { Router } from '../../runtime/http/router.js';
import { registerRecordingRoutes } from '../../runtime/recordings/http.js';
import { runRecordingsCli } from '../../runtime/recordings/cli.js';
import { IndexDb } from '../../recordings/index-db.js';
import { createRecordingService } from '../../recordings/service.js';
import { config, decodeStrict, FFMPEG, FFPROBE, ffprobeFrames, newEngine, recordFixture, tempDir } from './helpers.js';
import { execFileSync } from 'node:child_process';
import { JpegSplitter } from '../../drivers/camera/jpeg.js';
import { captureClockUs } from '../../runtime/engine/api.js';
import { startNginx } from './nginx.js';
import { chromiumMissing, launchChromium } from '../egress/chromium.js';
import { skipUnlessCi } from '../support/peer.js';

async function serve(t: import('node:test').TestContext, root: string) {
  return (await serveWith(t, root)).base;
}

async function serveWith(t: import('node:test').TestContext, root: string) {
  const svc = createRecordingService({ config: config(root), source: newEngine() });
  await svc.start();
  const router = new Router();
  registerRecordingRoutes(router, svc);
  const server = http.createServer((req, res) => {
    void router.handle(req, res).then((m) => {
      if (!m) res.writeHead(404).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await svc.close();
  });
  return { svc, base: `http://127.0.0.1:${(server.address() as import('node:net').AddressInfo).port}` };
}

function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  return runRecordingsCli(argv, { out: (s) => (out += s), err: (s) => (err += s) }).then((code) => ({ code, out, err }));
}

test('HTTP: list with filters, Range download, continuous playback of a time range', async (t) => {
  const dir = await tempDir(t);
  const root = path.join(dir, 'rec');
  const fed = await recordFixture(root, 6);
  const base = await serve(t, root);
  const all = (await (await fetch(`${base}/api/recordings`)).json()) as { count: number; segments: Array<{ id: number; kind: string; bytes: number; startMs: number; endMs: number; url: string; frames: number; track: string }> };
  assert.ok(all.count >= 6);
  const cams = (await (await fetch(`${base}/api/recordings?channel=robot&source=base&track=cam`)).json()) as typeof all;
  assert.ok(cams.segments.every((s) => s.track === 'cam' && s.kind === 'video'));
  const mid = cams.segments[1]!;
  const ranged = (await (await fetch(`${base}/api/recordings?track=cam&from=${mid.startMs}&to=${mid.startMs + 1}`)).json()) as typeof all;
  assert.ok(ranged.segments.some((s) => s.id === mid.id));
  assert.equal((await fetch(`${base}/api/recordings?track=../etc`)).status, 400);
  assert.equal((await fetch(`${base}/api/recordings?from=yesterday`)).status, 400);

  // Range
  const whole = Buffer.from(await (await fetch(`${base}${mid.url}`)).arrayBuffer());
  assert.equal(whole.length, mid.bytes);
  const part = await fetch(`${base}${mid.url}`, { headers: { range: 'bytes=100-199' } });
  assert.equal(part.status, 206);
  assert.equal(part.headers.get('content-range'), `bytes 100-199/${mid.bytes}`);
  assert.deepEqual(Buffer.from(await part.arrayBuffer()), whole.subarray(100, 200));
  const tail = await fetch(`${base}${mid.url}`, { headers: { range: 'bytes=-10' } });
  assert.deepEqual(Buffer.from(await tail.arrayBuffer()), whole.subarray(whole.length - 10));
  assert.equal((await fetch(`${base}${mid.url}`, { headers: { range: `bytes=${mid.bytes}-` } })).status, 416);
  assert.equal((await fetch(`${base}/api/recordings/999999/file`)).status, 404);

  // playback: the whole recording as one fMP4, decodable end to end
  const from = cams.segments[0]!.startMs;
  const to = cams.segments.at(-1)!.endMs;
  const pb = await fetch(`${base}/api/recordings/playback?channel=robot&source=base&track=cam&from=${from}&to=${to}`);
  assert.equal(pb.status, 200);
  assert.equal(pb.headers.get('content-type'), 'video/mp4');
  const file = path.join(dir, 'pb.mp4');
  fs.writeFileSync(file, Buffer.from(await pb.arrayBuffer()));
  const p = await ffprobeFrames(file);
  assert.equal(p.frames, fed.video, 'every frame, across segment boundaries, in one file');
  // a sub-range starts at the keyframe before `from`: in a whole 2 s segment (keyframes at +0 and +1 s),
  // 1.5 s in — the output begins at the second keyframe, not at the segment's start
  const full = cams.segments.find((s) => s.endMs - s.startMs >= 1900)!;
  const sub = await fetch(`${base}/api/recordings/playback?channel=robot&source=base&track=cam&from=${full.startMs + 1500}&to=${full.startMs + 2500}`);
  fs.writeFileSync(file, Buffer.from(await sub.arrayBuffer()));
  const ps = await ffprobeFrames(file);
  assert.ok(ps.frames >= 30 && ps.frames <= 90, `sub-range frames ${ps.frames}`);
  // the player's timeline starts at the first frame: no empty lead before the keyframe
  const firstPts = execFileSync(FFPROBE, ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'packet=pts_time', '-read_intervals', '%+#1', '-of', 'csv=p=0', file], { encoding: 'utf8' }).trim().split('\n')[0];
  assert.equal(Number(firstPts), 0, `first packet at ${firstPts} s`);
  assert.equal((await decodeStrict(file)).frames, ps.frames);
  assert.equal((await fetch(`${base}/api/recordings/playback?channel=robot&source=base&track=cam&from=1&to=2`)).status, 404);
  const page = await fetch(`${base}/recordings`);
  assert.match(await page.text(), /play/);
});

test('HTTP for a list with play buttons: tracks with continuous spans and play URLs, newest first, filters; playback never reads an open segment', async (t) => {
  const dir = await tempDir(t);
  const root = path.join(dir, 'rec');
  const fed = await recordFixture(root, 6);
  const { svc, base } = await serveWith(t, root);
  type Seg = { id: number; kind: string; startMs: number; endMs: number; playUrl: string | null; url: string | null; goneAt: string | null; state: string };
  const get = async <T>(u: string): Promise<T> => {
    const r = await fetch(`${base}${u}`);
    assert.equal(r.status, 200, `${u} → ${r.status}`);
    return (await r.json()) as T;
  };
  const asc = await get<{ segments: Seg[] }>('/api/recordings?track=cam');
  const desc = await get<{ segments: Seg[] }>('/api/recordings?track=cam&order=desc&limit=2');
  assert.deepEqual(desc.segments.map((s) => s.id), asc.segments.slice(-2).reverse().map((s) => s.id), 'newest first, limit applies to the newest');
  assert.ok(asc.segments.every((s) => s.playUrl !== null && s.goneAt === null));
  const data = await get<{ segments: Seg[] }>('/api/recordings?kind=data');
  assert.ok(data.segments.length > 0 && data.segments.every((s) => s.kind === 'data' && s.playUrl === null && s.url !== null));
  assert.equal((await fetch(`${base}/api/recordings?order=sideways`)).status, 400);
  assert.equal((await fetch(`${base}/api/recordings?kind=audio`)).status, 400);
  assert.equal((await fetch(`${base}/api/recordings?present=maybe`)).status, 400);

  // one segment's file is gone (synced and deleted): it leaves the spans, stays in the list with goneAt
  // a middle one (the fixture cuts on a capture-clock grid: 3 or 4 segments of the 6 s)
  assert.ok(asc.segments.length >= 3, `${asc.segments.length} cam segments`);
  const goneRow = asc.segments[1]!;
  svc.index.write(() => svc.index.update(svc.index.getById(goneRow.id)!.path, { present: 0, state: 'synced' }));
  fs.rmSync(path.join(root, svc.index.getById(goneRow.id)!.path));
  const gone = await get<Seg>(`/api/recordings/${goneRow.id}`);
  assert.ok(gone.goneAt !== null && gone.url === null && gone.playUrl === null);
  assert.ok((await get<{ segments: Seg[] }>('/api/recordings?present=false')).segments.some((s) => s.id === goneRow.id));

  type Tracks = { tracks: Array<{ track: string; kind: string; segments: number; localSegments: number; recording: boolean; spans: Array<{ fromMs: number; toMs: number; segments: number; playUrl: string | null }> }> };
  // segments of 2 s: one missing is a 2 s hole, more than a 0.5 s tolerance
  const tr = await get<Tracks>('/api/recordings/tracks?gapMs=500');
  const cam = tr.tracks.find((x) => x.track === 'cam')!;
  const gps = tr.tracks.find((x) => x.track === 'gps')!;
  assert.equal(cam.kind, 'video');
  assert.equal(cam.segments, asc.segments.length);
  assert.equal(cam.localSegments, asc.segments.length - 1);
  assert.equal(cam.spans.length, 2, 'the gone segment splits the recording in two spans');
  assert.equal(cam.spans[0]!.segments + cam.spans[1]!.segments, asc.segments.length - 1);
  assert.ok(cam.spans[0]!.toMs < cam.spans[1]!.fromMs, 'oldest first');
  assert.ok(gps.spans.length >= 1 && gps.spans.every((s) => s.playUrl === null));
  // a big gap tolerance joins them again
  const joined = await get<Tracks>(`/api/recordings/tracks?gapMs=${asc.segments[2]!.startMs - asc.segments[0]!.endMs + 10}`);
  assert.equal(joined.tracks.find((x) => x.track === 'cam')!.spans.length, 1);
  assert.equal((await fetch(`${base}/api/recordings/tracks?gapMs=-1`)).status, 400);

  // a span's play URL plays the whole span; an open segment in range is not read
  const last = cam.spans[1]!;
  svc.index.write(() =>
    svc.index.insert({
      path: 'robot/base/cam/2099-01-01/00-00-00.000.mp4', channel: 'robot', source: 'base', track: 'cam', mime: 'video/h264', kind: 'video', run: 'x', offset_us: 0,
      start_us: 0, end_us: 0, wall_start_ms: last.toMs - 1, wall_end_ms: last.toMs + 1000, duration_ms: 0, bytes: 0, frames: 0, keyframes: 0, sha256: null,
      state: 'recording', created_ms: 0, closed_ms: null, origin: 'recorder',
    }),
  );
  const pb = await fetch(`${base}${last.playUrl!}`);
  assert.equal(pb.status, 200);
  const file = path.join(dir, 'span.mp4');
  fs.writeFileSync(file, Buffer.from(await pb.arrayBuffer()));
  const p = await ffprobeFrames(file);
  const framesIn = asc.segments.filter((s) => s.startMs >= last.fromMs && s.endMs <= last.toMs).length;
  assert.ok(framesIn >= 1);
  assert.ok(p.frames > 0 && p.frames <= fed.video, `span plays ${p.frames} frames`);
  assert.equal((await get<Tracks>('/api/recordings/tracks')).tracks.find((x) => x.track === 'cam')!.recording, true);
});

test('the /recordings page in a real Chromium: a span\'s play button plays the recording', { timeout: 90_000 }, async (t) => {
  const missing = chromiumMissing();
  if (missing) return skipUnlessCi(t, missing);
  const dir = await tempDir(t);
  const root = path.join(dir, 'rec');
  await recordFixture(root, 4);
  const base = await serve(t, root);
  const browser = await launchChromium();
  t.after(() => browser.close());
  const page = await browser.newPage();
  await page.goto(`${base}/recordings`);
  const play = page.locator('#spans button', { hasText: 'play' }).first();
  await play.waitFor({ timeout: 20_000 });
  assert.ok((await page.locator('#rows button', { hasText: 'play' }).count()) > 0, 'segments list has play buttons');
  await play.click();
  // playing = frames decoded and time moving (not just a request made)
  await page.waitForFunction(() => {
    const v = document.getElementById('player') as HTMLVideoElement;
    if (v.error) throw new Error(`video error ${v.error.code}: ${v.error.message}`);
    return v.readyState >= 2 && v.currentTime > 0.2;
  }, undefined, { timeout: 30_000 });
  const st = await page.evaluate(() => {
    const v = document.getElementById('player') as HTMLVideoElement;
    return { w: v.videoWidth, h: v.videoHeight, src: v.currentSrc };
  });
  assert.equal(st.w, 320);
  assert.equal(st.h, 180);
  assert.match(st.src, /\/api\/recordings\/playback\?/);
});

test('CLI: list, verify (catches a changed byte and an unindexed file), export to MCAP read back by @mcap/core', async (t) => {
  const dir = await tempDir(t);
  const root = path.join(dir, 'rec');
  const fed = await recordFixture(root, 4);
  const listed = await cli(['list', '--root', root, '--json']);
  assert.equal(listed.code, 0, listed.err);
  const rows = JSON.parse(listed.out) as Array<{ path: string; kind: string; wall_start_ms: number; wall_end_ms: number }>;
  assert.ok(rows.length >= 4);
  const newest = await cli(['list', '--root', root, '--json', '--newest-first', '--limit', '2']);
  const nrows = JSON.parse(newest.out) as Array<{ id: number; path: string; wall_start_ms: number }>;
  const byNewest = [...(rows as unknown as typeof nrows)].sort((a, b) => b.wall_start_ms - a.wall_start_ms || b.id - a.id);
  assert.deepEqual(nrows.map((r) => r.path), byNewest.slice(0, 2).map((r) => r.path));
  assert.equal((await cli(['verify', '--root', root])).code, 0);

  // export while the index is open by a writer (a running recorder): readers never see "locked"
  const writer = IndexDb.openWriter(path.join(root, 'index.db'));
  writer.db.exec('BEGIN IMMEDIATE');
  const from = Math.min(...rows.map((r) => r.wall_start_ms));
  const to = Math.max(...rows.map((r) => r.wall_end_ms));
  const out = path.join(dir, 'run.mcap');
  const ex = await cli(['export', '--root', root, '--from', String(from), '--to', String(to), '--out', out]);
  writer.db.exec('COMMIT');
  writer.close();
  assert.equal(ex.code, 0, ex.err);

  const fd = await fs.promises.open(out, 'r');
  t.after(() => fd.close());
  const size = BigInt((await fd.stat()).size);
  const readable: IReadable = {
    size: async () => size,
    read: async (offset, length) => {
      const b = Buffer.alloc(Number(length));
      await fd.read(b, 0, Number(length), Number(offset));
      return new Uint8Array(b.buffer, b.byteOffset, b.length);
    },
  };
  const reader = await McapIndexedReader.Initialize({ readable });
  const topics = [...reader.channelsById.values()].map((c) => c.topic).sort();
  assert.deepEqual(topics, ['/robot/base/cam', '/robot/base/gps']);
  const schemaNames = [...reader.schemasById.values()].map((s) => s.name).sort();
  assert.deepEqual(schemaNames, ['foxglove.CompressedVideo', 'moth.Record']);
  const camId = [...reader.channelsById.values()].find((c) => c.topic === '/robot/base/cam')!.id;
  const h264: Buffer[] = [];
  const times = { cam: [] as bigint[], gps: [] as bigint[] };
  for await (const m of reader.readMessages()) {
    const body = JSON.parse(new TextDecoder().decode(m.data)) as { data?: string; format?: string; text?: string };
    if (m.channelId === camId) {
      assert.equal(body.format, 'h264');
      h264.push(Buffer.from(body.data!, 'base64'));
      times.cam.push(m.logTime);
    } else {
      assert.match(body.text ?? '', /^\$GPGGA,/);
      times.gps.push(m.logTime);
    }
  }
  assert.equal(times.cam.length, fed.video);
  assert.equal(times.gps.length, fed.data);
  // one clock: the sensor records lie inside the video's time span, 100 ms apart
  assert.ok(times.gps[0]! >= times.cam[0]! && times.gps.at(-1)! <= times.cam.at(-1)!);
  assert.equal(Number(times.gps[1]! - times.gps[0]!) / 1e6, 100);
  const es = path.join(dir, 'video.h264');
  fs.writeFileSync(es, Buffer.concat(h264));
  assert.equal((await ffprobeFrames(es)).frames, fed.video, 'the Annex-B messages decode');

  // verify catches damage
  const victim = rows.find((r) => r.kind === 'video')!;
  const abs = path.join(root, victim.path);
  const buf = fs.readFileSync(abs);
  buf[buf.length - 10] ^= 0xff;
  fs.writeFileSync(abs, buf);
  fs.copyFileSync(abs, abs.replace(/\.mp4$/, '-3.mp4'));
  const v = await cli(['verify', '--root', root]);
  assert.equal(v.code, 1);
  assert.match(v.out, /sha256 mismatch/);
  assert.match(v.out, /not in the index/);
  assert.equal((await cli(['bogus', '--root', root])).code, 2);
  assert.equal((await cli(['list'])).code, 2);
});

test('CLI sync with a config file uploads to nginx', async (t) => {
  const dir = await tempDir(t);
  const root = path.join(dir, 'rec');
  await recordFixture(root, 2);
  const ng = await startNginx(t, path.join(dir, 'ng'));
  const cfgFile = path.join(dir, 'moth.yaml');
  fs.writeFileSync(cfgFile, `recordings:\n  root: rec\n  sync:\n    url: ${ng.url}/up\n`);
  const r = await cli(['sync', '--config', cfgFile]);
  assert.equal(r.code, 0, r.err + r.out);
  const st = JSON.parse(r.out) as { verified: number };
  const listed = JSON.parse((await cli(['list', '--config', cfgFile, '--json'])).out) as Array<{ state: string }>;
  assert.equal(st.verified, listed.length);
  assert.ok(listed.every((x) => x.state === 'synced'));
});

test('JPEG track: one record per image, exported as foxglove.CompressedImage that decodes', async (t) => {
  const dir = await tempDir(t);
  const root = path.join(dir, 'rec');
  const mjpeg = execFileSync(FFMPEG, ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=10', '-t', '2', '-c:v', 'mjpeg', '-f', 'image2pipe', '-']);
  const images = new JpegSplitter().push(mjpeg);
  assert.equal(images.length, 20);
  const engine = newEngine();
  engine.addStaticChannel({ id: 'robot' });
  const svc = createRecordingService({ config: config(root), source: engine });
  await svc.start();
  const pub = engine.publisher({ channel: 'robot', source: 'arm', track: 'snap' }, { label: 't' });
  pub.setMime('image/jpeg');
  svc.discover();
  const t0 = captureClockUs();
  const w0 = Date.now();
  for (let i = 0; i < images.length; i++) {
    pub.write({ ts: t0 + i * 100_000, wallclock: w0 + i * 100, key: true, data: images[i]! });
    await svc.settled();
  }
  await svc.close();
  const out = path.join(dir, 'snap.mcap');
  const r = await cli(['export', '--root', root, '--from', String(w0 - 1), '--to', String(w0 + 10_000), '--out', out]);
  assert.equal(r.code, 0, r.err);
  const fd = await fs.promises.open(out, 'r');
  t.after(() => fd.close());
  const size = BigInt((await fd.stat()).size);
  const reader = await McapIndexedReader.Initialize({
    readable: {
      size: async () => size,
      read: async (offset, length) => {
        const b = Buffer.alloc(Number(length));
        await fd.read(b, 0, Number(length), Number(offset));
        return new Uint8Array(b.buffer, b.byteOffset, b.length);
      },
    },
  });
  assert.deepEqual([...reader.schemasById.values()].map((x) => x.name), ['foxglove.CompressedImage']);
  const msgs: Array<{ format: string; data: string }> = [];
  for await (const m of reader.readMessages()) msgs.push(JSON.parse(new TextDecoder().decode(m.data)) as { format: string; data: string });
  assert.equal(msgs.length, images.length);
  assert.equal(msgs[0]!.format, 'jpeg');
  const jpg = path.join(dir, 'first.jpg');
  fs.writeFileSync(jpg, Buffer.from(msgs[0]!.data, 'base64'));
  assert.match(execFileSync(FFPROBE, ['-v', 'error', '-show_entries', 'stream=codec_name,width', '-of', 'csv=p=0', jpg]).toString(), /mjpeg,320/);
});

test('CLI help: `recordings --help` and each subcommand\'s own help, through the real moth-edge binary', async () => {
  const { cliCommand, run } = await import('../support/app.js');
  const bin = cliCommand();
  const top = await run(bin.cmd, [...bin.args, 'recordings', '--help']);
  assert.match(top.stdout, /usage: moth-edge recordings <list\|verify\|sync\|export>/);
  assert.doesNotMatch(top.stdout, /--check-config/, 'not the top-level help');
  const v = await run(bin.cmd, [...bin.args, 'recordings', 'verify', '--help']);
  assert.match(v.stdout, /usage: moth-edge recordings verify/);
  assert.match(v.stdout, /--decode/);
  for (const c of ['list', 'sync', 'export']) assert.match((await cli([c, '--help'])).out, new RegExp(`usage: moth-edge recordings ${c}`));
  const none = await cli([]);
  assert.equal(none.code, 2);
  assert.match(none.err, /usage:/);
});

test('CLI verify: .part leftovers reported, --decode catches a segment whose bytes match the index but do not decode', async (t) => {
  const dir = await tempDir(t);
  const root = path.join(dir, 'rec');
  await recordFixture(root, 7); // 2 s segments on the capture-clock grid: at least 3 video segments
  const good = await cli(['verify', '--root', root, '--decode']);
  assert.equal(good.code, 0, good.out);
  assert.match(good.out, /0 bad, 0 part\(s\)/);
  const db = IndexDb.openWriter(path.join(root, 'index.db'));
  t.after(() => db.close());
  const video = db.all().filter((r) => r.kind === 'video');
  // a .part with no row (left over), and one with its `recording` row (open, or left by a crash)
  const leftover = video[0]!.path.replace(/\.mp4$/, '-8.mp4.part');
  fs.copyFileSync(path.join(root, video[0]!.path), path.join(root, leftover));
  const open = video[1]!.path.replace(/\.mp4$/, '-9.mp4');
  fs.copyFileSync(path.join(root, video[1]!.path), path.join(root, `${open}.part`));
  db.write(() => db.insert({ ...video[1]!, path: open, state: 'recording' }));
  // damage inside the media data, then re-index it: size and sha256 agree, the pictures do not
  const victim = video[2]!;
  const abs = path.join(root, victim.path);
  const buf = fs.readFileSync(abs);
  for (let i = Math.floor(buf.length / 3); i < Math.floor(buf.length / 3) + 4000; i++) buf[i] = 0xff;
  fs.writeFileSync(abs, buf);
  const { sha256File } = await import('../../recordings/recovery.js');
  db.write(() => db.update(victim.path, { sha256: sha256File(abs), bytes: buf.length }));
  const plain = await cli(['verify', '--root', root]);
  assert.equal(plain.code, 1);
  assert.match(plain.out, new RegExp(`BAD  ${leftover.replace(/[.]/g, '\\.')}: .*no recording row`));
  assert.match(plain.out, new RegExp(`PART ${open.replace(/[.]/g, '\\.')}\\.part: .*open`));
  assert.doesNotMatch(plain.out, new RegExp(`BAD  ${victim.path.replace(/[.]/g, '\\.')}`), 'the hash agrees: only a decode can tell');
  const dec = await cli(['verify', '--root', root, '--decode']);
  assert.equal(dec.code, 1);
  assert.match(dec.out, new RegExp(`BAD  ${victim.path.replace(/[.]/g, '\\.')}: ffmpeg`));
  assert.match(dec.out, /2 part\(s\)/);
});
