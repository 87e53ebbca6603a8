// "Send me 10:02–10:05 of the front camera": a range request for a recorded H.264 track is read
// back from the recorder's fMP4 segments and sent upstream on video.backfill (ts+ MIME, 8-byte
// capture wallclock prefix), starting at the keyframe at or before the range; what the strict
// pang peer receives decodes with ffprobe. The avcC / length-prefix framing is fuzzed.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { isKeyframe } from '../../runtime/engine/h264.js';
import { createEgressService } from '../../runtime/egress/service.js';
import { egressConfigSchema } from '../../runtime/egress/config.js';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { parseTsPrefixed } from '../../runtime/uplink/backfill-plan.js';
import { createRecordingService } from '../../recordings/service.js';
import { recordingsConfigSchema } from '../../recordings/config.js';
import { AvcFramingError, lengthPrefixedToAnnexB, parseAvcC } from '../../recordings/video-reader.js';
import { h264Fixture } from '../egress/fake-source.js';
import { feedEngine, testEngine } from '../egress/engine-fixture.js';
import { fastBackoff, probeH264, tempDir, waitFor } from '../egress/helpers.js';
import { CHAN, thinLink } from './thin-link.js';

const cam = { channel: 'cam', source: 'base', track: 'video' };

test('range request for a recorded camera: keyframe-aligned, capture wallclocks, decodable upstream', { timeout: 90_000 }, async (t) => {
  const dir = await tempDir(t, 'uplink-bfv-');
  const fx = await h264Fixture(dir, { seconds: 2, size: '640x360', gop: 30, bitrate: '1M' });
  const link = await thinLink(t, 'shared');
  const engine = testEngine(['cam']);
  t.after(() => engine.close());
  const rec = createRecordingService({
    config: recordingsConfigSchema.parse({ root: join(dir, 'rec'), tracks: ['cam/base/video'], segmentDurationMs: 2000, fragmentDurationMs: 500, fsyncIntervalMs: 250, discoverMs: 100 }),
    source: engine,
  });
  await rec.start();
  t.after(() => rec.close());
  const eg = createEgressService({
    config: egressConfigSchema.parse({ upstream: [{ url: link.url, channel: CHAN, source: 'base', track: 'video', from: 'cam/base/video' }], whep: { enabled: false }, backoff: fastBackoff }),
    engine,
    log: silentLog,
    recordings: () => rec,
    deliveryIndex: () => rec.index,
  });
  t.after(() => eg.close());
  const walls: number[] = [];
  const feed = feedEngine(engine, cam, fx, { loop: true, onFrame: (f) => walls.push(f.wallclock) });
  t.after(() => feed.stop());
  await waitFor(() => walls.length > 200, 20_000, 'seven seconds of camera');
  const from = walls[70]!;
  const to = walls[130]!;
  await waitFor(() => rec.reader().list({ channel: 'cam', source: 'base', track: 'video', state: 'closed' }).some((r) => r.wall_end_ms >= to), 20_000, 'the range is in closed segments');
  const reply = eg.backfill!.handleXcmd(`REXTXCMD${JSON.stringify({ op: 'range', id: 'cam1', track: 'cam/base/video', from, to })}`);
  assert.match(reply!, /^REXTXACK\{"id":"cam1"/);
  const got = (): Array<{ wallMs: number; au: Buffer }> => link.received('video.backfill').map((m) => {
    const p = parseTsPrefixed(m);
    return { wallMs: p.wallMs, au: Buffer.from(p.payload) };
  });
  await waitFor(() => eg.backfill!.stats().rangeRequests.completed === 1 && got().length > 0 && eg.backfill!.stats().tracks[0]!.link.inFlight === 0, 30_000, () => `range sent (${got().length} AUs, ${JSON.stringify(eg.backfill!.stats().tracks[0])})`);
  const aus = got();
  assert.ok(isKeyframe(aus[0]!.au), 'starts at a keyframe (SPS/PPS/IDR)');
  assert.ok(aus[0]!.wallMs <= from + 1, 'the keyframe at or before the range start');
  assert.ok(aus[0]!.wallMs > from - 1100, 'no more than one GOP before it');
  assert.ok(aus[aus.length - 1]!.wallMs <= to + 1, 'nothing after the range');
  for (let i = 1; i < aus.length; i++) assert.ok(aus[i]!.wallMs > aus[i - 1]!.wallMs, 'capture order');
  // Capture wallclocks: every AU's timestamp is one the camera stamped (within clock rounding).
  const near = (w: number): boolean => walls.some((x) => Math.abs(x - w) <= 2);
  assert.ok(aus.every((a) => near(a.wallMs)), 'timestamps are the frames\' capture wallclocks');
  const inRange = walls.filter((w) => w >= from && w <= to).length;
  assert.ok(aus.length >= inRange, `${aus.length} AUs cover the ${inRange} frames of the range`);
  const file = join(dir, 'backfill.h264');
  await writeFile(file, Buffer.concat(aus.map((a) => a.au)));
  const probe = await probeH264(file);
  assert.equal(probe.frames, aus.length, 'every backfilled AU decodes');
  assert.deepEqual([probe.width, probe.height], [640, 360]);
  const mimes = link.peer.messages(`${CHAN}/base/video.backfill`).filter((m) => !m.binary).map((m) => m.data.toString());
  assert.ok(mimes.some((m) => m.startsWith('video/ts+h264')), `ts+ MIME (${mimes[0]})`);
});

test('avcC and length-prefixed framing: round trip, and arbitrary bytes only ever a typed error', () => {
  const sps = Buffer.from([0x67, 0x42, 0xc0, 0x1e, 0xda]);
  const pps = Buffer.from([0x68, 0xce, 0x3c, 0x80]);
  const avcc = Buffer.concat([Buffer.from([1, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0, sps.length]), sps, Buffer.from([1, 0, pps.length]), pps]);
  const c = parseAvcC(avcc);
  assert.equal(c.lengthSize, 4);
  assert.deepEqual([c.sps[0], c.pps[0]], [sps, pps]);
  const nal = Buffer.from([0x65, 1, 2, 3]);
  const sample = Buffer.concat([Buffer.from([0, 0, 0, 4]), nal]);
  assert.deepEqual(Buffer.concat(lengthPrefixedToAnnexB(sample, 4)), Buffer.concat([Buffer.from([0, 0, 0, 1]), nal]));
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), fc.constantFrom(1, 2, 4), (b, n) => {
      for (const f of [() => parseAvcC(b), () => lengthPrefixedToAnnexB(b, n)]) {
        try {
          f();
        } catch (err) {
          assert.ok(err instanceof AvcFramingError, String(err));
        }
      }
    }),
    { numRuns: 500 },
  );
  // A hostile length never allocates: it is refused.
  assert.throws(() => lengthPrefixedToAnnexB(Buffer.from([0xff, 0xff, 0xff, 0xff, 1]), 4), AvcFramingError);
});
