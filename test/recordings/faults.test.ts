// Bad input and damaged state: malformed frames, MIME change, wallclock jumps, torn parts,
// missing files, orphans, a deleted or corrupted index. Nothing recorded is lost or deleted.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { captureClockUs } from '../../runtime/engine/api.js';
import { listSegmentFiles, sha256File } from '../../recordings/recovery.js';
import { decodeFileHeader, scanRecords } from '../../recordings/record-file.js';
import { createRecordingService, type RecordingService } from '../../recordings/service.js';
import type { AccessUnit } from '../../runtime/engine/h264.js';
import type { Engine } from '../../runtime/engine/engine.js';
import { config, ffprobeFrames, h264Units, indexRows, listFiles, newEngine, recordFixture, tempDir } from './helpers.js';

const CAM = { channel: 'robot', source: 'base', track: 'cam' };
const GPS = { channel: 'robot', source: 'base', track: 'gps' };

async function startService(root: string, engine: Engine, over: Record<string, unknown> = {}): Promise<RecordingService> {
  const svc = createRecordingService({ config: config(root, { segmentDurationMs: 2000, fragmentDurationMs: 500, ...over }), source: engine });
  await svc.start();
  return svc;
}

const rowsOf = indexRows;

test('malformed frames are dropped and counted; a MIME change starts a new segment; wallclock jumps do not reorder', async (t) => {
  const root = await tempDir(t);
  const engine = newEngine();
  engine.addStaticChannel({ id: 'robot' });
  const svc = await startService(root, engine);
  t.after(() => svc.close());
  const cam = engine.publisher(CAM, { label: 't' });
  cam.setMime('video/h264;width=320;height=180');
  const gps = engine.publisher(GPS, { label: 't' });
  gps.setMime('application/json');
  svc.discover();
  const small = h264Units({ seconds: 2 });
  const big = h264Units({ width: 640, height: 360, seconds: 2 });
  const t0 = captureClockUs();
  let i = 0;
  const feed = async (aus: AccessUnit[], wallJumpMs = 0) => {
    for (const au of aus) {
      const ts = t0 + Math.round((i * 1e6) / 30);
      cam.write({ ts, wallclock: Date.now() + wallJumpMs, key: au.key, data: au.data });
      gps.write({ ts, wallclock: Date.now() + wallJumpMs, key: true, data: Buffer.from(`{"i":${i}}`) });
      i++;
      await svc.settled();
    }
  };
  await feed(small.slice(0, 30));
  // garbage: no NAL units, empty, NaN timestamp, a frame from the past
  const tsNow = t0 + Math.round((i * 1e6) / 30);
  cam.write({ ts: tsNow, wallclock: Date.now(), key: false, data: Buffer.from('not h264 at all') });
  cam.write({ ts: tsNow + 1, wallclock: Date.now(), key: false, data: Buffer.alloc(0) });
  cam.write({ ts: Number.NaN, wallclock: Date.now(), key: false, data: small[1]!.data });
  cam.write({ ts: t0 - 1_000_000, wallclock: Date.now(), key: false, data: small[1]!.data });
  gps.write({ ts: t0 - 1_000_000, wallclock: Date.now(), key: true, data: Buffer.from('{"old":1}') });
  await svc.settled();
  // the wallclock jumps back one hour (NTP): capture time keeps ordering
  await feed(small.slice(30, 60), -3_600_000);
  // the camera changes resolution: new MIME, new SPS
  cam.setMime('video/h264;width=640;height=360');
  await feed(big);
  const st = svc.stats();
  const camStats = st.tracks.find((x) => x.track === 'robot/base/cam')!;
  assert.equal(camStats.drops.malformed, 3, 'garbage, empty, NaN');
  assert.equal(camStats.drops['non-monotonic'], 1);
  assert.equal(st.tracks.find((x) => x.track === 'robot/base/gps')!.drops['non-monotonic'], 1);
  await svc.close();

  const rows = rowsOf(root).filter((r) => r.kind === 'video');
  const mimes = rows.map((r) => r.mime);
  assert.ok(mimes.includes('video/h264;width=320;height=180') && mimes.includes('video/h264;width=640;height=360'));
  const sizes = new Set<string>();
  let frames = 0;
  for (const r of rows) {
    const p = await ffprobeFrames(path.join(root, r.path));
    sizes.add(`${p.width}x${p.height}`);
    assert.equal(p.frames, r.frames);
    frames += p.frames;
  }
  assert.deepEqual([...sizes].sort(), ['320x180', '640x360'], 'each segment one resolution');
  assert.equal(frames, 60 + big.length, 'every good frame recorded');
  // data: capture order kept across the wallclock jump
  const data = rowsOf(root).filter((r) => r.kind === 'data').sort((a, b) => a.start_us - b.start_us);
  const ts: number[] = [];
  for (const r of data) {
    const buf = fs.readFileSync(path.join(root, r.path));
    for (const rec of scanRecords(buf, decodeFileHeader(buf).bodyStart)) ts.push(rec.ts);
  }
  assert.equal(ts.length, i);
  assert.deepEqual(ts, [...ts].sort((a, b) => a - b));
});

test('recovery: torn parts truncated to the last fragment/record, empty parts removed, missing rows marked, orphans indexed', async (t) => {
  const root = await tempDir(t);
  await recordFixture(root, 5);
  const before = rowsOf(root);
  const video = before.filter((r) => r.kind === 'video');
  const data = before.filter((r) => r.kind === 'data');
  assert.ok(video.length >= 3 && data.length >= 3);

  // 1. a video segment becomes a torn .part: half of an extra fragment appended
  const v0 = video[0]!;
  const v0abs = path.join(root, v0.path);
  const tail = fs.readFileSync(path.join(root, video[1]!.path));
  fs.appendFileSync(v0abs, tail.subarray(Math.floor(tail.length / 2)));
  fs.renameSync(v0abs, `${v0abs}.part`);
  // 2. a data segment becomes a torn .part: a half record at the end
  const d0 = data[0]!;
  const d0abs = path.join(root, d0.path);
  fs.appendFileSync(d0abs, Buffer.from([50, 0, 0, 0, 1, 2, 3, 4, 5]));
  fs.renameSync(d0abs, `${d0abs}.part`);
  // 3. a part with nothing complete (only the file type box)
  const emptyRel = 'robot/base/cam/2020-01-01/00-00-00.000.mp4.part';
  fs.mkdirSync(path.dirname(path.join(root, emptyRel)), { recursive: true });
  fs.writeFileSync(path.join(root, emptyRel), fs.readFileSync(path.join(root, video[1]!.path)).subarray(0, 40));
  // 4. a row whose file is gone
  fs.rmSync(path.join(root, video[1]!.path));
  // 5. an orphan: a closed file without a row (copied under another name)
  const orphanRel = video[2]!.path.replace(/\.mp4$/, '-7.mp4');
  fs.copyFileSync(path.join(root, video[2]!.path), path.join(root, orphanRel));
  // 6. a file we do not own stays untouched
  fs.writeFileSync(path.join(root, 'robot', 'README.txt'), 'keep me');

  const engine = newEngine();
  const svc = await startService(root, engine);
  const rep = svc.stats().recovery!;
  await svc.close();
  assert.equal(rep.partsClosed, 2);
  assert.equal(rep.partsRemovedEmpty, 1);
  assert.equal(rep.rowsMissing, 1);
  assert.equal(rep.orphansIndexed, 1);
  assert.ok(rep.bytesTruncated > 0);
  assert.equal(fs.readFileSync(path.join(root, 'robot', 'README.txt'), 'utf8'), 'keep me');

  const rows = rowsOf(root);
  const files = listSegmentFiles(root);
  assert.deepEqual(rows.filter((r) => r.present === 1).map((r) => r.path).sort(), files, 'no row without file, no file without row');
  const r0 = rows.find((r) => r.path === v0.path)!;
  assert.equal(r0.state, 'closed');
  assert.equal(r0.frames, v0.frames, 'the torn fragment went, the complete ones stayed');
  assert.equal(r0.sha256, v0.sha256, 'truncation restores the original bytes exactly');
  assert.equal((await ffprobeFrames(v0abs)).frames, v0.frames);
  const rd = rows.find((r) => r.path === d0.path)!;
  assert.equal(rd.frames, d0.frames);
  assert.equal(rd.sha256, sha256File(d0abs));
  assert.equal(rows.find((r) => r.path === video[1]!.path)!.state, 'missing');
  const orphan = rows.find((r) => r.path === orphanRel)!;
  assert.equal(orphan.frames, video[2]!.frames);
  assert.equal(orphan.start_us, video[2]!.start_us, 'capture time from the segment meta in the file');
});

for (const damage of ['deleted', 'corrupted'] as const) {
  test(`index ${damage} while the folder is full: rebuilt from disk, nothing deleted`, async (t) => {
    const root = await tempDir(t);
    await recordFixture(root, 4);
    const filesBefore = listSegmentFiles(root);
    const hashes = new Map(filesBefore.map((f) => [f, sha256File(path.join(root, f))]));
    const rowsBefore = rowsOf(root);
    const idx = path.join(root, 'index.db');
    if (damage === 'deleted') {
      for (const s of ['', '-wal', '-shm']) fs.rmSync(idx + s, { force: true });
    } else {
      fs.writeFileSync(idx, Buffer.alloc(8192, 0x5a));
      for (const s of ['-wal', '-shm']) fs.rmSync(idx + s, { force: true });
    }
    const svc = await startService(root, newEngine());
    const rep = svc.stats().recovery!;
    await svc.close();
    assert.equal(rep.indexRebuilt, damage === 'corrupted');
    assert.equal(rep.orphansIndexed, filesBefore.length);
    assert.deepEqual(listSegmentFiles(root), filesBefore, 'no recording deleted');
    for (const [f, h] of hashes) assert.equal(sha256File(path.join(root, f)), h, `${f} untouched`);
    const rows = rowsOf(root);
    assert.equal(rows.length, rowsBefore.length);
    for (const b of rowsBefore) {
      const r = rows.find((x) => x.path === b.path)!;
      assert.equal(r.frames, b.frames);
      assert.equal(r.sha256, b.sha256);
      assert.equal(r.start_us, b.start_us);
      assert.equal(r.mime, b.mime);
    }
    if (damage === 'corrupted') assert.ok(listFiles(root).some((f) => f.startsWith('index.db.corrupt-')), 'the damaged index is kept aside');
  });
}
