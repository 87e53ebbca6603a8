// Read the records of one data segment (a `.rec` file, closed or still being written as `.part`)
// for the uplink backfill. Read-only, bounded: a scan reads the file in windows up to a byte
// budget and resumes by byte offset; a torn tail simply ends the walk (scanRecords never throws).
import fs from 'node:fs';
import path from 'node:path';
import { EdgeError } from '../runtime/engine/api.js';
import { PART_SUFFIX } from './layout.js';
import { decodeFileHeader, MAX_RECORD_BYTES, RECORD_HEADER_BYTES, RecordFormatError, scanRecords, type SegmentMeta } from './record-file.js';

export interface ReadRecord {
  /** Capture clock µs. */
  ts: number;
  /** Capture wallclock ms. */
  wallclock: number;
  payload: Buffer;
}

/** The file of an index row: the final name, or its `.part` while the segment is open. */
export function segmentFile(root: string, rel: string): string | null {
  const abs = path.resolve(root, rel);
  if (!abs.startsWith(path.resolve(root) + path.sep)) return null; // a row must not point outside
  if (fs.existsSync(abs)) return abs;
  if (fs.existsSync(abs + PART_SUFFIX)) return abs + PART_SUFFIX;
  return null;
}

/** Why a windowed scan returned. */
export type ScanStop = 'records' | 'budget' | 'wall' | 'end';

export interface RecordScan {
  meta: SegmentMeta;
  /** Accepted records in file order (payloads copied: nothing pins the read window). */
  records: ReadRecord[];
  /** Byte offset of the first accepted record (nextOffset when none). */
  firstOffset: number;
  /** Byte offset just past the last record scanned: where a later scan resumes. */
  nextOffset: number;
  /** Wallclock of the last record scanned (-Infinity when none). */
  lastWall: number;
  /** Records scanned (accepted or not). */
  scanned: number;
  /** Bytes read from the file (the header included). */
  readBytes: number;
  /**
   * records: maxRecords accepted; budget: maxReadBytes read before the end; wall: the next record
   * is after stopAfterWall (not consumed); end: the end of what is on disk, or a torn tail (an
   * open segment's unflushed bytes, or a cut a recovery will truncate).
   */
  stop: ScanStop;
}

export interface ScanOptions {
  /** Resume at this byte offset (a previous scan's nextOffset / firstOffset); 0 = the first record. */
  offset?: number;
  accept?: (r: { ts: number; wallclock: number }) => boolean;
  maxRecords?: number;
  /** Read budget of this call; the record being read when it runs out is still completed. */
  maxReadBytes?: number;
  stopAfterWall?: number;
  /**
   * Never end a batch inside a millisecond: past maxRecords, records with the last accepted
   * wallclock are still taken (up to maxRecords more). A consumer that marks a delivered batch
   * by wallclock span then never covers records of that millisecond it did not send.
   */
  wholeMillis?: boolean;
}

/** Read window: a few records of a busy JPEG track or thousands of sensor records. */
const SCAN_WINDOW_BYTES = 256 * 1024;

/**
 * Walk a data segment from a byte offset in bounded windows (never the whole file): at most
 * maxReadBytes read per call (plus one record larger than a window, itself ≤ MAX_RECORD_BYTES),
 * at most maxRecords accepted. The offsets it returns identify records exactly, so a caller
 * resumes without the same-millisecond ambiguity of a wallclock cursor. Throws EdgeError
 * REC_READ (missing file, not a record file); a torn tail ends the walk (stop 'end').
 */
export function scanSegmentRecords(root: string, rel: string, o: ScanOptions = {}): RecordScan {
  const file = segmentFile(root, rel);
  if (!file) throw new EdgeError('REC_READ', 'segment file missing', { path: rel });
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    throw new EdgeError('REC_READ', `cannot open segment: ${(err as Error).message}`, { path: rel }, { cause: err });
  }
  try {
    const size = fs.fstatSync(fd).size;
    const headBuf = Buffer.allocUnsafe(Math.min(size, 12 + 64 * 1024));
    let readBytes = fs.readSync(fd, headBuf, 0, headBuf.length, 0);
    let head;
    try {
      head = decodeFileHeader(headBuf.subarray(0, readBytes));
    } catch (err) {
      if (err instanceof RecordFormatError) throw new EdgeError('REC_READ', `not a record file: ${err.message}`, { path: rel });
      throw err;
    }
    const maxRecords = o.maxRecords ?? Infinity;
    const maxRead = o.maxReadBytes ?? 4 * 1024 * 1024;
    const records: ReadRecord[] = [];
    let off = Math.max(head.bodyStart, Math.floor(o.offset ?? 0));
    let firstOffset = -1;
    let lastWall = -Infinity;
    let scanned = 0;
    let stop: ScanStop = 'end';
    let buf = Buffer.allocUnsafe(Math.min(SCAN_WINDOW_BYTES, Math.max(RECORD_HEADER_BYTES, size - off)));
    let progressed = false;
    /** Budget spent with records taken: read on to a millisecond edge (wholeMillis). */
    let edgeWindow = false;
    outer: while (off < size) {
      // At least one whole record per call, whatever the budget: every scan makes progress.
      if (progressed && readBytes >= maxRead && !edgeWindow) {
        if (!o.wholeMillis || records.length === 0) {
          stop = 'budget';
          break;
        }
        edgeWindow = true; // read on to the end of this millisecond (≤ maxRecords more records)
      }
      const n = fs.readSync(fd, buf, 0, Math.min(buf.length, size - off), off);
      readBytes += n;
      const view = buf.subarray(0, n);
      let consumed = 0;
      for (const r of scanRecords(view, 0)) {
        if (o.stopAfterWall !== undefined && r.wallclock > o.stopAfterWall) {
          stop = 'wall';
          off += consumed;
          break outer;
        }
        const start = off + r.end - RECORD_HEADER_BYTES - r.payload.length;
        const full = records.length >= maxRecords || edgeWindow;
        if (full && (!o.wholeMillis || r.wallclock !== records[records.length - 1]!.wallclock || records.length >= 2 * maxRecords)) {
          stop = edgeWindow ? 'budget' : 'records';
          off = start; // this record is the next scan's first
          break outer;
        }
        consumed = r.end;
        lastWall = r.wallclock;
        scanned++;
        if (o.accept && !o.accept(r)) continue;
        if (firstOffset < 0) firstOffset = start;
        records.push({ ts: r.ts, wallclock: r.wallclock, payload: Buffer.from(r.payload) });
      }
      if (consumed > 0) {
        off += consumed;
        progressed = true;
        continue;
      }
      // Nothing complete in the window: a record larger than it (grow once, bounded), or a torn tail.
      const len = n >= 4 ? view.readUInt32LE(0) : -1;
      if (len >= 0 && len <= MAX_RECORD_BYTES && RECORD_HEADER_BYTES + len > buf.length && off + RECORD_HEADER_BYTES + len <= size) {
        buf = Buffer.allocUnsafe(RECORD_HEADER_BYTES + len);
        continue;
      }
      break; // torn or corrupt: what follows is not (yet) on disk as a whole record
    }
    return { meta: head.meta, records, firstOffset: firstOffset < 0 ? off : firstOffset, nextOffset: off, lastWall, scanned, readBytes, stop };
  } finally {
    fs.closeSync(fd);
  }
}
