// Record files for data tracks (sensor JSON, NMEA, text, JPEG): append-only, length-prefixed.
//   file   = MAGIC(8) u32le headerLen  header(JSON, SegmentMeta)  record*
//   record = u32le payloadLen  u32le crc32(ts‖wallclock‖payload)  f64le ts(µs)  f64le wallclock(ms)  payload
// A torn tail (kill -9, power cut) fails the length or CRC check; recovery truncates to the last
// good record. Pure encode/decode here; the writer owns the file.
import { crc32 } from 'node:zlib';

export const RECORD_MAGIC = Buffer.from('MOTHREC1', 'latin1');
export const RECORD_HEADER_BYTES = 24;
/** A record larger than this is refused (a JPEG is < 2 MB; hostile lengths must not allocate). */
export const MAX_RECORD_BYTES = 16 * 1024 * 1024;
const MAX_META_BYTES = 64 * 1024;

/** What a segment says about itself, in the record header or the MP4 comment tag. */
export interface SegmentMeta {
  v: 1;
  channel: string;
  source: string;
  track: string;
  mime: string;
  /** Capture clock (µs) of the first frame. */
  startUs: number;
  /** Wallclock (ms) of the first frame. */
  wallMs: number;
  /** wallclock µs − capture µs, fixed for one run of the recorder: one clock for all tracks. */
  offsetUs: number;
  run: string;
}

export function isSegmentMeta(x: unknown): x is SegmentMeta {
  if (typeof x !== 'object' || x === null) return false;
  const o = x as Record<string, unknown>;
  return (
    o.v === 1 &&
    typeof o.channel === 'string' &&
    typeof o.source === 'string' &&
    typeof o.track === 'string' &&
    typeof o.mime === 'string' &&
    typeof o.startUs === 'number' &&
    typeof o.wallMs === 'number' &&
    typeof o.offsetUs === 'number' &&
    typeof o.run === 'string'
  );
}

export function encodeFileHeader(meta: SegmentMeta): Buffer {
  const json = Buffer.from(JSON.stringify(meta), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length);
  return Buffer.concat([RECORD_MAGIC, len, json]);
}

export function encodeRecord(ts: number, wallclock: number, payload: Uint8Array): Buffer {
  if (payload.length > MAX_RECORD_BYTES) throw new RangeError(`record of ${payload.length} bytes exceeds ${MAX_RECORD_BYTES}`);
  const out = Buffer.allocUnsafe(RECORD_HEADER_BYTES + payload.length);
  out.writeUInt32LE(payload.length, 0);
  out.writeDoubleLE(ts, 8);
  out.writeDoubleLE(wallclock, 16);
  out.set(payload, RECORD_HEADER_BYTES);
  out.writeUInt32LE(crc32(out.subarray(8)), 4);
  return out;
}

export class RecordFormatError extends Error {
  readonly code = 'REC_FORMAT';
}

export interface DecodedHeader {
  meta: SegmentMeta;
  /** Offset of the first record. */
  bodyStart: number;
}

/** Parse the file header; throws RecordFormatError on anything else. */
export function decodeFileHeader(buf: Uint8Array): DecodedHeader {
  if (buf.length < 12 || !RECORD_MAGIC.equals(buf.subarray(0, 8))) throw new RecordFormatError('not a record file');
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const len = b.readUInt32LE(8);
  if (len > MAX_META_BYTES || 12 + len > buf.length) throw new RecordFormatError('truncated or oversized header');
  let meta: unknown;
  try {
    meta = JSON.parse(b.subarray(12, 12 + len).toString('utf8'));
  } catch {
    throw new RecordFormatError('header is not JSON');
  }
  if (!isSegmentMeta(meta)) throw new RecordFormatError('header lacks segment fields');
  return { meta, bodyStart: 12 + len };
}

export interface DecodedRecord {
  ts: number;
  wallclock: number;
  payload: Buffer;
  /** Offset just past this record. */
  end: number;
}

/**
 * Walk complete, CRC-valid records from `start`. Stops at the first torn/corrupt one; `validEnd`
 * is where a recovery truncates to. Never throws, never allocates more than the input.
 */
export function* scanRecords(buf: Uint8Array, start: number): Generator<DecodedRecord, void, undefined> {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = start;
  while (off + RECORD_HEADER_BYTES <= b.length) {
    const len = b.readUInt32LE(off);
    if (len > MAX_RECORD_BYTES || off + RECORD_HEADER_BYTES + len > b.length) return;
    const crc = b.readUInt32LE(off + 4);
    const body = b.subarray(off + 8, off + RECORD_HEADER_BYTES + len);
    if (crc32(body) !== crc) return;
    const ts = b.readDoubleLE(off + 8);
    const wallclock = b.readDoubleLE(off + 16);
    if (!Number.isFinite(ts) || !Number.isFinite(wallclock)) return;
    off += RECORD_HEADER_BYTES + len;
    yield { ts, wallclock, payload: b.subarray(off - len, off), end: off };
  }
}
