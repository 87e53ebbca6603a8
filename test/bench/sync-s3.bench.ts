// Verified sync to an S3-compatible server (s3rver, its own process, loopback) against upload-only
// `curl -T` of the same files (SigV4, the floor: no verification at all), and against the WebDAV
// path (PUT + GET read-back) to nginx with its own curl -T floor. Two sets: many single-PUT
// segments (3 MB ≈ 6 s of 4 Mbit/s) and 60 s segments at 4 Mbit/s (30 MB, multipart with the
// default 16 MiB parts). Method as the recordings bench: the same files, warm in the page cache, a
// warm-up round, ROUNDS rotated rounds, medians; vs_upload_only is the median of per-round ratios
// against curl -T to the same server. CPU: this process for ours, reaped children for curl, the
// server's own process for both. Also: RSS of the whole runtime with no sync, a WebDAV target and
// an S3 target (the SDK is loaded only for the last).
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import type { TestContext } from 'node:test';
import { syncConfigSchema } from '../../recordings/config.js';
import { IndexDb } from '../../recordings/index-db.js';
import { silentLog } from '../../recordings/log.js';
import { sha256File } from '../../recordings/recovery.js';
import { Uploader } from '../../recordings/sync.js';
import { startNginx } from '../recordings/nginx.js';
import { childrenCpuMs, cpuMs, median, round, runCommand as run, type BenchRow } from './harness.js';

const MB = 1e6;
const ROUNDS = 3;
const here = import.meta.dirname;




async function startS3rverChild(dir: string): Promise<{ child: ChildProcess; port: number }> {
  fs.mkdirSync(dir, { recursive: true });
  const child = spawn(process.execPath, [path.join(here, 's3rver-child.js'), dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).once('line', (l) => resolve((JSON.parse(l) as { port: number }).port));
    child.once('exit', (c) => reject(new Error(`s3rver exited ${c}`)));
  });
  return { child, port };
}

/** A set of `n` segment files of `bytes` random bytes, indexed as closed segments. */
function makeSet(root: string, db: IndexDb, name: string, n: number, bytes: number): Array<{ abs: string; rel: string }> {
  const out: Array<{ abs: string; rel: string }> = [];
  const chunk = crypto.randomBytes(1 << 20);
  for (let i = 0; i < n; i++) {
    const rel = `robot/base/${name}/2026-01-01/10-00-${String(i).padStart(2, '0')}.000.mp4`;
    const abs = path.join(root, rel);
    fs.mkdirSync(path.dirname(abs), { recursive: true });
    const fd = fs.openSync(abs, 'w');
    for (let left = bytes; left > 0; left -= chunk.length) {
      chunk[0] = i; // distinct files
      chunk[1] = left & 0xff;
      fs.writeSync(fd, chunk, 0, Math.min(chunk.length, left));
    }
    fs.closeSync(fd);
    const t = Date.parse('2026-01-01T10:00:00Z') + i * 1000;
    db.write(() =>
      db.insert({
        path: rel, channel: 'robot', source: 'base', track: name, mime: 'video/h264', kind: 'video', run: 'bench', offset_us: 0, start_us: 0, end_us: 1,
        wall_start_ms: t, wall_end_ms: t + 1000, duration_ms: 1000, bytes, frames: 1, keyframes: 1, sha256: sha256File(abs), state: 'closed', created_ms: t, closed_ms: t, origin: 'recorder',
      }),
    );
    out.push({ abs, rel });
  }
  return out;
}

function runtimeRss(dir: string, recordings: Record<string, unknown>): Promise<number> {
  return new Promise((resolve, reject) => {
    const cfg = { server: { port: 0 }, channels: [], recordings: { root: path.join(dir, String(Math.random())), retention: { minFreeBytes: 0 }, ...recordings } };
    const c = spawn(process.execPath, [path.join(here, '..', 'recordings', 'lazy-s3-child.js'), JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    c.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    c.on('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (code !== 0 || !line) reject(new Error(`runtime child exited ${code}`));
      else resolve((JSON.parse(line) as { rssMb: number }).rssMb);
    });
  });
}

export async function bench(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'sync-s3-bench-'));
  const cleanups: Array<() => unknown> = [];
  const t = { after: (fn: () => unknown) => cleanups.push(fn) } as unknown as TestContext;
  try {
    const s3dir = path.join(dir, 's3');
    const s3 = await startS3rverChild(s3dir);
    cleanups.push(() => s3.child.kill('SIGTERM'));
    const ng = await startNginx(t, path.join(dir, 'ng'), { workers: 2 });
    const s3url = `http://127.0.0.1:${s3.port}`;
    const root = path.join(dir, 'set');
    const db = IndexDb.openWriter(path.join(dir, 'index.db'));
    cleanups.push(() => db.close());
    const sets = [
      { name: 'single PUT: 16 × 3 MB segments', track: 'small', files: makeSet(root, db, 'small', 16, 3 * MB) },
      { name: 'multipart: 2 × 30 MB segments (16 MiB parts)', track: 'large', files: makeSet(root, db, 'large', 2, 30 * MB) },
    ];
    let seq = 0;
    const serverCpu = (p: ChildProcess | number[]) => {
      const pids = Array.isArray(p) ? p : [p.pid!];
      return pids.reduce((a, pid) => {
        try {
          return a + cpuMs(pid);
        } catch {
          return a;
        }
      }, 0);
    };
    const load0 = os.loadavg()[0]!;
    for (const set of sets) {
      const total = set.files.length * fs.statSync(set.files[0]!.abs).size;
      type Case = { name: string; server: () => number; run: () => Promise<{ ms: number; cpuMs: number }> };
      const ours = (target: Record<string, unknown>): Case['run'] => async () => {
        db.db.exec(`UPDATE segments SET state='synced'`);
        db.db.prepare(`UPDATE segments SET state='closed', attempts=0, next_attempt_ms=0 WHERE track=?`).run(set.track);
        const up = new Uploader(syncConfigSchema.parse({ target }), root, db, silentLog);
        const c0 = process.cpuUsage();
        const a = performance.now();
        await up.runOnce();
        const ms = performance.now() - a;
        const c = process.cpuUsage(c0);
        const st = up.stats();
        await up.close();
        if (st.verified !== set.files.length) throw new Error(`sync verified ${st.verified}/${set.files.length}: ${st.lastError}`);
        if (st.verifiedBy.get !== 0 && target.kind === 's3') throw new Error('S3 sync read a copy back');
        return { ms, cpuMs: (c.user + c.system) / 1000 };
      };
      const curl = (kind: 's3' | 'webdav'): Case['run'] => async () => {
        const base = kind === 's3' ? `${s3url}/rec/c${++seq}` : `${ng.url}/c${++seq}`;
        const args = ['-s', '-f', '-o', '/dev/null'];
        if (kind === 's3') args.push('--aws-sigv4', 'aws:amz:us-east-1:s3', '--user', 'S3RVER:S3RVER', '-H', 'x-amz-content-sha256: UNSIGNED-PAYLOAD');
        for (const f of set.files) args.push('-T', f.abs, `${base}/${f.rel}`);
        const c0 = childrenCpuMs();
        const a = performance.now();
        await run('/usr/bin/curl', args);
        return { ms: performance.now() - a, cpuMs: childrenCpuMs() - c0 };
      };
      const s3target = () => ({ kind: 's3', endpoint: s3url, bucket: 'rec', prefix: `s${++seq}/`, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
      const cases: Case[] = [
        { name: 'S3 sync (PUT + ETag check + HEAD), concurrency 2 (default)', server: () => serverCpu(s3.child), run: async () => ours(s3target())() },
        { name: 'floor: curl -T to S3 (SigV4), one process, upload only', server: () => serverCpu(s3.child), run: curl('s3') },
        { name: 'WebDAV sync (PUT + GET read-back), concurrency 2 (default)', server: () => serverCpu(ng.pids()), run: async () => ours({ kind: 'webdav', url: `${ng.url}/s${++seq}` })() },
        { name: 'floor: curl -T to nginx WebDAV, one process, upload only', server: () => serverCpu(ng.pids()), run: curl('webdav') },
      ];
      const res = new Map<string, Array<{ ms: number; cpuMs: number; srvMs: number }>>();
      for (let k = -1; k < ROUNDS; k++) {
        for (let i = 0; i < cases.length; i++) {
          const c = cases[(i + Math.max(0, k)) % cases.length]!;
          const s0 = c.server();
          const r = await c.run();
          const srvMs = c.server() - s0;
          if (k >= 0) res.set(c.name, [...(res.get(c.name) ?? []), { ...r, srvMs }]);
          // keep the servers' disks from filling with copies
          for (const d of fs.readdirSync(ng.www)) if (/^[sc]\d+$/.test(d)) fs.rmSync(path.join(ng.www, d), { recursive: true, force: true });
          for (const d of fs.existsSync(path.join(s3dir, 'rec')) ? fs.readdirSync(path.join(s3dir, 'rec')) : []) if (/^[sc]\d+$/.test(d)) fs.rmSync(path.join(s3dir, 'rec', d), { recursive: true, force: true });
        }
      }
      const floorOf = (name: string) => res.get(name.startsWith('S3') ? cases[1]!.name : cases[3]!.name)!;
      for (const c of cases) {
        const rs = res.get(c.name)!;
        const floor = floorOf(c.name);
        const mbps = rs.map((r) => (total * 8) / 1e3 / r.ms);
        rows.push({
          bench: 'sync-s3',
          case: `${set.name}: ${c.name}`,
          mb: round(total / MB),
          throughput_mbps: round(median(mbps), 0),
          min_mbps: round(Math.min(...mbps), 0),
          max_mbps: round(Math.max(...mbps), 0),
          vs_upload_only: c.name.startsWith('floor') ? 1 : round(median(rs.map((r, i) => floor[i]!.ms / r.ms)), 2),
          client_cpu_ms_per_mb: round(median(rs.map((r) => r.cpuMs)) / (total / MB), 2),
          server_cpu_ms_per_mb: round(median(rs.map((r) => r.srvMs)) / (total / MB), 2),
          // loopback is CPU-bound on this machine: client + server CPU per MB is what the ratio follows
          total_cpu_ms_per_mb: round(median(rs.map((r) => r.cpuMs + r.srvMs)) / (total / MB), 2),
          load_avg_1m: round(load0, 2),
        });
      }
    }
    // an uplink-bound link (what a robot has): both capped at 40 Mbit/s, S3 single PUTs
    {
      const CAP = 5_000_000;
      const files = sets[0]!.files.slice(0, 6);
      const capTotal = files.length * fs.statSync(files[0]!.abs).size;
      db.db.exec(`UPDATE segments SET state='synced'`);
      for (const f of files) db.db.prepare(`UPDATE segments SET state='closed', attempts=0, next_attempt_ms=0 WHERE path=?`).run(f.rel);
      const up = new Uploader(syncConfigSchema.parse({ target: { kind: 's3', endpoint: s3url, bucket: 'rec', prefix: 'capped/', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } }, bandwidthBytesPerSec: CAP }), root, db, silentLog);
      const a = performance.now();
      await up.runOnce();
      const oursS = (performance.now() - a) / 1000;
      const st = up.stats();
      await up.close();
      if (st.verified !== files.length) throw new Error(`capped S3 sync verified ${st.verified}/${files.length}: ${st.lastError}`);
      const args = ['-s', '-f', '-o', '/dev/null', '--limit-rate', String(CAP), '--aws-sigv4', 'aws:amz:us-east-1:s3', '--user', 'S3RVER:S3RVER', '-H', 'x-amz-content-sha256: UNSIGNED-PAYLOAD'];
      for (const f of files) args.push('-T', f.abs, `${s3url}/rec/curlcapped/${f.rel}`);
      const b = performance.now();
      await run('/usr/bin/curl', args);
      const curlS = (performance.now() - b) / 1000;
      rows.push({ bench: 'sync-s3', case: 'S3 sync capped at 40 Mbit/s (bandwidthBytesPerSec), verified', mb: round(capTotal / MB), throughput_mbps: round((capTotal * 8) / 1e6 / oursS, 1), vs_upload_only: round(curlS / oursS, 2) });
      rows.push({ bench: 'sync-s3', case: 'floor: curl -T --limit-rate 40 Mbit/s to S3, upload only', mb: round(capTotal / MB), throughput_mbps: round((capTotal * 8) / 1e6 / curlS, 1), vs_upload_only: 1 });
    }
    // RSS of the whole runtime (App) idle, per sync target kind: median of 3 starts each
    const rss = async (rec: Record<string, unknown>) => median([await runtimeRss(dir, rec), await runtimeRss(dir, rec), await runtimeRss(dir, rec)]);
    const none = await rss({});
    const dav = await rss({ sync: { target: { kind: 'webdav', url: `${ng.url}/rss` }, pollMs: 60_000 } });
    const withS3 = await rss({ sync: { target: { kind: 's3', endpoint: s3url, bucket: 'rec', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } }, pollMs: 60_000 } });
    rows.push({ bench: 'sync-s3', case: 'runtime RSS, no sync target (MB)', rss_mb: none });
    rows.push({ bench: 'sync-s3', case: 'runtime RSS, WebDAV target (S3 SDK not loaded) (MB)', rss_mb: dav, rss_delta_mb: dav - none });
    rows.push({ bench: 'sync-s3', case: 'runtime RSS, S3 target (SDK loaded) (MB)', rss_mb: withS3, rss_delta_mb: withS3 - none });
  } finally {
    for (const c of cleanups.reverse()) await c();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}
