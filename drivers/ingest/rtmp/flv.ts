// FLV video tag bodies as RTMP carries them (type 9 messages) → H.264 Annex-B access units.
// Pure. Sources: Adobe FLV spec v10.1 §E.4.3 (VIDEODATA, AVCVIDEOPACKET), ISO/IEC 14496-15 §5.3.3
// (AVCDecoderConfigurationRecord).

export class FlvError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(`${code}: ${message}`);
    this.name = 'FlvError';
    this.code = code;
  }
}

export const FLV_CODEC_AVC = 7;
export const FLV_FRAME_KEY = 1;

export interface AvcConfig {
  profile: number;
  compatibility: number;
  level: number;
  /** NAL length field size: 1, 2 or 4 bytes. */
  lengthSize: number;
  sps: Buffer[];
  pps: Buffer[];
}

export function parseAvcDecoderConfig(b: Buffer): AvcConfig {
  if (b.length < 7) throw new FlvError('RTMP_AVC_CONFIG_INVALID', `AVCDecoderConfigurationRecord of ${b.length} bytes`);
  if (b[0] !== 1) throw new FlvError('RTMP_AVC_CONFIG_INVALID', `configurationVersion ${b[0]}`);
  const lengthSize = (b[4]! & 0x03) + 1;
  if (lengthSize === 3) throw new FlvError('RTMP_AVC_CONFIG_INVALID', 'NAL length size 3');
  let p = 6; // after numOfSequenceParameterSets
  const sps: Buffer[] = [];
  const pps: Buffer[] = [];
  const readSets = (count: number, into: Buffer[], what: string): void => {
    for (let i = 0; i < count; i++) {
      if (p + 2 > b.length) throw new FlvError('RTMP_AVC_CONFIG_INVALID', `truncated ${what} length`);
      const n = b.readUInt16BE(p);
      p += 2;
      if (n === 0 || p + n > b.length) throw new FlvError('RTMP_AVC_CONFIG_INVALID', `${what} of ${n} bytes with ${b.length - p} left`);
      into.push(Buffer.from(b.subarray(p, p + n)));
      p += n;
    }
  };
  readSets(b[5]! & 0x1f, sps, 'SPS');
  if (p >= b.length) throw new FlvError('RTMP_AVC_CONFIG_INVALID', 'no PPS count');
  const ppsCount = b[p]!;
  p += 1;
  readSets(ppsCount, pps, 'PPS');
  if (sps.length === 0 || pps.length === 0) throw new FlvError('RTMP_AVC_CONFIG_INVALID', 'no SPS or no PPS');
  return { profile: b[1]!, compatibility: b[2]!, level: b[3]!, lengthSize, sps, pps };
}

export type VideoTag =
  | { kind: 'avc-config'; frameType: number; config: AvcConfig }
  | { kind: 'avc-nalu'; frameType: number; cts: number; body: Buffer }
  | { kind: 'avc-eos' }
  | { kind: 'other'; frameType: number; codecId: number; enhanced: boolean };

/** Parse one video message body. Non-AVC codecs come back as 'other' (counted, not decoded). */
export function parseVideoTag(b: Buffer): VideoTag {
  if (b.length < 1) throw new FlvError('RTMP_VIDEO_TAG_INVALID', 'empty video message');
  const frameType = (b[0]! >> 4) & 0x07;
  const enhanced = (b[0]! & 0x80) !== 0; // Enhanced RTMP (HEVC/AV1 FourCC): not handled here
  const codecId = b[0]! & 0x0f;
  if (enhanced || codecId !== FLV_CODEC_AVC) return { kind: 'other', frameType, codecId, enhanced };
  if (frameType === 5) return { kind: 'other', frameType, codecId, enhanced }; // video info/command frame
  if (b.length < 5) throw new FlvError('RTMP_VIDEO_TAG_INVALID', `AVC packet of ${b.length} bytes`);
  const packetType = b[1]!;
  let cts = b.readUIntBE(2, 3);
  if (cts & 0x800000) cts -= 0x1000000; // SI24
  const body = b.subarray(5);
  if (packetType === 0) return { kind: 'avc-config', frameType, config: parseAvcDecoderConfig(body) };
  if (packetType === 1) return { kind: 'avc-nalu', frameType, cts, body };
  if (packetType === 2) return { kind: 'avc-eos' };
  throw new FlvError('RTMP_VIDEO_TAG_INVALID', `AVCPacketType ${packetType}`);
}

/** Split length-prefixed NAL units. A length running past the end is an error, not an allocation. */
export function splitAvcc(body: Buffer, lengthSize: number): Buffer[] {
  const out: Buffer[] = [];
  let p = 0;
  while (p < body.length) {
    if (p + lengthSize > body.length) throw new FlvError('RTMP_AVCC_INVALID', `truncated NAL length at ${p}`);
    const n = lengthSize === 4 ? body.readUInt32BE(p) : lengthSize === 2 ? body.readUInt16BE(p) : body[p]!;
    p += lengthSize;
    if (n > body.length - p) throw new FlvError('RTMP_AVCC_INVALID', `NAL of ${n} bytes with ${body.length - p} left`);
    if (n > 0) out.push(body.subarray(p, p + n));
    p += n;
  }
  return out;
}

const START = Buffer.from([0, 0, 0, 1]);

export interface AnnexBUnit {
  data: Buffer;
  /** Contains an IDR slice (nal_unit_type 5). */
  key: boolean;
  /** Presentation offset from the decode time in ms (FLV CompositionTime). */
  cts: number;
}

export interface AvcDepacketizerStats {
  configs: number;
  units: number;
  keyframes: number;
  droppedNoConfig: number;
  droppedInvalid: number;
  droppedOtherCodec: number;
}

/**
 * Keeps the last AVC sequence header and turns NALU packets into Annex-B access units with
 * SPS/PPS in front of every IDR (pang rule: a subscriber can start at any keyframe).
 * Units before the first sequence header are dropped: without SPS/PPS nothing can decode them.
 */
export class AvcDepacketizer {
  config: AvcConfig | null = null;
  readonly counters: AvcDepacketizerStats = { configs: 0, units: 0, keyframes: 0, droppedNoConfig: 0, droppedInvalid: 0, droppedOtherCodec: 0 };

  /** Returns the unit, 'config' when a new sequence header arrived, or null when dropped. */
  push(tagBody: Buffer): AnnexBUnit | 'config' | null {
    let tag: VideoTag;
    try {
      tag = parseVideoTag(tagBody);
    } catch (err) {
      if (err instanceof FlvError) {
        this.counters.droppedInvalid++;
        return null;
      }
      throw err;
    }
    if (tag.kind === 'other') {
      this.counters.droppedOtherCodec++;
      return null;
    }
    if (tag.kind === 'avc-eos') return null;
    if (tag.kind === 'avc-config') {
      this.config = tag.config;
      this.counters.configs++;
      return 'config';
    }
    if (!this.config) {
      this.counters.droppedNoConfig++;
      return null;
    }
    let nals: Buffer[];
    try {
      nals = splitAvcc(tag.body, this.config.lengthSize);
    } catch (err) {
      if (err instanceof FlvError) {
        this.counters.droppedInvalid++;
        return null;
      }
      throw err;
    }
    if (nals.length === 0) {
      this.counters.droppedInvalid++;
      return null;
    }
    let key = false;
    let hasSps = false;
    let hasPps = false;
    for (const n of nals) {
      const t = n[0]! & 0x1f;
      if (t === 5) key = true;
      else if (t === 7) hasSps = true;
      else if (t === 8) hasPps = true;
    }
    const parts: Buffer[] = [];
    let nalStart = 0;
    // An access unit delimiter, when present, must stay first.
    if (nals[0]![0]! % 32 === 9) {
      parts.push(START, nals[0]!);
      nalStart = 1;
    }
    if (key && !(hasSps && hasPps)) {
      for (const s of this.config.sps) parts.push(START, s);
      for (const s of this.config.pps) parts.push(START, s);
    }
    for (let i = nalStart; i < nals.length; i++) parts.push(START, nals[i]!);
    this.counters.units++;
    if (key) this.counters.keyframes++;
    return { data: Buffer.concat(parts), key, cts: tag.cts };
  }
}
