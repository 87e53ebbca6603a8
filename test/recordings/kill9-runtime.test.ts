// kill -9 of the real runtime (`moth-edge run --config F`: testpattern camera through ffmpeg,
// a 50 Hz simulated IMU, the recording service as app.ts wires it), 5 times. After each restart
// the runtime's own recovery leaves disk and index in agreement, every closed file decodes with
// ffprobe, and the frames lost are at most one fragment beyond the last stats snapshot.
// (test/recordings/kill9.test.ts does 20 kills with an exact frame counter.)
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { test } from 'node:test';
import { listSegmentFiles } from '../../recordings/recovery.js';
import { childrenOf, ffprobeFrames, indexRows, tempDir, waitFor } from './helpers.js';

const KILLS = 5;
const FROM_SOURCE = import.meta.url.endsWith('.ts');
const CLI = path.join(import.meta.dirname, '..', '..', 'runtime', FROM_SOURCE ? 'cli.ts' : 'cli.js');
// 1 s fragments at 30 fps with 1 s GOPs: one fragment is one GOP, but frames reach the muxer with
// real capture jitter (ffmpeg bursts at start-up), so a fragment may hold up to two GOPs. The exact
// one-fragment bound is asserted by kill9.test.ts with an exact frame counter.
const FRAGMENT_FRAMES = 60;

interface Started {
  child: ChildProcess;
  port: number;
  recovery: Record<string, number>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function start(cfg: string, t: import('node:test').TestContext): Promise<Started> {
  const args = FROM_SOURCE ? ['--import', 'tsx', CLI, 'run', '--config', cfg] : [CLI, 'run', '--config', cfg];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let exited = false;
  child.once('exit', () => (exited = true));
  t.after(() => {
    if (!exited) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-2000)));
  return new Promise<Started>((resolve, reject) => {
    let recovery: Record<string, number> | null = null;
    const timer = setTimeout(() => reject(new Error(`runtime did not start within 30 s: ${stderr}`)), 30_000);
    const rl = readline.createInterface({ input: child.stdout! });
    rl.on('line', (l) => {
      if (!l.startsWith('{')) return;
      const j = JSON.parse(l) as { msg?: string; recovery?: Record<string, number>; port?: number };
      if (j.msg === 'recordings recovery done') recovery = j.recovery!;
      if (j.msg === 'moth-edge listening' && recovery) {
        clearTimeout(timer);
        resolve({ child, port: j.port!, recovery });
      }
    });
    child.once('exit', (c) => (clearTimeout(timer), reject(new Error(`runtime exited ${c}: ${stderr}`))));
  });
}

/** The runtime's config: a test pattern and a 50 Hz IMU, recorded under root (`recordings` adds keys). */
function runtimeConfig(root: string, recordings: string): string {
  return `server: { host: 127.0.0.1, port: 0 }
log: { level: info }
recordings:
  root: ${root}
  ${recordings}
egress: { whep: { enabled: false } }
channels:
  - id: m0thedge000000000000
    name: robot
    sources:
      - name: base
        driver: { kind: testpattern, track: video, codec: h264, width: 320, height: 240, fps: 30, bitrateKbps: 400, keyintSeconds: 1, pattern: testsrc2, profile: baseline }
      - name: base
        driver: { kind: simulated, track: imu, sensor: imu, rateHz: 50 }
`;
}

interface RecStats {
  run: string;
  tracks: Array<{ track: string; framesWritten: number }>;
}

async function recStats(port: number): Promise<RecStats> {
  const s = (await (await fetch(`http://127.0.0.1:${port}/api/stats`)).json()) as Record<string, unknown>;
  const find = (o: unknown): RecStats | null => {
    if (!o || typeof o !== 'object') return null;
    const r = o as Record<string, unknown>;
    if (typeof r.run === 'string' && Array.isArray(r.tracks)) return r as unknown as RecStats;
    for (const v of Object.values(r)) {
      const f = find(v);
      if (f) return f;
    }
    return null;
  };
  const r = find(s);
  if (!r) throw new Error('no recordings stats in /api/stats');
  return r;
}


test(`kill -9 of the real runtime while it records, ${KILLS} times`, { timeout: 240_000 }, async (t) => {
  const dir = await tempDir(t, 'rec-rt-');
  const root = path.join(dir, 'rec');
  const cfg = path.join(dir, 'moth.yaml');
  fs.writeFileSync(cfg, runtimeConfig(root, 'segmentDurationMs: 3000\n  retention: { minFreeBytes: 0 }'));
  const probed = new Set<string>();
  let prev: { run: string; video: number } | null = null;
  for (let k = 0; k <= KILLS; k++) {
    const rt = await start(cfg, t);
    assert.equal(rt.recovery.rowsMissing, 0, `restart ${k}: no row lost its file`);
    // disk ↔ index, ignoring what the new run has already opened
    const rows = indexRows(root).filter((r) => r.state !== 'recording');
    const files = listSegmentFiles(root).filter((f) => !f.endsWith('.part'));
    const present = new Set(rows.filter((r) => r.present === 1).map((r) => r.path));
    for (const f of files) assert.ok(present.has(f), `restart ${k}: ${f} has a row`);
    for (const p of present) assert.ok(fs.existsSync(path.join(root, p)), `restart ${k}: ${p} exists`);
    for (const r of rows) {
      if (r.kind !== 'video' || probed.has(r.path)) continue;
      assert.equal((await ffprobeFrames(path.join(root, r.path))).frames, r.frames, `${r.path} decodes`);
      probed.add(r.path);
    }
    if (prev) {
      const kept = rows.filter((r) => r.run === prev!.run && r.kind === 'video').reduce((a, r) => a + r.frames, 0);
      assert.ok(kept >= prev.video - FRAGMENT_FRAMES, `kill ${k}: kept ${kept} of ≥ ${prev.video} frames written before the kill; recovery ${JSON.stringify(rt.recovery)}; rows ${JSON.stringify(indexRows(root).map((r) => [r.path, r.run, r.state, r.frames]))} run ${prev.run}`);
    }
    if (k === KILLS) {
      rt.child.kill('SIGTERM');
      await new Promise<void>((r) => (rt.child.exitCode !== null ? r() : rt.child.once('exit', () => r())));
      break;
    }
    // record 1.5–4 s, snapshot the recorder, kill -9
    await new Promise((r) => setTimeout(r, 1500 + Math.random() * 2500));
    let snap: RecStats | null = null;
    await waitFor(async () => {
      snap = await recStats(rt.port);
      return (snap.tracks.find((x) => x.track.endsWith('/video'))?.framesWritten ?? 0) > 0;
    }, 'video frames recorded', 20_000);
    const kids = childrenOf(rt.child.pid!);
    rt.child.kill('SIGKILL');
    await new Promise<void>((r) => (rt.child.exitCode !== null || rt.child.signalCode !== null ? r() : rt.child.once('exit', () => r())));
    // the driver's ffmpeg sees its pipe close and ends; do not leave it behind either way
    await waitFor(() => kids.every((p) => !alive(p)), 'ffmpeg children to end', 5000).catch(() => {
      for (const p of kids) if (alive(p)) process.kill(p, 'SIGKILL');
    });
    const s = snap as unknown as RecStats;
    prev = { run: s.run, video: s.tracks.find((x) => x.track.endsWith('/video'))!.framesWritten };
  }
});

test('SIGTERM of the real runtime while it records, 3 times: index and disk agree at exit, before any recovery', { timeout: 180_000 }, async (t) => {
  const dir = await tempDir(t, 'rec-term-');
  const root = path.join(dir, 'rec');
  const cfg = path.join(dir, 'moth.yaml');
  fs.writeFileSync(cfg, runtimeConfig(root, 'segmentDurationMs: 2000'));
  for (let k = 0; k < 3; k++) {
    const rt = await start(cfg, t);
    // stop in the middle of a segment, at a different point each time
    await waitFor(async () => ((await recStats(rt.port)).tracks.find((x) => x.track.endsWith('/video'))?.framesWritten ?? 0) > 30 + k * 20, 'video on disk', 30_000);
    const written = (await recStats(rt.port)).tracks.find((x) => x.track.endsWith('/video'))!.framesWritten;
    rt.child.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => (rt.child.exitCode !== null ? r(rt.child.exitCode) : rt.child.once('exit', (c) => r(c))));
    assert.equal(code, 0, 'a clean stop');
    // what the runtime left, read as it is (no recovery has run)
    const rows = indexRows(root);
    assert.deepEqual(rows.filter((r) => r.state === 'recording').map((r) => r.path), [], `stop ${k}: no row left recording`);
    assert.deepEqual(listSegmentFiles(root).filter((f) => f.endsWith('.part')), [], `stop ${k}: no .part left`);
    assert.deepEqual(rows.filter((r) => r.present === 1).map((r) => r.path).sort(), listSegmentFiles(root), `stop ${k}: rows ↔ files`);
    const video = rows.filter((r) => r.kind === 'video' && r.path.includes('/video/'));
    assert.ok(video.reduce((a, r) => a + r.frames, 0) >= written, `stop ${k}: every frame on disk before the stop is indexed`);
  }
});
