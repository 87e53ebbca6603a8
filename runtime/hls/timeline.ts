// What the dashboard's recordings timeline needs beside the VOD playlists:
//   GET /api/recordings/values?at=<ms>[&lookbackMs=]  the last record of every recorded data track at
//        that moment, on the one clock (capture µs + the run's offset, what PROGRAM-DATE-TIME says)
//   GET /api/recordings/export?format=mp4|mcap&from=&to=[&channel&source&track]  the selection as a
//        download (MP4: the video track remuxed; MCAP: every track of the range, Foxglove schemas)
//   GET /dashboard/vendor/hls.min.js  hls.js from node_modules (no CDN: robots are often offline)
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { exportMcap } from '../../recordings/mcap-export.js';
import { writePlayback } from '../../recordings/playback.js';
import { scanSegmentRecords } from '../../recordings/record-reader.js';
import type { RecordingService } from '../../recordings/service.js';
import { HttpError, type RouteContext, type Router } from '../http/router.js';
import { parseTime } from '../uplink/routes.js';

export interface TimelineDeps {
  recordings: Pick<RecordingService, 'reader' | 'root'>;
  resolveChannel: (idOrName: string) => string | null;
}

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;
/** An export covers at most this: one request must not tie up the SD card for hours. */
const MAX_EXPORT_MS = 3_600_000;
const MAX_VALUE_BYTES = 4096;

const time = (u: URL, k: string): number | null => parseTime(u.searchParams.get(k), k);

function name(u: URL, k: string): string | undefined {
  const v = u.searchParams.get(k);
  if (v === null || v === '') return undefined;
  if (!NAME.test(v)) throw new HttpError(400, 'BAD_NAME', `${k} must match ${NAME}`);
  return v;
}

/** Register before the recordings' /api/recordings/:id (the router takes the first match). */
export function registerTimelineRoutes(router: Router, deps: TimelineDeps): void {
  const rec = deps.recordings;

  router.route('GET', '/api/recordings/values', (ctx) => {
    const at = time(ctx.url, 'at');
    if (at === null) throw new HttpError(400, 'BAD_TIME', 'at is required');
    const lb = Number(ctx.url.searchParams.get('lookbackMs') ?? 10_000);
    if (!Number.isInteger(lb) || lb < 0 || lb > 600_000) throw new HttpError(400, 'BAD_PARAM', 'lookbackMs must be 0..600000');
    const atUs = at * 1000;
    const rows = rec.reader().list({ fromMs: at - lb - 60_000, toMs: at + 60_000, limit: 500 }).filter((r) => r.kind === 'data' && r.present === 1);
    const best = new Map<string, { path: string; mime: string; atMs: number; payload: Buffer }>();
    for (const r of rows) {
      const key = `${r.channel}/${r.source}/${r.track}`;
      // records with capture time + offset ≤ at; the file is read in bounded windows
      let scan;
      try {
        scan = scanSegmentRecords(rec.root, r.path, { accept: (x) => x.ts + r.offset_us <= atUs && x.ts + r.offset_us >= atUs - lb * 1000, maxReadBytes: 4 * 1024 * 1024 });
      } catch {
        continue; // a file gone since the index said present
      }
      const last = scan.records[scan.records.length - 1];
      if (!last) continue;
      const atMs = (last.ts + r.offset_us) / 1000;
      const have = best.get(key);
      if (!have || have.atMs < atMs) best.set(key, { path: key, mime: r.mime, atMs, payload: last.payload });
    }
    const tracks = [...best.values()].map((b) => {
      const text = b.payload.subarray(0, MAX_VALUE_BYTES).toString('utf8');
      let value: unknown = text;
      if (/json/i.test(b.mime)) {
        try {
          value = JSON.parse(text);
        } catch {
          value = text;
        }
      }
      return { path: b.path, mime: b.mime, atMs: Math.round(b.atMs), ageMs: Math.round(at - b.atMs), value };
    });
    ctx.json(200, { at, tracks });
  });

  router.route('GET', '/api/recordings/export', async (ctx) => {
    const u = ctx.url;
    const format = u.searchParams.get('format');
    const from = time(u, 'from');
    const to = time(u, 'to');
    if (from === null || to === null || to <= from) throw new HttpError(400, 'BAD_RANGE', 'from < to are required');
    if (to - from > MAX_EXPORT_MS) throw new HttpError(400, 'RANGE_TOO_LONG', `at most ${MAX_EXPORT_MS / 60_000} min per export`);
    const chan = name(u, 'channel');
    const ref = { channel: chan ? (deps.resolveChannel(chan) ?? chan) : undefined, source: name(u, 'source'), track: name(u, 'track') };
    const rows = rec.reader().list({ ...ref, fromMs: from, toMs: to, limit: 10_000 }).filter((r) => r.present === 1 && r.state !== 'recording');
    const stamp = new Date(from).toISOString().replace(/[:.]/g, '-');
    if (format === 'mp4') {
      if (!ref.channel || !ref.source || !ref.track) throw new HttpError(400, 'BAD_TRACK', 'channel, source and track are required for MP4');
      const video = rows.filter((r) => r.kind === 'video');
      if (video.length === 0) throw new HttpError(404, 'NO_RECORDING', 'no video recorded in that range');
      let started = false;
      try {
        await writePlayback(rec.root, video, { fromMs: from, toMs: to }, (chunk) => {
          if (!started) {
            started = true;
            ctx.res.writeHead(200, { 'content-type': 'video/mp4', 'content-disposition': `attachment; filename="${ref.track}-${stamp}.mp4"`, 'cache-control': 'no-store' });
          }
          return write(ctx, chunk);
        });
        ctx.res.end();
      } catch (err) {
        if (!started) throw err;
        ctx.res.destroy(err as Error);
      }
      return;
    }
    if (format !== 'mcap') throw new HttpError(400, 'BAD_FORMAT', 'format must be mp4 or mcap');
    if (rows.length === 0) throw new HttpError(404, 'NO_RECORDING', 'nothing recorded in that range');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moth-export-'));
    const out = path.join(dir, 'export.mcap');
    try {
      await exportMcap(rec.root, rows, from, to, out);
      const size = fs.statSync(out).size;
      ctx.res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size, 'content-disposition': `attachment; filename="moth-${stamp}.mcap"`, 'cache-control': 'no-store' });
      await new Promise<void>((resolve, reject) => {
        const rs = fs.createReadStream(out);
        rs.on('error', reject);
        ctx.res.on('close', resolve);
        rs.pipe(ctx.res);
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

}

/** Register before the dashboard's /dashboard/* (the router takes the first match). */
export function registerHlsJsRoute(router: Router): void {
  const hlsJs = (() => {
    try {
      return createRequire(import.meta.url).resolve('hls.js/dist/hls.min.js');
    } catch {
      return null;
    }
  })();
  router.route('GET', '/dashboard/vendor/hls.min.js', async (ctx) => {
    if (!hlsJs) throw new HttpError(404, 'NOT_FOUND', 'hls.js is not installed (npm install)');
    const body = await fs.promises.readFile(hlsJs);
    ctx.res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'public, max-age=86400', 'x-content-type-options': 'nosniff' });
    ctx.res.end(ctx.req.method === 'HEAD' ? undefined : body);
  });
}

function write(ctx: RouteContext, chunk: Uint8Array): Promise<void> {
  if (ctx.res.destroyed) return Promise.reject(new Error('client went away'));
  if (ctx.res.write(chunk)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    ctx.res.once('drain', resolve);
    ctx.res.once('close', () => reject(new Error('client went away')));
  });
}
