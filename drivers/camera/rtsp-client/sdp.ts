// The part of a DESCRIBE's SDP (RFC 4566, RFC 6184 for H.264) an RTSP client needs, pure:
// the first H.264 video media, its payload type and clock rate, its control URL resolved against
// Content-Base, and its fmtp (sprop-parameter-sets, packetization-mode, profile-level-id).
// The body is bounded by the RTSP reader (64 KiB); lines and parameter sets are bounded here.

import { RtspError } from './message.js';

export interface H264SdpTrack {
  /** The absolute URL to SETUP. */
  control: string;
  payloadType: number;
  clockRate: number;
  /** 0 single NAL, 1 non-interleaved (STAP-A/FU-A); 2 (interleaved) is not supported. */
  packetizationMode: number;
  profileLevelId?: string;
  /** From sprop-parameter-sets: NAL units without start codes. */
  sps: Buffer[];
  pps: Buffer[];
}

export interface SdpInfo {
  /** Session-level control (for aggregate PLAY): the base URL or `*` resolved to it. */
  sessionControl: string;
  h264: H264SdpTrack | undefined;
  /** Media kinds seen (for the error when there is no H.264). */
  media: string[];
}

const MAX_LINES = 1024;
/** Parameter sets: an SPS/PPS is tens of bytes; 4 KiB each, 4 of each, is generous. */
const MAX_PARAM_SET_BYTES = 4096;
const MAX_PARAM_SETS = 4;

/**
 * Resolve an SDP control attribute the way cameras mean it (and ffmpeg/go2rtc read it): an
 * absolute rtsp URL as is, `*` or empty = the base, anything else appended to the base with one `/`.
 */
export function resolveControl(base: string, control: string | undefined): string {
  const c = (control ?? '').trim();
  if (c === '' || c === '*') return base;
  if (/^rtsps?:\/\//i.test(c)) return c;
  if (base.endsWith('/')) return base + c.replace(/^\/+/, '');
  return `${base}/${c.replace(/^\/+/, '')}`;
}

function decodeParamSets(v: string): Buffer[] {
  const out: Buffer[] = [];
  for (const part of v.split(',').slice(0, MAX_PARAM_SETS * 2)) {
    const s = part.trim();
    if (!s || s.length > (MAX_PARAM_SET_BYTES * 4) / 3 + 4 || !/^[A-Za-z0-9+/=_-]+$/.test(s)) continue;
    const b = Buffer.from(s, 'base64');
    if (b.length > 0 && b.length <= MAX_PARAM_SET_BYTES) out.push(b);
  }
  return out;
}

/** `base` is Content-Base (or Content-Location, or the DESCRIBE URL) of the response. */
export function parseSdp(text: string, base: string): SdpInfo {
  const lines = text.split(/\r?\n/);
  if (lines.length > MAX_LINES) throw new RtspError('RTSP_BAD_SDP', `SDP with more than ${MAX_LINES} lines`);
  if (!lines.some((l) => l.startsWith('v='))) throw new RtspError('RTSP_BAD_SDP', 'not an SDP (no v= line)');
  let sessionControl: string | undefined;
  const media: Array<{ kind: string; fmts: string[]; attrs: Array<[string, string]> }> = [];
  for (const raw of lines) {
    const line = raw.trim();
    if (line.length < 2 || line[1] !== '=') continue;
    const t = line[0]!;
    const v = line.slice(2);
    if (t === 'm') {
      const f = v.split(/\s+/);
      media.push({ kind: (f[0] ?? '').slice(0, 16), fmts: f.slice(3, 35), attrs: [] });
    } else if (t === 'a') {
      const i = v.indexOf(':');
      const k = i < 0 ? v : v.slice(0, i);
      const val = i < 0 ? '' : v.slice(i + 1);
      const cur = media.at(-1);
      if (cur) {
        if (cur.attrs.length < 256) cur.attrs.push([k.toLowerCase(), val]);
      } else if (k.toLowerCase() === 'control') sessionControl = val;
    }
  }
  const out: SdpInfo = { sessionControl: resolveControl(base, sessionControl), h264: undefined, media: media.map((m) => m.kind) };
  for (const m of media) {
    if (m.kind !== 'video') continue;
    let pt: number | undefined;
    let clockRate = 90000;
    for (const [k, val] of m.attrs) {
      if (k !== 'rtpmap') continue;
      const r = /^(\d{1,3})\s+H264\/(\d{1,6})/i.exec(val);
      if (r && m.fmts.includes(r[1]!)) {
        pt = Number(r[1]);
        clockRate = Number(r[2]) || 90000;
        break;
      }
    }
    if (pt === undefined || pt > 127) continue;
    const track: H264SdpTrack = { control: base, payloadType: pt, clockRate, packetizationMode: 0, sps: [], pps: [] };
    let control: string | undefined;
    for (const [k, val] of m.attrs) {
      if (k === 'control') control = val;
      if (k !== 'fmtp') continue;
      const f = /^(\d{1,3})\s+(.*)$/.exec(val);
      if (!f || Number(f[1]) !== pt) continue;
      for (const kv of f[2]!.split(';').slice(0, 64)) {
        const j = kv.indexOf('=');
        if (j < 0) continue;
        const key = kv.slice(0, j).trim().toLowerCase();
        const value = kv.slice(j + 1).trim();
        if (key === 'packetization-mode' && /^\d$/.test(value)) track.packetizationMode = Number(value);
        else if (key === 'profile-level-id' && /^[0-9a-f]{6}$/i.test(value)) track.profileLevelId = value.toLowerCase();
        else if (key === 'sprop-parameter-sets') {
          for (const ps of decodeParamSets(value)) {
            const type = ps[0]! & 0x1f;
            if (type === 7 && track.sps.length < MAX_PARAM_SETS) track.sps.push(ps);
            else if (type === 8 && track.pps.length < MAX_PARAM_SETS) track.pps.push(ps);
          }
        }
      }
    }
    track.control = resolveControl(base, control);
    if (track.packetizationMode > 1) {
      throw new RtspError('RTSP_UNSUPPORTED', `H.264 packetization-mode ${track.packetizationMode} (interleaved) is not supported; use client: ffmpeg`);
    }
    out.h264 = track;
    break;
  }
  return out;
}
