// Media playlists (RFC 8216bis, protocol version 9 for LL-HLS): live with partial segments,
// blocking reload and preload hints; VOD over recordings with gaps and discontinuities. Pure:
// state in, text out. Durations are printed from integer ticks with one rounding, so a part whose
// ticks fit the part target never prints longer than it.

export interface PlaylistPart {
  uri: string;
  /** Ticks of the track timescale. */
  duration: number;
  independent: boolean;
}

export interface PlaylistSegment {
  msn: number;
  uri: string;
  /** Ticks; for the open segment: what its parts hold so far. */
  duration: number;
  /** Parts listed for this segment (recent segments only); [] lists none. */
  parts: PlaylistPart[];
  /** EXT-X-PROGRAM-DATE-TIME of its first sample, ms since the epoch (omitted when null). */
  programDateMs: number | null;
  discontinuity: boolean;
  /** EXT-X-MAP written before this segment (first segment, and whenever the init changes). */
  mapUri: string | null;
  gap?: boolean;
}

export interface LivePlaylistState {
  timescale: number;
  targetDurationS: number;
  /** Part target in ticks (PART-TARGET). */
  partTarget: number;
  discontinuitySequence: number;
  /** Complete segments, oldest first; the first one's msn is EXT-X-MEDIA-SEQUENCE. */
  segments: PlaylistSegment[];
  /** The segment being built: only its parts are listed (no EXTINF yet). */
  open: PlaylistSegment | null;
  /** URI of the next part (EXT-X-PRELOAD-HINT), null when none is coming. */
  preloadHint: string | null;
}

/** Seconds from ticks, 5 decimals (10 µs): enough that sums of parts match their segment. */
export function secs(ticks: number, timescale: number): string {
  return (Math.round((ticks / timescale) * 1e5) / 1e5).toFixed(5);
}

function pdt(ms: number): string {
  return new Date(ms).toISOString();
}

function segmentLines(s: PlaylistSegment, timescale: number, complete: boolean): string[] {
  const out: string[] = [];
  if (s.discontinuity) out.push('#EXT-X-DISCONTINUITY');
  if (s.mapUri) out.push(`#EXT-X-MAP:URI="${s.mapUri}"`);
  if (s.programDateMs !== null) out.push(`#EXT-X-PROGRAM-DATE-TIME:${pdt(s.programDateMs)}`);
  for (const p of s.parts) out.push(`#EXT-X-PART:DURATION=${secs(p.duration, timescale)},URI="${p.uri}"${p.independent ? ',INDEPENDENT=YES' : ''}`);
  if (complete) {
    if (s.gap) out.push('#EXT-X-GAP');
    out.push(`#EXTINF:${secs(s.duration, timescale)},`, s.uri);
  }
  return out;
}

/** HOLD-BACK and PART-HOLD-BACK: 3 target durations and 3 part targets (RFC: ≥ 3× and ≥ 2×, SHOULD 3×). */
export function holdBacks(targetDurationS: number, partTargetS: number): { holdBack: number; partHoldBack: number } {
  return { holdBack: 3 * targetDurationS, partHoldBack: Math.round(3 * partTargetS * 1e5) / 1e5 };
}

export function buildLivePlaylist(st: LivePlaylistState): string {
  const partTargetS = Number(secs(st.partTarget, st.timescale));
  const { holdBack, partHoldBack } = holdBacks(st.targetDurationS, partTargetS);
  const first = st.segments[0] ?? st.open;
  const out = [
    '#EXTM3U',
    '#EXT-X-VERSION:9',
    `#EXT-X-TARGETDURATION:${st.targetDurationS}`,
    `#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,HOLD-BACK=${holdBack.toFixed(3)},PART-HOLD-BACK=${partHoldBack.toFixed(5)}`,
    `#EXT-X-PART-INF:PART-TARGET=${secs(st.partTarget, st.timescale)}`,
    `#EXT-X-MEDIA-SEQUENCE:${first?.msn ?? 0}`,
  ];
  if (st.discontinuitySequence > 0) out.push(`#EXT-X-DISCONTINUITY-SEQUENCE:${st.discontinuitySequence}`);
  for (const s of st.segments) out.push(...segmentLines(s, st.timescale, true));
  // the open segment's tags go out with its first part
  if (st.open && st.open.parts.length > 0) out.push(...segmentLines(st.open, st.timescale, false));
  if (st.preloadHint) out.push(`#EXT-X-PRELOAD-HINT:TYPE=PART,URI="${st.preloadHint}"`);
  return `${out.join('\n')}\n`;
}

export interface VodPlaylistState {
  timescale: number;
  segments: PlaylistSegment[];
}

/** Target duration of a VOD list: the longest segment, rounded up (≥ 1). */
export function vodTargetDuration(segments: Array<{ duration: number }>, timescale: number): number {
  return Math.max(1, ...segments.map((s) => Math.ceil(Number(secs(s.duration, timescale)))));
}

/** A static playlist over recorded segments: EXT-X-ENDLIST, no parts, gaps as EXT-X-GAP. */
export function buildVodPlaylist(st: VodPlaylistState): string {
  const out = [
    '#EXTM3U',
    '#EXT-X-VERSION:9',
    `#EXT-X-TARGETDURATION:${vodTargetDuration(st.segments, st.timescale)}`,
    '#EXT-X-PLAYLIST-TYPE:VOD',
    `#EXT-X-MEDIA-SEQUENCE:0`,
  ];
  // Recorded fragments each start at a keyframe (the recorder cuts them there).
  out.push('#EXT-X-INDEPENDENT-SEGMENTS');
  for (const s of st.segments) out.push(...segmentLines({ ...s, parts: [] }, st.timescale, true));
  out.push('#EXT-X-ENDLIST');
  return `${out.join('\n')}\n`;
}
