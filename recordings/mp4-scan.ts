// Walk a fragmented MP4 (ftyp, moov, (moof mdat)*) without decoding: where the last complete
// fragment ends (recovery truncates there), how many samples and keyframes, the media time span,
// and our SegmentMeta from the comment tag. Pure; arbitrary bytes never throw.
import fs from 'node:fs';
import { isSegmentMeta, type SegmentMeta } from './record-file.js';

export const META_TAG_PREFIX = 'MOTHSEG1:';

export interface Mp4Scan {
  hasInit: boolean;
  /** Offset just past the last complete moof+mdat pair (0 when there is no init). */
  validEnd: number;
  fragments: number;
  samples: number;
  keyframes: number;
  /** Media time of the first and past the last sample, µs from the file's zero. */
  firstUs: number;
  endUs: number;
  timescale: number;
  meta: SegmentMeta | null;
}

interface Box {
  type: string;
  start: number;
  headerLen: number;
  end: number;
}

function readBox(b: Buffer, off: number, limit: number): Box | null {
  if (off + 8 > limit) return null;
  let size = b.readUInt32BE(off);
  const type = b.toString('latin1', off + 4, off + 8);
  let headerLen = 8;
  if (size === 1) {
    if (off + 16 > limit) return null;
    const big = b.readBigUInt64BE(off + 8);
    if (big > BigInt(Number.MAX_SAFE_INTEGER)) return null;
    size = Number(big);
    headerLen = 16;
  } else if (size === 0) {
    return null; // "to end of file": never written by our muxer, treat as incomplete
  }
  if (size < headerLen || off + size > limit) return null;
  return { type, start: off, headerLen, end: off + size };
}

function children(b: Buffer, parent: Box, skip = 0): Box[] {
  const out: Box[] = [];
  let off = parent.start + parent.headerLen + skip;
  while (off < parent.end) {
    const c = readBox(b, off, parent.end);
    if (!c) break;
    out.push(c);
    off = c.end;
    if (out.length > 10_000) break;
  }
  return out;
}

function find(b: Buffer, parent: Box, type: string): Box | undefined {
  return children(b, parent).find((c) => c.type === type);
}

function parseMeta(b: Buffer, moov: Box): SegmentMeta | null {
  const hay = b.subarray(moov.start, moov.end);
  const i = hay.indexOf(META_TAG_PREFIX, 0, 'latin1');
  if (i < 0) return null;
  const m = /^(\d{1,6}):/.exec(hay.toString('latin1', i + META_TAG_PREFIX.length, i + META_TAG_PREFIX.length + 8));
  if (!m) return null;
  const from = i + META_TAG_PREFIX.length + m[0].length;
  const len = Number(m[1]);
  if (from + len > hay.length) return null;
  try {
    const v: unknown = JSON.parse(hay.toString('utf8', from, from + len));
    return isSegmentMeta(v) ? v : null;
  } catch {
    return null;
  }
}

export function encodeMetaTag(meta: SegmentMeta): string {
  const json = JSON.stringify(meta);
  return `${META_TAG_PREFIX}${Buffer.byteLength(json)}:${json}`;
}

function timescaleOf(b: Buffer, moov: Box): number {
  const trak = find(b, moov, 'trak');
  const mdia = trak && find(b, trak, 'mdia');
  const mdhd = mdia && find(b, mdia, 'mdhd');
  if (!mdhd) return 0;
  const p = mdhd.start + mdhd.headerLen;
  if (p + 4 > mdhd.end) return 0;
  const version = b[p]!;
  const at = p + 4 + (version === 1 ? 16 : 8);
  return at + 4 <= mdhd.end ? b.readUInt32BE(at) : 0;
}

interface FragInfo {
  samples: number;
  keyframes: number;
  baseTime: number;
  duration: number;
}

/** One complete moof+mdat of a scan: where it lies in the file and its media time (ticks). */
export interface ScannedFragment extends FragInfo {
  start: number;
  end: number;
}

function parseMoof(b: Buffer, moof: Box): FragInfo | null {
  const traf = find(b, moof, 'traf');
  if (!traf) return null;
  let defDur = 0;
  let defFlags = 0;
  let baseTime = 0;
  let samples = 0;
  let keyframes = 0;
  let duration = 0;
  for (const c of children(b, traf)) {
    const p = c.start + c.headerLen;
    if (p + 4 > c.end) return null;
    const version = b[p]!;
    const flags = b.readUInt32BE(p) & 0xffffff;
    let q = p + 4;
    const need = (n: number) => q + n <= c.end;
    if (c.type === 'tfhd') {
      if (!need(4)) return null;
      q += 4;
      if (flags & 0x1) q += 8;
      if (flags & 0x2) q += 4;
      if (flags & 0x8) {
        if (!need(4)) return null;
        defDur = b.readUInt32BE(q);
        q += 4;
      }
      if (flags & 0x10) q += 4;
      if (flags & 0x20) {
        if (!need(4)) return null;
        defFlags = b.readUInt32BE(q);
      }
    } else if (c.type === 'tfdt') {
      if (version === 1) {
        if (!need(8)) return null;
        baseTime = Number(b.readBigUInt64BE(q));
      } else {
        if (!need(4)) return null;
        baseTime = b.readUInt32BE(q);
      }
    } else if (c.type === 'trun') {
      if (!need(4)) return null;
      const count = b.readUInt32BE(q);
      q += 4;
      if (flags & 0x1) q += 4;
      let firstFlags: number | null = null;
      if (flags & 0x4) {
        if (!need(4)) return null;
        firstFlags = b.readUInt32BE(q);
        q += 4;
      }
      const per = ((flags & 0x100) ? 4 : 0) + ((flags & 0x200) ? 4 : 0) + ((flags & 0x400) ? 4 : 0) + ((flags & 0x800) ? 4 : 0);
      if (count > 1_000_000 || !need(per * count)) return null;
      for (let i = 0; i < count; i++) {
        let d = defDur;
        let f = i === 0 && firstFlags !== null ? firstFlags : defFlags;
        if (flags & 0x100) {
          d = b.readUInt32BE(q);
          q += 4;
        }
        if (flags & 0x200) q += 4;
        if (flags & 0x400) {
          f = b.readUInt32BE(q);
          q += 4;
        }
        if (flags & 0x800) q += 4;
        duration += d;
        if ((f & 0x10000) === 0) keyframes++;
      }
      samples += count;
    }
  }
  return { samples, keyframes, baseTime, duration };
}

/** Boxes we parse in memory (moov, moof) are small; bigger ones are hostile or not ours. */
const MAX_META_BOX = 32 * 1024 * 1024;

/**
 * Scan through a random-access reader (a file): only box headers, moov and moof are read.
 * `onFragment` sees each complete fragment (recorded HLS lists them as segments).
 */
export function scanMp4Reader(size: number, read: (off: number, len: number) => Buffer, onFragment?: (f: ScannedFragment) => void): Mp4Scan {
  const out: Mp4Scan = {
    hasInit: false,
    validEnd: 0,
    fragments: 0,
    samples: 0,
    keyframes: 0,
    firstUs: 0,
    endUs: 0,
    timescale: 0,
    meta: null,
  };
  let off = 0;
  let sawFtyp = false;
  let pendingMoof: FragInfo | null = null;
  let moofStart = 0;
  let firstTime = -1;
  let endTime = 0;
  let boxes = 0;
  while (off < size && boxes++ < 10_000_000) {
    const head = read(off, Math.min(16, size - off));
    if (head.length < 8) break;
    let boxSize = head.readUInt32BE(0);
    let headerLen = 8;
    if (boxSize === 1) {
      if (head.length < 16) break;
      const big = head.readBigUInt64BE(8);
      if (big > BigInt(Number.MAX_SAFE_INTEGER)) break;
      boxSize = Number(big);
      headerLen = 16;
    }
    if (boxSize < headerLen) break; // 0 ("to end of file") is never written by our muxer
    const box: Box = { type: head.toString('latin1', 4, 8), start: off, headerLen, end: off + boxSize };
    if (box.end > size) break;
    const whole = (): { b: Buffer; box: Box } | null => {
      const len = box.end - box.start;
      if (len > MAX_META_BOX) return null;
      const b = read(box.start, len);
      if (b.length !== len) return null;
      return { b, box: { type: box.type, start: 0, headerLen: box.headerLen, end: len } };
    };
    if (box.type === 'ftyp') sawFtyp = true;
    else if (box.type === 'moov') {
      const w = sawFtyp ? whole() : null;
      if (!w) break;
      out.hasInit = true;
      out.timescale = timescaleOf(w.b, w.box);
      out.meta = parseMeta(w.b, w.box);
      out.validEnd = box.end;
    } else if (box.type === 'moof') {
      const w = out.hasInit ? whole() : null;
      pendingMoof = w ? parseMoof(w.b, w.box) : null;
      if (!pendingMoof) break;
      moofStart = box.start;
    } else if (box.type === 'mdat') {
      if (!pendingMoof) break;
      out.fragments++;
      out.samples += pendingMoof.samples;
      out.keyframes += pendingMoof.keyframes;
      if (firstTime < 0) firstTime = pendingMoof.baseTime;
      endTime = Math.max(endTime, pendingMoof.baseTime + pendingMoof.duration);
      onFragment?.({ ...pendingMoof, start: moofStart, end: box.end });
      pendingMoof = null;
      out.validEnd = box.end;
    } else if (box.type === 'mfra' || box.type === 'free' || box.type === 'styp' || box.type === 'sidx') {
      if (out.hasInit && pendingMoof === null) out.validEnd = box.end;
    } else if (!out.hasInit && !sawFtyp) {
      break;
    }
    off = box.end;
  }
  if (out.timescale > 0 && firstTime >= 0) {
    out.firstUs = Math.round((firstTime / out.timescale) * 1e6);
    out.endUs = Math.round((endTime / out.timescale) * 1e6);
  }
  return out;
}

export function scanMp4(bytes: Uint8Array): Mp4Scan {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return scanMp4Reader(b.length, (off, len) => b.subarray(off, off + len));
}

export function scanMp4File(fd: number, size: number, onFragment?: (f: ScannedFragment) => void): Mp4Scan {
  return scanMp4Reader(size, (off, len) => {
    const buf = Buffer.alloc(len);
    let got = 0;
    while (got < len) {
      const n = fs.readSync(fd, buf, got, len - got, off + got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got);
  }, onFragment);
}
