// pang upstream publisher: one local track → one /pang/ws/pub session on a Moth(-compatible)
// server. MIME text first and about once a second, one access unit per binary message with
// SPS/PPS in front of every IDR, keepalive by an empty binary message, never waits for a pong,
// treats an immediate close as a refusal and backs off, and drops GOP tails under backpressure.
// A record counts as delivered only once the upstream acknowledged it (issue 14): by the relay's
// XACK where it sends one (a moth-edge relay asked with `ack=1`), else by the peer's TCP stack.
import type WebSocket from 'ws';
import {
  mimeBase,
  mimeKind,
  trackPath,
  type ConsumerHandle,
  type ConsumerStats,
  type TrackRef,
  type TrackSource,
} from '../engine/api.js';
import { ParamSetCache } from './h264-rtp.js';
import type { LinkBackoff, LinkStats } from './link.js';
import { AckMeter, UplinkEstimator, type UplinkEstimate } from '../uplink/estimator.js';
import { DEFAULT_PRIORITY, DemandMeter, type TrackDemand, type TrackMode } from '../uplink/scheduler.js';
import type { DeliverySink } from '../uplink/spans.js';
import { UplinkEncoderCap } from '../uplink/encoder-cap.js';
import { GopGate, type EgressLog, type PangEndpoint } from './pang-link.js';
import { pangLinkOptions, PangLink, sanitizeSecret, type PangSessionStats, type PangTcpOptions } from './pang-session.js';

export interface PangPublisherOptions {
  name: string;
  endpoint: PangEndpoint;
  caFile?: string | undefined;
  insecure?: boolean | undefined;
  from: TrackRef;
  maxBufferedBytes: number;
  source: TrackSource;
  log: EgressLog;
  backoff: LinkBackoff;
  /** Moth closes a publisher after `timeout` s of silence; 20 s keeps well inside the 30 s default. */
  keepaliveMs?: number;
  /** New subscribers ignore data until they have a MIME: re-send it about once a second. */
  mimeResendMs?: number;
  /** A close without close frame within this window after the upgrade is a refusal. */
  refusalWindowMs?: number;
  handshakeTimeoutMs?: number;
  /** Byte ceiling of this link's engine consumer queue (the socket ceiling comes first). */
  consumerCeilingBytes?: number;
  /** TCP settings of the link (dead-path detection, send buffer sizing): DEFAULT_PANG_TCP. */
  tcp?: Partial<PangTcpOptions> | undefined;
  /**
   * Uplink priority (issue 8; higher wins). Only read by an uplink scheduler; when none drives
   * this link the mode stays full and nothing changes.
   */
  priority?: number | undefined;
  /**
   * Where frames are reported once delivered (gap report and backfill, issue 8), keyed by the
   * local track path with the frame's capture wallclock; `break` when a frame was lost in between.
   */
  spans?: DeliverySink | undefined;
  /**
   * Extra hold after the acknowledgement before a record counts as delivered (ms). 0: the ack is
   * the delivery (issue 14). Kept for links whose upstream acknowledges before it stores.
   */
  confirmMs?: number;
  /**
   * A backfill covers this track (issue 8): on a reconnect a data track starts at its next new
   * record instead of the engine's cached last one. That record was captured before this session
   * existed, so it is either delivered already or the backfill's to send; replaying it live too
   * would deliver a record of the outage twice.
   */
  backfilled?: boolean;
  /**
   * A new session replays the engine's cached GOP so video is live at once. Moth's relay keeps a
   * small ring per track and a reader more than a couple of slots behind skips to the newest, so a
   * back-to-back replay loses its first keyframe there: the replay goes out at most one message per
   * this many ms until the session has caught up with live (issue 14). 0 = unpaced.
   */
  replayIntervalMs?: number;
  /** Ask the upstream for delivery acks (`ack=1`; a Moth ignores it, a moth-edge relay answers XACK). */
  requestAcks?: boolean;
}
export interface PangPublisherStats extends LinkStats {
  track: string;
  framesOut: number;
  bytesOut: number;
  textsOut: number;
  mimeSends: number;
  keepalives: number;
  refusals: number;
  paramSetsPrepended: number;
  bufferedBytes: number;
  maxBufferedBytes: number;
  peakBufferedBytes: number;
  waitingForKeyframe: boolean;
  dropped: { gopTail: number; bufferFull: number; noMime: number };
  droppedBytes: number;
  /** Messages of a new session's cache replay sent paced (issue 14: Moth's relay ring). */
  replayPaced: number;
  consumer: ConsumerStats | null;
  /** Drops inside the engine queue, summed over past sessions. */
  consumerDroppedTotal: number;
  /** Usable upstream rate measured from what this socket got acknowledged (issues 8, 14). */
  uplink: UplinkEstimate;
  /** Uplink priority mode set by the scheduler and what it cost (video only; data is never gated). */
  priority: {
    priority: number | null;
    mode: TrackMode;
    waitingForKeyframe: boolean;
    dropped: { keyframesOnly: number; paused: number };
    droppedBytes: number;
    demandBytesPerSec: number;
    keyframeBytesPerSec: number;
    encodingCap: { bytesPerSec: number | null; uncappedBytesPerSec: number | null; unsupported: boolean; requests: number; refused: number; lifts: number };
  };
  /**
   * Records reported delivered (acknowledged), and those a session took with it: `inDoubt` had
   * reached the kernel unacknowledged (the peer may have them: a backfilled copy may duplicate
   * them, and this count bounds those duplicates), `unsent` never left ws's buffer. `unacked`: in
   * flight now.
   */
  spans: { delivered: number; inDoubt: number; unsent: number; untracked: number; unacked: number; breaks: number };
  /** The TCP truth of the session (issue 14). */
  link: PangSessionStats;
}

export class PangPublisher extends PangLink {
  private consumer: ConsumerHandle | null = null;
  private timer: NodeJS.Timeout | null = null;
  private lastSendAt = 0;
  private lastMimeAt = 0;
  private sentMime: string | undefined;
  private gate: GopGate;
  private params = new ParamSetCache();
  private pumping = false;
  private readonly o: Required<Omit<PangPublisherOptions, 'caFile' | 'insecure' | 'priority' | 'spans' | 'tcp'>> & Pick<PangPublisherOptions, 'caFile' | 'insecure' | 'priority' | 'spans'>;
  private readonly trackName: string;
  private c = {
    framesOut: 0,
    bytesOut: 0,
    textsOut: 0,
    mimeSends: 0,
    keepalives: 0,
    refusals: 0,
    noMime: 0,
    peakBufferedBytes: 0,
    consumerDroppedTotal: 0,
    replayPaced: 0,
  };
  private readonly meter = new AckMeter('pang');
  /** Upstream budget estimate from what this socket got acknowledged; read by the uplink scheduler. */
  readonly uplink = new UplinkEstimator();
  private mode: TrackMode = 'full';
  /** After stepping up, deltas reference frames we dropped: hold them until the next keyframe. */
  private modeAwaitKey = false;
  private readonly demand = new DemandMeter();
  private readonly pc = { keyframesOnly: 0, paused: 0, droppedBytes: 0 };
  /** Encoder cap asked of the source by the uplink scheduler (issue 8 step 5). */
  private readonly cap: UplinkEncoderCap;
  /**
   * Records sent and not yet acknowledged: wire offset of their last byte, message number, capture
   * wallclock, and when the acknowledgement was first seen (-1: not yet).
   */
  private inFlight: Array<{ end: number; msg: number; wall: number; bytes: number; ackedAt: number }> = [];
  private inFlightHead = 0;
  private readonly sc = { delivered: 0, inDoubt: 0, unsent: 0, untracked: 0, breaks: 0 };
  /** Engine queue drops seen so far this session (a new drop breaks the delivered span). */
  private consumerDrops = 0;
  /** The session replays the engine's cache until its queue first runs dry: paced (Moth's ring). */
  private replaying = false;
  /** Called with every binary payload right after ws.send (tests, latency bench). */
  onSent: ((data: Buffer, key: boolean, ts: number) => void) | null = null;

  constructor(opts: PangPublisherOptions) {
    super(pangLinkOptions('pang-pub', 'pub', opts, { ack: opts.requestAcks !== false }));
    this.cap = new UplinkEncoderCap(opts.source);
    const { tcp: _tcp, ...rest } = opts;
    this.o = {
      keepaliveMs: 20_000,
      mimeResendMs: 1000,
      refusalWindowMs: 3000,
      handshakeTimeoutMs: 10_000,
      // 4 MB: room for about two 720p GOPs; the socket ceiling decides drops long before this.
      consumerCeilingBytes: 4 * 1024 * 1024,
      confirmMs: 0,
      backfilled: false,
      replayIntervalMs: 20,
      requestAcks: true,
      ...rest,
    };
    this.trackName = trackPath(opts.from);
    this.gate = new GopGate(opts.maxBufferedBytes);
  }

  protected onOpen(ws: WebSocket): void {
    const now = Date.now();
    this.lastSendAt = now;
    this.meter.reset();
    if (this.sessions > 1) {
      // A new session after a drop: the old estimate described the dead path, and a reduced mode
      // would hold video back until a probe. Start full; the scheduler steps down again within a
      // round or two if the link is still thin (time-to-live after a cut, issue 8).
      this.uplink.reset();
      this.mode = 'full';
      this.modeAwaitKey = false; // the consumer starts at the cached keyframe
    }
    this.sentMime = undefined;
    this.gate.reset(); // the parameter-set cache stays: a camera may send SPS/PPS only once
    const fromCache = !(this.o.backfilled === true && this.sessions > 1 && this.localKind() === 'data');
    let consumer: ConsumerHandle;
    try {
      consumer = this.o.source.subscribe(this.o.from, { label: `pang-up ${this.name}`, ceilingBytes: this.o.consumerCeilingBytes, fromCache });
    } catch (err) {
      // e.g. UNKNOWN_CHANNEL: a config naming a channel the engine does not have. Back off, never throw from a socket event.
      const e = err as { code?: unknown; message?: unknown };
      this.failed(typeof e.code === 'string' ? e.code : 'LOCAL_TRACK_UNAVAILABLE', String(e.message ?? err), 'refused');
      return;
    }
    this.consumer = consumer;
    this.consumerDrops = 0;
    this.replaying = fromCache && this.o.replayIntervalMs > 0;
    consumer.onReadable(() => this.pump());
    consumer.onClose((reason) => {
      if (consumer === this.consumer) this.failed('SOURCE_CLOSED', `local track closed: ${reason}`);
    });
    this.sendMime(consumer.mime());
    // 250 ms: acknowledgements settle and a dead path is judged at this cadence (issue 14).
    const tick = Math.max(10, Math.min(250, this.o.mimeResendMs / 2, this.o.keepaliveMs / 2, this.o.refusalWindowMs / 2));
    this.timer = setInterval(() => this.onTick(), tick);
    this.timer.unref?.();
    void ws;
    this.pump();
  }

  /** The local track's kind now (data when unknown: only a known video/audio track replays its cache). */
  private localKind(): string {
    const f = this.o.from;
    const t = this.o.source.listTracks().find((x) => x.channel === f.channel && x.source === f.source && x.track === f.track);
    return t ? t.kind : 'data';
  }

  private onTick(): void {
    if (!this.ws) return;
    const now = Date.now();
    if (!this.checkLink(now)) return; // dead path: the session ended, its unacknowledged records are owed
    const mime = this.consumer?.mime() ?? this.sentMime;
    if (mime && now - this.lastMimeAt >= this.o.mimeResendMs) this.sendMime(mime);
    // Still open after the refusal window: the server accepted us even if the track is idle.
    if (now - this.openedAt >= this.o.refusalWindowMs) this.up();
    if (now - this.lastSendAt >= this.o.keepaliveMs) {
      // Moth never answers pings: keep alive with an empty binary message.
      this.sendBinary(Buffer.alloc(0));
      this.lastSendAt = now;
      this.c.keepalives++;
    }
    const buffered = this.bufferedBytes;
    if (buffered > this.c.peakBufferedBytes) this.c.peakBufferedBytes = buffered;
    const sample = this.meter.observe(now, this.ackedWire, this.waiting);
    if (sample) this.uplink.add(sample);
    this.sizeSendBuffer(this.uplink.estimate(now).bytesPerSec);
    this.demand.tick(now);
  }

  private sendMime(mime: string | undefined): void {
    if (!mime || !this.ws) return;
    this.sendText(mime);
    this.sentMime = mime;
    this.c.mimeSends++;
    this.lastSendAt = this.lastMimeAt = Date.now();
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      for (;;) {
        const ws = this.ws;
        const consumer = this.consumer;
        if (!ws || !consumer || this.openedAt === 0) return;
        // A moth-edge relay (it acknowledges by XACK) queues per subscriber: no pacing needed.
        if (this.replaying && !this.upstreamAcks) {
          const wait = this.lastSendAt + this.o.replayIntervalMs - Date.now();
          if (this.c.framesOut > 0 && wait > 0) {
            this.pumpAfter(wait);
            return;
          }
        }
        const item = consumer.next();
        if (!item) {
          this.replaying = false; // caught up with live: natural pace from here
          return;
        }
        if (item.type === 'text') {
          // REXT/XCMD texts are forwarded as sent; a MIME change comes through item.mime.
          this.sendText(item.text);
          this.c.textsOut++;
          continue;
        }
        const mime = item.mime ?? consumer.mime();
        if (!mime) {
          this.c.noMime++; // a Moth viewer ignores data before the MIME: do not send it
          continue;
        }
        if (mime !== this.sentMime) this.sendMime(mime);
        const kind = mimeKind(mime);
        let data = item.frame.data;
        if (kind === 'video' && mimeBase(mime) === 'video/h264') data = this.params.apply(data);
        this.demand.add(data.length, item.frame.key);
        if (kind === 'video' && !this.modeAllows(item.frame.key, data.length)) continue;
        if (this.o.spans && kind !== 'video') {
          // A record the engine queue dropped before we saw it: the delivered span must end here.
          const d = consumerDropCount(consumer);
          if (d !== this.consumerDrops) {
            this.consumerDrops = d;
            this.breakSpan();
          }
        }
        const decision = this.gate.decide(kind, item.frame.key, data.length, this.bufferedBytes);
        if (decision !== 'send') {
          if (kind !== 'video') this.breakSpan();
          continue;
        }
        this.sendBinary(data);
        if (this.replaying) this.c.replayPaced++;
        if (this.o.spans) this.trackInFlight(item.frame.wallclock, data.length);
        this.lastSendAt = Date.now();
        this.c.framesOut++;
        this.c.bytesOut += data.length;
        const buffered = this.bufferedBytes;
        if (buffered > this.c.peakBufferedBytes) this.c.peakBufferedBytes = buffered;
        this.onSent?.(data, item.frame.key, item.frame.ts);
        this.up();
      }
    } finally {
      this.pumping = false;
    }
  }

  protected override pumpAgain(): void {
    this.pump();
  }

  // Bounded by the socket ceiling in practice; 65 536 entries is ~2 min of a 500 Hz data track.
  private static readonly MAX_IN_FLIGHT = 65_536;

  private trackInFlight(wall: number, bytes: number): void {
    if (this.inFlight.length - this.inFlightHead >= PangPublisher.MAX_IN_FLIGHT) {
      this.inFlightHead++;
      this.sc.untracked++;
      this.breakSpan();
    }
    this.inFlight.push({ end: this.wireOut, msg: this.msgsOut, wall, bytes, ackedAt: -1 });
  }

  /**
   * Records the upstream acknowledged (its XACK count, or the peer's TCP stack) count as delivered
   * live once confirmMs has passed since (0 by default: the ack is the delivery).
   */
  protected override onAcked(): void {
    const spans = this.o.spans;
    if (!spans) return;
    const now = Date.now();
    const byMsg = this.upstreamAcks;
    const upTo = byMsg ? (this.upstreamReceived ?? 0) : this.ackedWire;
    while (this.inFlightHead < this.inFlight.length) {
      const f = this.inFlight[this.inFlightHead]!;
      if (f.ackedAt < 0) {
        if ((byMsg ? f.msg : f.end) > upTo) break;
        f.ackedAt = now;
      }
      if (now - f.ackedAt < this.o.confirmMs) break;
      this.inFlightHead++;
      spans.add(this.trackName, f.wall, f.bytes);
      this.sc.delivered++;
    }
    if (this.inFlightHead > 1024 && this.inFlightHead * 2 > this.inFlight.length) {
      this.inFlight = this.inFlight.slice(this.inFlightHead);
      this.inFlightHead = 0;
    }
  }

  private breakSpan(): void {
    if (!this.o.spans?.break) return;
    this.o.spans.break(this.trackName);
    this.sc.breaks++;
  }

  /**
   * Capture wallclock of the oldest frame this link still has in flight (sent, not yet
   * acknowledged), or null when none: backfill must not touch anything from there on, it may
   * still arrive live.
   */
  pendingSinceWall(): number | null {
    return this.inFlightHead < this.inFlight.length ? this.inFlight[this.inFlightHead]!.wall : null;
  }

  /** The local track this link publishes. */
  get from(): TrackRef {
    return this.o.from;
  }

  /** The uplink scheduler's gate in front of the send (video only). */
  private modeAllows(key: boolean, size: number): boolean {
    if (this.mode === 'full' && !this.modeAwaitKey) return true;
    if (this.mode !== 'paused' && key) {
      this.modeAwaitKey = false;
      return true;
    }
    if (this.mode === 'paused') this.pc.paused++;
    else this.pc.keyframesOnly++;
    this.pc.droppedBytes += size;
    return false;
  }

  /**
   * The uplink scheduler asks the encoder for at most `bytesPerSec` (null lifts the cap) through
   * the engine (the track's driver applies it, merged with other callers such as thermal).
   * False when the source cannot: it is then not offered as cappable again this session.
   */
  setEncodingCap(bytesPerSec: number | null): boolean {
    return this.cap.set(this.o.from, bytesPerSec, this.demand.bytesPerSec);
  }

  /** Set by the uplink scheduler. Stepping up waits for a keyframe (and asks the source for one). */
  setMode(mode: TrackMode): void {
    if (mode === this.mode) return;
    const up = mode === 'full' || (mode === 'keyframes-only' && this.mode === 'paused');
    this.mode = mode;
    if (up) {
      this.modeAwaitKey = true;
      try {
        this.o.source.requestKeyframe(this.o.from);
      } catch {
        // a source that cannot make keyframes on request: the next natural one will do
      }
    }
  }

  /** Lifts this link's encoder cap (other callers' caps stay), then closes like any link. */
  override close(): void {
    if (this.cap.capped) this.setEncodingCap(null);
    super.close();
  }

  /** What this link offers, for the uplink scheduler; null until the track's kind is known. */
  uplinkDemand(): TrackDemand | null {
    const mime = this.consumer?.mime() ?? this.sentMime;
    if (!mime) return null;
    const kind = mimeKind(mime);
    return {
      id: this.name,
      kind,
      priority: this.o.priority ?? DEFAULT_PRIORITY[kind],
      demandBytesPerSec: this.demand.bytesPerSec,
      keyframeBytesPerSec: this.demand.keyframeBytesPerSec,
      cappable: kind === 'video' && this.cap.cappable,
      uncappedBytesPerSec: this.cap.uncapped,
    };
  }

  protected override failed(code: string, message: string, cls?: 'refused' | 'network'): void {
    if (code === 'UPSTREAM_REFUSED') this.c.refusals++;
    super.failed(code, message, cls);
  }

  protected endSession(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    // Not acknowledged when the session ended: not delivered (the backfill sends them again).
    // Still in ws's buffer: never reached the kernel, certainly lost. In the kernel: in doubt —
    // the peer may have got them, so a backfilled copy may be a duplicate (bounded by this count).
    const reachedKernel = this.wireOut - this.bufferedBytes;
    for (let i = this.inFlightHead; i < this.inFlight.length; i++) {
      if (this.inFlight[i]!.end > reachedKernel) this.sc.unsent++;
      else this.sc.inDoubt++;
    }
    // Frames captured while no session runs are not delivered: the next span starts fresh.
    this.breakSpan();
    this.inFlight = [];
    this.inFlightHead = 0;
    this.replaying = false;
    const consumer = this.consumer;
    this.consumer = null;
    if (consumer) {
      const s = consumer.stats();
      this.c.consumerDroppedTotal += Object.values(s.dropped).reduce((a, b) => a + b, 0);
      try {
        consumer.close();
      } catch {
        // engine consumers close idempotently; nothing to recover here
      }
    }
  }

  stats(): PangPublisherStats {
    return {
      ...this.baseStats(),
      track: trackPath(this.o.from),
      framesOut: this.c.framesOut,
      bytesOut: this.c.bytesOut,
      textsOut: this.c.textsOut,
      mimeSends: this.c.mimeSends,
      keepalives: this.c.keepalives,
      refusals: this.c.refusals,
      paramSetsPrepended: this.params.prepended,
      bufferedBytes: this.bufferedBytes,
      maxBufferedBytes: this.o.maxBufferedBytes,
      peakBufferedBytes: this.c.peakBufferedBytes,
      waitingForKeyframe: this.gate.waitingForKeyframe,
      dropped: { gopTail: this.gate.dropped.gopTail, bufferFull: this.gate.dropped.bufferFull, noMime: this.c.noMime },
      droppedBytes: this.gate.droppedBytes,
      replayPaced: this.c.replayPaced,
      consumer: this.consumer ? this.consumer.stats() : null,
      consumerDroppedTotal: this.c.consumerDroppedTotal,
      uplink: this.uplink.estimate(Date.now()),
      priority: {
        priority: this.o.priority ?? null,
        mode: this.mode,
        waitingForKeyframe: this.modeAwaitKey,
        dropped: { keyframesOnly: this.pc.keyframesOnly, paused: this.pc.paused },
        droppedBytes: this.pc.droppedBytes,
        demandBytesPerSec: this.demand.bytesPerSec,
        keyframeBytesPerSec: this.demand.keyframeBytesPerSec,
        encodingCap: this.cap.stats(),
      },
      spans: { ...this.sc, unacked: this.inFlight.length - this.inFlightHead },
      link: this.sessionStats(),
    };
  }
}

function consumerDropCount(c: ConsumerHandle): number {
  const d = c.stats().dropped;
  let n = 0;
  for (const v of Object.values(d)) n += v;
  return n;
}

/** Error messages from ws/TLS may quote the URL: strip the key if it shows up. */
export const sanitize = sanitizeSecret;
