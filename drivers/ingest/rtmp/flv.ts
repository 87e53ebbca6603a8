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
  /**
   * @param inBandLengthSize NAL length size to assume before any sequence header, so a stream
   * whose SPS/PPS come only in-band (ffmpeg's FLV muxer without extradata writes 4) still starts.
   * Undefined: units before the first sequence header are dropped (RTMP publishers send one).
   */
  constructor(private readonly inBandLengthSize?: 1 | 2 | 4) {}
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
    if (!this.config && this.inBandLengthSize === undefined) {
      this.counters.droppedNoConfig++;
      return null;
    }
    let nals: Buffer[];
    try {
      nals = splitAvcc(tag.body, this.config?.lengthSize ?? this.inBandLengthSize!);
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
    if (!this.config) {
      if (!(hasSps && hasPps)) {
        this.counters.droppedNoConfig++; // nothing decodes before the first parameter sets
        return null;
      }
      const sps = nals.filter((n) => (n[0]! & 0x1f) === 7).map((n) => Buffer.from(n));
      const pps = nals.filter((n) => (n[0]! & 0x1f) === 8).map((n) => Buffer.from(n));
      const s0 = sps[0]!;
      this.config = { profile: s0[1] ?? 0, compatibility: s0[2] ?? 0, level: s0[3] ?? 0, lengthSize: this.inBandLengthSize!, sps, pps };
      this.counters.configs++;
    }
    const config = this.config;
    const parts: Buffer[] = [];
    let nalStart = 0;
    // An access unit delimiter, when present, must stay first.
    if (nals[0]![0]! % 32 === 9) {
      parts.push(START, nals[0]!);
      nalStart = 1;
    }
    if (key && !(hasSps && hasPps)) {
      for (const s of config.sps) parts.push(START, s);
      for (const s of config.pps) parts.push(START, s);
    }
    for (let i = nalStart; i < nals.length; i++) parts.push(START, nals[i]!);
    this.counters.units++;
    if (key) this.counters.keyframes++;
    return { data: Buffer.concat(parts), key, cts: tag.cts };
  }
}

// ---------------------------------------------------------------------------------------------
// FLV byte streams (a process writing `-f flv` to a pipe)

export interface FlvTag {
  /** 8 audio, 9 video, 18 script data. */
  type: number;
  /** Decode timestamp in ms (24 bits + 8-bit extension). */
  timestamp: number;
  body: Buffer;
}

/**
 * Streaming FLV reader: header, then tags with explicit sizes — so a frame is complete the moment
 * its last byte arrives (an Annex-B splitter has to wait for the next frame's start). Bounded: a
 * tag larger than `maxTagBytes` is an error, not an allocation.
 */
export class FlvStreamReader {
  private buf: Buffer = Buffer.alloc(0);
  private headerLeft = -1; // -1: header not read yet
  tags = 0;

  constructor(private readonly maxTagBytes = 8 * 1024 * 1024) {}

  push(chunk: Buffer): FlvTag[] {
    const out: FlvTag[] = [];
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    let p = 0;
    if (this.headerLeft < 0) {
      if (this.buf.length < 9) return out;
      if (this.buf.toString('latin1', 0, 3) !== 'FLV') throw new FlvError('FLV_INVALID', 'stream does not start with an FLV header');
      const dataOffset = this.buf.readUInt32BE(5);
      if (dataOffset < 9 || dataOffset > 1024) throw new FlvError('FLV_INVALID', `header size ${dataOffset}`);
      this.headerLeft = dataOffset + 4; // header + PreviousTagSize0
    }
    if (this.headerLeft > 0) {
      const skip = Math.min(this.headerLeft, this.buf.length);
      this.headerLeft -= skip;
      p = skip;
    }
    while (this.headerLeft === 0 && this.buf.length - p >= 11) {
      const type = this.buf[p]! & 0x1f;
      const size = this.buf.readUIntBE(p + 1, 3);
      if (size > this.maxTagBytes) throw new FlvError('FLV_TAG_TOO_LARGE', `tag of ${size} bytes exceeds ${this.maxTagBytes}`);
      if (this.buf.length - p < 11 + size + 4) break;
      const timestamp = (this.buf.readUIntBE(p + 4, 3) | (this.buf[p + 7]! << 24)) >>> 0;
      // a view, valid until the next push(): callers convert it (AvcDepacketizer copies into the AU)
      out.push({ type, timestamp, body: this.buf.subarray(p + 11, p + 11 + size) });
      this.tags++;
      p += 11 + size + 4;
    }
    this.buf = p >= this.buf.length ? Buffer.alloc(0) : Buffer.from(this.buf.subarray(p));
    return out;
  }
}
