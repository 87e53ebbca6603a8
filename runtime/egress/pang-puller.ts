// pang pull-down: one upstream track (/pang/ws/sub) → one local engine track, e.g. an operator's
// audio or data track coming down to the robot. MIME from the first text (or REXTMIME), one
// binary message = one frame; the empty keepalive binaries are not frames.
// A link that mostly receives must still notice a dead path (issue 14): TCP keepalive probes, and
// after readIdleMs with nothing received a binary "ping" (what Moth viewers send) whose missing
// acknowledgement ends the session within deadAfterMs — instead of sitting "connected" through a
// silent drop while the operator's commands are lost.
import type WebSocket from 'ws';
import type { RawData } from 'ws';
import { captureClockUs, mimeBase, mimeKind, trackPath, type Frame, type TrackRef } from '../engine/api.js';
import { isIdr } from './h264-rtp.js';
import type { LinkBackoff, LinkStats } from './link.js';
import type { EgressLog, PangEndpoint } from './pang-link.js';
import { pangLinkOptions, PangLink, type PangSessionStats, type PangTcpOptions } from './pang-session.js';

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
  backoff: LinkBackoff;
  /** Moth viewers keep a sub session alive with a binary "ping" message. */
  keepaliveMs?: number;
  /** Nothing received for this long: send a "ping" so a dead path shows as unacknowledged bytes (3 s). */
  readIdleMs?: number;
  tcp?: Partial<PangTcpOptions> | undefined;
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
  /** "ping"s sent because nothing arrived for readIdleMs (liveness probes). */
  idleProbes: number;
  dropped: { noMime: number; waitKeyframe: number };
  link: PangSessionStats;
}

export class PangPuller extends PangLink {
  private writer: TrackWriter | null = null;
  private timer: NodeJS.Timeout | null = null;
  private lastInAt = 0;
  private lastPingAt = 0;
  private mime: string | undefined;
  private needKey = true;
  private readonly o: PangPullerOptions & Required<Pick<PangPullerOptions, 'keepaliveMs' | 'readIdleMs' | 'refusalWindowMs' | 'handshakeTimeoutMs' | 'maxMessageBytes'>>;
  private c = { framesIn: 0, bytesIn: 0, textsIn: 0, keepalivesIn: 0, noMime: 0, waitKeyframe: 0, commands: 0, idleProbes: 0 };

  constructor(opts: PangPullerOptions) {
    const o = { keepaliveMs: 20_000, readIdleMs: 3000, refusalWindowMs: 3000, handshakeTimeoutMs: 10_000, maxMessageBytes: 8 * 1024 * 1024, ...opts };
    super(pangLinkOptions('pang-pull', 'sub', o, { maxPayload: o.maxMessageBytes }));
    this.o = o;
  }

  protected onOpen(_ws: WebSocket): void {
    const now = Date.now();
    this.needKey = true;
    this.lastInAt = this.lastPingAt = now;
    // 250 ms: the refusal window, the read-idle probe and a dead path are judged at this cadence.
    this.timer = setInterval(() => this.onTick(), 250);
    this.timer.unref?.();
  }

  private onTick(): void {
    if (!this.ws) return;
    const now = Date.now();
    if (!this.checkLink(now)) return;
    // Still open after the refusal window: accepted, even before the upstream track has data.
    if (this.state !== 'connected' && now - this.openedAt >= this.o.refusalWindowMs) this.up();
    const idle = now - this.lastInAt >= this.o.readIdleMs && now - this.lastPingAt >= this.o.readIdleMs;
    if (idle || now - this.lastPingAt >= this.o.keepaliveMs) {
      if (idle) this.c.idleProbes++;
      this.sendBinary(Buffer.from('ping'));
      this.lastPingAt = now;
    }
  }

  protected override onMessage(raw: RawData, isBinary: boolean): void {
    this.lastInAt = Date.now();
    try {
      this.handle(raw, isBinary);
    } catch (err) {
      const e = err as { code?: unknown; message?: unknown };
      this.failed(typeof e.code === 'string' ? e.code : 'LOCAL_WRITE_FAILED', String(e.message ?? err));
    }
  }

  private ensureWriter(): TrackWriter {
    // Throws (UNKNOWN_CHANNEL, TRACK_BUSY): the caller turns it into a link failure and backs off.
    if (!this.writer) this.writer = this.o.engine.publisher(this.o.to, { label: `pang-pull ${this.name}` });
    return this.writer;
  }

  private handle(raw: RawData, isBinary: boolean): void {
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
            this.sendText(reply);
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

  protected endSession(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
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
      idleProbes: this.c.idleProbes,
      dropped: { noMime: this.c.noMime, waitKeyframe: this.c.waitKeyframe },
      link: this.sessionStats(),
    };
  }
}
