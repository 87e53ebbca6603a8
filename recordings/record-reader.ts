// Read the records of one data segment (a `.rec` file, closed or still being written as `.part`)
// for the uplink backfill. Read-only, bounded: a file over `maxBytes` is refused with a typed
// error instead of being loaded; a torn tail simply ends the walk (scanRecords never throws).
import fs from 'node:fs';
import path from 'node:path';
import { EdgeError } from '../runtime/engine/api.js';
import { PART_SUFFIX } from './layout.js';
import { decodeFileHeader, RecordFormatError, scanRecords, type SegmentMeta } from './record-file.js';

export interface ReadRecord {
  /** Capture clock µs. */
  ts: number;
  /** Capture wallclock ms. */
  wallclock: number;
  payload: Buffer;
}

/** 64 MB: a minute of a busy JPEG track; the backfill reads one segment at a time. */
export const MAX_READ_SEGMENT_BYTES = 64 * 1024 * 1024;

/** The file of an index row: the final name, or its `.part` while the segment is open. */
export function segmentFile(root: string, rel: string): string | null {
  const abs = path.resolve(root, rel);
  if (!abs.startsWith(path.resolve(root) + path.sep)) return null; // a row must not point outside
  if (fs.existsSync(abs)) return abs;
  if (fs.existsSync(abs + PART_SUFFIX)) return abs + PART_SUFFIX;
  return null;
}

/**
 * Records of a data segment with wallclock in [fromMs, toMs], in file order. Throws EdgeError
 * REC_READ (missing, too large, not a record file); the caller counts it and moves on.
 */
export function readSegmentRecords(root: string, rel: string, fromMs = -Infinity, toMs = Infinity, maxBytes = MAX_READ_SEGMENT_BYTES): { meta: SegmentMeta; records: ReadRecord[] } {
  const file = segmentFile(root, rel);
  if (!file) throw new EdgeError('REC_READ', 'segment file missing', { path: rel });
  let buf: Buffer;
  try {
    const st = fs.statSync(file);
    if (st.size > maxBytes) throw new EdgeError('REC_READ', `segment of ${st.size} B over the ${maxBytes} B read bound`, { path: rel });
    buf = fs.readFileSync(file);
  } catch (err) {
    if (err instanceof EdgeError) throw err;
    throw new EdgeError('REC_READ', `cannot read segment: ${(err as Error).message}`, { path: rel }, { cause: err });
  }
  let head;
  try {
    head = decodeFileHeader(buf);
  } catch (err) {
    if (err instanceof RecordFormatError) throw new EdgeError('REC_READ', `not a record file: ${err.message}`, { path: rel });
    throw err;
  }
  const records: ReadRecord[] = [];
  for (const r of scanRecords(buf, head.bodyStart)) {
    if (r.wallclock < fromMs || r.wallclock > toMs) continue;
    // Copy out: the backfill queue must not pin the whole file buffer.
    records.push({ ts: r.ts, wallclock: r.wallclock, payload: Buffer.from(r.payload) });
  }
  return { meta: head.meta, records };
}
