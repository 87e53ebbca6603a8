// `moth-edge recordings list | verify | sync | export` — readers open the index read-only.
//   --config F (YAML/JSON, its `recordings:` section) or --root DIR [--index FILE]
//   list    [--channel C --source S --track T --from T --to T --state S --limit N --newest-first --json]
//   verify  [same filters] — size + sha256 of every local file against the index; exit 1 on a mismatch
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

const USAGE = `usage: moth-edge recordings <list|verify|sync|export> (--config FILE | --root DIR) [options]
  list    [--channel C] [--source S] [--track T] [--from TIME] [--to TIME] [--state S] [--limit N] [--newest-first] [--json]
  verify  [filters]                       check size + sha256 of local files against the index
  sync    [--retry-quarantined]           upload closed segments once (recordings.sync in the config)
  export  --from TIME --to TIME --out run.mcap [filters]
TIME: ms since the epoch or an ISO date.
`;

const FLAGS = new Set(['json', 'retry-quarantined', 'help', 'newest-first']);

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
    if (!cmd || opts.has('help')) {
      io.out(USAGE);
      return cmd ? 0 : 2;
    }
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
        let bad = 0;
        let ok = 0;
        try {
          for (const r of db.list(filters(opts))) {
            if (r.present !== 1) continue;
            const abs = path.join(root, r.path);
            let problem: string | null = null;
            if (!fs.existsSync(abs)) problem = 'file missing';
            else if (r.state === 'recording') continue;
            else if (fs.statSync(abs).size !== r.bytes) problem = `size ${fs.statSync(abs).size} ≠ ${r.bytes}`;
            else if (sha256File(abs) !== r.sha256) problem = 'sha256 mismatch';
            if (problem) {
              bad++;
              io.out(`BAD  ${r.path}: ${problem}\n`);
            } else ok++;
          }
          const known = new Set(db.all().map((r) => r.path));
          for (const f of listSegmentFiles(root)) {
            if (!known.has(f) && !f.endsWith('.part')) {
              bad++;
              io.out(`BAD  ${f}: on disk but not in the index\n`);
            }
          }
        } finally {
          db.close();
        }
        io.out(`${ok} ok, ${bad} bad\n`);
        return bad ? 1 : 0;
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
