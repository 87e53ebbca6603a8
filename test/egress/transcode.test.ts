import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { EdgeError, type ConsumerHandle } from '../../runtime/engine/api.js';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { parseCodec, TranscodeService } from '../../runtime/transcode/service.js';
import { IvfDemuxer, IvfError } from '../../runtime/transcode/ivf.js';
import fc from 'fast-check';
import { h264Fixture } from './fake-source.js';
import { feedEngine, testEngine } from './engine-fixture.js';
import { run, tempDir, waitFor } from './helpers.js';

const cam = { channel: 'cam', source: 'base', track: 'video' };

function drain(c: ConsumerHandle, into: Array<{ data: Buffer; key: boolean }>): void {
  const take = (): void => {
    for (let it = c.next(); it; it = c.next()) if (it.type === 'frame') into.push({ data: it.frame.data, key: it.frame.key });
  };
  c.onReadable(take);
  take();
}

async function probe(file: string, fmt?: string): Promise<{ codec: string; width: number; frames: number }> {
  const args = ['-v', 'error', ...(fmt ? ['-f', fmt] : []), '-count_frames', '-show_entries', 'stream=codec_name,width,nb_read_frames', '-of', 'json', file];
  const { stdout } = await run('ffprobe', args, { timeout: 30_000 });
  const s = (JSON.parse(stdout) as { streams: Array<{ codec_name: string; width: number; nb_read_frames: string }> }).streams[0]!;
  return { codec: s.codec_name, width: s.width, frames: Number(s.nb_read_frames) };
}

test('codec option: pass-through for h264, one shared ffmpeg per (track, jpeg|vp8), stopped with its last consumer', async (t) => {
  const dir = await tempDir(t);
  const fx = await h264Fixture(dir, { seconds: 2, size: '640x360' });
  const engine = testEngine();
  t.after(() => engine.close());
  const feeder = feedEngine(engine, cam, fx, { loop: true });
  t.after(() => feeder.stop());
  const svc = new TranscodeService({ engine, log: silentLog });
  t.after(() => svc.close());

  const pass = svc.subscribe(cam, 'h264', { label: 'p' });
  assert.equal(svc.stats().transcoders.length, 0, 'no ffmpeg for pass-through');
  assert.equal(pass.ref.track, 'video');
  pass.close();

  assert.throws(() => svc.subscribe(cam, 'gif', { label: 'x' }), (e: unknown) => e instanceof EdgeError && e.code === 'TRANSCODE_BAD_CODEC');
  assert.throws(() => parseCodec('h264; rm -rf /'), /TRANSCODE_BAD_CODEC/);

  const a = svc.subscribe(cam, 'jpeg', { label: 'a' });
  const b = svc.subscribe(cam, 'JPEG', { label: 'b' });
  assert.equal(svc.stats().transcoders.length, 1, 'shared');
  assert.equal(svc.stats().transcoders[0]!.consumers, 2);
  const ga: Array<{ data: Buffer; key: boolean }> = [];
  const gb: Array<{ data: Buffer; key: boolean }> = [];
  drain(a, ga);
  drain(b, gb);
  await waitFor(() => ga.length >= 5 && gb.length >= 5, 20_000, '5 JPEGs for each consumer');
  assert.equal(a.mime(), 'image/jpeg');
  for (const f of ga) assert.ok(f.data[0] === 0xff && f.data[1] === 0xd8 && f.data.at(-2) === 0xff && f.data.at(-1) === 0xd9);
  await writeFile(join(dir, 'a.jpg'), ga[2]!.data);
  const pj = await probe(join(dir, 'a.jpg'));
  assert.equal(pj.codec, 'mjpeg');
  assert.equal(pj.width, 640);

  const v = svc.subscribe(cam, 'vp8', { label: 'v' });
  const gv: Array<{ data: Buffer; key: boolean }> = [];
  drain(v, gv);
  await waitFor(() => gv.length >= 20, 20_000, '20 VP8 frames');
  assert.equal(gv[0]!.key, true, 'VP8 consumer starts at a keyframe');
  // Re-wrap as IVF and decode with the real ffprobe (a snapshot: the consumer keeps receiving).
  const vf = gv.slice();
  const hdr = Buffer.alloc(32);
  hdr.write('DKIF', 0, 'latin1');
  hdr.writeUInt16LE(32, 6);
  hdr.write('VP80', 8, 'latin1');
  hdr.writeUInt16LE(640, 12);
  hdr.writeUInt16LE(360, 14);
  hdr.writeUInt32LE(30, 16);
  hdr.writeUInt32LE(1, 20);
  hdr.writeUInt32LE(vf.length, 24);
  const parts: Buffer[] = [hdr];
  vf.forEach((f, i) => {
    const fh = Buffer.alloc(12);
    fh.writeUInt32LE(f.data.length, 0);
    fh.writeBigUInt64LE(BigInt(i), 4);
    parts.push(fh, f.data);
  });
  await writeFile(join(dir, 'v.ivf'), Buffer.concat(parts));
  const pv = await probe(join(dir, 'v.ivf'));
  assert.equal(pv.codec, 'vp8');
  assert.equal(pv.frames, vf.length);
  assert.equal(svc.stats().transcoders.length, 2);

  a.close();
  assert.equal(svc.stats().transcoders.find((x) => x.codec === 'jpeg')!.consumers, 1, 'still running for b');
  b.close();
  b.close();
  v.close();
  assert.equal(svc.stats().transcoders.length, 0, 'stopped when the last consumer left');
});

test('stills: a JPEG of the latest picture of an H.264 track; unknown and non-video tracks get typed errors', async (t) => {
  const dir = await tempDir(t);
  const fx = await h264Fixture(dir, { seconds: 2, size: '640x360' });
  const engine = testEngine();
  t.after(() => engine.close());
  const feeder = feedEngine(engine, cam, fx, { loop: true });
  t.after(() => feeder.stop());
  const svc = new TranscodeService({ engine, log: silentLog });
  t.after(() => svc.close());
  const [s1, s2] = await Promise.all([svc.still(cam), svc.still(cam)]);
  assert.equal(s1, s2, 'concurrent requests share one decode');
  await writeFile(join(dir, 's.jpg'), s1!);
  const p = await probe(join(dir, 's.jpg'));
  assert.equal(p.codec, 'mjpeg');
  assert.equal(p.width, 640);
  await assert.rejects(svc.still({ channel: 'cam', source: 'base', track: 'nope' }), /SHOT_UNKNOWN_TRACK/);
  const gps = engine.publisher({ channel: 'cam', source: 'base', track: 'gps' }, { label: 'gps' });
  gps.setMime('application/json');
  t.after(() => gps.close());
  await assert.rejects(svc.still({ channel: 'cam', source: 'base', track: 'gps' }), /TRANSCODE_UNSUPPORTED_INPUT/);
});

test('IVF demuxer: arbitrary bytes only ever throw IvfError and never allocate past the frame bound', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 400 }), fc.integer({ min: 1, max: 64 }), (bytes, split) => {
      const d = new IvfDemuxer(1024);
      const buf = Buffer.concat([Buffer.from('DKIF\0\0\x20\0VP80', 'latin1'), Buffer.alloc(20), Buffer.from(bytes)]);
      try {
        for (let i = 0; i < buf.length; i += split) for (const f of d.push(buf.subarray(i, i + split))) assert.ok(f.data.length <= 1024);
      } catch (e) {
        assert.ok(e instanceof IvfError, String(e));
      }
    }),
  );
});
