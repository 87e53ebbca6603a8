// Pure SDP helpers for WHIP/WHEP: offer validation (a malformed offer is a typed 400, never a
// crash deep in the WebRTC stack), H.264 payload preference, answer inspection and trickle
// ICE fragments (RFC 8840 application/trickle-ice-sdpfrag). No I/O.
import { EdgeError } from '../engine/api.js';

/** Offers beyond this are refused: a browser's offer is ~5 KB; 64 KB leaves room for many codecs. */
export const MAX_SDP_BYTES = 64 * 1024;

export interface SdpMedia {
  kind: string;
  port: number;
  formats: string[];
  lines: string[];
}

export interface ParsedSdp {
  session: string[];
  media: SdpMedia[];
}

export function parseSdp(sdp: string): ParsedSdp {
  if (sdp.length > MAX_SDP_BYTES) throw new EdgeError('SDP_TOO_LARGE', `SDP over ${MAX_SDP_BYTES} bytes`);
  const lines = sdp.split(/\r?\n/).filter((l) => l.length > 0);
  if (lines[0] !== 'v=0') throw new EdgeError('SDP_MALFORMED', 'SDP must start with v=0');
  const out: ParsedSdp = { session: [], media: [] };
  let cur: SdpMedia | null = null;
  for (const line of lines) {
    if (!/^[a-z]=/.test(line)) throw new EdgeError('SDP_MALFORMED', `bad SDP line: ${JSON.stringify(line.slice(0, 60))}`);
    if (line.startsWith('m=')) {
      const parts = line.slice(2).split(' ');
      const port = Number(parts[1]);
      if (parts.length < 4 || !Number.isInteger(port) || port < 0 || port > 65535) {
        throw new EdgeError('SDP_MALFORMED', `bad m= line: ${JSON.stringify(line.slice(0, 60))}`);
      }
      cur = { kind: parts[0]!, port, formats: parts.slice(3), lines: [line] };
      out.media.push(cur);
    } else if (cur) cur.lines.push(line);
    else out.session.push(line);
  }
  if (out.media.length === 0) throw new EdgeError('SDP_MALFORMED', 'SDP has no media section');
  if (out.media.length > 16) throw new EdgeError('SDP_MALFORMED', 'SDP has too many media sections');
  return out;
}

function attr(m: SdpMedia, session: string[], name: string): string | undefined {
  const pre = `a=${name}:`;
  return m.lines.find((l) => l.startsWith(pre))?.slice(pre.length) ?? session.find((l) => l.startsWith(pre))?.slice(pre.length);
}

export interface H264Format {
  pt: string;
  profileLevelId: string;
  packetizationMode: number;
}

export function h264Formats(m: SdpMedia): H264Format[] {
  const out: H264Format[] = [];
  for (const l of m.lines) {
    const r = /^a=rtpmap:(\d+) H264\/90000/i.exec(l);
    if (!r) continue;
    const pt = r[1]!;
    const fmtp = m.lines.find((x) => x.startsWith(`a=fmtp:${pt} `))?.slice(`a=fmtp:${pt} `.length) ?? '';
    const p: Record<string, string> = {};
    for (const kv of fmtp.split(';')) {
      const i = kv.indexOf('=');
      if (i > 0) p[kv.slice(0, i).trim().toLowerCase()] = kv.slice(i + 1).trim();
    }
    out.push({ pt, profileLevelId: (p['profile-level-id'] ?? '42001f').toLowerCase(), packetizationMode: Number(p['packetization-mode'] ?? 0) });
  }
  return out;
}

/**
 * Validate a WHEP/WHIP offer: ICE credentials, a DTLS fingerprint, and the media we need.
 * Throws EdgeError (SDP_MALFORMED / SDP_NO_H264 / SDP_NO_MEDIA) for a clear 400/406.
 */
export function validateOffer(sdp: string, need: { video?: 'h264'; direction: 'recv' | 'send' }): ParsedSdp {
  const p = parseSdp(sdp);
  const video = p.media.find((m) => m.kind === 'video' && m.port !== 0);
  for (const m of p.media) {
    if (m.port === 0) continue;
    if (!attr(m, p.session, 'ice-ufrag') || !attr(m, p.session, 'ice-pwd')) throw new EdgeError('SDP_MALFORMED', 'offer lacks ICE credentials');
    if (!attr(m, p.session, 'fingerprint')) throw new EdgeError('SDP_MALFORMED', 'offer lacks a DTLS fingerprint');
  }
  if (need.video === 'h264') {
    if (!video) throw new EdgeError('SDP_NO_MEDIA', 'offer has no video section');
    const dir = video.lines.find((l) => /^a=(sendrecv|sendonly|recvonly|inactive)$/.test(l))?.slice(2) ?? 'sendrecv';
    const ok = need.direction === 'recv' ? dir === 'recvonly' || dir === 'sendrecv' : dir === 'sendonly' || dir === 'sendrecv';
    if (!ok) throw new EdgeError('SDP_MALFORMED', `video direction ${dir} cannot ${need.direction === 'recv' ? 'receive' : 'send'}`);
    if (h264Formats(video).length === 0) throw new EdgeError('SDP_NO_H264', 'offer has no H.264 payload');
  }
  return p;
}

/**
 * Rank the video section's H.264 payloads so the answerer's first choice is one the stream fits:
 * packetization-mode=1 first (we send FU-A), then the track's own profile, then constrained
 * baseline 42e01f (Chromium decodes a higher profile under that line too, field notes).
 */
export function preferH264(sdp: string, profileLevelId: string | undefined): string {
  const eol = sdp.includes('\r\n') ? '\r\n' : '\n';
  const lines = sdp.split(/\r?\n/);
  let inVideo = false;
  let mIndex = -1;
  const videoLines: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (l.startsWith('m=')) {
      inVideo = l.startsWith('m=video');
      if (inVideo) mIndex = i;
    }
    if (inVideo) videoLines.push(l);
  }
  if (mIndex < 0) return sdp;
  const fmts = h264Formats({ kind: 'video', port: 9, formats: [], lines: videoLines });
  if (fmts.length === 0) return sdp;
  const want = profileLevelId?.toLowerCase();
  const score = (f: H264Format): number =>
    (f.packetizationMode === 1 ? 100 : 0) + (want && f.profileLevelId === want ? 20 : 0) + (f.profileLevelId === '42e01f' ? 10 : 0) + (f.profileLevelId.startsWith('42') ? 5 : 0);
  const ranked = [...fmts].sort((a, b) => score(b) - score(a)).map((f) => f.pt);
  const m = lines[mIndex]!.split(' ');
  const rest = m.slice(3).filter((pt) => !ranked.includes(pt));
  lines[mIndex] = [...m.slice(0, 3), ...ranked, ...rest].join(' ');
  return lines.join(eol);
}

/** True when the answer rejected (port 0) or lacks the video section we offered. */
export function answerRejectsVideo(answer: string): boolean {
  const p = parseSdp(answer);
  const v = p.media.find((m) => m.kind === 'video');
  return !v || v.port === 0;
}

/** The H.264 profile-level-id the answer chose (its first H.264 payload), if any. */
export function answerH264Profile(answer: string): string | undefined {
  const p = parseSdp(answer);
  const v = p.media.find((m) => m.kind === 'video');
  if (!v) return undefined;
  const fmts = h264Formats(v);
  const first = v.formats.find((pt) => fmts.some((f) => f.pt === pt));
  return fmts.find((f) => f.pt === first)?.profileLevelId;
}

/**
 * An RFC 8840 application/trickle-ice-sdpfrag body in the form of RFC 9725 §4.3.1: the BUNDLE
 * group at session level, then the first bundled media section (its m= line and mid) with the ICE
 * credentials of the session being trickled, the new candidates and, when gathering is over,
 * a=end-of-candidates. `mLine` defaults to a dummy section (RFC 8840 allows any m= line).
 */
export function trickleFragment(ufrag: string, pwd: string, mid: string, candidates: readonly string[], end: boolean, opts: { mLine?: string; bundle?: readonly string[] } = {}): string {
  const lines: string[] = [];
  if (opts.bundle && opts.bundle.length > 0) lines.push(`a=group:BUNDLE ${opts.bundle.join(' ')}`);
  lines.push(opts.mLine ?? 'm=audio 9 RTP/AVP 0', `a=mid:${mid}`, `a=ice-ufrag:${ufrag}`, `a=ice-pwd:${pwd}`);
  for (const c of candidates) lines.push(c.startsWith('a=') ? c : `a=${c}`);
  if (end) lines.push('a=end-of-candidates');
  return lines.join('\r\n') + '\r\n';
}

/** What a trickle PATCH needs from a local description: credentials, first mid and m= line, BUNDLE group. */
export function trickleContext(sdp: string): { ufrag: string; pwd: string; mid: string; mLine: string; bundle: string[] } {
  const p = parseSdp(sdp);
  const m = p.media[0]!;
  const group = p.session.find((l) => l.startsWith('a=group:BUNDLE '));
  return {
    ufrag: attr(m, p.session, 'ice-ufrag') ?? '',
    pwd: attr(m, p.session, 'ice-pwd') ?? '',
    mid: attr(m, [], 'mid') ?? '0',
    mLine: m.lines[0]!,
    bundle: group ? group.slice('a=group:BUNDLE '.length).split(' ').filter(Boolean) : [],
  };
}

/** An SDP without its candidate lines (a trickling offer carries none; candidates follow by PATCH). */
export function withoutCandidates(sdp: string): string {
  const eol = sdp.includes('\r\n') ? '\r\n' : '\n';
  return sdp
    .split(/\r?\n/)
    .filter((l) => !l.startsWith('a=candidate:') && l !== 'a=end-of-candidates')
    .join(eol);
}

/** Candidates (without the `a=`) from a trickle fragment; bounded count. */
export function parseTrickleFragment(frag: string): { candidates: string[]; end: boolean; ufrag?: string; mid?: string } {
  if (frag.length > 16 * 1024) throw new EdgeError('SDP_TOO_LARGE', 'trickle fragment over 16 KB');
  const candidates: string[] = [];
  let end = false;
  let ufrag: string | undefined;
  let mid: string | undefined;
  for (const l of frag.split(/\r?\n/)) {
    if (l.startsWith('a=candidate:')) {
      if (candidates.length >= 64) throw new EdgeError('SDP_MALFORMED', 'too many candidates in one fragment');
      candidates.push(l.slice(2));
    } else if (l === 'a=end-of-candidates') end = true;
    else if (l.startsWith('a=ice-ufrag:')) ufrag = l.slice(12);
    else if (l.startsWith('a=mid:') && mid === undefined) mid = l.slice(6);
  }
  return { candidates, end, ...(ufrag !== undefined ? { ufrag } : {}), ...(mid !== undefined ? { mid } : {}) };
}
