// pang upstream publisher: one local track → one /pang/ws/pub session on a Moth(-compatible)
// server. MIME text first and about once a second, one access unit per binary message with
// SPS/PPS in front of every IDR, keepalive by an empty binary message, never waits for a pong,
// treats an immediate close as a refusal and backs off, and drops GOP tails under backpressure.
import { openPangOrFail } from './pang-socket.js';
import WebSocket from 'ws';
import {
  mimeBase,
  mimeKind,
  trackPath,
  type BackoffOptions,
  type ConsumerHandle,
  type ConsumerStats,
  type TrackRef,
  type TrackSource,
} from '../engine/api.js';
import { ParamSetCache } from './h264-rtp.js';
import { ReconnectingLink, type LinkStats } from './link.js';
import { DrainMeter, UplinkEstimator, wsClientFrameBytes, type UplinkEstimate } from '../uplink/estimator.js';
import { DEFAULT_PRIORITY, DemandMeter, type TrackDemand, type TrackMode } from '../uplink/scheduler.js';
import type { DeliverySink } from '../uplink/spans.js';
import { UplinkEncoderCap } from '../uplink/encoder-cap.js';
import {
  classifyClose,
  connectErrorCode,
  GopGate,
  pangSessionUrl,
  redactPangUrl,
  type EgressLog,
  type PangEndpoint,
} from './pang-link.js';

export interface PangPublisherOptions {
  name: string;
  endpoint: PangEndpoint;
  caFile?: string | undefined;
  insecure?: boolean | undefined;
  from: TrackRef;
  maxBufferedBytes: number;
  source: TrackSource;
  log: EgressLog;
  backoff: BackoffOptions;
  /** Moth closes a publisher after `timeout` s of silence; 20 s keeps well inside the 30 s default. */
  keepaliveMs?: number;
  /** New subscribers ignore data until they have a MIME: re-send it about once a second. */
  mimeResendMs?: number;
  /** A close without close frame within this window after the upgrade is a refusal. */
  refusalWindowMs?: number;
  handshakeTimeoutMs?: number;
  /** Byte ceiling of this link's engine consumer queue (the socket ceiling comes first). */
  consumerCeilingBytes?: number;
  /**
   * A socket whose backlog has not shrunk for this long is stalled (the server stopped reading):
   * reconnect instead of sitting on a dead session. 30 s matches Moth's default idle timeout.
   */
  stallTimeoutMs?: number;
  /**
   * Uplink priority (issue 8; higher wins). Only read by an uplink scheduler; when none drives
   * this link (no priorities configured) the mode stays full and nothing changes.
   */
  priority?: number | undefined;
  /**
   * Where frames are reported once delivered (gap report and backfill, issue 8), keyed by the
   * local track path with the frame's capture wallclock; `break` when a frame was lost in between.
   */
  spans?: DeliverySink | undefined;
  /**
   * A frame counts as delivered once its last byte left the socket buffer (bufferedAmount drained
   * past it) AND the session then stayed up this long. A session that dies sooner takes the
   * frames of this window with it as not delivered (they are backfilled): bytes that left the
   * socket may still sit in kernel or network buffers when a link is cut. 1 s; 0 = drain only.
   */
  confirmMs?: number;
  /**
   * A backfill covers this track (issue 8): on a reconnect a data track starts at its next new
   * record instead of the engine's cached last one. That record was captured before this session
   * existed, so it is either delivered already or the backfill's to send; replaying it live too
   * would deliver a record of the outage twice.
   */
  backfilled?: boolean;
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
  consumer: ConsumerStats | null;
  /** Drops inside the engine queue, summed over past sessions. */
  consumerDroppedTotal: number;
  /** Usable upstream rate measured from this socket's bufferedAmount drain (issue 8). */
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
  /** Frames reported to the span log (delivered), and those lost with a session's socket buffer. */
  spans: { delivered: number; lostInSocket: number; lostUnconfirmed: number; untracked: number; inSocket: number; breaks: number };
}

export class PangPublisher extends ReconnectingLink {
  private ws: WebSocket | null = null;
  private consumer: ConsumerHandle | null = null;
  private timer: NodeJS.Timeout | null = null;
  private openedAt = 0;
  private lastSendAt = 0;
  private lastMimeAt = 0;
  private lastBuffered = 0;
  private lastProgressAt = 0;
  private sentMime: string | undefined;
  private gate: GopGate;
  private params = new ParamSetCache();
  private pumping = false;
  private connectError: string | null = null;
  private readonly url: string;
  private readonly o: Required<Omit<PangPublisherOptions, 'caFile' | 'insecure' | 'priority' | 'spans'>> & Pick<PangPublisherOptions, 'caFile' | 'insecure' | 'priority' | 'spans'>;
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
  };
  /** Bytes handed to the socket incl. WebSocket framing (what bufferedAmount counts). */
  private wireOut = 0;
  private readonly drain = new DrainMeter('pang');
  /** Upstream budget estimate from the socket's drain; read by the uplink scheduler. */
  readonly uplink = new UplinkEstimator();
  private mode: TrackMode = 'full';
  private sessionCount = 0;
  /** After stepping up, deltas reference frames we dropped: hold them until the next keyframe. */
  private modeAwaitKey = false;
  private readonly demand = new DemandMeter();
  private readonly pc = { keyframesOnly: 0, paused: 0, droppedBytes: 0 };
  /** Encoder cap asked of the source by the uplink scheduler (issue 8 step 5). */
  private readonly cap: UplinkEncoderCap;
  /** Frames not yet confirmed: wire offset of their last byte, and when it left the socket buffer. */
  private inFlight: Array<{ end: number; wall: number; bytes: number; drainedAt: number }> = [];
  private inFlightHead = 0;
  /** First in-flight frame not yet drained from the socket buffer (index into inFlight). */
  private drainIdx = 0;
  private readonly sc = { delivered: 0, lostInSocket: 0, lostUnconfirmed: 0, untracked: 0, breaks: 0 };
  /** Engine queue drops seen so far this session (a new drop breaks the delivered span). */
  private consumerDrops = 0;
  /** Called with every binary payload right after ws.send (tests, latency bench). */
  onSent: ((data: Buffer, key: boolean, ts: number) => void) | null = null;

  constructor(opts: PangPublisherOptions) {
    const url = pangSessionUrl(opts.endpoint, 'pub');
    super(opts.name, 'pang-pub', redactPangUrl(url), opts.log, opts.backoff);
    this.url = url;
    this.cap = new UplinkEncoderCap(opts.source);
    this.o = {
      keepaliveMs: 20_000,
      mimeResendMs: 1000,
      refusalWindowMs: 3000,
      handshakeTimeoutMs: 10_000,
      // 4 MB: room for about two 720p GOPs; the socket ceiling decides drops long before this.
      consumerCeilingBytes: 4 * 1024 * 1024,
      stallTimeoutMs: 30_000,
      confirmMs: 1000,
      backfilled: false,
      ...opts,
    };
    this.trackName = trackPath(opts.from);
    this.gate = new GopGate(opts.maxBufferedBytes);
  }

  protected attempt(): void {
    this.connectError = null;
    const ws = openPangOrFail(this.url, { handshakeTimeoutMs: this.o.handshakeTimeoutMs, insecure: this.o.insecure, caFile: this.o.caFile }, (code, msg) => this.failed(code, msg));
    if (!ws) return;
    this.ws = ws;
    ws.on('open', () => this.onOpen(ws));
    ws.on('error', (err) => {
      // ws follows every error with 'close'; remember why, without the URL (it holds the key).
      this.connectError = `${connectErrorCode(err)}|${sanitize(err.message, this.o.endpoint.key)}`;
    });
    ws.on('close', (code) => this.onClose(ws, code));
    // Inbound messages (bundle mode echoes) are ignored; a Moth never sends pongs, we never ping.
  }

  private onOpen(ws: WebSocket): void {
    if (ws !== this.ws) return;
    this.openedAt = Date.now();
    this.lastSendAt = this.openedAt;
    this.lastProgressAt = this.openedAt;
    this.lastBuffered = 0;
    this.drain.reset();
    if (this.sessionCount++ > 0) {
      // A new session after a drop: the old estimate described the dead path, and a reduced mode
      // would hold video back until a probe. Start full; the scheduler steps down again within a
      // round or two if the link is still thin (time-to-live after a cut, issue 8).
      this.uplink.reset();
      this.mode = 'full';
      this.modeAwaitKey = false; // the consumer starts at the cached keyframe
    }
    this.sentMime = undefined;
    this.gate.reset(); // the parameter-set cache stays: a camera may send SPS/PPS only once
    let consumer: ConsumerHandle;
    try {
      consumer = this.o.source.subscribe(this.o.from, {
        label: `pang-up ${this.name}`,
        ceilingBytes: this.o.consumerCeilingBytes,
        fromCache: !(this.o.backfilled === true && this.sessionCount > 1 && this.localKind() === 'data'),
      });
    } catch (err) {
      // e.g. UNKNOWN_CHANNEL: a config naming a channel the engine does not have. Back off, never throw from a socket event.
      const e = err as { code?: unknown; message?: unknown };
      this.failed(typeof e.code === 'string' ? e.code : 'LOCAL_TRACK_UNAVAILABLE', String(e.message ?? err));
      return;
    }
    this.consumer = consumer;
    this.consumerDrops = 0;
    consumer.onReadable(() => this.pump());
    consumer.onClose((reason) => {
      if (consumer === this.consumer) this.failed('SOURCE_CLOSED', `local track closed: ${reason}`);
    });
    this.sendMime(consumer.mime());
    const tick = Math.max(10, Math.min(this.o.mimeResendMs, this.o.keepaliveMs, this.o.refusalWindowMs) / 2);
    this.timer = setInterval(() => this.onTick(), tick);
    this.timer.unref?.();
    this.pump();
  }

  /** The local track's kind now (data when unknown: only a known video/audio track replays its cache). */
  private localKind(): string {
    const f = this.o.from;
    const t = this.o.source.listTracks().find((x) => x.channel === f.channel && x.source === f.source && x.track === f.track);
    return t ? t.kind : 'data';
  }

  private onTick(): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const now = Date.now();
    const mime = this.consumer?.mime() ?? this.sentMime;
    if (mime && now - this.lastMimeAt >= this.o.mimeResendMs) this.sendMime(mime);
    // Still open after the refusal window: the server accepted us even if the track is idle.
    if (now - this.openedAt >= this.o.refusalWindowMs) this.up();
    if (now - this.lastSendAt >= this.o.keepaliveMs) {
      // Moth never answers pings: keep alive with an empty binary message.
      ws.send(Buffer.alloc(0), { binary: true });
      this.wireOut += wsClientFrameBytes(0);
      this.lastSendAt = now;
      this.c.keepalives++;
    }
    this.trackBuffered(ws);
    const buffered = ws.bufferedAmount;
    this.settleInFlight(buffered, now);
    const sample = this.drain.observe(now, this.wireOut, buffered);
    if (sample) this.uplink.add(sample);
    this.demand.tick(now);
    if (buffered === 0 || buffered < this.lastBuffered) this.lastProgressAt = now;
    this.lastBuffered = buffered;
    if (buffered > 0 && now - this.lastProgressAt > this.o.stallTimeoutMs) {
      this.failed('UPSTREAM_STALLED', `no bytes accepted by the server for ${Math.round((now - this.lastProgressAt) / 1000)} s (${buffered} B waiting)`);
    }
  }

  private sendMime(mime: string | undefined): void {
    const ws = this.ws;
    if (!mime || !ws || ws.readyState !== WebSocket.OPEN) return;
    ws.send(mime, { binary: false });
    this.wireOut += wsClientFrameBytes(Buffer.byteLength(mime));
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
        if (!ws || !consumer || ws.readyState !== WebSocket.OPEN) return;
        const item = consumer.next();
        if (!item) return;
        if (item.type === 'text') {
          // REXT/XCMD texts are forwarded as sent; a MIME change comes through item.mime.
          ws.send(item.text, { binary: false });
          this.wireOut += wsClientFrameBytes(Buffer.byteLength(item.text));
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
        const decision = this.gate.decide(kind, item.frame.key, data.length, ws.bufferedAmount);
        if (decision !== 'send') {
          if (kind !== 'video') this.breakSpan();
          continue;
        }
        ws.send(data, { binary: true });
        this.wireOut += wsClientFrameBytes(data.length);
        if (this.o.spans) this.trackInFlight(ws, item.frame.wallclock, data.length);
        this.lastSendAt = Date.now();
        this.c.framesOut++;
        this.c.bytesOut += data.length;
        this.trackBuffered(ws);
        this.onSent?.(data, item.frame.key, item.frame.ts);
        this.up();
      }
    } finally {
      this.pumping = false;
    }
  }

  // Bounded by the socket ceiling in practice; 65 536 entries is ~2 min of a 500 Hz data track.
  private static readonly MAX_IN_FLIGHT = 65_536;

  private trackInFlight(ws: WebSocket, wall: number, bytes: number): void {
    if (this.inFlight.length - this.inFlightHead >= PangPublisher.MAX_IN_FLIGHT) {
      this.inFlightHead++;
      this.sc.untracked++;
      this.breakSpan();
    }
    this.inFlight.push({ end: this.wireOut, wall, bytes, drainedAt: -1 });
    this.settleInFlight(ws.bufferedAmount, Date.now());
  }

  /**
   * Frames whose last byte left the socket buffer, and stayed gone for confirmMs with the session
   * up, count as delivered live.
   */
  private settleInFlight(buffered: number, now: number): void {
    const spans = this.o.spans;
    if (!spans) return;
    const drained = this.wireOut - buffered;
    if (this.drainIdx < this.inFlightHead) this.drainIdx = this.inFlightHead;
    while (this.drainIdx < this.inFlight.length && this.inFlight[this.drainIdx]!.end <= drained) this.inFlight[this.drainIdx++]!.drainedAt = now;
    while (this.inFlightHead < this.inFlight.length) {
      const f = this.inFlight[this.inFlightHead]!;
      if (f.drainedAt < 0 || now - f.drainedAt < this.o.confirmMs) break;
      this.inFlightHead++;
      spans.add(this.trackName, f.wall, f.bytes);
      this.sc.delivered++;
    }
    if (this.inFlightHead > 1024 && this.inFlightHead * 2 > this.inFlight.length) {
      this.inFlight = this.inFlight.slice(this.inFlightHead);
      this.drainIdx = Math.max(0, this.drainIdx - this.inFlightHead);
      this.inFlightHead = 0;
    }
  }

  private breakSpan(): void {
    if (!this.o.spans?.break) return;
    this.o.spans.break(this.trackName);
    this.sc.breaks++;
  }

  /**
   * Capture wallclock of the oldest frame this link still has in flight (sent, not yet confirmed),
   * or null when none: backfill must not touch anything from there on, it may still arrive live.
   */
  pendingSinceWall(): number | null {
    return this.inFlightHead < this.inFlight.length ? this.inFlight[this.inFlightHead]!.wall : null;
  }

  /** Sessions opened so far: a change tells the uplink scheduler to forget this track's last mode. */
  get sessions(): number {
    return this.sessionCount;
  }

  /** The local track this link publishes. */
  get from(): TrackRef {
    return this.o.from;
  }

  /** bytes waiting in the socket now (the backfill yields while a live link holds a backlog). */
  get bufferedBytes(): number {
    return this.ws?.bufferedAmount ?? 0;
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

  private trackBuffered(ws: WebSocket): void {
    if (ws.bufferedAmount > this.c.peakBufferedBytes) this.c.peakBufferedBytes = ws.bufferedAmount;
  }

  private onClose(ws: WebSocket, code: number): void {
    if (ws !== this.ws) return;
    const opened = this.openedAt > 0;
    const since = opened ? Date.now() - this.openedAt : 0;
    if (!opened) {
      const [errCode, msg] = (this.connectError ?? 'UPSTREAM_CONNECT_FAILED|connection failed').split('|', 2);
      this.failed(errCode!, msg ?? 'connection failed');
      return;
    }
    const kind = classifyClose(code, since, this.o.refusalWindowMs);
    if (kind === 'refused') {
      this.c.refusals++;
      this.failed('UPSTREAM_REFUSED', `server closed the session ${since} ms after the upgrade (code ${code}): wrong key, unknown channel or track busy`);
    } else if (kind === 'dropped') {
      this.failed('UPSTREAM_DROPPED', `session lost after ${Math.round(since / 1000)} s (code ${code})`);
    } else {
      this.failed('UPSTREAM_CLOSED', `server closed the session (code ${code})`);
    }
  }

  protected teardown(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const now = Date.now();
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.settleInFlight(this.ws.bufferedAmount, now);
    // Still in the socket, or left it less than confirmMs ago, when the session ended: not counted
    // live (a cut link loses what sat in kernel and network buffers): backfill sends it again.
    for (let i = this.inFlightHead; i < this.inFlight.length; i++) {
      if (this.inFlight[i]!.drainedAt < 0) this.sc.lostInSocket++;
      else this.sc.lostUnconfirmed++;
    }
    // Frames captured while no session runs are not delivered: the next span starts fresh.
    this.breakSpan();
    this.inFlight = [];
    this.inFlightHead = 0;
    this.drainIdx = 0;
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
    const ws = this.ws;
    this.ws = null;
    this.openedAt = 0;
    if (ws) {
      ws.removeAllListeners('open');
      ws.on('error', () => {}); // late errors of a socket we are abandoning
      try {
        ws.terminate();
      } catch {
        // terminate on a never-connected socket can throw in old ws versions
      }
    }
  }

  stats(): PangPublisherStats {
    const ws = this.ws;
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
      bufferedBytes: ws ? ws.bufferedAmount : 0,
      maxBufferedBytes: this.o.maxBufferedBytes,
      peakBufferedBytes: this.c.peakBufferedBytes,
      waitingForKeyframe: this.gate.waitingForKeyframe,
      dropped: { gopTail: this.gate.dropped.gopTail, bufferFull: this.gate.dropped.bufferFull, noMime: this.c.noMime },
      droppedBytes: this.gate.droppedBytes,
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
      spans: { ...this.sc, inSocket: this.inFlight.length - this.inFlightHead },
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
export function sanitize(message: string, secret: string | undefined): string {
  let m = message;
  if (secret) m = m.split(secret).join('***');
  m = m.replace(/([?&](?:key|token)=)[^&\s]+/gi, '$1***');
  return m.slice(0, 300);
}
