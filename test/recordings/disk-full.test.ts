// Disk full on a real size-limited filesystem (a tmpfs mounted by the test; root is needed), with
// the shipped free-space policy (floor = min(256 MiB, 10 %), resume one band above it), in
// sequences: filled to ENOSPC by another writer → recording pauses, retention frees, recording
// resumes by itself; filled again; freed. After each step the counts add up: frames in = frames on
// disk + frames dropped by reason; the files decode with the real ffmpeg, no timestamp errors.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { recordingsConfigSchema } from '../../recordings/config.js';
import type { SegmentRow } from '../../recordings/index-db.js';
import { listSegmentFiles } from '../../recordings/recovery.js';
import { freeBytesOf } from '../../recordings/retention.js';
import { createRecordingService, type RecordingService } from '../../recordings/service.js';
import type { RecLog } from '../../recordings/log.js';
import { assertAccounted, decodeStrict, fillUntilFull, h264Units, indexRows, mountTmpfs, newEngine, paceVideo, waitFor } from './helpers.js';
import { skipUnlessCi } from '../support/peer.js';

const CAM = { channel: 'robot', source: 'base', track: 'cam' };
const IMU = { channel: 'robot', source: 'base', track: 'imu' };

/** Disk and index agree, no .part is left, every present video file decodes strictly. */
async function checkDisk(root: string): Promise<SegmentRow[]> {
  const rows = indexRows(root);
  const files = listSegmentFiles(root);
  assert.deepEqual(files.filter((f) => f.endsWith('.part')), [], 'no .part after close');
  assert.deepEqual(rows.filter((r) => r.present === 1).map((r) => r.path).sort(), files, 'rows ↔ files');
  for (const r of rows.filter((x) => x.present === 1 && x.kind === 'video')) {
    const d = await decodeStrict(path.join(root, r.path));
    assert.equal(d.frames, r.frames, `${r.path}: decoded = indexed frames`);
  }
  return rows;
}

function collectingLog(): RecLog & { lines: Array<{ level: string; msg: string; o: object }> } {
  const lines: Array<{ level: string; msg: string; o: object }> = [];
  const at = (level: string) => (o: object, msg?: string) => {
    lines.push({ level, msg: msg ?? '', o });
    if (process.env.REC_DEBUG) console.log(level, msg, JSON.stringify(o));
  };
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

function camStats(svc: RecordingService) {
  return svc.stats().tracks.find((x) => x.track === 'robot/base/cam')!;
}

test('filled to ENOSPC by another writer, then freed: pause, retention frees up to the resume level, recording resumes by itself; every frame counted', async (t) => {
  const root = await mountTmpfs(t, 16 * 1024);
  if (!root) return skipUnlessCi(t, 'cannot mount a tmpfs here (not root / no CAP_SYS_ADMIN)');
  const engine = newEngine();
  t.after(() => engine.close());
  engine.addStaticChannel({ id: 'robot' });
  const log = collectingLog();
  // shipped defaults but 5 s segments: retention has old segments to choose from
  const cfg = recordingsConfigSchema.parse({ root, segmentDurationMs: 5000 });
  const svc = createRecordingService({ config: cfg, source: engine, log });
  t.after(() => svc.close());
  await svc.start();
  const pol = svc.stats().space!;
  assert.ok(pol.floorBytes < 2 * 1024 * 1024 && pol.floorBytes > 1024 * 1024, `floor scales with a 16 MiB filesystem: ${pol.floorBytes}`);
  const cam = engine.publisher(CAM, { label: 't' });
  cam.setMime('video/h264');
  svc.discover();
  const aus = h264Units({ width: 640, height: 360, seconds: 4, bitrate: '4M' });
  const feed = paceVideo(cam, aus, { speed: 3 });
  t.after(() => feed.stop());

  // 1. recording normally: a few closed segments
  await waitFor(() => svc.stats().segmentsClosed >= 2, '2 closed segments', 30_000);
  assert.equal(camStats(svc).diskFullEvents, 0);

  // 2. another writer fills the disk to ENOSPC
  const ballast = path.join(root, 'ballast');
  fillUntilFull(ballast);
  await waitFor(() => camStats(svc).diskFullEvents >= 1, 'the recorder to see the disk full', 20_000);
  const atPause = camStats(svc).framesWritten;
  // nothing else is done: retention frees (oldest first, unsynced, counted) and recording resumes
  await waitFor(() => camStats(svc).framesWritten > atPause + 60 && !camStats(svc).diskFull, 'recording to resume by itself', 30_000);
  const s1 = svc.stats();
  assert.ok(s1.retention!.unsyncedLost >= 1, 'unsynced segments were deleted for space, and stats say so');
  assert.ok(s1.retention!.lastUnsyncedLoss !== null);
  assert.ok(s1.retention!.pressureRuns >= 1);
  assert.ok(camStats(svc).lastPauseMs! >= 0);

  // 3. filled again, and more: whatever retention frees, the ballast takes (another process would)
  const ballast2 = path.join(root, 'ballast2');
  const events = camStats(svc).diskFullEvents;
  const grab = setInterval(() => fillUntilFull(ballast2), 50);
  t.after(() => clearInterval(grab));
  await waitFor(() => camStats(svc).diskFullEvents > events && camStats(svc).diskFull, 'paused again, with no way to make room', 30_000);
  const stuck = camStats(svc).framesWritten;
  const droppedAtStuck = camStats(svc).drops['disk-full'];
  await waitFor(() => camStats(svc).drops['disk-full'] > droppedAtStuck + 30, 'frames dropped while full (counted)', 20_000);
  assert.equal(camStats(svc).framesWritten, stuck, 'nothing written while full');

  // 4. freed: the ballast goes; recording resumes by itself and stays up
  clearInterval(grab);
  fs.rmSync(ballast);
  fs.rmSync(ballast2);
  const freedAt = Date.now();
  await waitFor(() => !camStats(svc).diskFull && camStats(svc).framesWritten > stuck + 60, 'recording to resume after the space came back', 20_000);
  const resumeMs = Date.now() - freedAt;
  t.diagnostic(`free space → recording again: ${resumeMs} ms`);
  const eventsAfter = camStats(svc).diskFullEvents;
  const w = camStats(svc).framesWritten;
  await waitFor(() => camStats(svc).framesWritten > w + 90, 'recording on', 20_000);
  assert.equal(camStats(svc).diskFullEvents, eventsAfter, 'no more disk-full events with space free');
  assert.ok(freeBytesOf(root) > pol.resumeBytes);

  feed.stop();
  await svc.settled();
  await svc.close();
  const st = svc.stats();
  const cs = st.tracks.find((x) => x.track === 'robot/base/cam')!;
  t.diagnostic(`cam: in ${cs.framesIn}, written ${cs.framesWritten}, drops ${JSON.stringify(cs.drops)}, disk-full events ${cs.diskFullEvents}, unsynced deleted ${st.retention!.unsyncedLost}`);
  assertAccounted(cs);
  assert.equal(cs.framesPending, 0);
  assert.equal(cs.framesIn, feed.st.frames, 'every published frame reached the recorder');
  assert.ok(cs.drops['disk-full'] > 0);
  assert.equal(st.lost['disk-full'], cs.drops['disk-full']);
  assert.equal(cs.drops['closed-empty'], 0);
  assert.ok(log.lines.some((l) => l.level === 'warn' && /recordings lost frames \(disk-full\)/.test(l.msg)), 'losses logged');
  assert.ok(log.lines.some((l) => l.level === 'warn' && /disk full/.test(l.msg)));

  const rows = await checkDisk(root);
  // every frame counted as written is in a closed segment (present, or deleted later by retention: its row keeps the count)
  const video = rows.filter((r) => r.kind === 'video');
  assert.equal(video.reduce((a, r) => a + r.frames, 0), cs.framesWritten, 'frames written = frames in the segments');
  const lost = video.filter((r) => r.state === 'missing');
  assert.equal(lost.length, st.retention!.unsyncedLost, 'each segment deleted for space is recorded as such');
  assert.ok(lost.every((r) => /retention/.test(r.last_error ?? '')));
});

test('1 s segments on a disk that fills and stays full: losses at segment close are counted, never silent', async (t) => {
  const root = await mountTmpfs(t, 6 * 1024);
  if (!root) return skipUnlessCi(t, 'cannot mount a tmpfs here (not root / no CAP_SYS_ADMIN)');
  const engine = newEngine();
  t.after(() => engine.close());
  engine.addStaticChannel({ id: 'robot' });
  const svc = createRecordingService({ config: recordingsConfigSchema.parse({ root, segmentDurationMs: 1000 }), source: engine, log: collectingLog() });
  t.after(() => svc.close());
  await svc.start();
  const cam = engine.publisher(CAM, { label: 't' });
  cam.setMime('video/h264');
  const imu = engine.publisher(IMU, { label: 't' });
  imu.setMime('application/json');
  svc.discover();
  const aus = h264Units({ width: 640, height: 360, seconds: 4, bitrate: '4M' });
  const feed = paceVideo(
    {
      write: (f) => {
        cam.write(f);
        // a 30 Hz sensor record with every frame: data tracks fill and lose records too
        imu.write({ ts: f.ts, wallclock: f.wallclock, key: true, data: Buffer.from(JSON.stringify({ t: f.ts, ax: 0.1, pad: 'x'.repeat(200) })) });
      },
    },
    aus,
    { speed: 2 },
  );
  t.after(() => feed.stop());
  await waitFor(() => svc.stats().segmentsClosed >= 8, 'a few segments', 30_000);
  // the disk fills and a writer keeps it full: every second, whatever was freed is taken again
  const ballast = path.join(root, 'ballast');
  const grab = setInterval(() => fillUntilFull(ballast), 20);
  t.after(() => clearInterval(grab));
  await waitFor(() => svc.stats().tracks.every((x) => x.diskFullEvents >= 1), 'both tracks to see the disk full', 30_000);
  await waitFor(() => svc.stats().lost['disk-full'] > 150, 'losses while full', 30_000);
  clearInterval(grab);
  fs.rmSync(ballast);
  await waitFor(() => svc.stats().tracks.every((x) => !x.diskFull), 'both tracks to resume', 20_000);
  feed.stop();
  await svc.settled();
  await svc.close();
  const st = svc.stats();
  assert.equal(st.tracks.length, 2);
  for (const tr of st.tracks) {
    t.diagnostic(`${tr.track}: in ${tr.framesIn}, written ${tr.framesWritten}, drops ${JSON.stringify(tr.drops)}, disk-full events ${tr.diskFullEvents}, segments ${tr.segmentsClosed} (+${tr.segmentsDiscarded} discarded)`);
    assertAccounted(tr);
    assert.equal(tr.framesIn, feed.st.frames, `${tr.track}: every published frame reached the recorder`);
  }
  const rows = await checkDisk(root);
  for (const tr of st.tracks) {
    const [channel, source, track] = tr.track.split('/');
    const mine = rows.filter((r) => r.channel === channel && r.source === source && r.track === track);
    assert.equal(mine.reduce((a, r) => a + r.frames, 0), tr.framesWritten, `${tr.track}: frames written = frames in its segments`);
  }
});
