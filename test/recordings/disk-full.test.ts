// Disk full on a real size-limited filesystem (a tmpfs mounted by the test; root is needed).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { captureClockUs } from '../../runtime/engine/api.js';
import { IndexDb } from '../../recordings/index-db.js';
import { listSegmentFiles } from '../../recordings/recovery.js';
import { freeBytesOf } from '../../recordings/retention.js';
import { createRecordingService } from '../../recordings/service.js';
import { config, ffprobeFrames, h264Units, newEngine, waitFor } from './helpers.js';
import { skipUnlessCi } from '../support/peer.js';
import { smallFs } from '../support/tmpfs.js';

const CAM = { channel: 'robot', source: 'base', track: 'cam' };

function checkConsistent(root: string): ReturnType<IndexDb['all']> {
  const db = IndexDb.openReader(path.join(root, 'index.db'));
  const rows = db.all();
  db.close();
  const files = listSegmentFiles(root);
  if (process.env.REC_DEBUG) console.log(rows.map((r) => [r.path, r.state, r.present, r.last_error]), files);
  assert.deepEqual(files.filter((f) => f.endsWith('.part')), []);
  assert.deepEqual(rows.filter((r) => r.present === 1).map((r) => r.path).sort(), files, 'rows ↔ files');
  return rows;
}

test('ENOSPC on a 3 MB tmpfs: recording stops cleanly, resumes when space returns, index intact', async (t) => {
  const root = await smallFs(t, 3072);
  if (!root) return skipUnlessCi(t, 'cannot mount a tmpfs here (not root / no CAP_SYS_ADMIN)');
  const engine = newEngine();
  engine.addStaticChannel({ id: 'robot' });
  const dbg = (lvl: string) => (o: object, m?: string) => process.env.REC_DEBUG && console.log(lvl, m, JSON.stringify(o));
  const svc = createRecordingService({ config: config(root, { segmentDurationMs: 2000, fragmentDurationMs: 500 }), source: engine, log: { debug: dbg('debug'), info: dbg('info'), warn: dbg('warn'), error: dbg('error') } });
  t.after(() => svc.close());
  await svc.start();
  // leave ~700 KB free
  const ballast = path.join(root, 'ballast');
  fs.writeFileSync(ballast, Buffer.alloc(Math.max(0, freeBytesOf(root) - 700 * 1024)));
  const cam = engine.publisher(CAM, { label: 't' });
  cam.setMime('video/h264');
  svc.discover();
  const aus = h264Units({ width: 640, height: 360, seconds: 4 });
  const t0 = captureClockUs();
  let i = 0;
  const feed = async (n: number) => {
    for (let k = 0; k < n; k++, i++) {
      const au = aus[i % aus.length]!;
      cam.write({ ts: t0 + Math.round((i * 1e6) / 30), wallclock: Date.now(), key: au.key, data: au.data });
      await svc.settled();
    }
  };
  const camStats = () => svc.stats().tracks.find((x) => x.track === 'robot/base/cam')!;
  while (!camStats().diskFull && i < 3000) await feed(10);
  assert.ok(camStats().diskFull, 'the disk filled up');
  await feed(30);
  const s1 = camStats();
  assert.ok(s1.drops['disk-full'] > 0, 'frames dropped (counted) while full');
  assert.equal(s1.segmentOpen, null, 'no segment held open while full');
  const writtenWhileFull = s1.framesWritten;

  // space returns
  fs.rmSync(ballast);
  await waitFor(async () => {
    await feed(5);
    await new Promise((r) => setTimeout(r, 20));
    return camStats().framesWritten > writtenWhileFull + 30;
  }, 'recording to resume', 20_000);
  assert.equal(camStats().diskFull, false);
  assert.ok(camStats().diskFullEvents >= 1);
  await svc.close();

  const rows = checkConsistent(root);
  assert.ok(rows.length >= 2, 'segments before and after the stall');
  for (const r of rows) assert.equal((await ffprobeFrames(path.join(root, r.path))).frames, r.frames, `${r.path} decodes`);
});

test('free-space floor: retention deletes the oldest unsynced segments, counts the loss, recording goes on', async (t) => {
  const root = await smallFs(t, 4096);
  if (!root) return skipUnlessCi(t, 'cannot mount a tmpfs here (not root / no CAP_SYS_ADMIN)');
  const engine = newEngine();
  engine.addStaticChannel({ id: 'robot' });
  const cfg = config(root, { segmentDurationMs: 1000, fragmentDurationMs: 500, retention: { minFreeBytes: 1024 * 1024, intervalMs: 100 } });
  const svc = createRecordingService({ config: { ...cfg, sync: { ...(await import('../../recordings/config.js')).syncConfigSchema.parse({ url: 'http://127.0.0.1:9/' }), pollMs: 3_600_000 } }, source: engine });
  t.after(() => svc.close());
  await svc.start();
  await svc.sync?.close(); // nothing gets synced: every segment stays unsynced
  const cam = engine.publisher(CAM, { label: 't' });
  cam.setMime('video/h264');
  svc.discover();
  const aus = h264Units({ width: 640, height: 360, seconds: 4 });
  const t0 = captureClockUs();
  for (let i = 0; i < 600; i++) {
    const au = aus[i % aus.length]!;
    cam.write({ ts: t0 + Math.round((i * 1e6) / 30), wallclock: Date.now(), key: au.key, data: au.data });
    await svc.settled();
    if (i % 30 === 0) svc.runRetention();
  }
  const st = svc.stats();
  await svc.close();
  assert.ok(st.retention!.unsyncedLost > 0, 'unsynced segments deleted under the floor, counted');
  assert.equal(st.retention!.deletedByReason.floor, st.retention!.deleted);
  const rows = checkConsistent(root);
  const lost = rows.filter((r) => r.state === 'missing');
  assert.equal(lost.length, st.retention!.unsyncedLost, 'each loss recorded in the index');
  assert.ok(lost.every((r) => /retention/.test(r.last_error ?? '')));
  const kept = rows.filter((r) => r.present === 1);
  assert.ok(Math.min(...kept.map((r) => r.start_us)) > Math.max(...lost.map((r) => r.start_us)), 'oldest went first');
});
