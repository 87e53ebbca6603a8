// Pure parts: record-file codec, MP4 fragment scan, SPS reader, path layout, retention plan,
// token bucket, Range parsing, the verify GET's response head. Tables plus fast-check: arbitrary bytes never throw anything but
// the typed error, hostile lengths never allocate.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { HttpError } from '../../runtime/http/router.js';
import { parseRange } from '../../runtime/recordings/http.js';
import { retentionConfigSchema } from '../../recordings/config.js';
import { avcInfoOf, parseSps } from '../../recordings/h264-config.js';
import { parseSegmentPath, segmentRelPath, withCounter } from '../../recordings/layout.js';
import { encodeMetaTag, scanMp4 } from '../../recordings/mp4-scan.js';
import { decodeFileHeader, encodeFileHeader, encodeRecord, RecordFormatError, scanRecords, type SegmentMeta } from '../../recordings/record-file.js';
import { planRetention, type RetentionInput } from '../../recordings/retention.js';
import { spacePolicy } from '../../recordings/free-space.js';
import { TokenBucket } from '../../recordings/throttle.js';
import { MAX_HEAD_BYTES, parseResponseHead } from '../../recordings/verify-get.js';
import { ThrottledLog } from '../../recordings/log.js';
import { EdgeError } from '../../runtime/engine/api.js';
import { h264Units } from './helpers.js';

const META: SegmentMeta = { v: 1, channel: 'c', source: 's', track: 't', mime: 'application/json', startUs: 5, wallMs: 1.7e12, offsetUs: 9, run: 'r' };

test('record file: round trip, torn tail stops the scan at the last good record', () => {
  const recs = [0, 1, 2, 3].map((i) => encodeRecord(1000 + i, 2000 + i, Buffer.from(`{"i":${i}}`)));
  const file = Buffer.concat([encodeFileHeader(META), ...recs]);
  const h = decodeFileHeader(file);
  assert.deepEqual(h.meta, META);
  const all = [...scanRecords(file, h.bodyStart)];
  assert.deepEqual(all.map((r) => r.ts), [1000, 1001, 1002, 1003]);
  assert.equal(all.at(-1)!.end, file.length);
  for (let cut = h.bodyStart; cut < file.length; cut++) {
    const got = [...scanRecords(file.subarray(0, cut), h.bodyStart)];
    const whole = all.filter((r) => r.end <= cut);
    assert.equal(got.length, whole.length, `cut at ${cut}`);
  }
  const flipped = Buffer.from(file);
  flipped[h.bodyStart + recs[0]!.length + 30] ^= 1; // payload byte of record 2
  assert.equal([...scanRecords(flipped, h.bodyStart)].length, 1, 'CRC stops at the damaged record');
});

test('record file: arbitrary bytes never throw from the scan, only RecordFormatError from the header', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2048 }), fc.nat(64), (bytes, start) => {
      const out = [...scanRecords(bytes, Math.min(start, bytes.length))];
      assert.ok(out.length <= bytes.length / 24);
      try {
        decodeFileHeader(bytes);
      } catch (err) {
        assert.ok(err instanceof RecordFormatError);
      }
    }),
    { numRuns: 2000 },
  );
  // a hostile length: 4 GB declared, nothing allocated, nothing yielded
  const evil = Buffer.alloc(64);
  evil.writeUInt32LE(0xffffffff, 0);
  assert.deepEqual([...scanRecords(evil, 0)], []);
});

function fmp4(): Buffer {
  // a tiny real fMP4 via the writer is heavy here; build boxes by hand
  const box = (type: string, ...body: Buffer[]) => {
    const b = Buffer.concat(body);
    const h = Buffer.alloc(8);
    h.writeUInt32BE(b.length + 8);
    h.write(type, 4, 'latin1');
    return Buffer.concat([h, b]);
  };
  const full = (type: string, version: number, flags: number, ...body: Buffer[]) => {
    const vf = Buffer.alloc(4);
    vf.writeUInt32BE((version << 24) | flags);
    return box(type, vf, ...body);
  };
  const u32 = (...n: number[]) => Buffer.concat(n.map((x) => { const b = Buffer.alloc(4); b.writeUInt32BE(x >>> 0); return b; }));
  const mdhd = full('mdhd', 0, 0, u32(0, 0, 90000, 0), Buffer.alloc(4));
  const udta = box('udta', Buffer.from(encodeMetaTag({ ...META, mime: 'video/h264' })));
  const moov = box('moov', box('trak', box('mdia', mdhd)), udta);
  const frag = (base: number) =>
    Buffer.concat([
      box('moof', box('traf', full('tfhd', 0, 0x8, u32(1, 3000)), full('tfdt', 0, 0, u32(base)), full('trun', 0, 0x4 | 0x1, u32(3, 0, 0x10000 & 0)))),
      box('mdat', Buffer.alloc(100)),
    ]);
  return Buffer.concat([box('ftyp', Buffer.from('iso5')), moov, frag(0), frag(9000)]);
}

test('mp4 scan: counts fragments, samples, keyframes, time; truncation points are fragment ends', () => {
  const f = fmp4();
  const s = scanMp4(f);
  assert.equal(s.hasInit, true);
  assert.equal(s.fragments, 2);
  assert.equal(s.samples, 6);
  assert.equal(s.timescale, 90000);
  assert.equal(s.endUs, 200_000);
  assert.equal(s.validEnd, f.length);
  assert.equal(s.meta?.mime, 'video/h264');
  let lastValid = 0;
  for (let cut = 0; cut <= f.length; cut++) {
    const c = scanMp4(f.subarray(0, cut));
    assert.ok(c.validEnd <= cut && c.validEnd >= lastValid - 0, `monotone at ${cut}`);
    lastValid = c.validEnd;
  }
  assert.equal(scanMp4(f.subarray(0, f.length - 1)).fragments, 1, 'a torn last fragment is not counted');
});

test('mp4 scan and SPS reader: arbitrary bytes never throw', () => {
  const f = fmp4();
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 1024 }), fc.nat(f.length), fc.nat(255), (bytes, pos, val) => {
      scanMp4(bytes);
      const g = Buffer.from(f);
      g[pos % g.length] = val;
      const s = scanMp4(g);
      assert.ok(s.validEnd <= g.length);
      parseSps(bytes);
      avcInfoOf(bytes);
    }),
    { numRuns: 3000 },
  );
});

test('SPS reader agrees with ffmpeg on real streams', () => {
  for (const [w, h] of [[320, 180], [640, 360]] as const) {
    const key = h264Units({ width: w, height: h, seconds: 1 }).find((a) => a.key)!;
    const info = avcInfoOf(key.data)!;
    assert.equal(info.width, w);
    assert.equal(info.height, h);
    assert.match(info.codec, /^avc1\.[0-9a-f]{6}$/);
  }
});

test('layout: path round trip; names that could escape the root are refused', () => {
  const rel = segmentRelPath({ channel: 'robot', source: 'base', track: 'cam' }, Date.UTC(2026, 10, 23, 15, 4, 5, 67), 'mp4');
  assert.equal(rel, 'robot/base/cam/2026-11-23/15-04-05.067.mp4');
  const p = parseSegmentPath(`${rel}.part`)!;
  assert.equal(p.part, true);
  assert.equal(p.wallclockMs, Date.UTC(2026, 10, 23, 15, 4, 5, 67));
  assert.ok(parseSegmentPath(withCounter(rel, 2)));
  for (const bad of ['../base/cam/2026-11-23/15-04-05.067.mp4', 'robot/base/cam/2026-11-23/x.mp4', 'robot/base/cam/15-04-05.067.mp4', 'robot/base/cam/2026-11-23/15-04-05.067.exe']) {
    assert.equal(parseSegmentPath(bad), null, bad);
  }
  fc.assert(fc.property(fc.string(), (s) => void parseSegmentPath(s)));
});

test('retention plan: synced first, budget and age only touch synced, the floor takes unsynced (counted)', () => {
  const cfg = retentionConfigSchema.parse({ maxBytes: 300, minFreeBytes: 100, maxAgeHours: 1 });
  const now = 10 * 3_600_000;
  const row = (id: number, state: 'closed' | 'synced' | 'recording' | 'quarantined', ageH: number): RetentionInput['rows'][number] => ({
    id,
    path: `p${id}`,
    state,
    bytes: 100,
    wall_start_ms: now - ageH * 3_600_000,
    wall_end_ms: now - ageH * 3_600_000 + 1000,
    present: 1,
  });
  const rows = [row(1, 'closed', 5), row(2, 'synced', 4), row(3, 'synced', 0.5), row(4, 'closed', 0.2), row(5, 'recording', 0)];
  // age: #2 (synced, 4 h); budget 300 of 500 used: then #3 (synced). #1 is older but unsynced: kept.
  const space = { floorBytes: 100, targetFreeBytes: 150 };
  const plan = planRetention(cfg, { rows, usedBytes: 500, freeBytes: 1000, now, syncEnabled: true, ...space });
  assert.deepEqual(plan.map((d) => [d.path, d.reason, d.unsynced]), [['p2', 'age', false], ['p3', 'budget', false]]);
  // floor: synced first, then the oldest unsynced, until free reaches the resume level (not just the floor); never a recording segment
  const floor = planRetention(cfg, { rows, usedBytes: 500, freeBytes: 0, now, syncEnabled: true, floorBytes: 300, targetFreeBytes: 350 });
  assert.deepEqual(floor.map((d) => [d.path, d.reason, d.unsynced]), [['p2', 'age', false], ['p3', 'budget', false], ['p1', 'floor', true], ['p4', 'floor', true]]);
  assert.ok(!floor.some((d) => d.path === 'p5'));
  // ENOSPC (pressure) with statfs saying 120 free (over the 100 floor): still frees up to the resume level
  const pressed = planRetention({ ...cfg, maxAgeHours: 0, maxBytes: 0 }, { rows, usedBytes: 500, freeBytes: 120, now, syncEnabled: true, floorBytes: 100, targetFreeBytes: 250, pressure: true });
  assert.deepEqual(pressed.map((d) => [d.path, d.reason]), [['p2', 'floor'], ['p3', 'floor']]);
  // no sync target: closed segments rotate under the budget without counting as losses
  const nosync = planRetention(retentionConfigSchema.parse({ maxBytes: 300, minFreeBytes: 0 }), { rows, usedBytes: 500, freeBytes: 1e9, now, syncEnabled: false, floorBytes: 0, targetFreeBytes: 0 });
  assert.deepEqual(nosync.map((d) => [d.path, d.unsynced]), [['p1', false], ['p2', false]]);
});

test('free-space policy: the floor scales with the filesystem, the resume level sits one band above it', () => {
  const MiB = 1024 * 1024;
  const dflt = retentionConfigSchema.parse({});
  // a 64 MiB card: 10 % (6.4 MiB), not 256 MiB; band 5 % = 3.2 MiB
  const small = spacePolicy(dflt, 64 * MiB);
  assert.equal(small.floorBytes, Math.floor(6.4 * MiB));
  assert.equal(small.resumeBytes - small.floorBytes, Math.floor(3.2 * MiB));
  // a 64 GB card: capped at minFreeBytes, band capped at 64 MiB
  const big = spacePolicy(dflt, 64 * 1024 * MiB);
  assert.deepEqual([big.floorBytes, big.resumeBytes], [256 * MiB, 320 * MiB]);
  // minFreeBytes 0: no floor, but a paused recorder still has a way out (≥ 1 MiB band)
  const none = spacePolicy(retentionConfigSchema.parse({ minFreeBytes: 0 }), 3 * MiB);
  assert.deepEqual([none.floorBytes, none.resumeBytes], [0, MiB]);
  // statfs failed (size 0): the configured bytes
  assert.equal(spacePolicy(dflt, 0).floorBytes, 256 * MiB);
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 44 }), fc.integer({ min: 0, max: 2 ** 34 }), fc.double({ min: 0, max: 100, noNaN: true }), (size, minFree, pct) => {
      const p = spacePolicy({ minFreeBytes: minFree, minFreePercent: pct }, size);
      assert.ok(p.floorBytes <= minFree);
      assert.ok(p.resumeBytes >= p.floorBytes + MiB);
      if (size > 0) assert.ok(p.floorBytes <= (size * pct) / 100);
    }),
  );
});

test('token bucket paces to the rate', () => {
  const b = new TokenBucket(1000, 100, 0);
  assert.equal(b.take(100, 0), 0);
  assert.equal(b.take(100, 0), 100);
  assert.equal(b.take(50, 1000), 0);
});

test('Range header parsing', () => {
  assert.equal(parseRange(undefined, 10), null);
  assert.deepEqual(parseRange('bytes=2-4', 10), { start: 2, end: 4 });
  assert.deepEqual(parseRange('bytes=5-', 10), { start: 5, end: 9 });
  assert.deepEqual(parseRange('bytes=-3', 10), { start: 7, end: 9 });
  assert.deepEqual(parseRange('bytes=0-999', 10), { start: 0, end: 9 });
  assert.equal(parseRange('bytes=1-2,4-5', 10), null);
  assert.throws(() => parseRange('bytes=10-', 10), HttpError);
  assert.throws(() => parseRange('bytes=5-2', 10), HttpError);
  fc.assert(
    fc.property(fc.string(), fc.nat(1e6), (h, size) => {
      try {
        const r = parseRange(h, size);
        if (r) assert.ok(r.start <= r.end && r.end < size);
      } catch (err) {
        assert.ok(err instanceof HttpError);
      }
    }),
  );
});

test('verify GET response head: table', () => {
  const ok = parseResponseHead(Buffer.from('HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 12\r\nX-A: 1\r\nx-a: 2\r\n\r\nbody'));
  assert.ok(ok);
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get('content-length'), '12');
  assert.equal(ok.headers.get('x-a'), '1, 2');
  assert.equal(ok.headLength, 'HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 12\r\nX-A: 1\r\nx-a: 2\r\n\r\n'.length);
  assert.equal(parseResponseHead(Buffer.from('HTTP/1.0 404\r\n\r\n'))!.status, 404);
  assert.equal(parseResponseHead(Buffer.from('HTTP/1.1 200 OK\r\nContent-Le')), null, 'incomplete: wait for more');
  for (const bad of ['HTTP/2 200\r\n\r\n', 'ICY 200 OK\r\n\r\n', 'HTTP/1.1 200 OK\r\nno colon\r\n\r\n', 'HTTP/1.1 200 OK\r\n: v\r\n\r\n', 'HTTP/1.1 20 OK\r\n\r\n']) {
    assert.throws(() => parseResponseHead(Buffer.from(bad)), (e: unknown) => e instanceof EdgeError && e.code === 'HTTP_HEAD', bad);
  }
  assert.throws(() => parseResponseHead(Buffer.alloc(MAX_HEAD_BYTES + 1, 0x61)), (e: unknown) => e instanceof EdgeError && e.code === 'HTTP_HEAD');
  assert.throws(() => parseResponseHead(Buffer.from(`HTTP/1.1 200 OK\r\nX: ${'a'.repeat(MAX_HEAD_BYTES)}\r\n\r\n`)), (e: unknown) => e instanceof EdgeError && e.code === 'HTTP_HEAD');
});

test('verify GET response head: arbitrary bytes give a head, null or HTTP_HEAD, nothing else; valid heads round-trip', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2048 }), fc.boolean(), (bytes, prefix) => {
      const buf = Buffer.concat([prefix ? Buffer.from('HTTP/1.1 200 OK\r\n') : Buffer.alloc(0), Buffer.from(bytes)]);
      try {
        const h = parseResponseHead(buf);
        if (h) assert.ok(h.headLength <= buf.length && h.status >= 100 && h.status <= 999);
      } catch (e) {
        if (!(e instanceof EdgeError && e.code === 'HTTP_HEAD')) throw e;
      }
    }),
    { numRuns: 2000 },
  );
  const token = fc.stringMatching(/^[A-Za-z0-9-]{1,20}$/);
  const value = fc.stringMatching(/^[ -~]{0,40}$/).map((v) => v.trim());
  fc.assert(
    fc.property(fc.integer({ min: 100, max: 599 }), fc.array(fc.tuple(token, value), { maxLength: 20 }), fc.uint8Array({ maxLength: 64 }), (status, hs, body) => {
      const head = `HTTP/1.1 ${status} X\r\n${hs.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
      const h = parseResponseHead(Buffer.concat([Buffer.from(head, 'latin1'), Buffer.from(body)]));
      assert.ok(h);
      assert.equal(h.status, status);
      assert.equal(h.headLength, Buffer.byteLength(head, 'latin1'));
      for (const [k, v] of hs) assert.ok(h.headers.get(k.toLowerCase())!.split(', ').includes(v) || h.headers.get(k.toLowerCase())!.includes(v));
    }),
    { numRuns: 500 },
  );
});

test('throttled log: first at once, repeats counted and reported once per interval, keys bounded', () => {
  const lines: Array<[string, object, string | undefined]> = [];
  const sink = { debug() {}, info() {}, warn: (o: object, m?: string) => lines.push(['warn', o, m]), error: (o: object, m?: string) => lines.push(['error', o, m]) };
  const th = new ThrottledLog(sink, 1000, 2);
  assert.equal(th.warn('a', 'upstream refused', { n: 1 }, 0), true);
  assert.equal(th.warn('a', 'upstream refused', {}, 10), false);
  assert.equal(th.warn('a', 'upstream refused', {}, 20), false);
  assert.equal(th.warn('a', 'upstream refused', { n: 4 }, 1000), true);
  assert.deepEqual(lines.map((l) => l[2]), ['upstream refused', 'upstream refused (×3 in 1s)']);
  assert.deepEqual(lines[1]![1], { n: 4 });
  th.error('b', 'x', {}, 0);
  th.error('c', 'y', {}, 0); // a third key: the oldest ('a') is forgotten
  assert.equal(th.warn('a', 'upstream refused', {}, 1001), true, 'a forgotten key logs at once');
  assert.equal(lines.filter((l) => l[0] === 'error').length, 2);
});
