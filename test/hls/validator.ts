// A media playlist validator written from RFC 8216bis (draft 16+) §4 and §6.2 — Apple's
// mediastreamvalidator is not available here. It parses independently of runtime/hls/playlist.ts
// and returns every violation found (empty = valid). `PlaylistHistory` adds the checks that need
// successive reloads of one live playlist (monotonic media sequence, stable URIs per MSN).

export interface ParsedPart {
  uri: string;
  duration: number;
  independent: boolean;
  gap: boolean;
}

export interface ParsedSegment {
  msn: number;
  uri: string;
  duration: number;
  parts: ParsedPart[];
  discontinuity: boolean;
  gap: boolean;
  map: string | null;
  programDate: number | null;
}

export interface ParsedPlaylist {
  version: number | null;
  targetDuration: number | null;
  mediaSequence: number;
  discontinuitySequence: number;
  partTarget: number | null;
  serverControl: Record<string, string> | null;
  playlistType: string | null;
  endList: boolean;
  independentSegments: boolean;
  segments: ParsedSegment[];
  /** Parts after the last EXTINF (the segment being built). */
  openParts: ParsedPart[];
  preloadHints: Array<Record<string, string>>;
  errors: string[];
}

/** attribute-list (RFC 8216bis §4.2): NAME=value pairs, quoted strings may hold commas. */
export function parseAttributes(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /([A-Z0-9-]+)=("[^"\r\n]*"|[^,]*)(,|$)/gy;
  let m: RegExpExecArray | null;
  let at = 0;
  while (at < s.length && (m = re.exec(s))) {
    out[m[1]!] = m[2]!.startsWith('"') ? m[2]!.slice(1, -1) : m[2]!;
    at = re.lastIndex;
  }
  return out;
}

const DECIMAL = /^\d+(\.\d+)?$/;

export function parsePlaylist(text: string): ParsedPlaylist {
  const p: ParsedPlaylist = {
    version: null,
    targetDuration: null,
    mediaSequence: 0,
    discontinuitySequence: 0,
    partTarget: null,
    serverControl: null,
    playlistType: null,
    endList: false,
    independentSegments: false,
    segments: [],
    openParts: [],
    preloadHints: [],
    errors: [],
  };
  const err = (m: string) => p.errors.push(m);
  if (text.charCodeAt(0) === 0xfeff) err('§4.1: BOM');
  const lines = text.split(/\r?\n/);
  if (lines[0] !== '#EXTM3U') err('§4.4.1.1: first line must be #EXTM3U');
  const once = new Set<string>();
  const single = (tag: string) => {
    if (once.has(tag)) err(`§4.4.3: ${tag} appears more than once`);
    once.add(tag);
  };
  let pending: Partial<ParsedSegment> & { parts: ParsedPart[] } = { parts: [] };
  let extinf: number | null = null;
  let sawSegment = false;
  let msn = 0;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === '') continue;
    if (/[\u0000-\u0008\u000b-\u001f\u007f]/.test(line)) err(`§4.1: control character on line ${i + 1}`);
    if (!line.startsWith('#')) {
      if (extinf === null) {
        err(`§4.4.4.1: URI "${line}" without EXTINF`);
        continue;
      }
      p.segments.push({ msn: msn++, uri: line, duration: extinf, parts: pending.parts, discontinuity: !!pending.discontinuity, gap: !!pending.gap, map: pending.map ?? null, programDate: pending.programDate ?? null });
      pending = { parts: [] };
      extinf = null;
      sawSegment = true;
      continue;
    }
    const colon = line.indexOf(':');
    const tag = colon < 0 ? line : line.slice(0, colon);
    const val = colon < 0 ? '' : line.slice(colon + 1);
    switch (tag) {
      case '#EXT-X-VERSION':
        single(tag);
        p.version = Number(val);
        break;
      case '#EXT-X-TARGETDURATION':
        single(tag);
        if (!/^\d+$/.test(val) || Number(val) < 1) err('§4.4.3.1: TARGETDURATION must be a decimal-integer ≥ 1');
        p.targetDuration = Number(val);
        break;
      case '#EXT-X-MEDIA-SEQUENCE':
        single(tag);
        if (sawSegment || pending.parts.length) err('§4.4.3.2: MEDIA-SEQUENCE after the first segment');
        p.mediaSequence = Number(val);
        msn = p.mediaSequence;
        break;
      case '#EXT-X-DISCONTINUITY-SEQUENCE':
        single(tag);
        if (sawSegment || pending.parts.length || pending.discontinuity) err('§4.4.3.3: DISCONTINUITY-SEQUENCE after a segment or a discontinuity');
        p.discontinuitySequence = Number(val);
        break;
      case '#EXT-X-PART-INF': {
        single(tag);
        const a = parseAttributes(val);
        if (!a['PART-TARGET'] || !DECIMAL.test(a['PART-TARGET'])) err('§4.4.3.7: PART-INF without a PART-TARGET');
        p.partTarget = Number(a['PART-TARGET']);
        break;
      }
      case '#EXT-X-SERVER-CONTROL':
        single(tag);
        p.serverControl = parseAttributes(val);
        break;
      case '#EXT-X-PLAYLIST-TYPE':
        single(tag);
        if (val !== 'VOD' && val !== 'EVENT') err('§4.4.3.5: PLAYLIST-TYPE must be EVENT or VOD');
        p.playlistType = val;
        break;
      case '#EXT-X-INDEPENDENT-SEGMENTS':
        single(tag);
        p.independentSegments = true;
        break;
      case '#EXT-X-ENDLIST':
        p.endList = true;
        break;
      case '#EXTINF': {
        const d = val.split(',')[0]!;
        if (!DECIMAL.test(d)) err(`§4.4.4.1: EXTINF duration "${d}"`);
        extinf = Number(d);
        break;
      }
      case '#EXT-X-DISCONTINUITY':
        if (pending.parts.length) err('§4.4.4.9: DISCONTINUITY after the first PART of its segment');
        pending.discontinuity = true;
        break;
      case '#EXT-X-GAP':
        pending.gap = true;
        break;
      case '#EXT-X-MAP': {
        if (pending.parts.length) err('§4.4.4.9: MAP after the first PART of its segment');
        const a = parseAttributes(val);
        if (!a.URI) err('§4.4.4.5: MAP without URI');
        pending.map = a.URI ?? null;
        break;
      }
      case '#EXT-X-PROGRAM-DATE-TIME': {
        if (pending.parts.length) err('§4.4.4.9: PROGRAM-DATE-TIME after the first PART of its segment');
        const t = Date.parse(val);
        if (!Number.isFinite(t)) err(`§4.4.4.6: bad date-time ${val}`);
        pending.programDate = t;
        break;
      }
      case '#EXT-X-PART': {
        const a = parseAttributes(val);
        if (!a.URI || !a.DURATION || !DECIMAL.test(a.DURATION)) err(`§4.4.4.9: PART needs URI and DURATION (${val})`);
        pending.parts.push({ uri: a.URI ?? '', duration: Number(a.DURATION), independent: a.INDEPENDENT === 'YES', gap: a.GAP === 'YES' });
        break;
      }
      case '#EXT-X-PRELOAD-HINT':
        p.preloadHints.push(parseAttributes(val));
        break;
      default:
        if (tag.startsWith('#EXT')) err(`unknown tag ${tag}`);
    }
  }
  p.openParts = pending.parts;
  return p;
}

export interface ValidateOptions {
  /** Live playlists must cover 3 target durations once warmed up (§6.2.2). */
  live?: boolean;
  /** Check the 85 % part floor (default true). */
  partFloor?: boolean;
  /** Tolerance of printed decimals (seconds): durations print rounded to 10 µs. */
  epsilon?: number;
}

/** Every rule violated by one playlist text. */
export function validatePlaylist(text: string, o: ValidateOptions = {}): string[] {
  const p = parsePlaylist(text);
  const errors = [...p.errors];
  const err = (m: string) => errors.push(m);
  const eps = o.epsilon ?? 1e-5;
  if (p.targetDuration === null) err('§4.4.3.1: EXT-X-TARGETDURATION is required');
  const all = p.segments;
  const hasMap = all.some((s) => s.map) ;
  if (hasMap && (p.version ?? 1) < 6) err('§4.4.4.5: EXT-X-MAP needs EXT-X-VERSION ≥ 6');
  if (all.length && !all[0]!.map && hasMap) err('§4.4.4.5: the first segment has no EXT-X-MAP though others do');
  for (const s of all) {
    if (p.targetDuration !== null && Math.round(s.duration) > p.targetDuration) err(`§4.4.3.1: segment ${s.msn} EXTINF ${s.duration} rounds above TARGETDURATION ${p.targetDuration}`);
  }
  const anyParts = all.some((s) => s.parts.length) || p.openParts.length > 0;
  if (anyParts || p.partTarget !== null) {
    if (p.partTarget === null) err('§4.4.3.7: EXT-X-PART-INF is required with EXT-X-PART');
    const sc = p.serverControl;
    if (!sc || !sc['PART-HOLD-BACK']) err('§4.4.3.8: PART-HOLD-BACK is required with EXT-X-PART-INF');
    else if (p.partTarget !== null && Number(sc['PART-HOLD-BACK']) < 2 * p.partTarget - eps) err(`§4.4.3.8: PART-HOLD-BACK ${sc['PART-HOLD-BACK']} < 2 × PART-TARGET ${p.partTarget}`);
    const lists: Array<{ parts: ParsedPart[]; complete: ParsedSegment | null }> = [...all.map((s) => ({ parts: s.parts, complete: s })), { parts: p.openParts, complete: null }];
    for (const { parts, complete } of lists) {
      parts.forEach((pt, i) => {
        if (p.partTarget === null) return;
        if (pt.duration > p.partTarget + eps) err(`§4.4.4.9: part ${pt.uri} ${pt.duration} s > PART-TARGET ${p.partTarget}`);
        const last = i === parts.length - 1;
        const followedByGap = parts[i + 1]?.gap ?? false;
        // the open segment's last part may still be followed by more: its floor is not known yet
        const exempt = pt.independent || pt.gap || followedByGap || (last && complete !== null) || (last && complete === null);
        if (o.partFloor !== false && !exempt && pt.duration < 0.85 * p.partTarget - eps) err(`§4.4.4.9: part ${pt.uri} ${pt.duration} s < 85 % of PART-TARGET ${p.partTarget}`);
      });
      if (complete && parts.length) {
        const sum = parts.reduce((a, x) => a + x.duration, 0);
        if (Math.abs(sum - complete.duration) > 0.001 + parts.length * 1e-5) err(`§4.4.4.9: parts of segment ${complete.msn} add up to ${sum.toFixed(5)}, EXTINF ${complete.duration}`);
      }
    }
  }
  if (p.serverControl) {
    const sc = p.serverControl;
    if (sc['HOLD-BACK'] && p.targetDuration !== null && Number(sc['HOLD-BACK']) < 3 * p.targetDuration - eps) err(`§4.4.3.8: HOLD-BACK ${sc['HOLD-BACK']} < 3 × TARGETDURATION`);
    if (sc['CAN-SKIP-UNTIL'] && p.targetDuration !== null && Number(sc['CAN-SKIP-UNTIL']) < 6 * p.targetDuration) err('§4.4.3.8: CAN-SKIP-UNTIL < 6 × TARGETDURATION');
    if (sc['CAN-SKIP-DATERANGES'] && !sc['CAN-SKIP-UNTIL']) err('§4.4.3.8: CAN-SKIP-DATERANGES without CAN-SKIP-UNTIL');
    if (sc['CAN-BLOCK-RELOAD'] !== undefined && sc['CAN-BLOCK-RELOAD'] !== 'YES') err('§4.4.3.8: CAN-BLOCK-RELOAD must be YES when present');
    if (anyParts && sc['CAN-BLOCK-RELOAD'] !== 'YES') err('§6.2.5.2 (LL-HLS): a playlist with parts must offer blocking reload');
  }
  for (const h of p.preloadHints) {
    if (h.TYPE !== 'PART' && h.TYPE !== 'MAP') err(`§4.4.5.3: PRELOAD-HINT TYPE ${h.TYPE}`);
    if (!h.URI) err('§4.4.5.3: PRELOAD-HINT without URI');
  }
  if (p.endList && p.preloadHints.length) err('§4.4.5.3: PRELOAD-HINT in a playlist with ENDLIST');
  if (p.playlistType === 'VOD' && !p.endList) err('§6.2.1: a VOD playlist ends with EXT-X-ENDLIST');
  const uris = new Set<string>();
  for (const s of all) {
    if (uris.has(s.uri) && !s.gap) err(`segment URI ${s.uri} listed twice`);
    uris.add(s.uri);
  }
  // once segments have been removed (media sequence past 0), what is left must cover 3 target durations
  if (o.live && !p.endList && p.targetDuration !== null && p.mediaSequence > 0) {
    const total = all.reduce((a, s) => a + s.duration, 0);
    if (total < 3 * p.targetDuration - eps) err(`§6.2.2: live playlist holds ${total.toFixed(3)} s < 3 target durations`);
  }
  return errors;
}

/** Checks across reloads of one live playlist (§6.2.1, §6.2.2). */
export class PlaylistHistory {
  private lastSeq = -1;
  private lastDiscSeq = -1;
  private lastTarget: number | null = null;
  private lastPartTarget: number | null = null;
  private readonly byMsn = new Map<number, { uri: string; duration: number; discontinuity: boolean }>();
  readonly errors: string[] = [];

  add(text: string): ParsedPlaylist {
    const p = parsePlaylist(text);
    const err = (m: string) => this.errors.push(m);
    if (p.mediaSequence < this.lastSeq) err(`§6.2.1: MEDIA-SEQUENCE went back ${this.lastSeq} → ${p.mediaSequence}`);
    if (p.discontinuitySequence < this.lastDiscSeq) err(`§6.2.1: DISCONTINUITY-SEQUENCE went back ${this.lastDiscSeq} → ${p.discontinuitySequence}`);
    if (this.lastTarget !== null && p.targetDuration !== this.lastTarget) err(`§6.2.1: TARGETDURATION changed ${this.lastTarget} → ${p.targetDuration}`);
    if (this.lastPartTarget !== null && p.partTarget !== this.lastPartTarget) err(`§6.2.1: PART-TARGET changed ${this.lastPartTarget} → ${p.partTarget}`);
    for (const s of p.segments) {
      const was = this.byMsn.get(s.msn);
      if (was && (was.uri !== s.uri || Math.abs(was.duration - s.duration) > 1e-9)) err(`§6.2.1: segment ${s.msn} changed between reloads (${was.uri} → ${s.uri})`);
      this.byMsn.set(s.msn, { uri: s.uri, duration: s.duration, discontinuity: s.discontinuity });
    }
    this.lastSeq = p.mediaSequence;
    this.lastDiscSeq = p.discontinuitySequence;
    this.lastTarget = p.targetDuration;
    this.lastPartTarget = p.partTarget;
    if (this.byMsn.size > 10_000) this.byMsn.clear();
    return p;
  }
}

/** First sample of an fMP4 fragment (moof/traf/trun) is a sync sample: what INDEPENDENT=YES claims. */
export function firstSampleIsSync(frag: Buffer): boolean {
  const boxes = (from: number, to: number) => {
    const out: Array<{ type: string; body: number; end: number }> = [];
    for (let o = from; o + 8 <= to; ) {
      const size = frag.readUInt32BE(o);
      if (size < 8 || o + size > to) break;
      out.push({ type: frag.toString('latin1', o + 4, o + 8), body: o + 8, end: o + size });
      o += size;
    }
    return out;
  };
  const moof = boxes(0, frag.length).find((b) => b.type === 'moof');
  const traf = moof && boxes(moof.body, moof.end).find((b) => b.type === 'traf');
  if (!traf) throw new Error('no moof/traf');
  const kids = boxes(traf.body, traf.end);
  const tfhd = kids.find((b) => b.type === 'tfhd')!;
  const trun = kids.find((b) => b.type === 'trun')!;
  const tfFlags = frag.readUInt32BE(tfhd.body) & 0xffffff;
  let q = tfhd.body + 8;
  if (tfFlags & 0x1) q += 8;
  if (tfFlags & 0x2) q += 4;
  if (tfFlags & 0x8) q += 4;
  if (tfFlags & 0x10) q += 4;
  let flags = tfFlags & 0x20 ? frag.readUInt32BE(q) : 0;
  const trFlags = frag.readUInt32BE(trun.body) & 0xffffff;
  let r = trun.body + 8;
  if (trFlags & 0x1) r += 4;
  if (trFlags & 0x4) flags = frag.readUInt32BE(r);
  else if (trFlags & 0x400) {
    if (trFlags & 0x100) r += 4;
    if (trFlags & 0x200) r += 4;
    flags = frag.readUInt32BE(r);
  }
  return (flags & 0x10000) === 0 && ((flags >>> 24) & 0x3) !== 1;
}
