// HTTP surface of the uplink work: GET /api/gaps?track=<channel/source/track>&from&to — per track,
// the spans delivered live upstream, the time not live, and (with the recordings index) what was
// recorded but never delivered. from/to: epoch ms or ISO 8601; default the last hour.
import { HttpError, type Router } from '../http/router.js';
import { gapReport, type LiveSpan, type Span, type SpanLog } from './spans.js';
import { readDeliverySpans } from '../../recordings/delivery-spans.js';
import type { IndexDb } from '../../recordings/index-db.js';

/** The slice of the recordings index the report reads (recordings/index-db.ts IndexDb fits). */
export interface RecordedIndex {
  list(q: { channel?: string; source?: string; track?: string; fromMs?: number; toMs?: number; limit?: number }): Array<{ wall_start_ms: number; wall_end_ms: number }>;
  /** The SQLite handle (IndexDb has it): persisted delivery spans (schema v2) are read from it. */
  readonly db?: IndexDb['db'];
}

export interface UplinkRouteDeps {
  spans: SpanLog;
  /** Backfilled spans still in memory (not yet flushed to the index). */
  backfilled?: SpanLog | undefined;
  /** Recordings index, when recordings are enabled (a getter: the index may be reopened). */
  recorded?: (() => RecordedIndex | null) | undefined;
  now?: () => number;
  /** The channel part of ?track= may be a name: → its id (names and ids are interchangeable). */
  resolveChannel?: (idOrName: string) => string;
}

const TRACK_RE = /^[A-Za-z0-9_.-]{1,64}\/[A-Za-z0-9_.-]{1,64}\/[A-Za-z0-9_.-]{1,64}$/;
/** One report covers at most 7 days: the span ring holds far less, and the index query stays small. */
const MAX_RANGE_MS = 7 * 24 * 3600_000;
/** Segment rows read per report: 10 000 × ~2 s segments ≈ 5.5 h of one track. */
const MAX_SEGMENTS = 10_000;

export function parseTime(v: string | null, name: string): number | null {
  if (v === null || v === '') return null;
  const n = /^\d{1,16}$/.test(v) ? Number(v) : Date.parse(v);
  if (!Number.isFinite(n)) throw new HttpError(400, 'BAD_TIME', `${name} must be epoch milliseconds or an ISO 8601 time`);
  return n;
}

export function registerUplinkRoutes(router: Router, deps: UplinkRouteDeps): void {
  router.route('GET', '/api/gaps', (ctx) => {
    const q = ctx.url.searchParams;
    const now = (deps.now ?? Date.now)();
    const asked = q.get('track');
    if (!asked) {
      ctx.json(200, { tracks: deps.spans.trackNames(), stats: deps.spans.stats() });
      return;
    }
    if (!TRACK_RE.test(asked)) throw new HttpError(400, 'BAD_TRACK', 'track must be channel/source/track');
    const [askedChannel, source, name] = asked.split('/') as [string, string, string];
    const channel = deps.resolveChannel?.(askedChannel) ?? askedChannel;
    const track = `${channel}/${source}/${name}`;
    const to = parseTime(q.get('to'), 'to') ?? now;
    const from = parseTime(q.get('from'), 'from') ?? to - 3600_000;
    if (from > to) throw new HttpError(400, 'BAD_RANGE', 'from must not be after to');
    if (to - from > MAX_RANGE_MS) throw new HttpError(400, 'BAD_RANGE', 'range longer than 7 days');
    let recorded: Span[] | null = null;
    const index = deps.recorded?.() ?? null;
    if (index) {
      recorded = index.list({ channel, source, track: name, fromMs: from, toMs: to, limit: MAX_SEGMENTS }).map((r) => ({ from: r.wall_start_ms, to: r.wall_end_ms }));
    }
    const live = deps.spans.live(track, from, to);
    let liveSpans: LiveSpan[] = live.spans;
    let backfilled: LiveSpan[] = deps.backfilled ? deps.backfilled.live(track, from, to).spans : [];
    let persisted = false;
    if (index?.db) {
      // The hot in-memory log and what the index holds (earlier runs, evicted ring entries).
      const rows = readDeliverySpans({ db: index.db }, { channel, source, track: name, fromMs: from, toMs: to });
      persisted = true;
      // Both hold this run's spans (the index a flushed copy): gapReport lists each once.
      const span = (r: { from_ms: number; to_ms: number; frames: number; bytes: number }): LiveSpan => ({ from: r.from_ms, to: r.to_ms, frames: r.frames, bytes: r.bytes });
      liveSpans = [...liveSpans, ...rows.filter((r) => r.kind === 'live').map(span)];
      backfilled = [...backfilled, ...rows.filter((r) => r.kind === 'backfill').map(span)];
    }
    const report = gapReport(track, from, to, { spans: liveSpans, horizon: persisted ? null : live.horizon }, recorded, backfilled);
    ctx.json(200, { ...report, known: live.known || persisted });
  });
}
