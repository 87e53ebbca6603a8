// HTTP access to recordings: list (JSON), file download with Range, one continuous fMP4 for a
// time range (playback), a retry for quarantined segments, and a small page with play buttons.
// Reads go through a read-only index connection.
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { ServerResponse } from 'node:http';
import { HttpError, type RouteContext, type Router } from '../http/router.js';
import type { SegmentRow, SegmentState } from '../../recordings/index-db.js';
import { writePlayback } from '../../recordings/playback.js';
import type { RecordingService } from '../../recordings/service.js';
import { RECORDINGS_PAGE } from './page.js';

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const STATES = new Set(['recording', 'closed', 'uploading', 'synced', 'quarantined', 'missing']);
/** A playback range longer than this is refused: one request must not tie up the SD card for hours. */
const MAX_PLAYBACK_MS = 6 * 3_600_000;

/** `1700000000000`, `2026-11-23T15:00:00Z` → ms since the epoch. */
export function parseTime(v: string | null, name: string): number | undefined {
  if (v === null || v === '') return undefined;
  const n = /^\d+$/.test(v) ? Number(v) : Date.parse(v);
  if (!Number.isFinite(n)) throw new HttpError(400, 'BAD_TIME', `${name} must be ms since the epoch or an ISO date`);
  return n;
}

function name(url: URL, key: string): string | undefined {
  const v = url.searchParams.get(key);
  if (v === null || v === '') return undefined;
  if (!NAME.test(v)) throw new HttpError(400, 'BAD_NAME', `${key} must match ${NAME}`);
  return v;
}

export function rowJson(r: SegmentRow) {
  return {
    id: r.id,
    channel: r.channel,
    source: r.source,
    track: r.track,
    mime: r.mime,
    kind: r.kind,
    path: r.path,
    start: new Date(r.wall_start_ms).toISOString(),
    end: new Date(r.wall_end_ms).toISOString(),
    startMs: r.wall_start_ms,
    endMs: r.wall_end_ms,
    durationMs: r.duration_ms,
    captureStartUs: r.start_us,
    captureEndUs: r.end_us,
    bytes: r.bytes,
    frames: r.frames,
    keyframes: r.keyframes,
    sha256: r.sha256,
    state: r.state,
    present: r.present === 1,
    attempts: r.attempts,
    lastError: r.last_error,
    url: r.present === 1 ? `/api/recordings/${r.id}/file` : null,
    /** Continuous fMP4 of this segment's time range (video, local, closed). */
    playUrl: r.kind === 'video' && r.present === 1 && r.state !== 'recording' ? playbackUrl(r, r.wall_start_ms, r.wall_end_ms) : null,
    goneAt: r.gone_ms != null ? new Date(r.gone_ms).toISOString() : null,
  };
}

/** The playback endpoint's URL for a track and a wallclock range. */
export function playbackUrl(t: { channel: string; source: string; track: string }, fromMs: number, toMs: number): string {
  const q = new URLSearchParams({ channel: t.channel, source: t.source, track: t.track, from: String(fromMs), to: String(toMs) });
  return `/api/recordings/playback?${q.toString()}`;
}

/** Parse a single `bytes=` range against a size; null = whole file; throws 416 when unsatisfiable. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | null {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null; // multi-range or junk: RFC 9110 lets us send it all
  let start: number;
  let end: number;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) throw new HttpError(416, 'RANGE_NOT_SATISFIABLE', 'empty suffix range');
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || start > end) throw new HttpError(416, 'RANGE_NOT_SATISFIABLE', `range outside 0-${size - 1}`);
  return { start, end };
}

function writeChunk(res: ServerResponse, chunk: Uint8Array): Promise<void> {
  if (res.destroyed) return Promise.reject(new Error('client went away'));
  if (res.write(chunk)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const ok = () => (res.off('close', gone), resolve());
    const gone = () => (res.off('drain', ok), reject(new Error('client went away')));
    res.once('drain', ok);
    res.once('close', gone);
  });
}

/** `resolveChannel`: ?channel= may be a channel's name: → its id (names and ids are interchangeable). */
export function registerRecordingRoutes(router: Router, service: RecordingService, resolveChannel: (idOrName: string) => string = (c) => c): void {
  const channelOf = (u: URL): string | undefined => {
    const c = name(u, 'channel');
    return c === undefined ? undefined : resolveChannel(c);
  };
  const rows = (ctx: RouteContext) => {
    const u = ctx.url;
    const state = u.searchParams.get('state');
    if (state !== null && !STATES.has(state)) throw new HttpError(400, 'BAD_STATE', `state must be one of ${[...STATES].join(', ')}`);
    const limit = u.searchParams.get('limit');
    const order = u.searchParams.get('order');
    if (order !== null && order !== 'asc' && order !== 'desc') throw new HttpError(400, 'BAD_ORDER', 'order must be asc or desc');
    const kind = u.searchParams.get('kind');
    if (kind !== null && kind !== 'video' && kind !== 'data') throw new HttpError(400, 'BAD_KIND', 'kind must be video or data');
    const present = u.searchParams.get('present');
    if (present !== null && present !== 'true' && present !== 'false') throw new HttpError(400, 'BAD_PRESENT', 'present must be true or false');
    return service.reader().list({
      order: order ?? undefined,
      kind: kind ?? undefined,
      present: present === null ? undefined : present === 'true',
      channel: channelOf(u),
      source: name(u, 'source'),
      track: name(u, 'track'),
      fromMs: parseTime(u.searchParams.get('from'), 'from'),
      toMs: parseTime(u.searchParams.get('to'), 'to'),
      state: (state ?? undefined) as SegmentState | undefined,
      limit: limit && /^\d+$/.test(limit) ? Number(limit) : 1000,
    });
  };

  router.route('GET', '/recordings', (ctx) => {
    ctx.res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    ctx.res.end(ctx.req.method === 'HEAD' ? undefined : RECORDINGS_PAGE);
  });

  router.route('GET', '/api/recordings', (ctx) => {
    const list = rows(ctx).map(rowJson);
    ctx.json(200, { count: list.length, segments: list });
  });

  router.route('GET', '/api/recordings/stats', (ctx) => ctx.json(200, service.stats()));

  // What a list with play buttons needs in one call: per track, its continuous local spans, each
  // with the playback URL of the whole span (and the newest first in `spans` order reversed).
  router.route('GET', '/api/recordings/tracks', (ctx) => {
    const u = ctx.url;
    const num = (k: string, min: number, max: number): number | undefined => {
      const v = u.searchParams.get(k);
      if (v === null || v === '') return undefined;
      if (!/^\d{1,9}$/.test(v) || Number(v) < min || Number(v) > max) throw new HttpError(400, 'BAD_PARAM', `${k} must be an integer in ${min}..${max}`);
      return Number(v);
    };
    const tracks = service.reader().trackSummaries({ gapMs: num('gapMs', 0, 3_600_000), maxSpans: num('maxSpans', 1, 10_000) });
    ctx.json(200, {
      count: tracks.length,
      tracks: tracks.map((tr) => ({
        ...tr,
        first: new Date(tr.firstMs).toISOString(),
        last: new Date(tr.lastMs).toISOString(),
        listUrl: `/api/recordings?${new URLSearchParams({ channel: tr.channel, source: tr.source, track: tr.track, order: 'desc' }).toString()}`,
        spans: tr.spans.map((sp) => ({
          ...sp,
          from: new Date(sp.fromMs).toISOString(),
          to: new Date(sp.toMs).toISOString(),
          durationMs: sp.toMs - sp.fromMs,
          // one request covers at most MAX_PLAYBACK_MS: a longer span plays its newest part
          playUrl: tr.kind === 'video' ? playbackUrl(tr, Math.max(sp.fromMs, sp.toMs - MAX_PLAYBACK_MS), sp.toMs) : null,
        })),
      })),
    });
  });

  router.route('GET', '/api/recordings/playback', async (ctx) => {
    const u = ctx.url;
    const channel = channelOf(u);
    const source = name(u, 'source');
    const track = name(u, 'track');
    if (!channel || !source || !track) throw new HttpError(400, 'BAD_TRACK', 'channel, source and track are required');
    const fromMs = parseTime(u.searchParams.get('from'), 'from');
    const toMs = parseTime(u.searchParams.get('to'), 'to');
    if (fromMs === undefined || toMs === undefined || toMs <= fromMs) throw new HttpError(400, 'BAD_RANGE', 'from < to are required');
    if (toMs - fromMs > MAX_PLAYBACK_MS) throw new HttpError(400, 'RANGE_TOO_LONG', `at most ${MAX_PLAYBACK_MS / 3_600_000} h per request`);
    const segs = service.reader().list({ channel, source, track, fromMs, toMs, limit: 10_000 }).filter((r) => r.kind === 'video' && r.present === 1 && r.state !== 'recording');
    if (segs.length === 0) throw new HttpError(404, 'NO_RECORDING', 'no video recorded in that range');
    if (ctx.req.method === 'HEAD') {
      ctx.res.writeHead(200, { 'content-type': 'video/mp4' }).end();
      return;
    }
    let started = false;
    try {
      await writePlayback(service.root, segs, { fromMs, toMs }, (chunk) => {
        if (!started) {
          started = true;
          ctx.res.writeHead(200, { 'content-type': 'video/mp4', 'cache-control': 'no-store' });
        }
        return writeChunk(ctx.res, chunk);
      });
      ctx.res.end();
    } catch (err) {
      if (!started) throw err;
      ctx.res.destroy(err as Error); // mid-stream: the client sees a cut, not a wrong file
    }
  });

  router.route('GET', '/api/recordings/:id', (ctx) => {
    const r = byId(ctx);
    ctx.json(200, rowJson(r));
  });

  router.route('POST', '/api/recordings/:id/retry', (ctx) => {
    const r = byId(ctx);
    const up = service.sync;
    if (!up) throw new HttpError(409, 'NO_SYNC', 'no sync target configured');
    if (r.state !== 'quarantined') throw new HttpError(409, 'NOT_QUARANTINED', `segment is ${r.state}`);
    ctx.json(200, { requeued: up.retryQuarantined(r.path) });
  });

  router.route('GET', '/api/recordings/:id/file', async (ctx) => {
    const r = byId(ctx);
    if (r.present !== 1) throw new HttpError(410, 'NOT_LOCAL', `segment is not on this robot (${r.state})`);
    const abs = path.join(service.root, r.path);
    let size: number;
    try {
      size = fs.statSync(abs).size;
    } catch {
      throw new HttpError(404, 'FILE_MISSING', 'segment file missing');
    }
    const range = parseRange(ctx.req.headers.range, size);
    const headers: Record<string, string | number> = {
      'content-type': r.kind === 'video' ? 'video/mp4' : 'application/octet-stream',
      'accept-ranges': 'bytes',
      'content-disposition': `inline; filename="${path.basename(r.path)}"`,
      etag: `"${r.sha256 ?? r.bytes}"`,
    };
    const start = range?.start ?? 0;
    const end = range?.end ?? size - 1;
    headers['content-length'] = size === 0 ? 0 : end - start + 1;
    if (range) headers['content-range'] = `bytes ${start}-${end}/${size}`;
    ctx.res.writeHead(range ? 206 : 200, headers);
    if (ctx.req.method === 'HEAD' || size === 0) {
      ctx.res.end();
      return;
    }
    await pipeline(fs.createReadStream(abs, { start, end }), ctx.res).catch(() => ctx.res.destroy());
  });

  function byId(ctx: RouteContext): SegmentRow {
    const id = ctx.params.id ?? '';
    if (!/^\d{1,15}$/.test(id)) throw new HttpError(400, 'BAD_ID', 'id must be a number');
    const r = service.reader().getById(Number(id));
    if (!r) throw new HttpError(404, 'NOT_FOUND', `no segment ${id}`);
    return r;
  }
}
