// pang pull-down: one upstream track (/pang/ws/sub) → one local engine track, e.g. an operator's
// audio or data track coming down to the robot. MIME from the first text (or REXTMIME), one
// binary message = one frame; the empty keepalive binaries are not frames.
import { openPangOrFail } from './pang-socket.js';
import WebSocket, { type RawData } from 'ws';
import {
  captureClockUs,
  mimeBase,
  mimeKind,
  trackPath,
  type BackoffOptions,
  type Frame,
  type TrackRef,
} from '../engine/api.js';
import { isIdr } from './h264-rtp.js';
import { ReconnectingLink, type LinkStats } from './link.js';
import { classifyClose, connectErrorCode, pangSessionUrl, redactPangUrl, type EgressLog, type PangEndpoint } from './pang-link.js';
import { sanitize } from './pang-publisher.js';

/** Where a pulled-down or ingested track is written (the engine's publisher satisfies it). */
export interface TrackWriter {
  setMime(mime: string): void;
  write(frame: Frame): void;
  /** Extended texts (REXT…/XCMD…) when the engine carries them. */
  text?(text: string): void;
  close(): void;
}

/** Who writes (the engine's PublisherOwner). */
export interface WriterOwner {
  label: string;
  requestKeyframe?: () => boolean;
}

export interface TrackPublishing {
  publisher(ref: TrackRef, owner: WriterOwner): TrackWriter;
}

export interface PangPullerOptions {
  name: string;
  endpoint: PangEndpoint;
  caFile?: string | undefined;
  insecure?: boolean | undefined;
  to: TrackRef;
  engine: TrackPublishing;
  log: EgressLog;
  backoff: BackoffOptions;
  /** Moth viewers keep a sub session alive with a binary "ping" message. */
  keepaliveMs?: number;
  refusalWindowMs?: number;
  handshakeTimeoutMs?: number;
  /** Largest accepted message: a hostile upstream cannot make us hold more (8 MB ≈ a 4K IDR). */
  maxMessageBytes?: number;
  /**
   * A control track (issue 8): `REXTXCMD…` texts from upstream are handed here and the reply
   * (`REXTXACK…`/`REXTXERR…`) is sent back on the same session (bundle mode lets a subscriber
   * talk back). Null: not a command this handler knows; the text is written to the track as usual.
   */
  onCommand?: ((text: string) => string | null) | undefined;
}

export interface PangPullerStats extends LinkStats {
  track: string;
  mime: string | null;
  framesIn: number;
  bytesIn: number;
  textsIn: number;
  keepalivesIn: number;
  /** XCMD texts handed to the command handler (control track, issue 8). */
  commands: number;
  dropped: { noMime: number; waitKeyframe: number };
}

export class PangPuller extends ReconnectingLink {
  private ws: WebSocket | null = null;
  private writer: TrackWriter | null = null;
  private timer: NodeJS.Timeout | null = null;
  private acceptTimer: NodeJS.Timeout | null = null;
  private openedAt = 0;
  private mime: string | undefined;
  private needKey = true;
  private connectError: string | null = null;
  private readonly url: string;
  private readonly o: PangPullerOptions & Required<Pick<PangPullerOptions, 'keepaliveMs' | 'refusalWindowMs' | 'handshakeTimeoutMs' | 'maxMessageBytes'>>;
  private c = { framesIn: 0, bytesIn: 0, textsIn: 0, keepalivesIn: 0, noMime: 0, waitKeyframe: 0, commands: 0 };

  constructor(opts: PangPullerOptions) {
    const url = pangSessionUrl(opts.endpoint, 'sub');
    super(opts.name, 'pang-pull', redactPangUrl(url), opts.log, opts.backoff);
    this.url = url;
    this.o = { keepaliveMs: 20_000, refusalWindowMs: 3000, handshakeTimeoutMs: 10_000, maxMessageBytes: 8 * 1024 * 1024, ...opts };
  }

  protected attempt(): void {
    this.connectError = null;
    const ws = openPangOrFail(this.url, { handshakeTimeoutMs: this.o.handshakeTimeoutMs, insecure: this.o.insecure, caFile: this.o.caFile, maxPayload: this.o.maxMessageBytes }, (code, msg) => this.failed(code, msg));
    if (!ws) return;
    this.ws = ws;
    ws.on('open', () => {
      if (ws !== this.ws) return;
      this.openedAt = Date.now();
      this.needKey = true;
      // Still open after the refusal window: accepted, even before the upstream track has data.
      this.acceptTimer = setTimeout(() => {
        if (ws === this.ws && ws.readyState === WebSocket.OPEN) this.up();
      }, this.o.refusalWindowMs);
      this.acceptTimer.unref?.();
      this.timer = setInterval(() => {
        if (ws.readyState === WebSocket.OPEN) ws.send(Buffer.from('ping'), { binary: true });
      }, this.o.keepaliveMs);
      this.timer.unref?.();
    });
    ws.on('message', (raw, isBinary) => {
      try {
        this.onMessage(raw, isBinary);
      } catch (err) {
        const e = err as { code?: unknown; message?: unknown };
        this.failed(typeof e.code === 'string' ? e.code : 'LOCAL_WRITE_FAILED', String(e.message ?? err));
      }
    });
    ws.on('error', (err) => {
      this.connectError = `${connectErrorCode(err)}|${sanitize(err.message, this.o.endpoint.key)}`;
    });
    ws.on('close', (code) => {
      if (ws !== this.ws) return;
      if (!this.openedAt) {
        const [c, m] = (this.connectError ?? 'UPSTREAM_CONNECT_FAILED|connection failed').split('|', 2);
        this.failed(c!, m ?? 'connection failed');
        return;
      }
      const since = Date.now() - this.openedAt;
      const kind = classifyClose(code, since, this.o.refusalWindowMs);
      if (code === 1009) this.failed('UPSTREAM_MESSAGE_TOO_BIG', `a message exceeded ${this.o.maxMessageBytes} bytes`);
      else if (kind === 'refused') this.failed('UPSTREAM_REFUSED', `server closed the session ${since} ms after the upgrade (code ${code})`);
      else if (kind === 'dropped') this.failed('UPSTREAM_DROPPED', `session lost (code ${code})`);
      else this.failed('UPSTREAM_CLOSED', `server closed the session (code ${code})`);
    });
  }

  private ensureWriter(): TrackWriter {
    // Throws (UNKNOWN_CHANNEL, TRACK_BUSY): the caller turns it into a link failure and backs off.
    if (!this.writer) this.writer = this.o.engine.publisher(this.o.to, { label: `pang-pull ${this.name}` });
    return this.writer;
  }

  private onMessage(raw: RawData, isBinary: boolean): void {
    const data = Array.isArray(raw) ? Buffer.concat(raw) : Buffer.isBuffer(raw) ? raw : Buffer.from(raw as ArrayBuffer);
    if (!isBinary) {
      this.c.textsIn++;
      const text = data.toString('utf8');
      let mime: string | undefined;
      if (text.startsWith('REXTMIME')) mime = text.slice(8);
      else if (/^[a-z]+\/[A-Za-z0-9.+_-]+(;|$)/i.test(text) && text.length < 1024) mime = text;
      if (mime !== undefined) {
        if (mime !== this.mime) {
          this.mime = mime;
          this.ensureWriter().setMime(mime);
        }
      } else {
        if (this.o.onCommand && text.startsWith('REXTXCMD')) {
          this.c.commands++;
          const reply = this.o.onCommand(text);
          if (reply !== null) {
            if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(reply, { binary: false });
            return;
          }
        }
        this.ensureWriter().text?.(text);
      }
      return;
    }
    if (data.length === 0) {
      this.c.keepalivesIn++;
      return;
    }
    if (!this.mime) {
      this.c.noMime++; // Moth viewers ignore data before a MIME; so do we
      return;
    }
    const kind = mimeKind(this.mime);
    let key = true;
    if (kind === 'video') {
      key = mimeBase(this.mime) === 'video/h264' ? isIdr(data) : true;
      if (this.needKey && !key) {
        this.c.waitKeyframe++; // Moth keeps no keyframe cache: wait for the next IDR
        return;
      }
      if (key) this.needKey = false;
    }
    this.c.framesIn++;
    this.c.bytesIn += data.length;
    this.ensureWriter().write({ ts: captureClockUs(), wallclock: Date.now(), key, data });
    this.up();
  }

  protected teardown(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.acceptTimer) clearTimeout(this.acceptTimer);
    this.acceptTimer = null;
    const ws = this.ws;
    this.ws = null;
    this.openedAt = 0;
    if (ws) {
      ws.removeAllListeners('open');
      ws.removeAllListeners('message');
      ws.on('error', () => {});
      try {
        ws.terminate();
      } catch {
        // a never-connected socket; nothing to release
      }
    }
  }

  override close(): void {
    super.close();
    const w = this.writer;
    this.writer = null;
    try {
      w?.close();
    } catch {
      // the engine's publisher close is idempotent
    }
  }

  stats(): PangPullerStats {
    return {
      ...this.baseStats(),
      track: trackPath(this.o.to),
      mime: this.mime ?? null,
      framesIn: this.c.framesIn,
      bytesIn: this.c.bytesIn,
      textsIn: this.c.textsIn,
      keepalivesIn: this.c.keepalivesIn,
      commands: this.c.commands,
      dropped: { noMime: this.c.noMime, waitKeyframe: this.c.waitKeyframe },
    };
  }
}
