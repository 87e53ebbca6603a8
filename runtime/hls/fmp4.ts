// fMP4 pieces for HLS. The init section (ftyp+moov, avcC from the SPS/PPS) comes from mediabunny,
// the muxer the recordings use; the fragments (moof+mdat) are written here because mediabunny cuts
// fragments only at keyframes and LL-HLS needs ~200 ms parts inside a GOP. The fragment layout is
// the one mediabunny writes (tfhd default-base-is-moof, tfdt v1, trun with a data offset), samples
// are 4-byte length-prefixed NAL units with SPS/PPS left in-band, as mediabunny does. Pure.
import { EncodedPacket, EncodedVideoPacketSource, Mp4OutputFormat, Output, StreamTarget } from 'mediabunny';
import { EdgeError } from '../engine/api.js';
import { NAL, nalUnits, parseSps } from '../engine/h264.js';

/** One sample of a fragment: its bytes (already in the track's sample format), duration in ticks, sync or not. */
export interface FragmentSample {
  data: Buffer;
  /** Duration in the track's timescale ticks (> 0). */
  duration: number;
  key: boolean;
}

/** One track's run in a fragment (several trafs for muxed audio + video). */
export interface TrackRun {
  trackId: number;
  /** Decode time of the first sample in the track's timescale (tfdt, 64-bit). */
  baseTime: number;
  samples: FragmentSample[];
}

// Sample flags as ISO/IEC 14496-12 §8.8.3.1 (and mediabunny): a sync sample depends on nothing
// (sample_depends_on = 2); a difference sample depends on others and is non-sync.
const SYNC_FLAGS = 0x02000000;
const DELTA_FLAGS = 0x01010000;

function box(type: string, ...parts: Buffer[]): Buffer {
  const size = 8 + parts.reduce((a, p) => a + p.length, 0);
  const head = Buffer.alloc(8);
  head.writeUInt32BE(size, 0);
  head.write(type, 4, 'latin1');
  return Buffer.concat([head, ...parts], size);
}

function fullBox(type: string, version: number, flags: number, body: Buffer): Buffer {
  const vf = Buffer.alloc(4);
  vf.writeUInt32BE(((version & 0xff) << 24) | (flags & 0xffffff), 0);
  return box(type, vf, body);
}

function u32s(...values: number[]): Buffer {
  const b = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => b.writeUInt32BE(v >>> 0, i * 4));
  return b;
}

const TRUN_FLAGS = 0x000001 | 0x000100 | 0x000200 | 0x000400; // data offset, per-sample duration, size, flags

function trafBox(run: TrackRun, dataOffset: number): Buffer {
  const tfhd = fullBox('tfhd', 0, 0x020000, u32s(run.trackId)); // default-base-is-moof
  const t = Buffer.alloc(8);
  t.writeBigUInt64BE(BigInt(run.baseTime), 0);
  const tfdt = fullBox('tfdt', 1, 0, t);
  const body = Buffer.alloc(8 + run.samples.length * 12);
  body.writeUInt32BE(run.samples.length, 0);
  body.writeInt32BE(dataOffset, 4);
  run.samples.forEach((s, i) => {
    const at = 8 + i * 12;
    body.writeUInt32BE(s.duration >>> 0, at);
    body.writeUInt32BE(s.data.length, at + 4);
    body.writeUInt32BE(s.key ? SYNC_FLAGS : DELTA_FLAGS, at + 8);
  });
  return box('traf', tfhd, tfdt, fullBox('trun', 0, TRUN_FLAGS, body));
}

/**
 * One fragment (moof + mdat) for one or more tracks. Each trun's data offset points at its
 * samples in the mdat (relative to the moof start: default-base-is-moof).
 */
export function writeFragment(sequence: number, runs: TrackRun[]): Buffer {
  if (runs.length === 0 || runs.some((r) => r.samples.length === 0)) throw new EdgeError('HLS_EMPTY_FRAGMENT', 'a fragment needs samples in every run');
  for (const r of runs) {
    if (!Number.isSafeInteger(r.baseTime) || r.baseTime < 0) throw new EdgeError('HLS_BAD_TIME', `base time ${r.baseTime} is not a non-negative integer`);
    for (const s of r.samples) if (!Number.isInteger(s.duration) || s.duration <= 0 || s.duration > 0xffffffff) throw new EdgeError('HLS_BAD_TIME', `sample duration ${s.duration}`);
  }
  // The moof size does not depend on the offsets: measure with zeros, then write for real.
  const mfhd = fullBox('mfhd', 0, 0, u32s(sequence));
  const moofSize = 8 + mfhd.length + runs.reduce((a, r) => a + trafBox(r, 0).length, 0);
  let offset = moofSize + 8; // past the mdat header
  const trafs: Buffer[] = [];
  for (const r of runs) {
    trafs.push(trafBox(r, offset));
    offset += r.samples.reduce((a, s) => a + s.data.length, 0);
  }
  const moof = box('moof', mfhd, ...trafs);
  return Buffer.concat([moof, box('mdat', ...runs.flatMap((r) => r.samples.map((s) => s.data)))]);
}

/** Annex-B access unit → 4-byte length-prefixed NAL units (AUDs dropped; SPS/PPS kept in-band). */
export function annexBToAvcc(au: Buffer): Buffer {
  const nals = nalUnits(au).filter((n) => n.length > 0 && (n[0]! & 0x1f) !== NAL.AUD);
  const size = nals.reduce((a, n) => a + 4 + n.length, 0);
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const n of nals) {
    out.writeUInt32BE(n.length, at);
    n.copy(out, at + 4);
    at += 4 + n.length;
  }
  return out;
}

/** The decoder configuration of an H.264 keyframe: SPS/PPS bytes (the init's identity) and picture facts. */
export interface AvcConfig {
  codec: string;
  width: number;
  height: number;
  /** SPS and PPS NAL units, concatenated with their lengths: equal keys → equal init sections. */
  key: string;
}

/** The configuration carried by a keyframe, or null when it has no SPS/PPS (or a broken SPS). */
export function avcConfigOf(au: Buffer): AvcConfig | null {
  const nals = nalUnits(au);
  const sps = nals.filter((n) => (n[0]! & 0x1f) === NAL.SPS);
  const pps = nals.filter((n) => (n[0]! & 0x1f) === NAL.PPS);
  if (sps.length === 0 || pps.length === 0) return null;
  try {
    const info = parseSps(sps[0]!);
    const key = [...sps, ...pps].map((n) => `${n.length}:${n.toString('hex')}`).join(',');
    return { codec: `avc1.${info.profileLevelId}`, width: info.width, height: info.height, key };
  } catch {
    return null;
  }
}

/**
 * The media timescale of our video tracks: the one mediabunny gives a video track without a frame
 * rate (57600, a multiple of 24, 25, 30, 50, 60 fps frame durations), so parts written here and
 * the init mediabunny writes agree. h264InitSection checks it.
 */
export const MEDIA_TIMESCALE = 57_600;

export interface InitSection {
  bytes: Buffer;
  /** The video track's media timescale (ticks per second), read back from the moov's mdhd. */
  timescale: number;
  trackId: number;
}

/**
 * The init section (ftyp + moov) for an H.264 track, built by mediabunny from a keyframe carrying
 * SPS/PPS (mediabunny derives the avcC). The keyframe is muxed at time 0 only to make mediabunny
 * write the moov; its fragment is discarded.
 */
export async function h264InitSection(keyframe: Buffer, cfg: AvcConfig): Promise<InitSection> {
  const parts: Buffer[] = [];
  const output = new Output({
    format: new Mp4OutputFormat({
      fastStart: 'fragmented',
      onFtyp: (data) => void parts.push(Buffer.from(data)),
      onMoov: (data) => void parts.push(Buffer.from(data)),
    }),
    target: new StreamTarget(new WritableStream({ write: () => undefined })),
  });
  const src = new EncodedVideoPacketSource('avc');
  output.addVideoTrack(src);
  await output.start();
  await src.add(new EncodedPacket(keyframe, 'key', 0, 1 / 30), { decoderConfig: { codec: cfg.codec, codedWidth: cfg.width, codedHeight: cfg.height } });
  await output.finalize();
  if (parts.length !== 2) throw new EdgeError('HLS_INIT_FAILED', `mediabunny wrote ${parts.length} of ftyp+moov`);
  const bytes = Buffer.concat(parts);
  const { timescale, trackId } = readInitFacts(bytes);
  if (timescale !== MEDIA_TIMESCALE) throw new EdgeError('HLS_INIT_FAILED', `init section timescale ${timescale}, expected ${MEDIA_TIMESCALE}`);
  return { bytes, timescale, trackId };
}

export interface Mp4Box {
  type: string;
  start: number;
  /** Offset of the payload (past the header). */
  body: number;
  end: number;
}

/** The boxes directly inside [from, to) of b; stops at the first malformed header. */
export function childBoxes(b: Buffer, from: number, to: number): Mp4Box[] {
  const out: Mp4Box[] = [];
  let off = from;
  while (off + 8 <= to && out.length < 10_000) {
    let size = b.readUInt32BE(off);
    let head = 8;
    if (size === 1) {
      if (off + 16 > to) break;
      size = Number(b.readBigUInt64BE(off + 8));
      head = 16;
    }
    if (size < head || off + size > to) break;
    out.push({ type: b.toString('latin1', off + 4, off + 8), start: off, body: off + head, end: off + size });
    off += size;
  }
  return out;
}

/** Find a box by path (`['moov','trak','mdia','mdhd']`) below [from, to). */
export function findBox(b: Buffer, path: string[], from = 0, to = b.length): Mp4Box | undefined {
  let range = { from, to };
  let found: Mp4Box | undefined;
  for (const type of path) {
    found = childBoxes(b, range.from, range.to).find((x) => x.type === type);
    if (!found) return undefined;
    range = { from: found.body, to: found.end };
  }
  return found;
}

/** Timescale (mdhd) and track id (tkhd) of the first track of an init section. */
export function readInitFacts(init: Buffer): { timescale: number; trackId: number } {
  const mdhd = findBox(init, ['moov', 'trak', 'mdia', 'mdhd']);
  const tkhd = findBox(init, ['moov', 'trak', 'tkhd']);
  let timescale = 0;
  if (mdhd && mdhd.body + 4 <= mdhd.end) {
    const v = init[mdhd.body]!;
    const at = mdhd.body + 4 + (v === 1 ? 16 : 8);
    if (at + 4 <= mdhd.end) timescale = init.readUInt32BE(at);
  }
  let trackId = 1;
  if (tkhd && tkhd.body + 4 <= tkhd.end) {
    const v = init[tkhd.body]!;
    const at = tkhd.body + 4 + (v === 1 ? 16 : 8);
    if (at + 4 <= tkhd.end) trackId = init.readUInt32BE(at);
  }
  return { timescale, trackId };
}

/**
 * Shift every tfdt of a run of whole fragments (moof+mdat…) by `delta` ticks, in place. The
 * recordings write tfdt version 1 (64-bit), so the shift never changes a box size. Returns the
 * number of tfdt boxes patched; throws on a fragment that is not what the recorder writes.
 */
export function shiftFragmentTimes(b: Buffer, delta: number): number {
  let patched = 0;
  for (const moof of childBoxes(b, 0, b.length)) {
    if (moof.type !== 'moof') continue;
    for (const traf of childBoxes(b, moof.body, moof.end)) {
      if (traf.type !== 'traf') continue;
      const tfdt = childBoxes(b, traf.body, traf.end).find((x) => x.type === 'tfdt');
      if (!tfdt || tfdt.end - tfdt.body < 12 || b[tfdt.body] !== 1) throw new EdgeError('HLS_FRAGMENT_UNSUPPORTED', 'fragment without a 64-bit tfdt');
      const t = Number(b.readBigUInt64BE(tfdt.body + 4)) + delta;
      if (!Number.isSafeInteger(t) || t < 0) throw new EdgeError('HLS_BAD_TIME', `shifted decode time ${t} out of range`);
      b.writeBigUInt64BE(BigInt(t), tfdt.body + 4);
      patched++;
    }
  }
  return patched;
}
