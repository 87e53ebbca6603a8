// Bounded index (schema v3 gone_ms + recordings/index-prune.ts): rows of segments whose file is
// gone are pruned by age of deletion and by a row cap, in batches; rows of files on disk are never
// touched; another process reading the index keeps working during a prune; the writer's own
// commits interleave with the batches.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { indexConfigSchema } from '../../recordings/config.js';
import { IndexDb, SCHEMA_VERSION, type NewSegment } from '../../recordings/index-db.js';
import { indexHorizonMs, IndexPruner, pruneDeleted } from '../../recordings/index-prune.js';
import { silentLog } from '../../recordings/log.js';
import { sqliteNativeBinding } from '../../recordings/sqlite.js';
import { createRecordingService } from '../../recordings/service.js';
import { config, newEngine, recordFixture, tempDir } from './helpers.js';

const FROM_SOURCE = import.meta.url.endsWith('.ts');
const CHILD = path.join(import.meta.dirname, FROM_SOURCE ? 'index-reader-child.ts' : 'index-reader-child.js');
const CHILD_ARGS = FROM_SOURCE ? ['--import', 'tsx', CHILD] : [CHILD];
const DAY = 86_400_000;

function seg(i: number, over: Partial<NewSegment> = {}): NewSegment {
  return {
    path: `robot/base/cam/2026-01-01/${String(i).padStart(8, '0')}.mp4`,
    channel: 'robot', source: 'base', track: 'cam', mime: 'video/h264', kind: 'video', run: 'r', offset_us: 0,
    start_us: i * 1e6, end_us: (i + 1) * 1e6, wall_start_ms: i * 1000, wall_end_ms: (i + 1) * 1000, duration_ms: 1000,
    bytes: 100, frames: 30, keyframes: 1, sha256: 'x', state: 'synced', created_ms: 0, closed_ms: 0, origin: 'recorder',
    ...over,
  };
}

/** n rows; `gone(i)` = ms when row i's file went (null: present). Rows are inserted in one transaction. */
function fill(db: IndexDb, n: number, gone: (i: number) => number | null, offset = 0): void {
  db.write(() => {
    // the trigger stamps gone_ms when present flips; the test then back-dates it
    const setGone = db.db.prepare('UPDATE segments SET present = 0 WHERE path = ?');
    const backdate = db.db.prepare('UPDATE segments SET gone_ms = ? WHERE path = ?');
    for (let i = offset; i < offset + n; i++) {
      const s = seg(i);
      db.insert(s);
      const g = gone(i);
      if (g !== null) (setGone.run(s.path), backdate.run(g, s.path));
    }
  });
}

test('schema v3: gone_ms is set when a file goes (any path that flips present) and cleared when it comes back; v2 indexes migrate', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'index.db');
  const db = IndexDb.openWriter(file);
  assert.ok(SCHEMA_VERSION >= 3);
  db.write(() => {
    db.insert(seg(1));
    db.insert(seg(2));
  });
  const before = Date.now();
  db.write(() => db.update(seg(1).path, { present: 0, state: 'missing' }));
  const g = db.get(seg(1).path)!.gone_ms;
  assert.ok(g !== null && g >= before - 5 && g <= Date.now() + 5, `gone_ms ${g} ≈ now`);
  assert.equal(db.get(seg(2).path)!.gone_ms, null);
  // re-indexed (recovery found the file again): present 1, gone_ms cleared by the upsert
  db.write(() => db.insert(seg(1)));
  assert.equal(db.get(seg(1).path)!.gone_ms, null);
  assert.equal(db.get(seg(1).path)!.present, 1);
  // an update that keeps present=0 does not move gone_ms
  db.write(() => db.update(seg(2).path, { present: 0 }));
  const g2 = db.get(seg(2).path)!.gone_ms;
  db.write(() => db.update(seg(2).path, { present: 0, last_error: 'x' }));
  assert.equal(db.get(seg(2).path)!.gone_ms, g2);
  db.close();

  // a v2 index (as session 1 left it): rows already gone count from the migration
  const raw = new Database(file, { nativeBinding: sqliteNativeBinding() });
  // later versions' tables go too, so the migration from v2 runs them again
  raw.exec(`DROP TABLE IF EXISTS sync_multipart; DROP TABLE IF EXISTS sync_multipart_parts; DROP TRIGGER seg_gone_set; DROP TRIGGER seg_gone_clear; DROP INDEX seg_gone; ALTER TABLE segments DROP COLUMN gone_ms; PRAGMA user_version = 2;`);
  raw.close();
  const t0 = Date.now();
  const db2 = IndexDb.openWriter(file);
  t.after(() => db2.close());
  assert.equal(db2.db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
  assert.ok(db2.get(seg(2).path)!.gone_ms! >= t0 - 5);
  assert.equal(db2.get(seg(1).path)!.gone_ms, null);
});

test('prune by age: old gone rows go; recent gone rows, rows present and rows whose file is on disk stay', async (t) => {
  const dir = await tempDir(t);
  const root = path.join(dir, 'rec');
  const db = IndexDb.openWriter(path.join(dir, 'index.db'));
  t.after(() => db.close());
  const now = Date.now();
  // 0..299 gone 40 days ago, 300..399 gone 10 days ago, 400..499 present (recorded long ago)
  fill(db, 500, (i) => (i < 300 ? now - 40 * DAY + i : i < 400 ? now - 10 * DAY : null));
  // three "gone" rows whose file is in fact on disk (a card remounted): never pruned
  for (const i of [5, 77, 299]) {
    const abs = path.join(root, seg(i).path);
    fs.mkdirSync(path.dirname(abs), { recursive: true });
    fs.writeFileSync(abs, 'x');
  }
  // one present row's file is open as .part: irrelevant to pruning, it is present
  const r = await pruneDeleted(db, indexHorizonMs({ keepDeletedDays: 30 }, now), { root, batch: 64 });
  assert.equal(r.byAge, 297);
  assert.equal(r.byCap, 0);
  assert.equal(r.skippedOnDisk, 3);
  assert.ok(r.batches >= Math.ceil(300 / 64), `pruned in batches (${r.batches})`);
  const left = db.all();
  assert.equal(left.filter((x) => x.present === 1).length, 100, 'every present row kept');
  assert.equal(left.filter((x) => x.present === 0 && x.gone_ms! > now - 30 * DAY).length, 100, 'recent gone rows kept');
  assert.deepEqual(
    left.filter((x) => x.present === 0 && x.gone_ms! < now - 30 * DAY).map((x) => x.path).sort(),
    [5, 77, 299].map((i) => seg(i).path),
    'only the rows whose file is on disk survive the horizon',
  );
  assert.ok(db.events(1000).some((e) => e.kind === 'index-pruned'));
  // a second run finds nothing more (the skipped ones are skipped again, never deleted)
  const r2 = await pruneDeleted(db, indexHorizonMs({ keepDeletedDays: 30 }, now), { root, batch: 64 });
  assert.equal(r2.byAge, 0);
  assert.equal(r2.skippedOnDisk, 3);
});

test('prune by row cap: the oldest gone rows beyond the cap go, the newest stay, present rows are not counted', async (t) => {
  const dir = await tempDir(t);
  const db = IndexDb.openWriter(path.join(dir, 'index.db'));
  t.after(() => db.close());
  const now = Date.now();
  fill(db, 1000, (i) => (i % 10 === 0 ? null : now - 1000 * DAY + i * 1000)); // 100 present, 900 gone (all recent enough)
  const r = await pruneDeleted(db, now - 2000 * DAY, { root: dir, batch: 100, maxRows: 300 });
  assert.equal(r.byAge, 0);
  assert.equal(r.byCap, 600);
  const gone = db.all().filter((x) => x.present === 0);
  assert.equal(gone.length, 300);
  const minKept = Math.min(...gone.map((x) => x.gone_ms!));
  assert.ok(minKept >= now - 1000 * DAY + 600 * 1000, 'the newest gone rows are the ones kept');
  assert.equal(db.all().filter((x) => x.present === 1).length, 100);
});

test('readers keep working during a prune: another process queries throughout, the writer commits between batches', { timeout: 120_000 }, async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'index.db');
  const db = IndexDb.openWriter(file);
  t.after(() => db.close());
  const now = Date.now();
  const N = 20_000;
  fill(db, N, (i) => (i % 4 === 0 ? null : now - 60 * DAY + i));
  const child = spawn(process.execPath, [...CHILD_ARGS, file], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.after(() => child.kill('SIGKILL'));
  const lines = readline.createInterface({ input: child.stdout! });
  const it = lines[Symbol.asyncIterator]();
  const first = await Promise.race([it.next(), new Promise<never>((_, rej) => setTimeout(() => rej(new Error('reader child did not start in 30 s')), 30_000))]);
  assert.equal(first.value, 'ready');

  const pruning = pruneDeleted(db, indexHorizonMs({ keepDeletedDays: 30 }, now), { root: dir, batch: 200 });
  let done = false;
  void pruning.then(() => (done = true));
  // the recorder's writes land while the prune is under way (between its batches)
  let landed = 0;
  for (let k = 0; k < 5; k++) {
    await new Promise((r) => setImmediate(r));
    db.enqueue(() => db.insert(seg(N + k, { state: 'closed' })));
    assert.equal(db.flush(), true);
    if (!done) landed++;
  }
  const r = await pruning;
  assert.ok(landed > 0, 'writer commits landed before the prune finished');
  assert.equal(r.byAge, N - N / 4);
  assert.ok(r.batches >= (N - N / 4) / 200);
  child.stdin!.end();
  const last = await Promise.race([it.next(), new Promise<never>((_, rej) => setTimeout(() => rej(new Error('reader child did not report in 30 s')), 30_000))]);
  const rep = JSON.parse(String(last.value)) as { queries: number; errors: string[] };
  assert.deepEqual(rep.errors, [], 'the reader never saw an error (no "database is locked")');
  assert.ok(rep.queries > 20);
  assert.equal(db.all().length, N / 4 + 5);
});

test('the service prunes its index (stats count it) and never prunes the rows of files on disk', async (t) => {
  const dir = await tempDir(t);
  const root = path.join(dir, 'rec');
  await recordFixture(root, 5);
  const pre = IndexDb.openWriter(path.join(root, 'index.db'));
  const all = pre.all();
  pre.close();
  // two files vanish: recovery marks their rows missing (present=0)
  for (const r of all.slice(0, 2)) fs.rmSync(path.join(root, r.path));
  const svc = createRecordingService({ config: config(root, { index: { keepDeletedDays: 7, maxDeletedRows: 1000 } }), source: newEngine() });
  t.after(() => svc.close());
  await svc.start();
  await svc.pruneIndex();
  assert.equal(svc.stats().indexPrune!.pruned, 0, 'gone just now: kept for keepDeletedDays');
  // eight days later (the rows' gone_ms moved back)
  svc.index.db.prepare('UPDATE segments SET gone_ms = gone_ms - ? WHERE present = 0').run(8 * DAY);
  await svc.pruneIndex();
  const st = svc.stats().indexPrune!;
  assert.equal(st.prunedByAge, 2);
  assert.ok(st.runs >= 2);
  const left = svc.index.all();
  assert.equal(left.length, all.length - 2);
  assert.ok(left.every((r) => r.present === 1 && fs.existsSync(path.join(root, r.path))));
  await svc.close();
  const reader = IndexDb.openReader(path.join(root, 'index.db'));
  t.after(() => reader.close());
  reader.db.pragma('query_only = 1');
  const r = await new IndexPruner(reader, root, indexConfigSchema.parse({ keepDeletedDays: 0 }), silentLog).run();
  assert.equal(r?.byAge ?? 0, 0, 'a reader connection never prunes');
});
