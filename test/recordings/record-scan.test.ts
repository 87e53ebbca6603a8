// Windowed record-file scans (the uplink backfill's reader): bounded reads, exact resume by byte
// offset. Property: any sequence of bounded scans, each resuming at the previous nextOffset,
// yields exactly the records of one unbounded scan, in order — same-millisecond records, records
// larger than a read window and a torn tail included.
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { encodeFileHeader, encodeRecord, type SegmentMeta } from '../../recordings/record-file.js';
import { scanSegmentRecords, type ReadRecord } from '../../recordings/record-reader.js';

const meta: SegmentMeta = { v: 1, channel: 'c', source: 's', track: 'imu', mime: 'application/json', startUs: 0, wallMs: 1000, offsetUs: 0, run: 'r' };

function writeSegment(dir: string, rel: string, sizes: number[], wallStepMs: number[], tornTail: number): Array<{ wall: number; len: number }> {
  const out: Array<{ wall: number; len: number }> = [];
  writeFileSync(join(dir, rel), encodeFileHeader(meta));
  let wall = 1000;
  sizes.forEach((len, i) => {
    wall += wallStepMs[i % wallStepMs.length]!;
    const payload = Buffer.alloc(len, i & 0xff);
    payload.writeUInt32LE(i, 0);
    appendFileSync(join(dir, rel), encodeRecord(i * 1000, wall, payload));
    out.push({ wall, len });
  });
  // A torn tail: the start of one more record, as a power cut leaves it.
  if (tornTail > 0) appendFileSync(join(dir, rel), encodeRecord(1e9, wall + 1, Buffer.alloc(64)).subarray(0, tornTail));
  return out;
}

const idOf = (r: ReadRecord): number => r.payload.readUInt32LE(0);

test('bounded scans resumed by offset return every record exactly once, in order', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rec-scan-'));
  try {
    let k = 0;
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.integer({ min: 4, max: 200 }), fc.integer({ min: 200_000, max: 400_000 })), { minLength: 0, maxLength: 40 }),
        fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 5 }), // 0: same millisecond
        fc.integer({ min: 0, max: 60 }),
        fc.integer({ min: 1, max: 7 }),
        fc.integer({ min: 1, max: 600_000 }),
        fc.boolean(),
        (sizes, steps, torn, maxRecords, maxReadBytes, wholeMillis) => {
          const rel = `s${k++}.rec`;
          const written = writeSegment(dir, rel, sizes, steps, torn);
          const all = scanSegmentRecords(dir, rel, { maxReadBytes: Infinity });
          assert.equal(all.stop, 'end');
          assert.deepEqual(all.records.map(idOf), written.map((_, i) => i));
          assert.deepEqual(all.records.map((r) => r.wallclock), written.map((w) => w.wall));
          const got: number[] = [];
          let offset = 0;
          for (let rounds = 0; ; rounds++) {
            assert.ok(rounds <= written.length + 5, 'every bounded scan makes progress');
            const s = scanSegmentRecords(dir, rel, { offset, maxRecords, maxReadBytes, wholeMillis });
            assert.ok(s.records.length <= (wholeMillis ? 2 * maxRecords : maxRecords));
            if (wholeMillis && (s.stop === 'records' || s.stop === 'budget') && s.records.length > 0 && s.records.length < 2 * maxRecords) {
              const next = scanSegmentRecords(dir, rel, { offset: s.nextOffset, maxRecords: 1 }).records[0];
              if (next) assert.notEqual(next.wallclock, s.records[s.records.length - 1]!.wallclock, 'a batch never ends inside a millisecond');
            }
            // The budget is checked per window: past it at most the header, one window that held
            // only the start of a larger record, and that record (≤ 400 kB here) are read.
            // wholeMillis peeks at one more record (the same again) to find the millisecond edge.
            const past = (wholeMillis ? 2 : 1) * (2 * 256 * 1024 + 400_100);
            assert.ok(s.readBytes <= maxReadBytes + 12 + 64 * 1024 + past || (wholeMillis && s.records.length > 1), `read ${s.readBytes} B`);
            got.push(...s.records.map(idOf));
            assert.ok(s.nextOffset >= offset);
            if (s.stop === 'end') break;
            offset = s.nextOffset;
          }
          assert.deepEqual(got, written.map((_, i) => i));
        },
      ),
      { numRuns: 60 },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('accept, stopAfterWall and firstOffset: a filtered scan resumes at its first accepted record', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rec-scan-'));
  try {
    // Walls 1001, 1001, 1001, 1002, 1002, 1003 … : three records per millisecond.
    const written = writeSegment(dir, 'a.rec', Array.from({ length: 30 }, () => 50), [0, 0, 1], 0);
    const from = written[7]!.wall;
    const s = scanSegmentRecords(dir, 'a.rec', { accept: (r) => r.wallclock >= from, maxRecords: 4, stopAfterWall: 1_000_000 });
    assert.equal(s.stop, 'records');
    const first = s.records.map(idOf)[0]!;
    assert.equal(written[first]!.wall, from);
    assert.ok(first <= 7, 'every record of the first accepted millisecond is accepted');
    const again = scanSegmentRecords(dir, 'a.rec', { offset: s.firstOffset, maxRecords: 1 });
    assert.equal(idOf(again.records[0]!), first, 'firstOffset points at the first accepted record');
    const until = scanSegmentRecords(dir, 'a.rec', { stopAfterWall: written[10]!.wall });
    assert.equal(until.stop, 'wall');
    assert.deepEqual(until.records.map(idOf), written.flatMap((w, i) => (w.wall <= written[10]!.wall ? [i] : [])));
    const rest = scanSegmentRecords(dir, 'a.rec', { offset: until.nextOffset });
    assert.equal(rest.records.length + until.records.length, written.length, 'a wall stop consumes nothing past it');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('not a record file, a missing file and an offset past the end', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rec-scan-'));
  try {
    writeFileSync(join(dir, 'x.rec'), 'hello, not a record file at all');
    assert.throws(() => scanSegmentRecords(dir, 'x.rec'), (e: Error & { code?: string }) => e.code === 'REC_READ' && /not a record file/.test(e.message));
    assert.throws(() => scanSegmentRecords(dir, 'gone.rec'), (e: Error & { code?: string }) => e.code === 'REC_READ' && /missing/.test(e.message));
    assert.throws(() => scanSegmentRecords(dir, '../outside.rec'), (e: Error & { code?: string }) => e.code === 'REC_READ');
    writeSegment(dir, 'b.rec', [10, 10], [1], 0);
    const s = scanSegmentRecords(dir, 'b.rec', { offset: 1e9 });
    assert.equal(s.stop, 'end');
    assert.equal(s.records.length, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
