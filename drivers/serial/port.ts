// SerialLink: one serial port kept open by path, for actuators (Pelco-D, motor controllers) and line
// sensors (NMEA, custom firmware). The thin I/O shell around `serialport`.
//
//   const link = new SerialLink({ path: '/dev/serial/by-id/usb-…', baudRate: 9600, lines: true });
//   link.onOpen(() => link.write(stopFrame));        // runs on every (re)open, before anything else
//   link.onData((buf) => …); link.onLine((line) => …); // raw bytes / '\n'-split lines ('\r' stripped)
//   link.onClose((err) => …);                          // every loss of the port
//   link.onOpenFailure((err) => …);                    // every failed (re)open attempt
//   link.start();                                      // opens now, reopens with Backoff forever
//   link.write(frame, { key: 'motion' });              // false when not open / dropped
//   link.stats(); await link.close();                  // close is idempotent and never throws
//
// Guarantees:
// - The port is reopened after unplug/EIO/ENXIO with jittered exponential Backoff (never a tight loop:
//   a port that opens then fails at once keeps backing off, the delay only resets after a healthy run).
// - Writes while the port is closed are dropped and counted, never queued: nothing stale is replayed
//   after a replug. Everything still queued when the port is lost is discarded (counted).
// - The write queue is bounded (count). A write with a `key` replaces a queued write with the same key
//   (latest motion command wins; the older one is counted as coalesced).
// - Lines are bounded (maxLineBytes); an overlong line is dropped whole and counted.
// - Optional readIdleTimeoutMs reopens a port that stopped delivering data (a pty whose peer vanished
//   only reports it on write; a sensor that only reads would otherwise never notice).
// - Optional presenceCheckMs stats the device node while open: a vanished node (unplugged USB
//   adapter, a pty whose socat died) or a replaced one (another device behind the same by-id path)
//   is a loss, found within that time even when nothing is written or read.
// - With a logger, each loss is logged once (warn) with its reason, the first failed reopen of an
//   outage once, and the return (info) with the outage's length: never throttled away by other errors.

import { stat } from 'node:fs/promises';
import { SerialPort } from 'serialport';
import { Backoff, EdgeError, type BackoffOptions, type DriverStats, type LevelLog } from '../../runtime/engine/api.js';

export interface SerialLinkOptions {
  path: string;
  baudRate: number;
  /** Split input into lines and call onLine listeners. Default false. */
  lines?: boolean;
  /** Longest accepted line in bytes; longer ones are dropped. Default 1024 (NMEA max is 82). */
  maxLineBytes?: number;
  /** Queued writes at most. Default 8: a few frames of one command burst; motion is coalesced by key. */
  maxQueue?: number;
  /** Reopen when no byte arrived for this long while open. 0 = off (default). */
  readIdleTimeoutMs?: number;
  /** Check the device node this often while open (vanished or replaced = lost). 0 = off (default). */
  presenceCheckMs?: number;
  backoff?: BackoffOptions;
  /** Logs losses and returns (once each); none by default. */
  log?: LevelLog;
  /** Names the link in logs ("ptz/front", "gps"); default the path. */
  label?: string;
}

interface QueuedWrite {
  data: Buffer;
  key?: string;
}

type Listener<A extends unknown[]> = (...a: A) => void;

function safeCall<A extends unknown[]>(list: Listener<A>[], ...a: A): void {
  for (const l of list) {
    try {
      l(...a);
    } catch {
      // A listener's throw must not kill the link (conventions: typed events, emitter survives).
    }
  }
}

export class SerialLink {
  readonly path: string;
  private readonly o: Required<Omit<SerialLinkOptions, 'backoff' | 'log' | 'label'>>;
  private readonly log: LevelLog | undefined;
  private readonly label: string;
  private readonly backoff: Backoff;
  private port: SerialPort | null = null;
  private opening = false;
  private closed = false;
  private started = false;
  private reopenTimer: NodeJS.Timeout | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  private presenceTimer: NodeJS.Timeout | null = null;
  /** Identity of the open node (`dev:ino:rdev`); undefined while unknown. */
  private identity: string | null | undefined = undefined;
  /** Since when the port is down (ms epoch), null while open; for the "back after" log. */
  private downSince: number | null = null;
  private failuresThisOutage = 0;  private queue: QueuedWrite[] = [];
  private writing = false;
  private lineBuf = '';
  private lineOverflow = false;
  private closePromise: Promise<void> | null = null;
  private readonly openL: Listener<[]>[] = [];
  private readonly closeL: Listener<[Error | undefined]>[] = [];
  private readonly failL: Listener<[unknown]>[] = [];
  private readonly dataL: Listener<[Buffer]>[] = [];
  private readonly lineL: Listener<[string]>[] = [];
  private readonly c = {
    opens: 0,
    openFailures: 0,
    losses: 0,
    bytesIn: 0,
    bytesOut: 0,
    writes: 0,
    linesIn: 0,
    dropNotOpen: 0,
    dropQueueFull: 0,
    dropCoalesced: 0,
    dropOnLoss: 0,
    dropLongLine: 0,
    idleReopens: 0,
    vanished: 0,
  };
  private lastError: string | null = null;

  constructor(opts: SerialLinkOptions) {
    if (!opts.path || opts.path.includes('\0')) throw new EdgeError('SERIAL_BAD_PATH', 'serial path must be a non-empty path');
    if (!Number.isInteger(opts.baudRate) || opts.baudRate < 50 || opts.baudRate > 4_000_000) {
      throw new EdgeError('SERIAL_BAD_BAUD', `baud rate out of range: ${opts.baudRate}`, { path: opts.path });
    }
    this.path = opts.path;
    this.o = {
      path: opts.path,
      baudRate: opts.baudRate,
      lines: opts.lines ?? false,
      maxLineBytes: opts.maxLineBytes ?? 1024,
      maxQueue: Math.max(1, opts.maxQueue ?? 8),
      readIdleTimeoutMs: opts.readIdleTimeoutMs ?? 0,
      presenceCheckMs: opts.presenceCheckMs ?? 0,
    };
    this.log = opts.log;
    this.label = opts.label ?? opts.path;
    // Replug of a USB adapter takes ~1 s to re-enumerate: start at 200 ms, cap at 5 s.
    this.backoff = new Backoff(opts.backoff ?? { initialMs: 200, maxMs: 5000, resetAfterMs: 10_000 });
  }

  onOpen(cb: () => void): void {
    this.openL.push(cb);
  }
  onClose(cb: (err: Error | undefined) => void): void {
    this.closeL.push(cb);
  }
  onOpenFailure(cb: (err: unknown) => void): void {
    this.failL.push(cb);
  }
  onData(cb: (b: Buffer) => void): void {
    this.dataL.push(cb);
  }
  onLine(cb: (line: string) => void): void {
    this.lineL.push(cb);
  }

  get isOpen(): boolean {
    return this.port !== null && this.port.isOpen && !this.opening;
  }

  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.downSince = Date.now();
    this.tryOpen();
  }

  /** Queue bytes for the port. Returns false when dropped (port closed, link closing). */
  write(data: Buffer, opts: { key?: string } = {}): boolean {
    if (this.closed || !this.isOpen) {
      this.c.dropNotOpen++;
      return false;
    }
    if (opts.key !== undefined) {
      const i = this.queue.findIndex((q) => q.key === opts.key);
      if (i >= 0) {
        this.queue.splice(i, 1);
        this.c.dropCoalesced++;
      }
    }
    if (this.queue.length >= this.o.maxQueue) {
      this.queue.shift();
      this.c.dropQueueFull++;
    }
    this.queue.push({ data, key: opts.key });
    this.pump();
    return true;
  }

  stats(): DriverStats {
    return {
      path: this.path,
      open: this.isOpen,
      ...this.c,
      queued: this.queue.length,
      downSinceMs: this.downSince === null ? null : Date.now() - this.downSince,
      backoffMs: this.backoff.lastDelayMs,
      lastError: this.lastError,
    };
  }

  /** The link's counters as an actuator driver reports them (prefixed, flat). */
  actuatorStats(): DriverStats {
    const s = this.stats();
    return {
      serialOpen: s['open'] ?? false,
      serialOpens: s['opens'] ?? 0,
      serialLosses: s['losses'] ?? 0,
      serialOpenFailures: s['openFailures'] ?? 0,
      serialDropNotOpen: s['dropNotOpen'] ?? 0,
      serialDropCoalesced: s['dropCoalesced'] ?? 0,
      serialDropOnLoss: s['dropOnLoss'] ?? 0,
      serialVanished: s['vanished'] ?? 0,
      bytesOut: s['bytesOut'] ?? 0,
      lastError: s['lastError'] ?? null,
    };
  }

  close(): Promise<void> {
    if (this.closePromise) return this.closePromise;
    this.closed = true;
    if (this.reopenTimer) clearTimeout(this.reopenTimer);
    if (this.idleTimer) clearTimeout(this.idleTimer);
    if (this.presenceTimer) clearInterval(this.presenceTimer);
    this.reopenTimer = this.idleTimer = this.presenceTimer = null;
    this.queue = [];
    const port = this.port;
    this.port = null;
    this.closePromise = new Promise<void>((resolve) => {
      if (!port || !port.isOpen) {
        if (port) port.removeAllListeners();
        resolve();
        return;
      }
      // Let the last queued bytes (a Stop) reach the OS before closing; bounded by a timeout.
      const t = setTimeout(done, 500);
      function done() {
        clearTimeout(t);
        port!.removeAllListeners();
        port!.on('error', () => {});
        resolve();
      }
      try {
        port.drain(() => {
          try {
            port.close(() => done());
          } catch {
            done();
          }
        });
      } catch {
        done();
      }
    });
    return this.closePromise;
  }

  // ------------------------------------------------------------------------------------------

  private tryOpen(): void {
    if (this.closed) return;
    this.reopenTimer = null;
    this.opening = true;
    let port: SerialPort;
    try {
      port = new SerialPort({ path: this.o.path, baudRate: this.o.baudRate, autoOpen: false, hupcl: false });
    } catch (e) {
      this.opening = false;
      this.fail(e, 'open');
      return;
    }
    this.port = port;
    port.on('error', (e) => this.lost(port, e));
    port.on('close', (e: Error | null) => this.lost(port, e ?? new EdgeError('SERIAL_CLOSED', 'port closed', { path: this.path })));
    port.on('data', (b: Buffer) => this.onBytes(b));
    port.open((err) => {
      this.opening = false;
      if (this.closed) {
        if (!err) port.close(() => {});
        return;
      }
      if (err) {
        port.removeAllListeners();
        port.on('error', () => {});
        if (this.port === port) this.port = null;
        this.fail(err, 'open');
        return;
      }
      this.c.opens++;
      this.backoff.healthy(Date.now());
      this.lineBuf = '';
      this.lineOverflow = false;
      if (this.log && this.downSince !== null && (this.c.opens > 1 || this.failuresThisOutage > 0)) {
        this.log.info({ serial: this.label, path: this.path, downMs: Date.now() - this.downSince, failedOpens: this.failuresThisOutage }, `serial ${this.label} open again`);
      }
      this.downSince = null;
      this.failuresThisOutage = 0;
      this.armIdle();
      this.armPresence(port);
      safeCall(this.openL);
    });
  }

  private fail(e: unknown, phase: string): void {
    this.c.openFailures++;
    this.lastError = `${phase}: ${errText(e)}`;
    // The first failure of an outage is logged; the retries of the same outage are counted only.
    if (this.failuresThisOutage++ === 0) this.log?.warn({ serial: this.label, path: this.path, error: errText(e) }, `serial ${this.label} cannot be opened: ${errText(e)}`);
    safeCall(this.failL, e);
    this.scheduleReopen();
  }

  private scheduleReopen(): void {
    if (this.closed || this.reopenTimer) return;
    const delay = this.backoff.next(Date.now());
    this.reopenTimer = setTimeout(() => this.tryOpen(), delay);
  }

  private lost(port: SerialPort, e: Error): void {
    if (this.port !== port || this.closed) return;
    this.port = null;
    this.c.losses++;
    this.lastError = `lost: ${errText(e)}`;
    this.downSince = Date.now();
    this.failuresThisOutage = 0;
    this.log?.warn({ serial: this.label, path: this.path, error: errText(e), dropped: this.queue.length }, `serial ${this.label} lost: ${errText(e)}`);
    this.c.dropOnLoss += this.queue.length;
    this.queue = [];
    this.writing = false;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    if (this.presenceTimer) clearInterval(this.presenceTimer);
    this.idleTimer = this.presenceTimer = null;
    port.removeAllListeners();
    port.on('error', () => {});
    if (port.isOpen) {
      try {
        port.close(() => {});
      } catch {
        // already closing
      }
    }
    safeCall(this.closeL, e);
    this.scheduleReopen();
  }

  private pump(): void {
    if (this.writing) return;
    const port = this.port;
    const next = this.queue.shift();
    if (!next || !port) return;
    this.writing = true;
    port.write(next.data, (err) => {
      if (this.port !== port) return;
      this.writing = false;
      if (err) {
        this.lost(port, err);
        return;
      }
      this.c.writes++;
      this.c.bytesOut += next.data.length;
      this.pump();
    });
  }

  private armIdle(): void {
    if (!this.o.readIdleTimeoutMs) return;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    const port = this.port;
    this.idleTimer = setTimeout(() => {
      if (port && this.port === port) {
        this.c.idleReopens++;
        this.lost(port, new EdgeError('SERIAL_IDLE', `no data for ${this.o.readIdleTimeoutMs} ms`, { path: this.path }));
      }
    }, this.o.readIdleTimeoutMs);
  }

  private armPresence(port: SerialPort): void {
    if (!this.o.presenceCheckMs) return;
    this.identity = undefined;
    void nodeIdentity(this.path).then((id) => {
      if (this.port === port) this.identity = id;
    });
    let checking = false;
    this.presenceTimer = setInterval(() => {
      if (checking || this.port !== port || this.identity === undefined) return;
      checking = true;
      void nodeIdentity(this.path)
        .then((now) => {
          if (this.port !== port || this.closed || (now !== null && now === this.identity)) return;
          this.c.vanished++;
          this.lost(port, new EdgeError('SERIAL_VANISHED', now === null ? `${this.path} vanished` : `${this.path} replaced by another device`, { path: this.path }));
        })
        .finally(() => {
          checking = false;
        });
    }, this.o.presenceCheckMs);
    this.presenceTimer.unref();
  }

  private onBytes(b: Buffer): void {
    this.c.bytesIn += b.length;
    this.armIdle();
    safeCall(this.dataL, b);
    if (!this.o.lines) return;
    let s = b.toString('latin1');
    while (s.length) {
      const nl = s.indexOf('\n');
      const part = nl < 0 ? s : s.slice(0, nl);
      if (!this.lineOverflow) {
        this.lineBuf += part;
        if (this.lineBuf.length > this.o.maxLineBytes) {
          this.lineOverflow = true;
          this.lineBuf = '';
        }
      }
      if (nl < 0) break;
      if (this.lineOverflow) this.c.dropLongLine++;
      else {
        const line = this.lineBuf.endsWith('\r') ? this.lineBuf.slice(0, -1) : this.lineBuf;
        this.c.linesIn++;
        safeCall(this.lineL, line);
      }
      this.lineBuf = '';
      this.lineOverflow = false;
      s = s.slice(nl + 1);
    }
  }
}

/** `dev:ino:rdev` of the node behind a path (symlinks followed), or null when it is gone. */
async function nodeIdentity(path: string): Promise<string | null> {
  try {
    const st = await stat(path);
    return `${st.dev}:${st.ino}:${st.rdev}`;
  } catch {
    return null;
  }
}

/** A short reason for a link event: the error code and message, or "closed". */
export function linkReason(e: unknown): string {
  return e === undefined || e === null ? 'closed' : errText(e);
}

function errText(e: unknown): string {
  if (e instanceof Error) return ((e as NodeJS.ErrnoException).code ? `${(e as NodeJS.ErrnoException).code} ` : '') + e.message.slice(0, 200);
  return String(e).slice(0, 200);
}
