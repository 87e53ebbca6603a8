// Recorded HLS: a VOD playlist over the recorded fMP4 segments of a track for a time range, so any
// player scrubs history fetching a few seconds at a time. No remux: each HLS segment is a run of
// the recorder's own fragments (each starts at a keyframe) read from the file as they are, with
// the decode times (tfdt) shifted onto one timeline for the playlist: the capture clock plus the
// run's wall-clock offset, the clock sensor records carry too. PROGRAM-DATE-TIME is that clock.
// Holes: up to gapFillMaxSeconds as EXT-X-GAP segments (the timeline keeps real time), longer ones
// as EXT-X-DISCONTINUITY.
//   GET /hls/recordings/<channel>/<source>/<track>/index.m3u8?from=&to=   (ms or ISO 8601)
//   GET /hls/recordings/<channel>/<source>/<track>/init-<row>.mp4 | frag-<row>-<first>-<count>.m4s?t0=
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { scanMp4File, type ScannedFragment } from '../../recordings/mp4-scan.js';
import type { SegmentRow } from '../../recordings/index-db.js';
import type { RecordingService } from '../../recordings/service.js';
import { HttpError, type RouteContext, type Router } from '../http/router.js';
import { parseTime } from '../uplink/routes.js';
import type { HlsConfig } from './config.js';
import { childBoxes, findBox, shiftFragmentTimes } from './fmp4.js';
import { sendMedia, sendPlaylist, trackRefFrom } from './http.js';
import { buildVodPlaylist, type PlaylistSegment } from './playlist.js';

/** What a recorded file offers HLS: its init range, timescale and fragments. */
export interface FileIndex {
  timescale: number;
  /** ftyp+moov end (the init section is [0, initEnd)). */
  initEnd: number;
  /** Identity of the decoder configuration (stsd bytes + timescale): equal → one EXT-X-MAP. */
  configKey: string;
  fragments: Array<Pick<ScannedFragment, 'start' | 'end' | 'baseTime' | 'duration'>>;
}

/** Read a recorded fMP4's layout (box headers, moov and moofs only). Throws on a file that is not one. */
export function indexFile(abs: string): FileIndex {
  const fd = fs.openSync(abs, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const fragments: FileIndex['fragments'] = [];
    const scan = scanMp4File(fd, size, (f) => fragments.push({ start: f.start, end: f.end, baseTime: f.baseTime, duration: f.duration }));
    if (!scan.hasInit || scan.timescale <= 0) throw new HttpError(500, 'HLS_BAD_RECORDING', `${path.basename(abs)} has no init section`);
    // ftyp and moov lead the file (the recorder writes them first); read just them.
    const head = Buffer.alloc(Math.min(size, fragments[0]?.start ?? size, 4 * 1024 * 1024));
    fs.readSync(fd, head, 0, head.length, 0);
    const moov = childBoxes(head, 0, head.length).find((b) => b.type === 'moov');
    if (!moov) throw new HttpError(500, 'HLS_BAD_RECORDING', `${path.basename(abs)}: moov not at the start`);
    const stsd = findBox(head, ['trak', 'mdia', 'minf', 'stbl', 'stsd'], moov.body, moov.end);
    const configKey = crypto
      .createHash('sha1')
      .update(stsd ? head.subarray(stsd.start, stsd.end) : Buffer.alloc(0))
      .update(String(scan.timescale))
      .digest('hex')
      .slice(0, 16);
    return { timescale: scan.timescale, initEnd: moov.end, configKey, fragments };
  } finally {
    fs.closeSync(fd);
  }
}

/** Indexes of closed files by path (they never change once closed); bounded LRU. */
export class FileIndexCache {
  private readonly m = new Map<string, { size: number; mtimeMs: number; index: FileIndex }>();
  hits = 0;
  misses = 0;
  constructor(private readonly max = 512) {}

  get(abs: string): FileIndex {
    const st = fs.statSync(abs);
    const have = this.m.get(abs);
    if (have && have.size === st.size && have.mtimeMs === st.mtimeMs) {
      this.m.delete(abs);
      this.m.set(abs, have);
      this.hits++;
      return have.index;
    }
    this.misses++;
    const index = indexFile(abs);
    this.m.set(abs, { size: st.size, mtimeMs: st.mtimeMs, index });
    while (this.m.size > this.max) this.m.delete(this.m.keys().next().value!);
    return index;
  }
}

export interface VodSegmentPlan {
  /** Timeline µs (capture clock + run offset). */
  startUs: number;
  durationUs: number;
  uri: string;
  configKey: string | null;
  initUri: string | null;
  gap: boolean;
  discontinuity: boolean;
}

export interface VodPlanOptions {
  fromMs: number;
  toMs: number;
  segmentTargetUs: number;
  gapFillMaxUs: number;
}

/** Below this a hole between files is the recorder's rotation (a frame or two): folded into the segment before it. */
const SMALL_HOLE_US = 1_000_000;
/** Files of one track may overlap by a frame or so (each file's last duration is an estimate). */
const MAX_OVERLAP_US = 200_000;

/**
 * Plan a VOD list from rows (one track's closed local video segments) and their file indexes.
 * Pure: the URIs carry t0 (the first segment's timeline µs), the zero of the media timestamps.
 */
export function planVod(rows: Array<{ row: Pick<SegmentRow, 'id' | 'start_us' | 'offset_us'>; index: FileIndex }>, o: VodPlanOptions): { t0: number; segments: VodSegmentPlan[] } {
  type Run = { rowId: number; first: number; count: number; startUs: number; endUs: number; index: FileIndex };
  const runs: Run[] = [];
  const fromUs = o.fromMs * 1000;
  const toUs = o.toMs * 1000;
  const sorted = [...rows].sort((a, b) => a.row.start_us + a.row.offset_us - (b.row.start_us + b.row.offset_us));
  for (const { row, index } of sorted) {
    const zero = row.start_us + row.offset_us;
    let cur: Run | null = null;
    const at = (i: number) => zero + (index.fragments[i]!.baseTime / index.timescale) * 1e6;
    index.fragments.forEach((f, i) => {
      const s = at(i);
      // a fragment ends where the next one starts (its trun's last duration is only an estimate)
      const e = i + 1 < index.fragments.length ? at(i + 1) : s + (f.duration / index.timescale) * 1e6;
      if (e <= fromUs || s >= toUs || e <= s) {
        cur = null;
        return;
      }
      const prev = runs[runs.length - 1];
      if (prev && prev !== cur && s < prev.endUs - MAX_OVERLAP_US) return; // overlaps what is listed (clock oddity): time only moves forward
      if (cur && cur.endUs - cur.startUs < o.segmentTargetUs * 0.9 && Math.abs(s - cur.endUs) < SMALL_HOLE_US) {
        cur.count++;
        cur.endUs = e;
        return;
      }
      cur = { rowId: row.id, first: i, count: 1, startUs: s, endUs: e, index };
      runs.push(cur);
    });
  }
  const t0 = Math.round(runs[0]?.startUs ?? fromUs);
  const out: VodSegmentPlan[] = [];
  let prevEnd: number | null = null;
  let prevKey: string | null = null;
  for (const r of runs) {
    let discontinuity = false;
    if (prevEnd !== null) {
      const hole = r.startUs - prevEnd;
      if (hole < SMALL_HOLE_US) {
        // fold the rotation hole into the previous segment: EXTINF sums stay the media timeline
        const last = out[out.length - 1]!;
        last.durationUs = r.startUs - last.startUs;
      } else if (hole <= o.gapFillMaxUs) {
        const n = Math.ceil(hole / o.segmentTargetUs);
        for (let k = 0; k < n; k++) {
          const s = prevEnd + (hole * k) / n;
          out.push({ startUs: s, durationUs: hole / n, uri: 'gap.m4s', configKey: null, initUri: null, gap: true, discontinuity: false });
        }
      } else {
        discontinuity = true;
      }
    }
    const key = r.index.configKey;
    out.push({
      startUs: r.startUs,
      durationUs: r.endUs - r.startUs,
      uri: `frag-${r.rowId}-${r.first}-${r.count}.m4s?t0=${t0}`,
      configKey: key,
      initUri: key !== prevKey || discontinuity ? `init-${r.rowId}.mp4` : null,
      gap: false,
      discontinuity,
    });
    prevKey = key;
    prevEnd = r.endUs;
  }
  return { t0, segments: out };
}

/** The plan as a playlist (durations in µs ticks). */
export function vodPlaylistText(plan: { segments: VodSegmentPlan[] }): string {
  const segments: PlaylistSegment[] = plan.segments.map((s, i) => ({
    msn: i,
    uri: s.uri,
    duration: Math.max(1, Math.round(s.durationUs)),
    parts: [],
    programDateMs: Math.round(s.startUs / 1000),
    discontinuity: s.discontinuity,
    mapUri: s.initUri,
    gap: s.gap,
  }));
  return buildVodPlaylist({ timescale: 1_000_000, segments });
}

export interface RecordedHlsDeps {
  recordings: Pick<RecordingService, 'reader' | 'root'>;
  config: HlsConfig['recorded'];
  resolveChannel: (idOrName: string) => string | null;
}

const timeParam = (u: URL, k: string): number | null => parseTime(u.searchParams.get(k), k);

/** Fragments one request may read: a segment is a few GOPs; 64 MiB bounds a hostile count. */
const MAX_FRAGMENTS = 64;
const MAX_READ_BYTES = 64 * 1024 * 1024;
const MAX_ROWS = 10_000;

export function registerRecordedHlsRoutes(router: Router, deps: RecordedHlsDeps): void {
  const cache = new FileIndexCache();
  const resolve = (x: string) => deps.resolveChannel(x) ?? x; // a past channel's id still names its recordings
  const rowsOf = (ref: { channel: string; source: string; track: string }, fromMs: number, toMs: number): SegmentRow[] =>
    deps.recordings
      .reader()
      .list({ ...ref, fromMs, toMs, limit: MAX_ROWS })
      .filter((r) => r.kind === 'video' && r.present === 1 && r.state !== 'recording');
  const file = (row: SegmentRow): string => {
    const abs = path.resolve(deps.recordings.root, row.path);
    if (!abs.startsWith(path.resolve(deps.recordings.root) + path.sep)) throw new HttpError(404, 'FILE_MISSING', 'segment outside the recordings root');
    return abs;
  };
  const rowFor = (ctx: RouteContext, id: number): SegmentRow => {
    const ref = trackRefFrom(ctx.params, resolve);
    const row = deps.recordings.reader().getById(id);
    if (!row || row.channel !== ref.channel || row.source !== ref.source || row.track !== ref.track || row.kind !== 'video') throw new HttpError(404, 'HLS_NOT_FOUND', `no recorded segment ${id} of this track`);
    if (row.present !== 1) throw new HttpError(410, 'NOT_LOCAL', `segment ${id} is not on this robot (${row.state})`);
    return row;
  };

  router.route('GET', '/hls/recordings/:channel/:source/:track/:file', async (ctx) => {
    const name = ctx.params.file!;
    if (name === 'index.m3u8') {
      const ref = trackRefFrom(ctx.params, resolve);
      const now = Date.now();
      const toMs = timeParam(ctx.url, 'to') ?? now;
      const fromMs = timeParam(ctx.url, 'from') ?? toMs - 3600_000;
      if (!(fromMs < toMs)) throw new HttpError(400, 'BAD_RANGE', 'from must be before to');
      if (toMs - fromMs > deps.config.maxRangeHours * 3600_000) throw new HttpError(400, 'RANGE_TOO_LONG', `at most ${deps.config.maxRangeHours} h per playlist`);
      const rows = rowsOf(ref, fromMs, toMs);
      const indexed: Array<{ row: SegmentRow; index: FileIndex }> = [];
      for (const row of rows) {
        try {
          indexed.push({ row, index: cache.get(file(row)) });
        } catch {
          // a file gone or unreadable since the index said present: its time becomes a hole
        }
      }
      const plan = planVod(indexed, { fromMs, toMs, segmentTargetUs: deps.config.segmentTargetSeconds * 1e6, gapFillMaxUs: deps.config.gapFillMaxSeconds * 1e6 });
      if (plan.segments.length === 0) throw new HttpError(404, 'NO_RECORDING', 'no video recorded in that range');
      sendPlaylist(ctx.res, vodPlaylistText(plan), ctx.req.method === 'HEAD');
      return;
    }
    if (name === 'gap.m4s') throw new HttpError(404, 'HLS_GAP', 'nothing was recorded here (EXT-X-GAP)');
    const init = /^init-(\d{1,15})\.mp4$/.exec(name);
    if (init) {
      const row = rowFor(ctx, Number(init[1]));
      const abs = file(row);
      const idx = cache.get(abs);
      const buf = Buffer.alloc(idx.initEnd);
      const fd = fs.openSync(abs, 'r');
      try {
        fs.readSync(fd, buf, 0, buf.length, 0);
      } finally {
        fs.closeSync(fd);
      }
      sendMedia(ctx, 'video/mp4', [buf], 'public, max-age=3600');
      return;
    }
    const frag = /^frag-(\d{1,15})-(\d{1,6})-(\d{1,3})\.m4s$/.exec(name);
    if (!frag) throw new HttpError(404, 'HLS_NOT_FOUND', `no ${name} here`);
    const t0 = Number(ctx.url.searchParams.get('t0') ?? '0');
    if (!Number.isSafeInteger(t0) || t0 < 0) throw new HttpError(400, 'HLS_BAD_T0', 't0 must be a non-negative integer (µs)');
    const row = rowFor(ctx, Number(frag[1]));
    const abs = file(row);
    const idx = cache.get(abs);
    const first = Number(frag[2]);
    const count = Number(frag[3]);
    const frags = idx.fragments.slice(first, first + count);
    if (count < 1 || count > MAX_FRAGMENTS || frags.length !== count) throw new HttpError(404, 'HLS_NOT_FOUND', `fragments ${first}+${count} not in segment ${row.id}`);
    const start = frags[0]!.start;
    const end = frags[frags.length - 1]!.end;
    if (end - start > MAX_READ_BYTES) throw new HttpError(413, 'HLS_TOO_LARGE', 'segment over 64 MiB');
    const buf = Buffer.alloc(end - start);
    const fd = fs.openSync(abs, 'r');
    try {
      fs.readSync(fd, buf, 0, buf.length, start);
    } finally {
      fs.closeSync(fd);
    }
    // media time = timeline − t0: the file's zero sits at (start_us + offset_us − t0)
    const delta = Math.round(((row.start_us + row.offset_us - t0) * idx.timescale) / 1e6);
    if (delta < 0 && frags[0]!.baseTime + delta < 0) throw new HttpError(400, 'HLS_BAD_T0', 't0 is after this segment');
    shiftFragmentTimes(buf, delta);
    sendMedia(ctx, 'video/mp4', [buf], 'public, max-age=3600');
  });
}
