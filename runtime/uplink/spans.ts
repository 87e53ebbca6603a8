// Live-delivered spans per track and the gap report (pure, no I/O). The pang publisher reports each
// frame once the socket has handed its last byte to the network (bufferedAmount drained past it),
// with the frame's capture wallclock; frames closer than `joinGapMs` extend one span. Memory is
// bounded: a ring of spans per track and a cap on tracks, evictions counted.

/** Where a sender reports what it delivered (SpanLog, the persisted writer, or both). */
export interface DeliverySink {
  add(track: string, wallMs: number, bytes: number): void;
  /** A frame of `track` was lost: the next delivered frame starts a new span. */
  break?(track: string): void;
}

/** Fan one sender's reports out to several sinks. */
export function teeSinks(...sinks: DeliverySink[]): DeliverySink {
  return {
    add: (track, wallMs, bytes) => {
      for (const s of sinks) s.add(track, wallMs, bytes);
    },
    break: (track) => {
      for (const s of sinks) s.break?.(track);
    },
  };
}

/**
 * A sink that files every delivery under `key` instead of the track path: one SpanLog can then
 * hold per-upstream deliveries (two upstreams of one track must not count each other's).
 */
export function rekey(sink: DeliverySink, key: string): DeliverySink {
  return {
    add: (_track, wallMs, bytes) => sink.add(key, wallMs, bytes),
    break: () => sink.break?.(key),
  };
}

export interface Span {
  from: number;
  to: number;
}

export interface LiveSpan extends Span {
  frames: number;
  bytes: number;
}

export interface SpanLogOptions {
  /**
   * Frames further apart than this start a new span. 1 s: a 30 fps track that lost a GOP tail
   * shows a gap, a 1 Hz GPS does not show one per record.
   */
  joinGapMs?: number;
  /** Ring size per track: 1024 spans ≈ 40 kB; at one gap a minute that is 17 h of history. */
  maxSpansPerTrack?: number;
  /** Tracks kept; the least recently updated is forgotten first. */
  maxTracks?: number;
}

interface TrackSpans {
  ring: LiveSpan[];
  head: number; // index of the oldest span when the ring is full
  evicted: number;
  /** Earliest time still covered by the ring (spans before it were evicted). */
  horizon: number | null;
  lastTouch: number;
  /** A frame was lost after the last span: the next frame starts a new span. */
  broken: boolean;
}

export interface SpanLogStats {
  tracks: number;
  spans: number;
  framesRecorded: number;
  evictedSpans: number;
  evictedTracks: number;
  outOfOrder: number;
}

export class SpanLog implements DeliverySink {
  private tracks = new Map<string, TrackSpans>();
  private readonly joinGapMs: number;
  private readonly maxSpans: number;
  private readonly maxTracks: number;
  private touch = 0;
  private readonly c = { framesRecorded: 0, evictedSpans: 0, evictedTracks: 0, outOfOrder: 0 };

  constructor(opts: SpanLogOptions = {}) {
    this.joinGapMs = opts.joinGapMs ?? 1000;
    this.maxSpans = Math.max(1, opts.maxSpansPerTrack ?? 1024);
    this.maxTracks = Math.max(1, opts.maxTracks ?? 64);
  }

  /** One frame of `track` delivered live, captured at wallclock `wallMs`. */
  add(track: string, wallMs: number, bytes: number): void {
    if (!Number.isFinite(wallMs)) return;
    let t = this.tracks.get(track);
    if (!t) {
      if (this.tracks.size >= this.maxTracks) this.evictTrack();
      t = { ring: [], head: 0, evicted: 0, horizon: null, lastTouch: 0, broken: false };
      this.tracks.set(track, t);
    }
    t.lastTouch = ++this.touch;
    this.c.framesRecorded++;
    const n = t.ring.length;
    const last = n === 0 ? null : t.ring[(t.head + n - 1) % n]!;
    const broken = t.broken;
    t.broken = false;
    if (last && !broken && wallMs >= last.from - this.joinGapMs && wallMs <= last.to + this.joinGapMs) {
      if (wallMs < last.from) {
        // Frames arrive in capture order per track; a clock step back is folded into the span.
        this.c.outOfOrder++;
        last.from = wallMs;
      }
      if (wallMs > last.to) last.to = wallMs;
      last.frames++;
      last.bytes += Math.max(0, bytes);
      return;
    }
    if (last && wallMs < last.from) this.c.outOfOrder++;
    const span: LiveSpan = { from: wallMs, to: wallMs, frames: 1, bytes: Math.max(0, bytes) };
    if (n < this.maxSpans) {
      t.ring.push(span);
      return;
    }
    const old = t.ring[t.head]!;
    t.horizon = old.to;
    t.ring[t.head] = span;
    t.head = (t.head + 1) % n;
    t.evicted++;
    this.c.evictedSpans++;
  }

  /**
   * A frame of `track` was lost (dropped, or in a socket that died): the next delivered frame
   * starts a new span, so a span always means "every frame captured inside it was delivered".
   */
  break(track: string): void {
    const t = this.tracks.get(track);
    if (t) t.broken = true;
  }

  private evictTrack(): void {
    let oldest: string | null = null;
    let min = Infinity;
    for (const [k, v] of this.tracks) if (v.lastTouch < min) (min = v.lastTouch), (oldest = k);
    if (oldest !== null) {
      this.tracks.delete(oldest);
      this.c.evictedTracks++;
    }
  }

  /** Live spans of `track` overlapping [from, to], oldest first, clipped to the range (counts scaled). */
  live(track: string, from: number, to: number): { spans: LiveSpan[]; horizon: number | null; known: boolean } {
    const t = this.tracks.get(track);
    if (!t) return { spans: [], horizon: null, known: false };
    const n = t.ring.length;
    const spans: LiveSpan[] = [];
    for (let i = 0; i < n; i++) {
      const s = t.ring[(t.head + i) % n]!;
      if (s.to < from || s.from > to) continue;
      spans.push(clipLive(s, from, to));
    }
    return { spans, horizon: t.horizon, known: true };
  }

  trackNames(): string[] {
    return [...this.tracks.keys()];
  }

  stats(): SpanLogStats {
    let spans = 0;
    for (const t of this.tracks.values()) spans += t.ring.length;
    return { tracks: this.tracks.size, spans, ...this.c };
  }
}

/**
 * Sorted, merged union of spans (touching or overlapping spans join; with `joinMs`, spans at most
 * that far apart join too: one record interval between two spans holds no record).
 */
export function mergeSpans(spans: Span[], joinMs = 0): Span[] {
  const s = spans.filter((x) => Number.isFinite(x.from) && Number.isFinite(x.to) && x.to >= x.from).sort((a, b) => a.from - b.from);
  const out: Span[] = [];
  for (const x of s) {
    const last = out[out.length - 1];
    if (last && x.from <= last.to + joinMs) last.to = Math.max(last.to, x.to);
    else out.push({ from: x.from, to: x.to });
  }
  return out;
}

/**
 * Live spans listed once: the in-memory log and the index hold copies of the same spans (and two
 * upstreams of one track overlap), so overlapping spans merge, keeping the larger count — the
 * records delivered to at least one upstream — and spans `joinMs` apart join. Counts of a span
 * clipped to [from, to] are scaled to the part kept.
 */
export function mergeLiveSpans(spans: LiveSpan[], from: number, to: number, joinMs = 0): LiveSpan[] {
  const s = spans.filter((x) => Number.isFinite(x.from) && Number.isFinite(x.to) && x.to >= x.from && x.to >= from && x.from <= to).sort((a, b) => a.from - b.from);
  const out: LiveSpan[] = [];
  for (const x of s) {
    const c = clipLive(x, from, to);
    const last = out[out.length - 1];
    if (last && c.from <= last.to) {
      // Copies of one span (memory and index) or two upstreams: the same records at least once.
      const grows = c.to > last.to;
      if (grows) {
        // The part beyond the last span's end adds its share of the records.
        const extra = x.to > x.from ? Math.round((x.frames * (c.to - Math.max(last.to, c.from))) / (x.to - x.from)) : 0;
        last.frames = Math.max(last.frames, c.frames, last.frames + extra);
        last.to = c.to;
      } else last.frames = Math.max(last.frames, c.frames);
      last.bytes = Math.max(last.bytes, c.bytes);
    } else if (last && c.from <= last.to + joinMs) {
      last.to = c.to;
      last.frames += c.frames;
      last.bytes += c.bytes;
    } else out.push(c);
  }
  return out;
}

function clipLive(x: LiveSpan, from: number, to: number): LiveSpan {
  const a = Math.max(x.from, from);
  const b = Math.min(x.to, to);
  if (a === x.from && b === x.to) return { ...x };
  const share = x.to > x.from ? (b - a) / (x.to - x.from) : 1;
  return { from: a, to: b, frames: Math.max(1, Math.round(x.frames * share)), bytes: Math.round(x.bytes * share) };
}

/**
 * The record interval of a track from its delivered spans: the median of (duration / gaps) over
 * spans of at least two records, or null when none tells.
 */
export function recordIntervalMs(spans: LiveSpan[]): number | null {
  const v = spans.filter((x) => x.frames >= 2 && x.to > x.from).map((x) => (x.to - x.from) / (x.frames - 1)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  return v[Math.floor(v.length / 2)]!;
}

/** `a` minus `b` (both any spans), sorted and merged. */
export function subtractSpans(a: Span[], b: Span[]): Span[] {
  const bm = mergeSpans(b);
  const out: Span[] = [];
  for (const x of mergeSpans(a)) {
    let cur = x.from;
    for (const y of bm) {
      if (y.to < cur || y.from > x.to) continue;
      if (y.from > cur) out.push({ from: cur, to: y.from });
      cur = Math.max(cur, y.to);
      if (cur >= x.to) break;
    }
    if (cur < x.to) out.push({ from: cur, to: x.to });
  }
  return out;
}

export interface GapReport {
  track: string;
  from: number;
  to: number;
  /** Spans whose frames the live path delivered. */
  live: LiveSpan[];
  /**
   * Recorded locally but not delivered live (needs the recordings index); null when no recorded
   * spans were given, in which case `notLive` is the whole range minus live.
   */
  missing: Span[] | null;
  notLive: Span[];
  /** Spans delivered later by store-and-forward backfill (merged). */
  backfilled: Span[];
  /** Live history before this time was evicted from the bounded log (unknown, not missing). */
  horizon: number | null;
  /** The track's median interval between records (spans join across 1.5× of it), or null. */
  recordIntervalMs: number | null;
  liveMs: number;
  notLiveMs: number;
  missingMs: number | null;
  backfilledMs: number;
}

/**
 * Join the live log with the recorded spans of a track into the report. Pure. Spans (live,
 * backfilled, and their union against the recordings) join across one record interval — 1.5× the
 * track's median interval between records: two delivered spans that far apart have no record
 * between them, so the seam between a live span and the backfill that took over is not "missing".
 * Live spans are listed once (memory and index copies merge), with counts clipped to the range.
 */
export function gapReport(
  track: string,
  from: number,
  to: number,
  live: { spans: LiveSpan[]; horizon: number | null },
  recorded: Span[] | null,
  backfilledIn: Array<Span | LiveSpan> = [],
): GapReport {
  const interval = recordIntervalMs([...live.spans, ...backfilledIn.filter((x): x is LiveSpan => 'frames' in x)]);
  const joinMs = interval === null ? 0 : interval * 1.5;
  const liveSpans = mergeLiveSpans(live.spans, from, to, joinMs);
  const clip = (s: Span[]): Span[] => s.map((x) => ({ from: Math.max(x.from, from), to: Math.min(x.to, to) })).filter((x) => x.to >= x.from);
  const notLive = subtractSpans([{ from, to }], liveSpans);
  const backfilled = mergeSpans(clip(backfilledIn), joinMs);
  const delivered = mergeSpans([...liveSpans, ...backfilled], joinMs);
  const missing = recorded ? subtractSpans(clip(recorded), delivered) : null;
  const len = (s: Span[]): number => s.reduce((a, x) => a + (x.to - x.from), 0);
  return {
    track,
    from,
    to,
    live: liveSpans,
    missing,
    notLive,
    backfilled,
    horizon: live.horizon,
    recordIntervalMs: interval,
    liveMs: len(liveSpans),
    notLiveMs: len(notLive),
    missingMs: missing ? len(missing) : null,
    backfilledMs: len(backfilled),
  };
}
