// Generic serial line sensor: one record per line on a data track, optionally parsed as JSON or
// with a regex (named groups → JSON object). Also the serial read loop the GPS driver reuses.
//
// Pure parts (LineFramer, compileLineParser) do no I/O. SerialRecordDriver is the thin shell: it
// owns one SerialLink (drivers/serial: reopen with jittered backoff after unplug/EIO/ENOENT, no
// spin), adds a presence check for nodes that vanish silently, and counts every skipped line.

import { z } from 'zod';
import {
  EdgeError,
  captureClockUs,
  type DriverHealth,
  type DriverOutput,
  type DriverStats,
  type LevelLog,
  type SourceDriver,
  type TrackSpec,
} from '../../runtime/engine/api.js';
import { SerialLink } from '../serial/port.js';

// --- pure: bytes → lines ------------------------------------------------------------------------

export type FramerEvent = { line: Buffer } | { overlong: number };

/**
 * Splits a byte stream on LF (a trailing CR is removed). A line longer than maxLineBytes is
 * dropped whole: bytes are discarded up to the next LF and one `overlong` event reports it, so a
 * device that never sends LF (wrong baud rate, binary protocol) costs at most maxLineBytes.
 */
export class LineFramer {
  private parts: Buffer[] = [];
  private partLen = 0;
  private skipping = false;
  private skipped = 0;

  constructor(readonly maxLineBytes: number) {
    if (!(maxLineBytes >= 1)) throw new RangeError('maxLineBytes must be >= 1');
  }

  /** Bytes held for the incomplete line (always <= maxLineBytes). */
  get pendingBytes(): number {
    return this.partLen;
  }

  push(chunk: Buffer): FramerEvent[] {
    const out: FramerEvent[] = [];
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl === -1 ? chunk.length : nl;
      const piece = chunk.subarray(start, end);
      if (this.skipping) {
        this.skipped += piece.length;
      } else if (this.partLen + piece.length > this.maxLineBytes + 1) {
        // +1: the CR of a CR LF line of exactly maxLineBytes is not part of the line.
        this.skipped = this.partLen + piece.length;
        this.parts = [];
        this.partLen = 0;
        this.skipping = true;
      } else if (piece.length > 0) {
        this.parts.push(piece);
        this.partLen += piece.length;
      }
      if (nl === -1) break;
      if (this.skipping) {
        out.push({ overlong: this.skipped });
        this.skipping = false;
        this.skipped = 0;
      } else {
        let line = this.parts.length === 1 ? Buffer.from(this.parts[0]!) : Buffer.concat(this.parts, this.partLen);
        if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, line.length - 1);
        if (line.length > this.maxLineBytes) out.push({ overlong: line.length });
        else out.push({ line });
      }
      this.parts = [];
      this.partLen = 0;
      start = nl + 1;
    }
    return out;
  }

  /** Forget a partial line (the port was reopened: its tail belongs to another stream). */
  reset(): void {
    this.parts = [];
    this.partLen = 0;
    this.skipping = false;
    this.skipped = 0;
  }
}

// --- pure: line → record ------------------------------------------------------------------------

export type LineVerdict = { ok: true; data: Buffer } | { ok: false; reason: string; ignored?: boolean };
export type LineParser = (line: Buffer) => LineVerdict;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Valid UTF-8 without control characters (TAB allowed), or null: binary noise on the wire. */
export function decodeTextLine(line: Buffer): string | null {
  let text: string;
  try {
    text = utf8.decode(line);
  } catch {
    return null;
  }
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return null;
  }
  return text;
}

/** Longest regex source accepted from config: bounds compile cost, discourages pathological patterns. */
export const MAX_PATTERN_CHARS = 512;

export const lineParseSchema = z.discriminatedUnion('mode', [
  z.object({ mode: z.literal('none') }).strict(),
  z.object({ mode: z.literal('json') }).strict(),
  z.object({
    mode: z.literal('regex'),
    /** JavaScript regex source with named groups, e.g. `^T=(?<temp>-?\d+\.\d+) H=(?<hum>\d+)$`. */
    pattern: z
      .string()
      .min(1)
      .max(MAX_PATTERN_CHARS)
      .refine((p) => {
        try {
          new RegExp(p);
          return true;
        } catch {
          return false;
        }
      }, 'not a valid regular expression'),
    /** Turn group values that look like numbers into JSON numbers. */
    numbers: z.boolean().default(true),
  }).strict(),
]);
export type LineParseConfig = z.infer<typeof lineParseSchema>;

const NUMERIC = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

export function lineParserMime(cfg: LineParseConfig): string {
  return cfg.mode === 'none' ? 'text/plain;charset=utf-8' : 'application/json';
}

export function compileLineParser(cfg: LineParseConfig): LineParser {
  switch (cfg.mode) {
    case 'none':
      return (line) => {
        const text = decodeTextLine(line);
        if (text === null) return { ok: false, reason: 'binary' };
        if (text.trim() === '') return { ok: false, reason: 'empty', ignored: true };
        return { ok: true, data: line };
      };
    case 'json':
      return (line) => {
        const text = decodeTextLine(line);
        if (text === null) return { ok: false, reason: 'binary' };
        if (text.trim() === '') return { ok: false, reason: 'empty', ignored: true };
        try {
          JSON.parse(text);
        } catch {
          return { ok: false, reason: 'json' };
        }
        return { ok: true, data: line };
      };
    case 'regex': {
      const re = new RegExp(cfg.pattern);
      const numbers = cfg.numbers;
      return (line) => {
        const text = decodeTextLine(line);
        if (text === null) return { ok: false, reason: 'binary' };
        if (text.trim() === '') return { ok: false, reason: 'empty', ignored: true };
        const m = re.exec(text);
        if (!m) return { ok: false, reason: 'regex' };
        const rec: Record<string, string | number | null> = {};
        if (m.groups) {
          for (const [k, v] of Object.entries(m.groups)) {
            rec[k] = v === undefined ? null : numbers && NUMERIC.test(v) ? Number(v) : v;
          }
        } else {
          m.slice(1).forEach((v, i) => {
            rec[String(i + 1)] = v === undefined ? null : numbers && NUMERIC.test(v) ? Number(v) : v;
          });
        }
        return { ok: true, data: Buffer.from(JSON.stringify(rec)) };
      };
    }
  }
}

// --- config -------------------------------------------------------------------------------------

/** Standard UART rates; anything else is almost always a typo in the config. */
export const BAUD_RATES = [1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600] as const;

export const serialPortSchema = z.object({
  /** Device path: /dev/ttyUSB0, /dev/serial/by-id/…, /dev/ttyAMA0. */
  path: z.string().min(1).max(4096).regex(/^\//, 'must be an absolute device path'),
  baudRate: z
    .number()
    .int()
    .refine((b) => (BAUD_RATES as readonly number[]).includes(b), `one of ${BAUD_RATES.join(', ')}`)
    .default(9600),
  /**
   * Reopen the port when no byte arrived for this long (0 = never). A wedged USB-serial adapter
   * can stay "open" and silent; a GPS talks every second, so silence means trouble.
   */
  idleReopenMs: z.number().int().min(0).max(3_600_000).default(0),
  reopen: z
    .object({
      initialMs: z.number().int().min(10).max(60_000).default(500),
      maxMs: z.number().int().min(10).max(600_000).default(30_000),
    })
    .strict()
    .default({ initialMs: 500, maxMs: 30_000 }),
});

export const lineSensorDriverSchema = serialPortSchema.extend({
  kind: z.literal('serial-lines'),
  track: z.string().min(1).max(64).regex(/^[A-Za-z0-9_.-]+$/).default('data'),
  parse: lineParseSchema.default({ mode: 'none' }),
  /** 1 KiB fits any sane sensor line; a longer "line" is noise and is dropped whole. */
  maxLineBytes: z.number().int().min(16).max(65_536).default(1024),
}).strict(); // unknown keys are errors, like the rest of the config
export type LineSensorDriverConfig = z.infer<typeof lineSensorDriverSchema>;
export type LineSensorDriverInput = z.input<typeof lineSensorDriverSchema>;

// --- I/O shell ----------------------------------------------------------------------------------

export interface SerialRecordDriverOptions {
  kind: string;
  path: string;
  baudRate: number;
  track: string;
  mime: string;
  maxLineBytes: number;
  idleReopenMs: number;
  reopen: { initialMs: number; maxMs: number };
  parse: LineParser;
  /** Injectable for tests (jitter). */
  random?: () => number;
  /** Port losses and returns are logged here (once each). */
  log?: LevelLog;
}

/**
 * How often the device node is checked while open. A vanished pty (and sometimes a USB adapter)
 * gives no read error at all — it shows up only on the next write — so a read-only sensor would sit
 * "open" forever. One stat() per second is cheap and catches unplug (node gone) and replug (node
 * replaced: different inode/rdev behind the same by-id path). SerialLink does the checking.
 */
const PRESENCE_CHECK_MS = 1000;

/**
 * Reads lines from one serial port (drivers/serial SerialLink: reopen with jittered capped
 * backoff, presence check) and writes one record per accepted line. run() keeps going across
 * unplug/replug until the signal aborts; health() is down while the port is not open.
 */
export class SerialRecordDriver implements SourceDriver {
  readonly kind: string;
  private readonly o: SerialRecordDriverOptions;
  private readonly framer: LineFramer;
  private running = false;
  private link: SerialLink | null = null;
  private c = {
    bytesIn: 0,
    linesIn: 0,
    recordsOut: 0,
    bytesOut: 0,
    ignored: 0,
    malformed: 0,
  };
  private dropped: Record<string, number> = {};
  private lastError: string | null = null;
  private lastRecordWallclock: number | null = null;

  constructor(o: SerialRecordDriverOptions) {
    this.o = o;
    this.kind = o.kind;
    this.framer = new LineFramer(o.maxLineBytes);
  }

  describe(): TrackSpec[] {
    return [{ track: this.o.track, mime: this.o.mime }];
  }

  /** Up while the port is open; down (with the open error) while it is missing or lost. */
  health(): DriverHealth {
    if (this.link?.isOpen) return { up: true };
    const ls = this.link?.stats();
    const why = (ls?.lastError as string | null | undefined) ?? this.lastError;
    return { up: false, reason: `serial port ${this.o.path} not open${why ? `: ${why}` : ''}` };
  }

  stats(): DriverStats {
    const ls = this.link?.stats();
    const n = (k: string): number => (ls && typeof ls[k] === 'number' ? (ls[k] as number) : 0);
    const s: DriverStats = {
      opens: n('opens'),
      openFailures: n('openFailures'),
      losses: n('losses'),
      idleReopens: n('idleReopens'),
      vanished: n('vanished'),
      ...this.c,
      connected: this.link?.isOpen ?? false,
      path: this.o.path,
      lastError: (ls?.lastError as string | null | undefined) ?? this.lastError,
      lastRecordWallclock: this.lastRecordWallclock,
      nextReopenMs: ls && typeof ls.backoffMs === 'number' ? ls.backoffMs : 0,
    };
    for (const [k, v] of Object.entries(this.dropped)) s[`dropped_${k}`] = v;
    return s;
  }

  /** Feed raw bytes as if read from the port (used by run; public for tests and simulators). */
  ingest(chunk: Buffer, out: DriverOutput, ts = captureClockUs(), wallclock = Date.now()): void {
    this.c.bytesIn += chunk.length;
    for (const ev of this.framer.push(chunk)) {
      this.c.linesIn++;
      if ('overlong' in ev) {
        this.drop('overlong', false);
        continue;
      }
      let v: LineVerdict;
      try {
        v = this.o.parse(ev.line);
      } catch (err) {
        // A parser must not throw; if one does, the line is malformed, the driver keeps going.
        v = { ok: false, reason: 'parser-error' };
        this.lastError = `parser threw: ${(err as Error).message}`;
      }
      if (!v.ok) {
        this.drop(v.reason, v.ignored === true);
        continue;
      }
      this.c.recordsOut++;
      this.c.bytesOut += v.data.length;
      this.lastRecordWallclock = wallclock;
      out.write(this.o.track, { ts, wallclock, key: true, data: v.data });
    }
  }

  private drop(reason: string, ignored: boolean): void {
    if (ignored) this.c.ignored++;
    else this.c.malformed++;
    this.dropped[reason] = (this.dropped[reason] ?? 0) + 1;
  }

  async run(out: DriverOutput, signal: AbortSignal): Promise<void> {
    if (this.running) throw new EdgeError('SERIAL_ALREADY_RUNNING', 'run() called twice', { path: this.o.path });
    this.running = true;
    out.setMime(this.o.track, this.o.mime);
    const link = new SerialLink({
      path: this.o.path,
      baudRate: this.o.baudRate,
      readIdleTimeoutMs: this.o.idleReopenMs,
      presenceCheckMs: PRESENCE_CHECK_MS,
      label: `${this.kind} ${this.o.path}`,
      ...(this.o.log ? { log: this.o.log } : {}),
      backoff: {
        initialMs: this.o.reopen.initialMs,
        maxMs: Math.max(this.o.reopen.initialMs, this.o.reopen.maxMs),
        resetAfterMs: 10_000,
        ...(this.o.random ? { random: this.o.random } : {}),
      },
    });
    // A partial line from before a reopen belongs to another stream: forget it.
    link.onOpen(() => this.framer.reset());
    link.onData((chunk) => this.ingest(chunk, out, captureClockUs()));
    this.link = link;
    link.start();
    try {
      await new Promise<void>((resolve) => {
        if (signal.aborted) resolve();
        else signal.addEventListener('abort', () => resolve(), { once: true });
      });
    } finally {
      const ls = link.stats();
      if (typeof ls.lastError === 'string') this.lastError = ls.lastError;
      await link.close();
      this.running = false;
    }
  }
}

/** Factory for the runtime's driver switch: `case 'serial-lines': return createLineSensorDriver(cfg)`. */
export function createLineSensorDriver(input: LineSensorDriverInput | LineSensorDriverConfig, deps: { log?: LevelLog } = {}): SerialRecordDriver {
  const cfg = lineSensorDriverSchema.parse(input);
  return new SerialRecordDriver({
    ...deps,
    kind: 'serial-lines',
    path: cfg.path,
    baudRate: cfg.baudRate,
    track: cfg.track,
    mime: lineParserMime(cfg.parse),
    maxLineBytes: cfg.maxLineBytes,
    idleReopenMs: cfg.idleReopenMs,
    reopen: cfg.reopen,
    parse: compileLineParser(cfg.parse),
  });
}
