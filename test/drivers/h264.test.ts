import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { AnnexBSplitter, H264Error, isKeyframe, nalUnits, parseSps, NAL } from '../../runtime/engine/h264.js';
import { JpegSplitter } from '../../drivers/camera/jpeg.js';
import { encodeH264, ffprobe, run, tempDir, writeFile } from '../support/app.js';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';

function splitAll(stream: Buffer, chunk: number): ReturnType<AnnexBSplitter['push']> {
  const s = new AnnexBSplitter();
  const out = [];
  for (let i = 0; i < stream.length; i += chunk) out.push(...s.push(stream.subarray(i, i + chunk)));
  out.push(...s.flush());
  return out;
}

test('splitter: zerolatency multi-slice x264 → one AU per picture, keyframes where ffprobe says', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  // 2 threads with sliced-threads → several slices per frame (the field-notes trap).
  const file = join(dir, 'sliced.h264');
  await run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=640x480:rate=30', '-frames:v', '45',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-threads', '4', '-x264-params', 'sliced-threads=1:slices=4:repeat-headers=1',
    '-g', '15', '-f', 'h264', '-y', file]);
  const stream = readFileSync(file);
  const aus = splitAll(stream, 4096);
  assert.equal(aus.length, 45, 'one access unit per picture');
  const slicesPerFrame = aus[1]!.types.filter((x) => x === NAL.SLICE || x === NAL.IDR).length;
  assert.ok(slicesPerFrame > 1, `multi-slice input (got ${slicesPerFrame} slices per frame)`);
  assert.deepEqual(aus.map((a, i) => (a.key ? i : -1)).filter((i) => i >= 0), [0, 15, 30]);
  for (const a of aus.filter((x) => x.key)) {
    assert.ok(a.types.includes(NAL.SPS) && a.types.includes(NAL.PPS), 'SPS/PPS in front of every IDR');
  }
  // Re-joined AUs decode to the same frame count with the real ffprobe.
  const p = writeFile(dir, 'rejoined.h264', Buffer.concat(aus.map((a) => a.data)));
  const probe = await ffprobe(p);
  assert.equal(probe.frames, 45);
  assert.equal(probe.errors, '');
});

test('splitter output does not depend on chunk boundaries (property, real stream)', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const stream = await encodeH264(dir, { width: 320, height: 240, fps: 30, frames: 20 });
  const ref = splitAll(stream, stream.length).map((a) => a.data.toString('hex'));
  assert.equal(ref.length, 20);
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 3000 }), (chunk) => {
      assert.deepEqual(splitAll(stream, chunk).map((a) => a.data.toString('hex')), ref);
    }),
    { numRuns: 40 },
  );
});

test('SPS parse: width/height/profile for baseline, main, high and odd sizes', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const cases = [
    { width: 1280, height: 720, profile: 'baseline', idc: 66 },
    { width: 1920, height: 1080, profile: 'main', idc: 77 },
    { width: 642, height: 362, profile: 'high', idc: 100 },
  ];
  for (const c of cases) {
    const stream = await encodeH264(dir, { width: c.width, height: c.height, fps: 10, frames: 1, profile: c.profile, preset: 'medium' });
    const sps = nalUnits(stream).find((n) => (n[0]! & 0x1f) === NAL.SPS)!;
    const info = parseSps(sps);
    assert.equal(info.width, c.width);
    assert.equal(info.height, c.height);
    assert.equal(info.profileIdc, c.idc);
    assert.match(info.profileLevelId, /^[0-9a-f]{6}$/);
    assert.ok(isKeyframe(stream));
  }
});

test('fuzz: arbitrary bytes never throw from the splitter; parseSps throws only H264Error', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 4096 }), fc.integer({ min: 1, max: 512 }), (bytes, chunk) => {
      const s = new AnnexBSplitter({ maxAuBytes: 2048 });
      const buf = Buffer.from(bytes);
      for (let i = 0; i < buf.length; i += chunk) for (const au of s.push(buf.subarray(i, i + chunk))) assert.ok(au.data.length <= 2048 + 64);
      s.flush();
    }),
    { numRuns: 500 },
  );
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), (bytes) => {
      const nal = Buffer.from([0x67, ...bytes]);
      try {
        const info = parseSps(nal);
        assert.ok(info.width > 0 && info.height > 0);
      } catch (err) {
        assert.ok(err instanceof H264Error, `unexpected ${String(err)}`);
      }
    }),
    { numRuns: 2000 },
  );
});

test('splitter: an access unit over the limit is dropped whole and counted, then it resyncs', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const stream = await encodeH264(dir, { width: 320, height: 240, fps: 30, frames: 10, gop: 5 });
  const normal = splitAll(stream, 1000);
  const biggest = Math.max(...normal.map((a) => a.data.length));
  const s = new AnnexBSplitter({ maxAuBytes: biggest - 1 });
  const aus = [...s.push(stream), ...s.flush()];
  assert.ok(s.oversizedDrops >= 1);
  assert.equal(aus.length + s.oversizedDrops, normal.length, 'every AU either passes whole or is counted');
  for (const a of aus) assert.ok(normal.some((n) => n.data.equals(a.data)), 'no partial access unit');
});

test('JPEG splitter: real MJPEG stream split into whole images at any chunking; junk skipped', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const file = join(dir, 'x.mjpeg');
  await run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=10', '-frames:v', '12',
    '-c:v', 'mjpeg', '-q:v', '5', '-f', 'image2pipe', '-y', file]);
  const stream = readFileSync(file);
  const noisy = Buffer.concat([Buffer.from('garbage\xff\xd8'), stream]);
  for (const chunk of [1, 7, 4096, noisy.length]) {
    const s = new JpegSplitter();
    const imgs: Buffer[] = [];
    for (let i = 0; i < noisy.length; i += chunk) imgs.push(...s.push(noisy.subarray(i, i + chunk)));
    assert.equal(imgs.length, 12, `chunk ${chunk}`);
    for (const img of imgs) assert.ok(img[0] === 0xff && img[1] === 0xd8 && img.at(-2) === 0xff && img.at(-1) === 0xd9);
  }
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => {
      const s = new JpegSplitter(1024);
      s.push(Buffer.from(bytes));
    }),
    { numRuns: 300 },
  );
});
