// `moth-edge recordings list | verify | sync | export` — readers open the index read-only.
//   --config F (YAML/JSON, its `recordings:` section) or --root DIR [--index FILE]
//   list    [--channel C --source S --track T --from T --to T --state S --limit N --newest-first --json]
//   verify  [same filters] [--decode] — size + sha256 of every local file against the index, files
//           without a row, `.part` leftovers; --decode also decodes every video segment with ffmpeg
//           and walks every record file; exit 1 on a problem
//   sync    [--retry-quarantined] — one pass of uploads (needs `recordings.sync`); exit 1 on failures
//   export  --from T --to T --out run.mcap [filters] — MCAP with Foxglove schemas
import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { recordingsConfigSchema, type RecordingsConfig } from '../../recordings/config.js';
import { IndexDb, type SegmentRow, type SegmentState } from '../../recordings/index-db.js';
import { silentLog } from '../../recordings/log.js';
import { exportMcap } from '../../recordings/mcap-export.js';
import { listSegmentFiles, sha256File } from '../../recordings/recovery.js';
import { finalOf, PART_SUFFIX } from '../../recordings/layout.js';
import { decodeFileHeader, scanRecords } from '../../recordings/record-file.js';
import { commandHelp } from '../cli-help.js';
import { resolveFfmpeg } from '../../drivers/exec/ffmpeg.js';
import { execFile } from 'node:child_process';
import { Uploader } from '../../recordings/sync.js';
import { parseTime } from './http.js';
import { loadConfig } from '../config/load.js';
import { channelIdOf } from '../config/references.js';
import type { Config } from '../config/schema.js';

export interface CliIo {
  out(s: string): void;
  err(s: string): void;
}

const stdio: CliIo = {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
};

class UsageError extends Error {}

// One help text for the recordings CLI, whether it is reached as `moth-edge recordings …` or here.
const USAGE = commandHelp('recordings')!;
const HELP: Record<string, string> = Object.fromEntries(['list', 'verify', 'sync', 'export'].map((c) => [c, commandHelp('recordings', c)!]));

const FLAGS = new Set(['json', 'retry-quarantined', 'help', 'newest-first', 'decode']);

function parseArgs(argv: string[]): { cmd: string | undefined; opts: Map<string, string> } {
  const opts = new Map<string, string>();
  let cmd: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const key = eq > 0 ? a.slice(2, eq) : a.slice(2);
      if (FLAGS.has(key)) opts.set(key, 'true');
      else if (eq > 0) opts.set(key, a.slice(eq + 1));
      else {
        const v = argv[++i];
        if (v === undefined) throw new UsageError(`--${key} needs a value`);
        opts.set(key, v);
      }
    } else if (cmd === undefined) cmd = a;
    else throw new UsageError(`unexpected argument ${a}`);
  }
  return { cmd, opts };
}

function loadRecordingsConfig(opts: Map<string, string>): RecordingsConfig {
  const file = opts.get('config');
  if (file) {
    const text = fs.readFileSync(file, 'utf8');
    const data = (/\.json$/i.test(file) ? JSON.parse(text) : parseYaml(text)) as { recordings?: unknown } | null;
    const r = recordingsConfigSchema.safeParse(data?.recordings ?? {});
    if (!r.success) throw new UsageError(`config ${file}: recordings: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    const cfg = r.data;
    // a relative root is relative to the config file's folder when given there
    if (!path.isAbsolute(cfg.root) && opts.get('root') === undefined) cfg.root = path.resolve(path.dirname(file), cfg.root);
    if (opts.get('root')) cfg.root = opts.get('root')!;
    return cfg;
  }
  const root = opts.get('root');
  if (!root) throw new UsageError('--config FILE or --root DIR is required');
  return recordingsConfigSchema.parse({ root, indexPath: opts.get('index') });
}

/** --channel takes an id or a name: the whole config (when given) maps names, else the derived id. */
function channelFilter(opts: Map<string, string>): string | undefined {
  const c = opts.get('channel');
  if (c === undefined) return undefined;
  let config: Config | undefined;
  const file = opts.get('config');
  if (file) {
    try {
      config = loadConfig(file);
    } catch {
      config = undefined; // its recordings: section was read already; names fall back to derived ids
    }
  }
  return channelIdOf(c, config);
}

function filters(opts: Map<string, string>) {
  const state = opts.get('state');
  if (state && !['recording', 'closed', 'uploading', 'synced', 'quarantined', 'missing'].includes(state)) throw new UsageError(`bad --state ${state}`);
  let fromMs: number | undefined;
  let toMs: number | undefined;
  try {
    fromMs = parseTime(opts.get('from') ?? null, 'from');
    toMs = parseTime(opts.get('to') ?? null, 'to');
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return {
    channel: channelFilter(opts),
    source: opts.get('source'),
    track: opts.get('track'),
    fromMs,
    toMs,
    state: state as SegmentState | undefined,
    limit: opts.has('limit') ? Number(opts.get('limit')) : 10_000,
    order: opts.has('newest-first') ? ('desc' as const) : ('asc' as const),
  };
}

/**
 * Every local segment against the index; files without a row; `.part` files (open now, or left by
 * a crash); with `decode`, every video segment through ffmpeg and every record file to its end.
 */
async function verifyRecordings(root: string, db: IndexDb, f: ReturnType<typeof filters>, o: { decode: boolean }, io: CliIo): Promise<{ ok: number; bad: number; parts: number }> {
  let bad = 0;
  let ok = 0;
  let parts = 0;
  const ffmpeg = o.decode ? resolveFfmpeg().path : '';
  for (const r of db.list(f)) {
    if (r.present !== 1) continue;
    const abs = path.join(root, r.path);
    let problem: string | null = null;
    if (r.state === 'recording') {
      // open: its .part is reported below; a row with neither file is the index pointing at nothing
      if (fs.existsSync(abs + PART_SUFFIX)) continue;
      problem = fs.existsSync(abs) ? 'closed file, but its row still says recording' : 'recording row with no file';
    } else if (!fs.existsSync(abs)) problem = 'file missing';
    else if (fs.statSync(abs).size !== r.bytes) problem = `size ${fs.statSync(abs).size} ≠ ${r.bytes}`;
    else if (sha256File(abs) !== r.sha256) problem = 'sha256 mismatch';
    else if (o.decode) problem = r.kind === 'video' ? await decodeProblem(ffmpeg, abs, r.frames) : recordProblem(abs, r.frames);
    if (problem) {
      bad++;
      io.out(`BAD  ${r.path}: ${problem}\n`);
    } else ok++;
  }
  const rows = new Map(db.all().map((r) => [r.path, r]));
  for (const file of listSegmentFiles(root)) {
    if (file.endsWith(PART_SUFFIX)) {
      parts++;
      const row = rows.get(finalOf(file));
      const size = fs.statSync(path.join(root, file)).size;
      if (row?.state === 'recording') io.out(`PART ${file}: ${size} bytes, open (being recorded, or left by a crash: recovery closes it at the next start)\n`);
      else {
        bad++;
        io.out(`BAD  ${file}: ${size} bytes, a .part with no recording row (left over; the runtime's recovery closes or removes it at its next start)\n`);
      }
    } else if (!rows.has(file)) {
      bad++;
      io.out(`BAD  ${file}: on disk but not in the index\n`);
    }
  }
  return { ok, bad, parts };
}

/** Decode a video segment (and remux its packets) with ffmpeg; any error or warning is a problem. */
function decodeProblem(ffmpeg: string, abs: string, frames: number): Promise<string | null> {
  // two outputs: a decode of every frame, and a stream copy into MPEG-TS (90 kHz: finer than the
  // MP4's ticks) whose muxer refuses any DTS that does not increase — what a remux would hit; the
  // decode keeps the file's time base (1/frame rate would fold frames closer than one interval)
  const args = ['-hide_banner', '-nostdin', '-v', 'warning', '-i', abs, '-map', '0:v:0', '-c', 'copy', '-f', 'mpegts', '-y', '/dev/null', '-map', '0:v:0', '-enc_time_base', '-1', '-f', 'null', '-'];
  return new Promise((resolve) => {
    execFile(ffmpeg, args, { timeout: 300_000, maxBuffer: 4 * 1024 * 1024 }, (err, _out, stderr) => {
      const text = stderr.trim().split('\n').filter((l) => l.trim() !== '');
      if (err) resolve(`ffmpeg failed: ${(text[0] ?? err.message).slice(0, 300)}`);
      else if (text.length) resolve(`ffmpeg: ${text[0]!.slice(0, 300)}${text.length > 1 ? ` (+${text.length - 1} more)` : ''}`);
      else resolve(frames > 0 ? null : 'no frames');
    });
  });
}

/** Walk a record file: the header, every record's length and CRC, to the exact end. */
function recordProblem(abs: string, frames: number): string | null {
  const buf = fs.readFileSync(abs);
  try {
    const h = decodeFileHeader(buf);
    let n = 0;
    let end = h.bodyStart;
    for (const r of scanRecords(buf, h.bodyStart)) {
      n++;
      end = r.end;
    }
    if (end !== buf.length) return `a torn or corrupt record at byte ${end} of ${buf.length}`;
    if (n !== frames) return `${n} records ≠ ${frames} in the index`;
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

function indexPathOf(cfg: RecordingsConfig): string {
  return path.resolve(cfg.indexPath ?? path.join(cfg.root, 'index.db'));
}

function fmtRow(r: SegmentRow): string {
  const mb = (r.bytes / 1048576).toFixed(2).padStart(8);
  return `${String(r.id).padStart(6)}  ${new Date(r.wall_start_ms).toISOString()}  ${(r.duration_ms / 1000).toFixed(1).padStart(6)}s  ${mb} MB  ${r.state.padEnd(11)}  ${r.path}`;
}

export async function runRecordingsCli(argv: string[], io: CliIo = stdio): Promise<number> {
  try {
    const { cmd, opts } = parseArgs(argv);
    if (opts.has('help')) {
      io.out(cmd && HELP[cmd] ? HELP[cmd] : USAGE);
      return 0;
    }
    if (!cmd) {
      io.err(USAGE);
      return 2;
    }
    if (!HELP[cmd]) throw new UsageError(`unknown command ${cmd}`);
    const cfg = loadRecordingsConfig(opts);
    const root = path.resolve(cfg.root);
    switch (cmd) {
      case 'list': {
        const db = IndexDb.openReader(indexPathOf(cfg));
        try {
          const rows = db.list(filters(opts));
          if (opts.has('json')) io.out(`${JSON.stringify(rows)}\n`);
          else {
            for (const r of rows) io.out(`${fmtRow(r)}\n`);
            io.out(`${rows.length} segment(s)\n`);
          }
        } finally {
          db.close();
        }
        return 0;
      }
      case 'verify': {
        const db = IndexDb.openReader(indexPathOf(cfg));
        try {
          const r = await verifyRecordings(root, db, filters(opts), { decode: opts.has('decode') }, io);
          io.out(`${r.ok} ok, ${r.bad} bad, ${r.parts} part(s)\n`);
          return r.bad ? 1 : 0;
        } finally {
          db.close();
        }
      }
      case 'sync': {
        if (!cfg.sync) throw new UsageError('no recordings.sync section in the config');
        const db = IndexDb.openWriter(indexPathOf(cfg));
        const up = new Uploader(cfg.sync, root, db, silentLog);
        try {
          if (opts.has('retry-quarantined')) io.out(`requeued ${up.retryQuarantined()} quarantined segment(s)\n`);
          const failures = await up.runOnce();
          io.out(`${JSON.stringify(up.stats())}\n`);
          return failures ? 1 : 0;
        } finally {
          await up.close();
          db.close();
        }
      }
      case 'export': {
        const out = opts.get('out');
        const f = filters(opts);
        if (!out || f.fromMs === undefined || f.toMs === undefined) throw new UsageError('export needs --from, --to and --out');
        const db = IndexDb.openReader(indexPathOf(cfg));
        let rows: SegmentRow[];
        try {
          rows = db.list({ ...f, state: undefined }).filter((r) => r.present === 1 && r.state !== 'recording');
        } finally {
          db.close();
        }
        if (rows.length === 0) {
          io.err('no recordings in that range\n');
          return 1;
        }
        const res = await exportMcap(root, rows, f.fromMs, f.toMs, path.resolve(out));
        io.out(`${JSON.stringify({ out: path.resolve(out), ...res })}\n`);
        return 0;
      }
      default:
        throw new UsageError(`unknown command ${cmd}`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`${err.message}\n${USAGE}`);
      return 2;
    }
    const e = err as { code?: string; message?: string };
    io.err(`recordings: ${e.message ?? String(err)}\n`);
    return 1;
  }
}
