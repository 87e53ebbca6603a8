// Recordings benchmark: one 1080p30 4 Mbit/s H.264 track + two 50 Hz JSON sensor tracks through
// the real Engine and recording service, fed as fast as it goes for a fixed media duration.
// Reports CPU % of one core needed for real time, RSS, bytes written to the block layer per media
// byte (/proc/self/io write_bytes, counted at page-dirtying time, SQLite included), index
// transactions per second, and sync throughput to a loopback nginx vs `curl -T` of the same files.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { AnnexBSplitter } from '../../runtime/engine/h264.js';
import { captureClockUs } from '../../runtime/engine/api.js';
import { IndexDb } from '../../recordings/index-db.js';
import { silentLog } from '../../recordings/log.js';
import { createRecordingService } from '../../recordings/service.js';
import { syncConfigSchema } from '../../recordings/config.js';
import { Uploader } from '../../recordings/sync.js';
import { config, newEngine } from '../recordings/helpers.js';
import { startNginx } from '../recordings/nginx.js';
import { round, type BenchRow } from './harness.js';

const MEDIA_S = 30;

function procIo(): { write: number; wchar: number } {
  const s = fs.readFileSync('/proc/self/io', 'utf8');
  const v = (k: string) => Number(new RegExp(`^${k}: (\\d+)`, 'm').exec(s)?.[1] ?? 0);
  return { write: v('write_bytes'), wchar: v('wchar') };
}

function dirBytes(d: string): number {
  let n = 0;
  for (const e of fs.readdirSync(d, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) n += fs.statSync(path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name)).size;
  }
  return n;
}

export async function bench(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'rec-bench-'));
  const cleanups: Array<() => unknown> = [];
  const t = { after: (fn: () => unknown) => cleanups.push(fn) } as unknown as TestContext;
  try {
    const es = execFileSync('/usr/bin/ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=1920x1080:rate=30', '-t', String(MEDIA_S), '-c:v', 'libx264', '-preset', 'ultrafast', '-b:v', '4M', '-maxrate', '4M', '-bufsize', '4M', '-g', '30', '-bf', '0', '-x264-params', 'repeat-headers=1', '-f', 'h264', '-'], { maxBuffer: 256 * 1024 * 1024 });
    const sp = new AnnexBSplitter();
    const aus = [...sp.push(es), ...sp.flush()];
    const root = path.join(dir, 'rec');
    const engine = newEngine();
    engine.addStaticChannel({ id: 'robot' });
    const svc = createRecordingService({ config: config(root, { segmentDurationMs: 10_000, fragmentDurationMs: 1000 }), source: engine });
    await svc.start();
    const cam = engine.publisher({ channel: 'robot', source: 'base', track: 'cam' }, { label: 'bench' });
    cam.setMime('video/h264;width=1920;height=1080');
    const imu = engine.publisher({ channel: 'robot', source: 'base', track: 'imu' }, { label: 'bench' });
    imu.setMime('application/json');
    const gps = engine.publisher({ channel: 'robot', source: 'base', track: 'odom' }, { label: 'bench' });
    gps.setMime('application/json');
    svc.discover();
    const t0 = captureClockUs();
    let media = 0;
    let sensor = 0;
    const io0 = procIo();
    const cpu0 = process.cpuUsage();
    const wall0 = performance.now();
    let rssPeak = 0;
    for (let i = 0; i < aus.length; i++) {
      const ts = t0 + Math.round((i * 1e6) / 30);
      cam.write({ ts, wallclock: Date.now(), key: aus[i]!.key, data: aus[i]!.data });
      media += aus[i]!.data.length;
      while (t0 + sensor * 20_000 < ts + 33_333) {
        const sts = t0 + sensor * 20_000;
        const a = Buffer.from(JSON.stringify({ t: sts, ax: Math.sin(sensor), ay: Math.cos(sensor), az: 9.81, gx: 0.01, gy: 0.02, gz: 0.03 }));
        const b = Buffer.from(JSON.stringify({ t: sts, x: sensor * 0.01, y: 0.5, yaw: 0.1, vx: 0.2 }));
        imu.write({ ts: sts, wallclock: Date.now(), key: true, data: a });
        gps.write({ ts: sts, wallclock: Date.now(), key: true, data: b });
        media += a.length + b.length;
        sensor++;
      }
      if (i % 10 === 0) {
        await svc.settled();
        rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
      }
    }
    await svc.settled();
    await svc.close();
    const wallMs = performance.now() - wall0;
    const cpu = process.cpuUsage(cpu0);
    const io1 = procIo();
    const cpuMs = (cpu.user + cpu.system) / 1000;
    const onDisk = dirBytes(root);
    rows.push({
      bench: 'recordings',
      case: `record 1080p30 4Mbit/s + 2×50 Hz JSON, ${MEDIA_S} s media`,
      media_mb: round(media / 1e6),
      wall_s: round(wallMs / 1000),
      speed_x_realtime: round((MEDIA_S * 1000) / wallMs, 1),
      cpu_pct_of_core_realtime: round((cpuMs / (MEDIA_S * 1000)) * 100, 1),
      rss_mb: round(rssPeak / 1048576, 1),
      write_amp_blocklayer: round((io1.write - io0.write) / media, 3),
      write_amp_syscalls: round((io1.wchar - io0.wchar) / media, 3),
      files_bytes_per_media_byte: round(onDisk / media, 3),
    });

    // baseline: the same bytes appended raw to one file
    {
      const f = path.join(dir, 'raw.bin');
      const fd = fs.openSync(f, 'w');
      const a = procIo();
      for (const au of aus) fs.writeSync(fd, au.data);
      fs.fdatasyncSync(fd);
      fs.closeSync(fd);
      const b = procIo();
      const raw = aus.reduce((x, au) => x + au.data.length, 0);
      rows.push({ bench: 'recordings', case: 'baseline: raw append of the video bytes', write_amp_blocklayer: round((b.write - a.write) / raw, 3), write_amp_syscalls: round((b.wchar - a.wchar) / raw, 3) });
      fs.rmSync(f);
    }

    // index transactions per second
    {
      const db = IndexDb.openWriter(path.join(dir, 'bench-index.db'));
      const row = (i: number) => ({
        path: `c/s/t/2026-01-01/${i}.mp4`, channel: 'c', source: 's', track: 't', mime: 'video/h264', kind: 'video' as const, run: 'r', offset_us: 0,
        start_us: i, end_us: i + 1, wall_start_ms: i, wall_end_ms: i + 1, duration_ms: 1, bytes: 1, frames: 1, keyframes: 1, sha256: 'x', state: 'closed' as const,
        created_ms: 0, closed_ms: 0, origin: 'recorder',
      });
      let n = 0;
      const a = performance.now();
      while (performance.now() - a < 2000) {
        db.enqueue(() => db.insert(row(n++)));
        db.flush();
      }
      const single = n / ((performance.now() - a) / 1000);
      const b = performance.now();
      let m = 0;
      while (performance.now() - b < 2000) {
        for (let k = 0; k < 100; k++) db.enqueue(() => db.insert(row(1e6 + m++)));
        db.flush();
      }
      const batchedRows = m / ((performance.now() - b) / 1000);
      db.close();
      rows.push({ bench: 'recordings', case: 'index: 1 row per transaction (WAL, synchronous=NORMAL)', tx_per_s: Math.round(single) });
      rows.push({ bench: 'recordings', case: 'index: 100 rows per transaction', tx_per_s: Math.round(batchedRows / 100), rows_per_s: Math.round(batchedRows) });
    }

    // sync to loopback nginx vs curl -T of the same files
    {
      // two workers, as any real target has more than one: PUT and the verify GET run side by side
      const ng = await startNginx(t, path.join(dir, 'ng'), { workers: 2 });
      const db = IndexDb.openWriter(path.join(root, 'index.db'));
      const segs = db.all();
      const total = segs.reduce((a, r) => a + r.bytes, 0);
      // rounds alternate ours / curl so that other load on the machine hits both alike
      const ROUNDS = 4;
      let syncS = 0;
      let curlS = 0;
      for (let k = 0; k < ROUNDS; k++) {
        db.db.exec("UPDATE segments SET state='closed', synced_ms=NULL");
        const up = new Uploader(syncConfigSchema.parse({ url: `${ng.url}/sync${k}` }), root, db, silentLog);
        const a = performance.now();
        await up.runOnce();
        syncS += (performance.now() - a) / 1000;
        const st = up.stats();
        await up.close();
        if (st.verified !== segs.length) throw new Error(`sync verified ${st.verified}/${segs.length}: ${st.lastError}`);
        const args: string[] = ['-s', '-f', '-o', '/dev/null'];
        for (const r of segs) args.push('-T', path.join(root, r.path), `${ng.url}/curl${k}/${r.path}`);
        const b = performance.now();
        await new Promise<void>((resolve, reject) => {
          const c = spawn('/usr/bin/curl', args, { stdio: 'ignore' });
          c.on('error', reject);
          c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`curl exited ${code}`))));
        });
        curlS += (performance.now() - b) / 1000;
      }
      // an uplink-bound link (what a robot has): both capped at 40 Mbit/s, the verify GET overlaps the next PUT
      const CAP = 5_000_000;
      db.db.exec("UPDATE segments SET state='closed', synced_ms=NULL");
      const upc = new Uploader(syncConfigSchema.parse({ url: `${ng.url}/capped`, bandwidthBytesPerSec: CAP }), root, db, silentLog);
      const ca = performance.now();
      await upc.runOnce();
      const cappedS = (performance.now() - ca) / 1000;
      await upc.close();
      const cargs: string[] = ['-s', '-f', '-o', '/dev/null', '--limit-rate', String(CAP)];
      for (const r of segs) cargs.push('-T', path.join(root, r.path), `${ng.url}/curlcapped/${r.path}`);
      const cb = performance.now();
      execFileSync('/usr/bin/curl', cargs);
      const curlCappedS = (performance.now() - cb) / 1000;
      db.close();
      rows.push({ bench: 'recordings', case: 'sync capped at 40 Mbit/s (bandwidthBytesPerSec) incl. verify', mb: round(total / 1e6), throughput_mbps: round((total * 8) / 1e6 / cappedS, 1), vs_curl: round(curlCappedS / cappedS, 2) });
      rows.push({ bench: 'recordings', case: 'baseline: curl -T --limit-rate 40 Mbit/s', mb: round(total / 1e6), throughput_mbps: round((total * 8) / 1e6 / curlCappedS, 1) });
      const moved = total * ROUNDS;
      rows.push({ bench: 'recordings', case: `sync ${segs.length} segments to loopback nginx (PUT + GET verify)`, mb: round(moved / 1e6), throughput_mbps: round((moved * 8) / 1e6 / syncS, 1), vs_curl: round(curlS / syncS, 2) });
      rows.push({ bench: 'recordings', case: 'baseline: curl -T of the same files (one process, keep-alive)', mb: round(moved / 1e6), throughput_mbps: round((moved * 8) / 1e6 / curlS, 1) });
    }
  } finally {
    for (const c of cleanups.reverse()) await c();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}
