// Start-up recovery: reconcile disk and index before recording starts.
//  - every `.part` is truncated to its last complete fragment/record, renamed and indexed
//    (a part with nothing complete is removed: it holds no media);
//  - every row whose file is missing is marked `missing` (present=0) and reported;
//  - every closed file without a row (or whose size disagrees with its row) is probed and indexed;
//  - rows left `uploading` by a crash go back to `closed` (a re-PUT is safe; verify decides).
// Afterwards no present row points at a missing file and no segment file lacks a row.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { mimeKind } from '../runtime/engine/api.js';
import type { IndexDb, NewSegment, SegmentRow } from './index-db.js';
import { finalOf, parseSegmentPath, RECORD_EXT, withCounter, type ParsedPath } from './layout.js';
import { scanMp4File } from './mp4-scan.js';
import { decodeFileHeader, RecordFormatError, scanRecords, type SegmentMeta } from './record-file.js';
import { syncDir, wallEndOf } from './segment-writer.js';
import type { RecLog } from './log.js';

export interface RecoveryReport {
  partsClosed: number;
  partsRemovedEmpty: number;
  bytesTruncated: number;
  rowsMissing: number;
  orphansIndexed: number;
  rowsReprobed: number;
  uploadsReset: number;
  unreadable: number;
  ms: number;
}

export interface Probe {
  kind: 'video' | 'data';
  /** Where the complete content ends. */
  validEnd: number;
  size: number;
  meta: SegmentMeta;
  frames: number;
  keyframes: number;
  startUs: number;
  endUs: number;
  wallStartMs: number;
  wallEndMs: number;
}

/** Rows per recovery transaction. */
const RECOVERY_BATCH = 500;

/** Files larger than this are not read whole (a record segment is ~1 MB; a JPEG one ~20 MB). */
const MAX_RECORD_FILE = 512 * 1024 * 1024;

function metaFromPath(p: ParsedPath): SegmentMeta {
  return {
    v: 1,
    channel: p.ref.channel,
    source: p.ref.source,
    track: p.ref.track,
    mime: p.ext === RECORD_EXT ? 'application/octet-stream' : 'video/h264',
    startUs: 0,
    wallMs: p.wallclockMs,
    offsetUs: p.wallclockMs * 1000,
    run: 'unknown',
  };
}

/** Read a segment file's structure. Never throws for bad content (frames=0 then). */
export function probeSegment(abs: string, parsed: ParsedPath): Probe {
  const fd = fs.openSync(abs, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    if (parsed.ext === RECORD_EXT) {
      if (size > MAX_RECORD_FILE) throw new RecordFormatError('record file too large to probe');
      const buf = Buffer.alloc(size);
      let got = 0;
      while (got < size) {
        const n = fs.readSync(fd, buf, got, size - got, got);
        if (n === 0) break;
        got += n;
      }
      let meta = metaFromPath(parsed);
      let validEnd = 0;
      let frames = 0;
      let first = NaN;
      let last = NaN;
      let wallFirst = NaN;
      let wallLast = NaN;
      try {
        const h = decodeFileHeader(buf.subarray(0, got));
        meta = h.meta;
        validEnd = h.bodyStart;
        for (const r of scanRecords(buf.subarray(0, got), h.bodyStart)) {
          if (frames === 0) (first = r.ts), (wallFirst = r.wallclock);
          last = r.ts;
          wallLast = r.wallclock;
          frames++;
          validEnd = r.end;
        }
      } catch (err) {
        if (!(err instanceof RecordFormatError)) throw err;
      }
      return {
        kind: 'data',
        validEnd,
        size,
        meta,
        frames,
        keyframes: frames,
        startUs: frames ? first : meta.startUs,
        endUs: frames ? last : meta.startUs,
        wallStartMs: frames ? wallFirst : meta.wallMs,
        // a record file ends at its last record's own wallclock, as the recorder says (wallEndOf)
        wallEndMs: frames ? wallLast : meta.wallMs,
      };
    }
    const s = scanMp4File(fd, size);
    const meta = s.meta ?? metaFromPath(parsed);
    return {
      kind: 'video',
      validEnd: s.validEnd,
      size,
      meta,
      frames: s.samples,
      keyframes: s.keyframes,
      startUs: meta.startUs + s.firstUs,
      endUs: meta.startUs + s.endUs,
      wallStartMs: meta.wallMs + s.firstUs / 1000,
      wallEndMs: wallEndOf(meta, meta.startUs + s.endUs),
    };
  } finally {
    fs.closeSync(fd);
  }
}

export function sha256File(abs: string, length?: number): string {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(abs, 'r');
  try {
    const end = length ?? fs.fstatSync(fd).size;
    const buf = Buffer.allocUnsafe(1024 * 1024);
    let off = 0;
    while (off < end) {
      const n = fs.readSync(fd, buf, 0, Math.min(buf.length, end - off), off);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
      off += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

export function rowFromProbe(rel: string, p: Probe, sha256: string, state: SegmentRow['state'], origin: string): NewSegment {
  return {
    path: rel,
    channel: p.meta.channel,
    source: p.meta.source,
    track: p.meta.track,
    mime: p.meta.mime,
    kind: mimeKind(p.meta.mime) === 'video' ? 'video' : 'data',
    run: p.meta.run,
    offset_us: p.meta.offsetUs,
    start_us: Math.round(p.startUs),
    end_us: Math.round(p.endUs),
    wall_start_ms: Math.floor(p.wallStartMs),
    wall_end_ms: Math.ceil(p.wallEndMs),
    duration_ms: Math.max(0, Math.round((p.endUs - p.startUs) / 1000)),
    bytes: p.validEnd,
    frames: p.frames,
    keyframes: p.keyframes,
    sha256,
    state,
    created_ms: Date.now(),
    closed_ms: Date.now(),
    origin,
  };
}

/** Every segment file under root (relative paths), parts included; other files are left alone. */
export function listSegmentFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string, rel: string, depth: number) => {
    let ents: fs.Dirent[];
    try {
      ents = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of ents) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory() && depth < 4) walk(path.join(dir, e.name), r, depth + 1);
      else if (e.isFile() && depth === 4 && parseSegmentPath(r)) out.push(r);
    }
  };
  walk(root, '', 0);
  return out.sort();
}

export function recover(root: string, db: IndexDb, log: RecLog, origin = 'recovered'): RecoveryReport {
  const t0 = Date.now();
  const rep: RecoveryReport = {
    partsClosed: 0,
    partsRemovedEmpty: 0,
    bytesTruncated: 0,
    rowsMissing: 0,
    orphansIndexed: 0,
    rowsReprobed: 0,
    uploadsReset: 0,
    unreadable: 0,
    ms: 0,
  };
  db.flush();
  const files = listSegmentFiles(root);

  // 1. parts
  for (const rel of files) {
    const parsed = parseSegmentPath(rel)!;
    if (!parsed.part) continue;
    const abs = path.join(root, rel);
    const p = probeSegment(abs, parsed);
    let final = finalOf(rel);
    if (p.frames === 0) {
      fs.rmSync(abs, { force: true });
      db.write(() => {
        db.delete(final);
        db.event('part-empty', final, `removed part with no complete fragment (${p.size} bytes)`);
      });
      rep.partsRemovedEmpty++;
      continue;
    }
    if (p.validEnd < p.size) {
      fs.truncateSync(abs, p.validEnd);
      rep.bytesTruncated += p.size - p.validEnd;
    }
    const fd = fs.openSync(abs, 'r+');
    try {
      fs.fdatasyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    for (let n = 1; fs.existsSync(path.join(root, final)) && n < 1000; n++) final = withCounter(finalOf(rel), n);
    fs.renameSync(abs, path.join(root, final));
    syncDir(path.dirname(path.join(root, final)));
    const sha = sha256File(path.join(root, final));
    const existing = db.get(final);
    db.write(() => {
      db.insert(rowFromProbe(final, p, sha, existing?.state === 'recording' || !existing ? 'closed' : existing.state, existing?.origin ?? origin));
      db.event('part-closed', final, `frames=${p.frames} truncated=${p.size - p.validEnd}`);
    });
    rep.partsClosed++;
  }

  // 2. rows ↔ files
  const onDisk = new Set(listSegmentFiles(root).filter((r) => !r.endsWith('.part')));
  const rows = db.all();
  const rowByPath = new Map(rows.map((r) => [r.path, r]));
  for (const r of rows) {
    if (r.present === 1 && !onDisk.has(r.path)) {
      db.enqueue(() => {
        db.update(r.path, { state: 'missing', present: 0, last_error: `file missing at recovery (was ${r.state})` });
        db.event('row-missing', r.path, `state was ${r.state}`);
      });
      rep.rowsMissing++;
      log.warn({ path: r.path, state: r.state }, 'recording file missing: row marked missing');
    } else if (r.state === 'uploading') {
      db.enqueue(() => db.update(r.path, { state: 'closed' }));
      rep.uploadsReset++;
    }
  }
  db.flush();

  // 3. files without rows, or rows whose size disagrees with the file (a crash between close and index)
  for (const rel of onDisk) {
    const row = rowByPath.get(rel);
    const abs = path.join(root, rel);
    const size = fs.statSync(abs).size;
    if (row && row.present === 1 && row.state !== 'recording' && row.bytes === size && row.sha256) continue;
    const parsed = parseSegmentPath(rel)!;
    const p = probeSegment(abs, parsed);
    const sha = sha256File(abs);
    const unreadable = p.frames === 0;
    const keepState = row && row.present === 1 && row.state !== 'recording' && row.state !== 'missing' ? row.state : 'closed';
    const state = unreadable ? 'quarantined' : row?.sha256 === sha ? keepState : 'closed';
    // a rebuild of a full folder is thousands of rows: written in batched transactions
    db.enqueue(() => {
      const nr = rowFromProbe(rel, p, sha, state, row?.origin ?? origin);
      nr.bytes = size;
      db.insert(nr);
      if (unreadable) db.update(rel, { last_error: 'unreadable: no complete fragment or record' });
      db.event(row ? 'row-reprobed' : 'orphan-indexed', rel, `frames=${p.frames} bytes=${size}`);
    });
    if (db.stats().pendingOps >= RECOVERY_BATCH) db.flush();
    if (unreadable) rep.unreadable++;
    if (row) rep.rowsReprobed++;
    else rep.orphansIndexed++;
  }
  db.flush();
  rep.ms = Date.now() - t0;
  log.info({ recovery: rep }, 'recordings recovery done');
  return rep;
}
