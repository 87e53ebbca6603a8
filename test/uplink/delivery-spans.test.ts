// Delivery spans persisted in the recordings index (schema v2): batched through the writer's
// enqueue/flush, one row per span (extended in place), a break starts a new row, read back through a
// read-only reader, pruned by age and row cap.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { IndexDb } from '../../recordings/index-db.js';
import { DeliverySpanWriter, readDeliverySpans } from '../../recordings/delivery-spans.js';
import { tempDir } from '../egress/helpers.js';

const q = { channel: 'cam', source: 'base', track: 'imu', fromMs: 0, toMs: 1e15 };

test('spans extend one row, a break starts another, readers see them after the index flush', async (t) => {
  const dir = await tempDir(t, 'dspans-');
  const file = join(dir, 'index.db');
  const db = IndexDb.openWriter(file);
  t.after(() => db.close());
  const w = new DeliverySpanWriter({ index: () => db });
  for (let i = 0; i < 100; i++) w.add('live', 'cam/base/imu', 'up0', 1000 + i * 20, 10);
  assert.ok(w.flush());
  assert.equal(db.stats().pendingOps, 1, 'one op per span, not per frame');
  db.flush();
  for (let i = 100; i < 150; i++) w.add('live', 'cam/base/imu', 'up0', 1000 + i * 20, 10);
  w.flush();
  db.flush();
  const reader = IndexDb.openReader(file);
  t.after(() => reader.close());
  let rows = readDeliverySpans(reader, q);
  assert.equal(rows.length, 1);
  assert.deepEqual([rows[0]!.from_ms, rows[0]!.to_ms, rows[0]!.frames, rows[0]!.bytes, rows[0]!.kind], [1000, 1000 + 149 * 20, 150, 1500, 'live']);
  w.break('live', 'cam/base/imu', 'up0');
  w.add('live', 'cam/base/imu', 'up0', 9000, 5);
  w.add('backfill', 'cam/base/imu', 'up0', 5000, 7);
  w.flush();
  db.flush();
  rows = readDeliverySpans(reader, q);
  assert.equal(rows.length, 3);
  assert.deepEqual(readDeliverySpans(reader, { ...q, kind: 'backfill' }).map((r) => [r.from_ms, r.frames]), [[5000, 1]]);
  assert.deepEqual(readDeliverySpans(reader, { ...q, fromMs: 8000, toMs: 9500 }).map((r) => r.from_ms), [9000]);
  assert.equal(w.stats().rowsInserted, 3);
  w.close();
  w.close();
});

test('prune by age and by row cap per track; no index keeps open spans in memory only', async (t) => {
  const dir = await tempDir(t, 'dspans-');
  const db = IndexDb.openWriter(join(dir, 'index.db'));
  t.after(() => db.close());
  let now = 10 * 24 * 3600_000;
  const w = new DeliverySpanWriter({ index: () => db, maxRowsPerTrack: 5, maxAgeMs: 24 * 3600_000, now: () => now });
  for (let i = 0; i < 12; i++) {
    w.add('live', 'cam/base/imu', 'up0', now - 3 * 24 * 3600_000 + i * 1000, 1); // old
    w.break('live', 'cam/base/imu', 'up0');
  }
  w.flush();
  for (let i = 0; i < 8; i++) {
    w.add('live', 'cam/base/imu', 'up0', now - 1000 + i, 1);
    w.break('live', 'cam/base/imu', 'up0');
  }
  w.flush();
  db.flush();
  assert.equal(readDeliverySpans(db, q).length, 20);
  w.prune();
  db.flush();
  const left = readDeliverySpans(db, q);
  assert.equal(left.length, 5, 'cap per track');
  assert.ok(left.every((r) => r.from_ms >= now - 1000 + 3), 'the newest rows are kept');
  assert.equal(w.stats().rowsPruned, 15);
  // No index: flush reports false, nothing thrown.
  now += 1;
  const w2 = new DeliverySpanWriter({ index: () => null });
  w2.add('live', 'cam/base/imu', 'up0', 1, 1);
  assert.equal(w2.flush(), false);
  w2.break('live', 'cam/base/imu', 'up0');
  w2.flush();
  assert.equal(w2.stats().unpersisted, 1);
  const w3 = new DeliverySpanWriter({ index: () => { throw new Error('not started'); } });
  w3.add('live', 'cam/base/imu', 'up0', 1, 1);
  assert.equal(w3.flush(), false);
});
