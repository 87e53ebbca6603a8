// kill -9 of a recording process, 20 times: after each restart recovery leaves no row without a
// file and no file without a row, every file decodes with the real ffprobe, and each kill loses
// at most one fragment (1 s = 30 frames of video, 50 records of data).
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { test } from 'node:test';
import { IndexDb, type SegmentRow } from '../../recordings/index-db.js';
import { listSegmentFiles } from '../../recordings/recovery.js';
import { FFMPEG, ffprobeFrames, tempDir, waitFor } from './helpers.js';

const KILLS = 20;
const FRAGMENT_FRAMES = 30;
const FRAGMENT_RECORDS = 50;
// run from source (tsx) or compiled (dist/test/recordings/*.js, how `npm test` runs)
const FROM_SOURCE = import.meta.url.endsWith('.ts');
const CHILD = path.join(import.meta.dirname, FROM_SOURCE ? 'record-child.ts' : 'record-child.js');
const CHILD_ARGS = FROM_SOURCE ? ['--import', 'tsx', CHILD] : [CHILD];

test(`kill -9 while recording, ${KILLS} times: recovery is exact and loses at most one fragment`, { timeout: 300_000 }, async (t) => {
  const dir = await tempDir(t, 'rec-kill-');
  const root = path.join(dir, 'rec');
  const h264 = path.join(dir, 'in.h264');
  execFileSync(FFMPEG, ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=30', '-t', '4', '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '30', '-bf', '0', '-x264-params', 'repeat-headers=1', '-f', 'h264', h264]);
  const counterFile = path.join(dir, 'counter');
  const probed = new Set<string>();
  let prev: { run: string; video: number; data: number } | null = null;
  const losses: Array<{ video: number; data: number }> = [];

  for (let k = 0; k <= KILLS; k++) {
    fs.rmSync(counterFile, { force: true });
    const child = spawn(process.execPath, [...CHILD_ARGS, root, h264, counterFile], { stdio: ['pipe', 'pipe', 'inherit'] });
    let exited = false;
    child.once('exit', () => (exited = true));
    t.after(() => {
      if (!exited) child.kill('SIGKILL');
    });
    const line = await new Promise<string>((resolve, reject) => {
      const rl = readline.createInterface({ input: child.stdout! });
      const timer = setTimeout(() => reject(new Error('child did not report recovery within 30 s')), 30_000);
      rl.once('line', (l) => (clearTimeout(timer), rl.close(), resolve(l)));
      child.once('exit', (c) => (clearTimeout(timer), reject(new Error(`child exited early (${c})`))));
    });
    assert.match(line, /^recovered /);
    const rep = JSON.parse(line.slice('recovered '.length)) as { run: string; partsClosed: number; rowsMissing: number };
    assert.equal(rep.rowsMissing, 0, `kill ${k}: no row lost its file`);

    // The restarted process recovered: disk and index agree exactly.
    const db = IndexDb.openReader(path.join(root, 'index.db'));
    const rows: SegmentRow[] = db.all();
    db.close();
    const files = listSegmentFiles(root);
    assert.deepEqual(files.filter((f) => f.endsWith('.part')), [], `kill ${k}: no .part left`);
    const present = rows.filter((r) => r.present === 1).map((r) => r.path).sort();
    assert.deepEqual(present, files, `kill ${k}: rows ↔ files`);
    assert.ok(rows.every((r) => r.state === 'closed'), `kill ${k}: every row closed`);
    for (const r of rows) {
      if (r.kind !== 'video' || probed.has(r.path)) continue;
      const p = await ffprobeFrames(path.join(root, r.path));
      assert.equal(p.frames, r.frames, `${r.path}: ffprobe decodes every indexed frame`);
      probed.add(r.path);
    }
    if (prev) {
      const mine = rows.filter((r) => r.run === prev!.run);
      const v = mine.filter((r) => r.kind === 'video').reduce((a, r) => a + r.frames, 0);
      const d = mine.filter((r) => r.kind === 'data').reduce((a, r) => a + r.frames, 0);
      const loss = { video: prev.video - v, data: prev.data - d };
      losses.push(loss);
      // the counter is rewritten after each frame: a kill in between leaves it one frame (≤ 2 records) behind
      assert.ok(loss.video >= -1 && loss.video <= FRAGMENT_FRAMES, `kill ${k}: lost ${loss.video} video frames (fed ${prev.video}, kept ${v})`);
      assert.ok(loss.data >= -2 && loss.data <= FRAGMENT_RECORDS, `kill ${k}: lost ${loss.data} records (fed ${prev.data}, kept ${d})`);
    }
    if (k === KILLS) {
      child.kill('SIGKILL');
      break;
    }
    child.stdin!.write('go\n');
    // kill at a random point: between 1 and 9 s of media
    const target = 30 + Math.floor(Math.random() * 240);
    await waitFor(() => {
      try {
        return fs.readFileSync(counterFile).readUInt32LE(0) >= target;
      } catch {
        return false;
      }
    }, `child to feed ${target} frames`, 60_000);
    child.kill('SIGKILL');
    await new Promise<void>((r) => (exited ? r() : child.once('exit', () => r())));
    const c = fs.readFileSync(counterFile);
    prev = { run: rep.run, video: c.readUInt32LE(0), data: c.readUInt32LE(4) };
  }
  assert.equal(losses.length, KILLS);
  t.diagnostic(`losses per kill (video frames, data records): ${JSON.stringify(losses)}`);
});
