// Read the access units of one recorded video segment (fMP4 written by the recorder) back as
// Annex-B H.264 with SPS/PPS in front of every keyframe — the form pang publishes — each with its
// capture wallclock, for the uplink backfill of a requested range. The MP4 side is mediabunny's
// (recordings/playback.ts segmentPackets); the avcC record and the length-prefixed NAL framing are
// parsed here (container framing only; the H.264 bitstream itself is never parsed). Bounded: at
// most `maxUnits` access units and `maxBytes` per call; hostile lengths are a typed error.
import path from 'node:path';
import { EdgeError } from '../runtime/engine/api.js';
import { segmentPackets, toBytes } from './playback.js';
import { segmentFile } from './record-reader.js';

export class AvcFramingError extends EdgeError {
  constructor(message: string) {
    super('AVC_FRAMING', message);
  }
}

export interface AvcC {
  /** Bytes of each NAL length prefix in a sample (1, 2 or 4). */
  lengthSize: number;
  sps: Buffer[];
  pps: Buffer[];
}

/** Parse an AVCDecoderConfigurationRecord (ISO 14496-15). Throws AvcFramingError. */
export function parseAvcC(d: Uint8Array): AvcC {
  const b = Buffer.from(d.buffer, d.byteOffset, d.byteLength);
  if (b.length < 7 || b[0] !== 1) throw new AvcFramingError('avcC: not a version 1 record');
  const lengthSize = (b[4]! & 3) + 1;
  if (lengthSize === 3) throw new AvcFramingError('avcC: 3-byte NAL lengths are not allowed');
  let off = 6; // version, profile, compatibility, level, length size, SPS count
  const read = (count: number): Buffer[] => {
    const out: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      if (off + 2 > b.length) throw new AvcFramingError('avcC: truncated parameter set length');
      const n = b.readUInt16BE(off);
      off += 2;
      if (n === 0 || off + n > b.length) throw new AvcFramingError('avcC: parameter set overruns the record');
      out.push(Buffer.from(b.subarray(off, off + n)));
      off += n;
    }
    return out;
  };
  const sps = read(b[5]! & 0x1f);
  if (off >= b.length) throw new AvcFramingError('avcC: no PPS count');
  const pps = read(b[off++]!);
  return { lengthSize, sps, pps };
}

const START = Buffer.from([0, 0, 0, 1]);

/** Length-prefixed NAL units of one sample → Annex B. Throws AvcFramingError on a bad length. */
export function lengthPrefixedToAnnexB(sample: Uint8Array, lengthSize: number): Buffer[] {
  const b = Buffer.from(sample.buffer, sample.byteOffset, sample.byteLength);
  const out: Buffer[] = [];
  let off = 0;
  while (off < b.length) {
    if (off + lengthSize > b.length) throw new AvcFramingError('sample: truncated NAL length');
    const n = lengthSize === 4 ? b.readUInt32BE(off) : lengthSize === 2 ? b.readUInt16BE(off) : b[off]!;
    off += lengthSize;
    if (n === 0 || off + n > b.length) throw new AvcFramingError('sample: NAL overruns the sample');
    out.push(START, b.subarray(off, off + n));
    off += n;
  }
  return out;
}

export interface VideoUnit {
  wallclock: number;
  key: boolean;
  /** Annex B, SPS/PPS in front of keyframes. */
  payload: Buffer;
}

export interface VideoSegmentRef {
  path: string;
  start_us: number;
  offset_us: number;
}

/**
 * Access units of a video segment with capture wallclock in (afterMs, toMs] — or, when
 * `fromKeyMs` is given, from the keyframe at or before it. Wallclock = (segment start on the
 * capture clock + sample time + the run's wallclock offset): the capture timestamps the recorder
 * kept. Throws EdgeError REC_READ / AVC_FRAMING.
 */
export async function readVideoUnits(
  root: string,
  seg: VideoSegmentRef,
  range: { fromKeyMs?: number; afterMs?: number; toMs: number },
  limits: { maxUnits: number; maxBytes: number },
): Promise<VideoUnit[]> {
  const file = segmentFile(root, seg.path);
  if (!file) throw new EdgeError('REC_READ', 'segment file missing', { path: seg.path });
  const wallOf = (tSec: number): number => (seg.start_us + tSec * 1e6 + seg.offset_us) / 1000;
  const relOf = (wallMs: number): number => Math.max(0, (wallMs * 1000 - seg.offset_us - seg.start_us) / 1e6);
  const from = range.fromKeyMs ?? range.afterMs ?? -Infinity;
  const out: VideoUnit[] = [];
  let bytes = 0;
  let cfg: AvcC | null = null;
  try {
    for await (const { packet, config } of segmentPackets(file, Number.isFinite(from) ? relOf(from) : 0, relOf(range.toMs))) {
      if (!cfg) {
        if (!config.description) throw new AvcFramingError('segment has no avcC');
        cfg = parseAvcC(toBytes(config.description));
      }
      const wall = wallOf(packet.timestamp);
      if (range.afterMs !== undefined && wall <= range.afterMs) continue;
      if (wall > range.toMs) break;
      const key = packet.type === 'key';
      const nals = lengthPrefixedToAnnexB(packet.data, cfg.lengthSize);
      const parts = key ? [...cfg.sps.flatMap((s) => [START, s]), ...cfg.pps.flatMap((p) => [START, p]), ...nals] : nals;
      const payload = Buffer.concat(parts);
      out.push({ wallclock: wall, key, payload });
      bytes += payload.length;
      if (out.length >= limits.maxUnits || bytes >= limits.maxBytes) break;
    }
  } catch (err) {
    if (err instanceof EdgeError) throw err;
    throw new EdgeError('REC_READ', `cannot read video segment: ${(err as Error).message}`, { path: path.basename(seg.path) }, { cause: err });
  }
  return out;
}
