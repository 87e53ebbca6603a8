// The LL-HLS window of one track: frames in, partial segments (~part target, fMP4 fragments) and
// segments (cut at the first keyframe past the segment target) out, the last N segments kept.
// Pure and synchronous: the session (live.ts) feeds it and serves what it holds.
//
// Timing rules it keeps (RFC 8216bis §4.4.3.1, §4.4.4.9):
// - every part ≤ PART-TARGET; parts other than a segment's last and INDEPENDENT ones ≥ 85 % of it.
//   PART-TARGET is fixed once from the measured frame interval: n = round(configured / interval)
//   frames per part, PART-TARGET = n × interval × 1.08 (room for capture jitter either way). Only a
//   frame ~50 % late can still leave a part under the floor (counted: partsUnderFloor); the
//   ≤ PART-TARGET rule, the one players rely on, always holds.
// - every segment rounds to ≤ TARGETDURATION, fixed from the first segment (the camera's GOP);
//   a later GOP that runs longer is cut at a non-keyframe (counted: forcedCuts).
// - a sample longer than PART-TARGET (a stalled source) is shortened to it; the media timeline then
//   runs behind capture by the cut (counted: stalls), PROGRAM-DATE-TIME keeps the real time.
import { EdgeError } from '../engine/api.js';
import { annexBToAvcc, avcConfigOf, MEDIA_TIMESCALE, writeFragment, type AvcConfig, type FragmentSample } from './fmp4.js';
import type { LivePlaylistState, PlaylistPart, PlaylistSegment } from './playlist.js';

export interface LiveWindowOptions {
  /** Configured part target (ms). */
  partTargetMs: number;
  /** A segment is cut at the first keyframe once it is at least this long (ms). */
  segmentTargetMs: number;
  /** Complete segments kept (more when they cover less than 3 target durations). */
  windowSegments: number;
  /** Bytes of parts kept; the oldest segments go first beyond it (counted). */
  maxBytes: number;
  /** URIs carry this session id: a restarted stream never reuses a cached URI. */
  sid: string;
  timescale?: number;
}

export interface LiveFrame {
  /** Capture clock µs. */
  ts: number;
  /** Wall-clock ms of the capture (PROGRAM-DATE-TIME). */
  wallMs: number;
  key: boolean;
  /** Annex-B access unit. */
  data: Buffer;
}

export interface LivePart {
  id: number;
  msn: number;
  index: number;
  independent: boolean;
  /** Ticks. */
  duration: number;
  bytes: Buffer;
}

export interface LiveSegment {
  msn: number;
  parts: LivePart[];
  duration: number;
  complete: boolean;
  discontinuity: boolean;
  /** Discontinuity sequence number (EXT-X-DISCONTINUITY-SEQUENCE when it heads the playlist). */
  dsn: number;
  initId: number;
  programDateMs: number;
  bytes: number;
}

export interface InitRequest {
  id: number;
  config: AvcConfig;
  keyframe: Buffer;
}

export type WindowEvent = { type: 'init'; init: InitRequest } | { type: 'part'; part: LivePart } | { type: 'segment'; segment: LiveSegment };

export interface LiveWindowStats {
  /** framesIn = samples + framesBeforeKeyframe + outOfOrder + discarded + buffered. */
  framesIn: number;
  /** Frames muxed into parts. */
  samples: number;
  /** Frames before the first keyframe with SPS/PPS (at start and after a discontinuity). */
  framesBeforeKeyframe: number;
  /** Frames not after the previous one on the capture clock. */
  outOfOrder: number;
  /** Frames still measuring the frame rate when the source went away. */
  discarded: number;
  /** Frames held: the last one (its duration comes with the next) and any still measuring the rate. */
  buffered: number;
  parts: number;
  segments: number;
  heldBytes: number;
  heldSegments: number;
  forcedCuts: number;
  stalls: number;
  partsUnderFloor: number;
  discontinuities: number;
  evicted: number;
  dropped: { bytes: number; memory: number };
  targetDurationS: number | null;
  partTargetMs: number | null;
}

/** Frames buffered to measure the frame interval before the first part (bounded). */
const PROBE_FRAMES = 9;
/** …or this much capture time, for slow cameras. */
const PROBE_US = 1_000_000;
/** A GOP longer than this still ends a segment: no keyframe for 10 s must not grow memory unbounded. */
const MAX_SEGMENT_US = 10_000_000;
const JITTER_ROOM = 1.08;

export class LiveWindow {
  readonly timescale: number;
  private readonly segments: LiveSegment[] = [];
  private open: LiveSegment | null = null;
  private openSamples: FragmentSample[] = [];
  private openPartTicks = 0;
  private openPartIndependent = false;
  private openBytes = 0;
  private pending: LiveFrame | null = null;
  private probe: LiveFrame[] = [];
  private config: AvcConfig | null = null;
  private initId = -1;
  private nextPartId = 0;
  private nextMsn = 0;
  private mediaTicks = 0;
  private partTargetTicks = 0;
  private targetDurationS: number | null = null;
  private held = 0;
  /** Discontinuity sequence number of the segment being opened next. */
  private dsn = 0;
  private pendingDiscontinuity = false;
  /** Duration of the last placed sample (ticks): the guess for a frame whose successor never came. */
  private lastDur = 1920;
  private readonly st = { framesIn: 0, samples: 0, framesBeforeKeyframe: 0, outOfOrder: 0, discarded: 0, parts: 0, segments: 0, forcedCuts: 0, stalls: 0, partsUnderFloor: 0, discontinuities: 0, evicted: 0, dropped: { bytes: 0, memory: 0 } };

  constructor(private readonly o: LiveWindowOptions) {
    this.timescale = o.timescale ?? MEDIA_TIMESCALE;
    if (!(o.partTargetMs > 0) || !(o.segmentTargetMs > 0) || o.windowSegments < 1) throw new EdgeError('HLS_BAD_OPTIONS', 'part/segment targets must be > 0 and the window ≥ 1 segment');
  }

  private ticks(us: number): number {
    return Math.round((us * this.timescale) / 1e6);
  }

  /** The playlist can be served once the first segment is complete (it fixes TARGETDURATION). */
  get ready(): boolean {
    return this.targetDurationS !== null;
  }

  /** Bytes held (closed parts and the open part's samples). */
  get heldBytes(): number {
    return this.held + this.openBytes;
  }

  /** The id of the part that will come next (the preload hint). */
  get nextPart(): number {
    return this.nextPartId;
  }

  /** Last published position (msn, part index), or null before the first part. */
  lastPosition(): { msn: number; part: number } | null {
    const seg = this.open && this.open.parts.length > 0 ? this.open : this.segments[this.segments.length - 1];
    if (!seg) return null;
    const p = seg.parts[seg.parts.length - 1];
    return p ? { msn: seg.msn, part: p.index } : null;
  }

  /** The msn of the newest complete segment (-1 when none). */
  get lastCompleteMsn(): number {
    return this.segments[this.segments.length - 1]?.msn ?? -1;
  }

  /** The next access unit; returns what became available. Never throws on bad media (counted). */
  push(f: LiveFrame): WindowEvent[] {
    this.st.framesIn++;
    const out: WindowEvent[] = [];
    if (this.partTargetTicks === 0) {
      // Start at a keyframe carrying SPS/PPS; measure the frame interval over the first frames.
      if (this.probe.length === 0 && (!f.key || !avcConfigOf(f.data))) {
        this.st.framesBeforeKeyframe++;
        return out;
      }
      if (this.probe.length > 0 && f.ts <= this.probe[this.probe.length - 1]!.ts) {
        this.st.outOfOrder++;
        return out;
      }
      this.probe.push(f);
      if (this.probe.length < PROBE_FRAMES && f.ts - this.probe[0]!.ts < PROBE_US) return out;
      this.partTargetTicks = this.choosePartTarget(this.probe);
      const frames = this.probe;
      this.probe = [];
      for (const x of frames) this.accept(x, out);
      return out;
    }
    this.accept(f, out);
    return out;
  }

  /**
   * The source went away and came back (new publisher, new encoder): what is pending closes its
   * segment and the next one starts with EXT-X-DISCONTINUITY at its first keyframe.
   */
  discontinue(): WindowEvent[] {
    const out: WindowEvent[] = [];
    this.st.discarded += this.probe.length;
    this.probe = [];
    if (this.pending) {
      this.place(this.pending, this.lastDur, out);
      this.pending = null;
    }
    this.closeSegment(out);
    this.pendingDiscontinuity = this.segments.length > 0;
    this.config = null;
    return out;
  }

  private choosePartTarget(frames: LiveFrame[]): number {
    const gaps = frames.slice(1).map((f, i) => f.ts - frames[i]!.ts).sort((a, b) => a - b);
    // the mean of the intervals within 2× the lower median: jitter averages out, a stall while probing is left out
    const median = gaps.length ? gaps[Math.floor((gaps.length - 1) / 2)]! : 33_333;
    const usual = gaps.filter((g) => g <= 2 * median);
    const interval = usual.length ? usual.reduce((a, g) => a + g, 0) / usual.length : median;
    const n = Math.max(1, Math.round((this.o.partTargetMs * 1000) / interval));
    // never below the longest usual interval (+15 %): a single late frame must not count as a stall
    // (that would shorten the timeline); single-frame parts of a slow camera may then miss the floor
    const longest = usual.length ? Math.max(...usual) : interval;
    return Math.max(1, this.ticks(Math.max(n * interval * JITTER_ROOM, longest * 1.15)));
  }

  private accept(f: LiveFrame, out: WindowEvent[]): void {
    if (this.pending && f.ts <= this.pending.ts) {
      this.st.outOfOrder++; // not after the previous frame: not placeable
      return;
    }
    if (this.pending) this.place(this.pending, this.ticks(f.ts - this.pending.ts), out);
    this.pending = f;
  }

  private place(f: LiveFrame, durTicks: number, out: WindowEvent[]): void {
    let dur = Math.max(1, durTicks);
    if (dur > this.partTargetTicks) {
      // A stalled source: the gap is compressed anyway, so compress it to what fills the open part
      // up to the target (a short part before a stall would miss the 85 % floor).
      this.st.stalls++;
      const fill = this.partTargetTicks - this.openPartTicks;
      dur = this.openSamples.length > 0 && this.openPartTicks < 0.85 * this.partTargetTicks && fill > 0 && !f.key ? fill : this.partTargetTicks;
    }
    this.lastDur = dur;
    const cfg = f.key ? avcConfigOf(f.data) : null;
    const changed = cfg !== null && this.config !== null && cfg.key !== this.config.key;
    if (this.config === null && cfg === null) {
      this.st.framesBeforeKeyframe++; // after a discontinuity: wait for a keyframe with SPS/PPS
      return;
    }
    const segTicks = (this.open?.duration ?? 0) + this.openPartTicks;
    const limitTicks = this.targetDurationS === null ? this.ticks(MAX_SEGMENT_US) : this.targetDurationS * this.timescale + Math.floor(this.timescale * 0.45);
    // "at least the segment target" with 10 % room: a GOP equal to the target must not make 2-GOP segments on jitter
    const keyCut = f.key && (this.open === null || segTicks >= this.ticks(this.o.segmentTargetMs * 900) || changed);
    const forced = !keyCut && this.open !== null && segTicks + dur > limitTicks;
    if (keyCut || forced || this.open === null) {
      if (forced) this.st.forcedCuts++;
      this.closeSegment(out);
      if (cfg && (this.config === null || changed)) {
        this.config = cfg;
        this.initId++;
        out.push({ type: 'init', init: { id: this.initId, config: cfg, keyframe: f.data } });
      }
      const discontinuity = this.pendingDiscontinuity || (changed && this.segments.length > 0);
      if (discontinuity) this.dsn++;
      this.open = {
        msn: this.nextMsn++,
        dsn: this.dsn,
        parts: [],
        duration: 0,
        complete: false,
        discontinuity,
        initId: this.initId,
        programDateMs: f.wallMs,
        bytes: 0,
      };
      if (this.open.discontinuity) {
        this.st.discontinuities++;
      }
      this.pendingDiscontinuity = false;
    } else if (this.openSamples.length > 0 && this.openPartTicks + dur > this.partTargetTicks) {
      this.closePart(out, false);
    }
    if (this.openSamples.length === 0) this.openPartIndependent = f.key;
    const data = annexBToAvcc(f.data);
    this.openSamples.push({ data, duration: dur, key: f.key });
    this.st.samples++;
    this.openPartTicks += dur;
    this.openBytes += data.length;
  }

  private closePart(out: WindowEvent[], last: boolean): void {
    const seg = this.open;
    if (!seg || this.openSamples.length === 0) return;
    const bytes = writeFragment(this.nextPartId + 1, [{ trackId: 1, baseTime: this.mediaTicks, samples: this.openSamples }]);
    const part: LivePart = { id: this.nextPartId++, msn: seg.msn, index: seg.parts.length, independent: this.openPartIndependent, duration: this.openPartTicks, bytes };
    if (!last && !part.independent && part.duration < 0.85 * this.partTargetTicks) this.st.partsUnderFloor++;
    seg.parts.push(part);
    seg.duration += part.duration;
    seg.bytes += bytes.length;
    this.mediaTicks += part.duration;
    this.held += bytes.length;
    this.st.parts++;
    this.openSamples = [];
    this.openPartTicks = 0;
    this.openBytes = 0;
    out.push({ type: 'part', part });
  }

  private closeSegment(out: WindowEvent[]): void {
    const seg = this.open;
    if (!seg) return;
    this.closePart(out, true);
    this.open = null;
    if (seg.parts.length === 0) {
      this.nextMsn--; // nothing in it: the number is not used
      return;
    }
    seg.complete = true;
    this.segments.push(seg);
    this.st.segments++;
    if (this.targetDurationS === null) {
      this.targetDurationS = Math.max(1, Math.ceil(this.o.segmentTargetMs / 1000 - 1e-9), Math.ceil(seg.duration / this.timescale - 0.02));
    }
    // RFC 8216bis §6.2.2: never remove a segment if what stays would cover < 3 target durations
    const keep = 3 * (this.targetDurationS ?? 1) * this.timescale;
    while (this.segments.length > this.o.windowSegments && this.listedTicks() - this.segments[0]!.duration >= keep) this.evictOldest('window');
    while (this.held > this.o.maxBytes && this.segments.length > 1) this.evictOldest('bytes');
    out.push({ type: 'segment', segment: seg });
  }

  private listedTicks(): number {
    return this.segments.reduce((a, s) => a + s.duration, 0);
  }

  private evictOldest(why: 'window' | 'bytes' | 'memory'): number {
    const seg = this.segments.shift();
    if (!seg) return 0;
    this.held -= seg.bytes;
    if (why === 'window') this.st.evicted++;
    else this.st.dropped[why]++;
    return seg.bytes;
  }

  /** Memory pressure: give back at least `need` bytes from the oldest segments (keeps the newest). */
  shed(need: number): number {
    let freed = 0;
    while (freed < need && this.segments.length > 1) freed += this.evictOldest('memory');
    return freed;
  }

  part(id: number): LivePart | undefined {
    for (const s of [...this.segments, ...(this.open ? [this.open] : [])]) {
      const first = s.parts[0];
      if (first && id >= first.id && id <= first.id + s.parts.length - 1) return s.parts[id - first.id];
    }
    return undefined;
  }

  segment(msn: number): LiveSegment | undefined {
    const first = this.segments[0];
    if (first && msn >= first.msn && msn <= first.msn + this.segments.length - 1) return this.segments[msn - first.msn];
    return this.open?.msn === msn ? this.open : undefined;
  }

  /** Has (msn, part) been published? msn-only asks for the complete segment. */
  reached(msn: number, part: number | null): boolean {
    if (part === null) return this.lastCompleteMsn >= msn;
    const last = this.lastPosition();
    if (!last) return false;
    return last.msn > msn || (last.msn === msn && last.part >= part) || this.lastCompleteMsn >= msn;
  }

  /** Playlist state for buildLivePlaylist; parts listed for the segments within 3 target durations of the end. */
  playlistState(): LivePlaylistState {
    if (this.targetDurationS === null) throw new EdgeError('HLS_NOT_READY', 'no complete segment yet');
    const sid = this.o.sid;
    const partUri = (id: number) => `part-${sid}-${id}.m4s`;
    const listParts = (s: LiveSegment): PlaylistPart[] => s.parts.map((p) => ({ uri: partUri(p.id), duration: p.duration, independent: p.independent }));
    let prevInit = -1;
    const horizon = 3 * this.targetDurationS * this.timescale;
    let fromEnd = this.open?.duration ?? 0;
    const withParts = new Set<number>();
    for (let i = this.segments.length - 1; i >= 0 && fromEnd < horizon; i--) {
      withParts.add(this.segments[i]!.msn);
      fromEnd += this.segments[i]!.duration;
    }
    const entry = (s: LiveSegment): PlaylistSegment => {
      const mapUri = s.initId !== prevInit ? `init-${sid}-${s.initId}.mp4` : null;
      prevInit = s.initId;
      return {
        msn: s.msn,
        uri: `seg-${sid}-${s.msn}.m4s`,
        duration: s.duration,
        parts: s.complete ? (withParts.has(s.msn) ? listParts(s) : []) : listParts(s),
        programDateMs: s.programDateMs,
        // the first listed segment's discontinuity is carried by EXT-X-DISCONTINUITY-SEQUENCE
        discontinuity: s.discontinuity && s !== head,
        mapUri,
      };
    };
    const head = this.segments[0] ?? this.open;
    const segments = this.segments.map(entry);
    return {
      timescale: this.timescale,
      targetDurationS: this.targetDurationS,
      partTarget: this.partTargetTicks,
      discontinuitySequence: head?.dsn ?? 0,
      segments,
      open: this.open ? entry(this.open) : null,
      preloadHint: partUri(this.nextPartId),
    };
  }

  stats(): LiveWindowStats {
    return {
      ...this.st,
      dropped: { ...this.st.dropped },
      buffered: (this.pending ? 1 : 0) + this.probe.length,
      heldBytes: this.heldBytes,
      heldSegments: this.segments.length,
      targetDurationS: this.targetDurationS,
      partTargetMs: this.partTargetTicks ? Math.round((this.partTargetTicks / this.timescale) * 1e5) / 100 : null,
    };
  }
}
