// Store-and-forward backfill (issue 8): what the live path did not deliver is read back from the
// recordings and sent upstream on a parallel track (`<track><suffix>`, MIME `ts+<mime>`, each
// message = 8-byte capture wallclock µs + the original record), paced so live always goes first.
//
// Delivery guarantee (the same rule as the live publisher, issue 14): a record counts delivered
// once the upstream acknowledged it — a moth-edge relay's XACK count, else the peer's TCP stack
// (TCP_INFO/SIOCOUTQ through moth-native, /proc/net/tcp without it). Everything else — queued,
// in flight, unacknowledged when a session died — is not counted and is offered again at the next
// scan. So every recorded record reaches the upstream AT LEAST once; a duplicate is possible only
// for records in flight when a session died (counted `inDoubt`), and it carries the same
// timestamp. Nothing is ever called delivered that the upstream's TCP stack did not acknowledge.
// Messages are paced (minIntervalMs) for Moth's relay ring, and the session is open only while it
// has work (idleCloseMs).
import type WebSocket from 'ws';
import { mimeKind, trackPath, type TrackRef } from '../engine/api.js';
import type { LinkBackoff, LinkStats } from '../egress/link.js';
import type { EgressLog, PangEndpoint } from '../egress/pang-link.js';
import { pangLinkOptions, PangLink, type PangSessionStats, type PangTcpOptions } from '../egress/pang-session.js';
import { Coverage, owedIn, parseRangeRequest, parseXcmd, tsMime, tsPrefixed, xack, xerr, type RangeRequest } from './backfill-plan.js';
import { rekey, SpanLog, teeSinks, type DeliverySink, type Span } from './spans.js';
import { scanSegmentRecords, type RecordScan } from '../../recordings/record-reader.js';
import { readVideoUnits } from '../../recordings/video-reader.js';
import { readDeliverySpans, type DeliverySpanWriter } from '../../recordings/delivery-spans.js';
import type { IndexDb, SegmentRow } from '../../recordings/index-db.js';

/** What the backfill needs of the recordings (RecordingService fits). */
export interface RecordingsAccess {
  readonly root: string;
  /** A read-only index connection. */
  reader(): Pick<IndexDb, 'list' | 'db'>;
}

/** The live link of the same track (PangPublisher fits). */
export interface LiveLinkView {
  pendingSinceWall(): number | null;
  readonly bufferedBytes: number;
}

interface Item {
  wall: number;
  data: Buffer;
  /** Payload bytes (without the prefix) for the span rows. */
  bytes: number;
  /** Consecutive items of one batch may join one backfill span; a new batch starts a new span. */
  batch: number;
}

export interface BackfillLinkOptions {
  name: string;
  endpoint: PangEndpoint;
  caFile?: string | undefined;
  insecure?: boolean | undefined;
  /** The local track whose records this link carries (span rows are keyed by it). */
  from: TrackRef;
  log: EgressLog;
  backoff: LinkBackoff;
  sink: DeliverySink;
  /** True while a live link of the same uplink holds a backlog: backfill waits (live first). */
  liveBusy: () => boolean;
  /** Most bytes waiting in this socket: 32 KB keeps the backfill's share of a router queue small. */
  windowBytes?: number;
  minRateBytesPerSec?: number;
  maxRateBytesPerSec?: number;
  keepaliveMs?: number;
  mimeResendMs?: number;
  handshakeTimeoutMs?: number;
  refusalWindowMs?: number;
  /** At most one message per this many ms (Moth's relay ring, issue 14): 20 ms. 0 = unpaced. */
  minIntervalMs?: number;
  /**
   * At most this many messages unacknowledged (issue 14): a network releases what it held back
   * together — a retransmission after a loss, a draining queue — and Moth's reader skips ahead
   * when more than a couple arrive at once, however well the sender spaced them. 2 = Moth's margin;
   * 0 = no limit. Not applied to an XACK relay (it queues per subscriber).
   */
  maxInFlight?: number;
  /** Leave the session after this long with nothing to carry: 5 s. */
  idleCloseMs?: number;
  requestAcks?: boolean;
  tcp?: Partial<PangTcpOptions> | undefined;
  /** Called when the link becomes ready for a batch (opened, or its last batch confirmed). */
  onIdle?: () => void;
}

export interface BackfillLinkStats extends LinkStats {
  track: string;
  queued: number;
  queuedBytes: number;
  inFlight: number;
  sent: number;
  sentBytes: number;
  confirmed: number;
  /** Sent, then the session died before they were acknowledged: offered again later (possible duplicates). */
  inDoubt: number;
  /** Messages held back by the pacing (minIntervalMs). */
  paced: number;
  /** Times the window (maxInFlight unacknowledged) held the next message back. */
  heldForAck: number;
  /** Queued items thrown away at a session end (they are re-read from the recordings). */
  requeued: number;
  rateBytesPerSec: number;
  /** Ticks the backfill held back because a live link had a backlog. */
  yieldedToLive: number;
  mime: string | null;
  link: PangSessionStats;
}

/** One upstream session carrying the backfill of one track, open only while it has work. */
export class BackfillLink extends PangLink {
  private timer: NodeJS.Timeout | null = null;
  private ackTimer: NodeJS.Timeout | null = null;
  private lastRttMs = 10;
  private lastSendAt = 0;
  private lastMimeAt = 0;
  private lastActiveAt = 0;
  private mime: string | null = null;
  private queue: Item[] = [];
  private queueHead = 0;
  private queueBytes = 0;
  private inFlight: Array<Item & { end: number; msg: number }> = [];
  private inFlightHead = 0;
  private tokens = 0;
  private lastRefill = 0;
  private rate: number;
  private limitedThisTick = false;
  private lastBatch = -1;
  private readonly track: string;
  private readonly o: Required<Omit<BackfillLinkOptions, 'caFile' | 'insecure' | 'onIdle' | 'tcp'>> & Pick<BackfillLinkOptions, 'caFile' | 'insecure' | 'onIdle'>;
  private readonly c = { sent: 0, sentBytes: 0, confirmed: 0, inDoubt: 0, requeued: 0, yieldedToLive: 0, paced: 0, heldForAck: 0 };
  /** Cap from the uplink scheduler: what is left of the budget after every live track (null: none known). */
  private leftover: number | null = null;

  constructor(opts: BackfillLinkOptions) {
    super(pangLinkOptions('pang-backfill', 'pub', opts, { ack: opts.requestAcks !== false }));
    this.track = trackPath(opts.from);
    const { tcp: _tcp, ...rest } = opts;
    this.o = {
      windowBytes: 32 * 1024,
      minRateBytesPerSec: 4 * 1024,
      maxRateBytesPerSec: 1024 * 1024,
      // Half the server's idle timeout (at most 20 s): a session waiting on the live link must not be dropped as idle.
      keepaliveMs: opts.endpoint.timeoutSec !== undefined ? Math.max(500, Math.min(20_000, opts.endpoint.timeoutSec * 500)) : 20_000,
      mimeResendMs: 1000,
      handshakeTimeoutMs: 10_000,
      refusalWindowMs: 3000,
      minIntervalMs: 20,
      maxInFlight: 2,
      idleCloseMs: 5000,
      requestAcks: true,
      ...rest,
    };
    this.rate = Math.min(this.o.maxRateBytesPerSec, Math.max(this.o.minRateBytesPerSec, 32 * 1024));
  }

  /** Ready for the next batch: connected, nothing queued, nothing unconfirmed. */
  get idle(): boolean {
    return this.state === 'connected' && this.ws !== null && this.queueHead >= this.queue.length && this.inFlightHead >= this.inFlight.length;
  }

  /** No session (never opened, or left for lack of work): open one with want(). */
  get parked(): boolean {
    return this.state === 'idle';
  }

  get connected(): boolean {
    return this.ws !== null && this.openedAt > 0;
  }

  /** Something is owed: open the session (idempotent). */
  want(): void {
    if (this.state === 'idle') this.start();
  }

  /** The first start is on demand; start() is kept for callers that want the session at once. */
  override start(): void {
    super.start();
  }

  setLeftover(bytesPerSec: number | null): void {
    this.leftover = bytesPerSec === null || !Number.isFinite(bytesPerSec) ? null : Math.max(0, bytesPerSec);
  }

  /** Queue one batch of records (capture order) of a track with MIME `mime`. */
  enqueue(mime: string, records: Array<{ wallclock: number; payload: Buffer }>, batch: number): void {
    const m = tsMime(mime);
    if (m !== this.mime) {
      this.mime = m;
      this.sendMime();
    }
    for (const r of records) {
      const data = tsPrefixed(r.wallclock, r.payload);
      this.queue.push({ wall: r.wallclock, data, bytes: r.payload.length, batch });
      this.queueBytes += data.length;
    }
    this.lastActiveAt = Date.now();
    this.pump();
  }

  protected onOpen(_ws: WebSocket): void {
    const now = Date.now();
    this.lastSendAt = this.lastActiveAt = now;
    this.lastRefill = now;
    this.tokens = 0;
    this.up();
    this.sendMime();
    this.timer = setInterval(() => this.onTick(), 250);
    this.timer.unref?.();
    if (this.idle) this.o.onIdle?.();
  }

  private sendMime(): void {
    if (!this.mime || !this.connected) return;
    this.sendText(this.mime);
    this.lastSendAt = this.lastMimeAt = Date.now();
  }

  private onTick(): void {
    if (!this.connected) return;
    const now = Date.now();
    if (!this.checkLink(now)) return;
    if (this.mime && now - this.lastMimeAt >= this.o.mimeResendMs) this.sendMime();
    if (now - this.lastSendAt >= this.o.keepaliveMs) {
      this.sendBinary(Buffer.alloc(0));
      this.lastSendAt = now;
    }
    // AIMD on the leftover: back off hard when live needs the link or our own bytes queue up,
    // grow gently while the rate (not the link) was what held us back.
    const busy = this.o.liveBusy();
    if (busy) this.c.yieldedToLive++;
    if (busy || this.bufferedBytes > this.o.windowBytes) this.rate = Math.max(this.o.minRateBytesPerSec, this.rate / 2);
    else if (this.limitedThisTick) this.rate = Math.min(this.o.maxRateBytesPerSec, this.rate * 1.25 + 1024);
    if (this.leftover !== null) this.rate = Math.max(this.o.minRateBytesPerSec, Math.min(this.rate, this.leftover));
    this.limitedThisTick = false;
    this.pump();
    // Nothing to carry for a while: leave the session (no idle `<track>.backfill` at the server).
    if (this.idle && now - this.lastActiveAt >= this.o.idleCloseMs) this.park();
  }

  private pump(): void {
    if (!this.connected) return;
    const now = Date.now();
    // Token bucket: at most half a second of burst.
    this.tokens = Math.min(this.rate / 2, this.tokens + ((now - this.lastRefill) / 1000) * this.rate);
    this.lastRefill = now;
    if (this.o.liveBusy()) return;
    while (this.queueHead < this.queue.length) {
      if (this.bufferedBytes > this.o.windowBytes) return;
      if (!this.upstreamAcks && this.o.maxInFlight > 0 && this.inFlight.length - this.inFlightHead >= this.o.maxInFlight) {
        this.c.heldForAck++;
        this.awaitAck();
        return; // the acknowledgement (onAcked) pumps again
      }
      // One message per minIntervalMs: a Moth relay's reader more than a couple of ring slots
      // behind skips to the newest message, so a back-to-back burst reaches its subscribers as a
      // handful of records (issue 14; the README's "Delivery to a Moth relay"). A moth-edge relay
      // (it acknowledges by XACK) queues per subscriber instead: no pacing needed there.
      const interval = this.upstreamAcks ? 0 : this.o.minIntervalMs;
      const wait = this.lastSendAt + interval - now;
      if (interval > 0 && this.c.sent > 0 && wait > 0) {
        this.c.paced++;
        this.pumpAfter(wait);
        return;
      }
      const it = this.queue[this.queueHead]!;
      if (this.tokens <= 0) {
        this.limitedThisTick = true;
        return;
      }
      this.queueHead++;
      this.queueBytes -= it.data.length;
      this.tokens -= it.data.length;
      this.sendBinary(it.data);
      this.lastSendAt = this.lastActiveAt = now;
      this.c.sent++;
      this.c.sentBytes += it.data.length;
      this.inFlight.push({ ...it, end: this.wireOut, msg: this.msgsOut });
      if (interval > 0) break;
    }
    if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.queueHead);
      this.queueHead = 0;
    }
    if (this.queueHead < this.queue.length && !this.upstreamAcks && this.o.minIntervalMs > 0) this.pumpAfter(this.o.minIntervalMs);
  }

  /** The window is full: look at the kernel again in about a round trip (5 ms .. 250 ms). */
  private awaitAck(): void {
    if (this.ackTimer) return;
    const rtt = this.lastRttMs;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = null;
      this.lastRttMs = this.refreshAcks() || this.lastRttMs;
      this.pump();
    }, Math.min(250, Math.max(5, Math.ceil(rtt / 2))));
    this.ackTimer.unref?.();
  }

  protected override pumpAgain(): void {
    this.pump();
  }

  /** Records the upstream acknowledged (XACK count, or TCP) are delivered: confirm them in order. */
  protected override onAcked(): void {
    const byMsg = this.upstreamAcks;
    const upTo = byMsg ? (this.upstreamReceived ?? 0) : this.ackedWire;
    let confirmed = false;
    while (this.inFlightHead < this.inFlight.length) {
      const f = this.inFlight[this.inFlightHead]!;
      if ((byMsg ? f.msg : f.end) > upTo) break;
      this.inFlightHead++;
      if (f.batch !== this.lastBatch) {
        this.o.sink.break?.(this.track);
        this.lastBatch = f.batch;
      }
      this.o.sink.add(this.track, f.wall, f.bytes);
      this.c.confirmed++;
      confirmed = true;
    }
    if (this.inFlightHead > 1024 && this.inFlightHead * 2 > this.inFlight.length) {
      this.inFlight = this.inFlight.slice(this.inFlightHead);
      this.inFlightHead = 0;
    }
    if (confirmed) {
      this.lastActiveAt = Date.now();
      if (this.idle) this.o.onIdle?.(); // the last of the batch: the next one need not wait for a scan tick
      else this.pump(); // room in the window again
    }
  }

  protected endSession(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.ackTimer) clearTimeout(this.ackTimer);
    this.ackTimer = null;
    // Not acknowledged: not delivered. The recordings still hold them; the next scan offers them
    // again (a copy may reach the upstream twice: counted in doubt).
    this.c.inDoubt += this.inFlight.length - this.inFlightHead;
    this.c.requeued += this.queue.length - this.queueHead;
    this.inFlight = [];
    this.inFlightHead = 0;
    this.queue = [];
    this.queueHead = 0;
    this.queueBytes = 0;
    this.o.sink.break?.(this.track);
    this.lastBatch = -1;
  }

  stats(): BackfillLinkStats {
    return {
      ...this.baseStats(),
      track: this.track,
      queued: this.queue.length - this.queueHead,
      queuedBytes: this.queueBytes,
      inFlight: this.inFlight.length - this.inFlightHead,
      ...this.c,
      rateBytesPerSec: Math.round(this.rate),
      mime: this.mime,
      link: this.sessionStats(),
    };
  }
}

function isH264(mime: string): boolean {
  return /^video\/h264\b/i.test(mime.trim());
}

export interface BackfillTrack {
  /** The live upstream's name (e.g. `up0:cam/base/imu`); span rows carry it. */
  upstream: string;
  from: TrackRef;
  /** Endpoint of the backfill track upstream (the live one's with the suffixed track label). */
  endpoint: PangEndpoint;
  caFile?: string | undefined;
  insecure?: boolean | undefined;
  /** Backfill on its own (true) or only on request (false). */
  auto: boolean;
  live: LiveLinkView | null;
}

export interface BackfillServiceOptions {
  tracks: BackfillTrack[];
  recordings: () => RecordingsAccess | null;
  /** What the live path delivered (in memory), keyed by upstream name (BackfillTrack.upstream). */
  liveSpans: SpanLog;
  /** What the backfill delivered (in memory; also written to `persist`). */
  backfilled: SpanLog;
  persist?: DeliverySpanWriter | null | undefined;
  log: EgressLog;
  backoff: LinkBackoff;
  /** Every live link of the uplink, for the live-first rule. */
  liveLinks: () => LiveLinkView[];
  /** A live socket holding more than this is "busy": 16 KB. */
  liveBusyBytes?: number;
  /** How far back the automatic backfill looks: 6 h. */
  lookbackMs?: number;
  /** Records younger than this are left to the live path (it may still deliver them): 3 s. */
  settleMs?: number;
  scanMs?: number;
  /** Records per batch: 2000 (≈ 40 s of a 50 Hz sensor). */
  batchRecords?: number;
  /** Bytes one scan round reads from a record file (a round resumes where the last stopped): 4 MiB. */
  maxReadBytesPerScan?: number;
  /** Range requests waiting: 16; more are refused (counted). */
  maxRangeRequests?: number;
  maxRateBytesPerSec?: number;
  /** Pacing of each backfill session (BackfillLinkOptions.minIntervalMs): 20 ms. */
  minIntervalMs?: number;
  /** Unacknowledged messages per backfill session (BackfillLinkOptions.maxInFlight): 2. */
  maxInFlight?: number;
  /** A backfill session with nothing to carry closes after this: 5 s. */
  idleCloseMs?: number;
  tcp?: Partial<PangTcpOptions> | undefined;
  now?: () => number;
}

/** Default read budget of one scan round in a record file (BackfillServiceOptions.maxReadBytesPerScan). */
const READ_BYTES_PER_SCAN = 4 * 1024 * 1024;

interface TrackState {
  cfg: BackfillTrack;
  key: string;
  link: BackfillLink;
  /** Every recorded record before this wallclock is known delivered (monotone). */
  doneBefore: number;
  batches: number;
  recordsQueued: number;
  readErrors: number;
  lastError: string | null;
  videoSkipped: number;
  /**
   * Where the next auto scan of a segment starts (byte offset): every record before it was
   * delivered when it was scanned (coverage only grows), or is the first of a batch in flight.
   */
  resume: { path: string; offset: number } | null;
  /** Where the last batch read ended: a batch starting right there continues its span. */
  lastEnd: { path: string; offset: number; batch: number } | null;
}

interface RangeJob {
  req: RangeRequest;
  st: TrackState;
  /** A video read is running (async); the job waits for it. */
  busy: boolean;
  /** Video segments read to their end (bounded by the range's segment count). */
  doneSegs: Set<string>;
  /** Segments are listed from this wallclock (video: the next unit after it). */
  cursor: number;
  /** Data: the byte offset in a segment to continue at (exact record identity, unlike a wallclock). */
  pos: { path: string; offset: number } | null;
  first: boolean;
  sent: number;
}

export interface BackfillStats {
  tracks: Array<{ track: string; upstream: string; auto: boolean; doneBefore: number | null; batches: number; recordsQueued: number; readErrors: number; videoSkipped: number; lastError: string | null; link: BackfillLinkStats }>;
  rangeRequests: { received: number; accepted: number; refused: number; completed: number; queued: number };
  scans: number;
}

export class BackfillService {
  private readonly tracks: TrackState[] = [];
  private readonly byTrack = new Map<string, TrackState>();
  private ranges: RangeJob[] = [];
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  /** What this service delivered, per upstream name (o.backfilled is per track, for /api/gaps). */
  private readonly backfilledByUpstream = new SpanLog();
  private rr = 0;
  private readonly now: () => number;
  private readonly rc = { received: 0, accepted: 0, refused: 0, completed: 0 };
  private scans = 0;
  private kicked = false;
  /** Span ids of backfill batches (one per run of contiguous batches). */
  private spanIds = 0;

  constructor(private readonly o: BackfillServiceOptions) {
    this.now = o.now ?? Date.now;
    const busyBytes = o.liveBusyBytes ?? 16 * 1024;
    const liveBusy = (): boolean => o.liveLinks().some((l) => l.bufferedBytes > busyBytes);
    for (const cfg of o.tracks) {
      const key = trackPath(cfg.from);
      const persist = o.persist;
      const sink = teeSinks(o.backfilled, rekey(this.backfilledByUpstream, cfg.upstream), {
        add: (track, wall, bytes) => persist?.add('backfill', track, cfg.upstream, wall, bytes),
        break: (track) => persist?.break('backfill', track, cfg.upstream),
      });
      const link = new BackfillLink({
        name: `${cfg.upstream}:backfill`,
        endpoint: cfg.endpoint,
        caFile: cfg.caFile,
        insecure: cfg.insecure,
        from: cfg.from,
        log: o.log,
        backoff: o.backoff,
        sink,
        liveBusy,
        onIdle: () => this.kick(),
        ...(o.maxRateBytesPerSec !== undefined ? { maxRateBytesPerSec: o.maxRateBytesPerSec } : {}),
        ...(o.minIntervalMs !== undefined ? { minIntervalMs: o.minIntervalMs } : {}),
        ...(o.maxInFlight !== undefined ? { maxInFlight: o.maxInFlight } : {}),
        ...(o.idleCloseMs !== undefined ? { idleCloseMs: o.idleCloseMs } : {}),
        tcp: o.tcp,
      });
      const st: TrackState = { cfg, key, link, doneBefore: -Infinity, batches: 0, recordsQueued: 0, readErrors: 0, lastError: null, videoSkipped: 0, resume: null, lastEnd: null };
      this.tracks.push(st);
      if (!this.byTrack.has(key)) this.byTrack.set(key, st);
    }
  }

  /** Scan soon (once per turn of the event loop) instead of at the next tick: a link is ready. */
  private kick(): void {
    if (this.kicked || this.closed || !this.timer) return;
    this.kicked = true;
    setImmediate(() => {
      this.kicked = false;
      this.scan();
    });
  }

  start(): void {
    if (this.timer || this.closed) return;
    // Links open on demand: a session exists at the upstream only while something is owed.
    this.timer = setInterval(() => this.scan(), this.o.scanMs ?? 1000);
    this.timer.unref?.();
  }

  /** The uplink scheduler's leftover budget (bytes/s after every live track), or null. */
  setLeftover(bytesPerSec: number | null): void {
    const share = bytesPerSec === null ? null : bytesPerSec / Math.max(1, this.tracks.length);
    for (const t of this.tracks) t.link.setLeftover(share);
  }

  /** Queue a range ("send me 10:02–10:05 of the front camera"). */
  requestRange(req: RangeRequest): { ok: true; queued: number } | { ok: false; reason: string } {
    this.rc.received++;
    const st = this.byTrack.get(req.track);
    if (!st) {
      this.rc.refused++;
      return { ok: false, reason: `no backfill upstream for ${req.track}` };
    }
    if (this.ranges.length >= (this.o.maxRangeRequests ?? 16)) {
      this.rc.refused++;
      return { ok: false, reason: 'range queue full' };
    }
    if (this.ranges.some((r) => r.req.id === req.id)) {
      this.rc.refused++;
      return { ok: false, reason: 'duplicate request id' };
    }
    const rec = this.safeRecordings();
    if (rec) {
      // Say now what cannot be served rather than acknowledging a range that sends nothing.
      let rows: SegmentRow[] = [];
      try {
        rows = this.segments(rec.index, st.cfg.from, req.fromMs, req.toMs).slice(0, 64);
      } catch {
        rows = [];
      }
      if (rows.length === 0) {
        this.rc.refused++;
        return { ok: false, reason: 'nothing recorded for that track in that range' };
      }
      if (rows.every((r) => r.kind !== 'data' && !isH264(r.mime))) {
        this.rc.refused++;
        return { ok: false, reason: 'only data and H.264 video tracks can be backfilled' };
      }
    }
    this.ranges.push({ req, st, busy: false, doneSegs: new Set(), cursor: req.fromMs, pos: null, first: true, sent: 0 });
    this.rc.accepted++;
    return { ok: true, queued: this.ranges.length };
  }

  /** A `REXTXCMD…` text from a control track: the XACK/XERR reply, or null when not ours. */
  handleXcmd(text: string): string | null {
    const p = parseXcmd(text);
    if (!p) return null;
    if (!p.ok) {
      this.rc.received++;
      this.rc.refused++;
      return xerr(p.id, p.reason);
    }
    const r = this.requestRange(p.req);
    return r.ok ? xack(p.req.id, { queued: r.queued, track: p.req.track, from: p.req.fromMs, to: p.req.toMs }) : xerr(p.req.id, r.reason);
  }

  /**
   * The local pang ctl request type `backfill_range` (data: {track, from, to}; req_id echoed).
   * Returns the reply object for ctlReply, or throws an Error whose message is the reason.
   */
  handleCtl(data: Record<string, unknown>, reqId: string | undefined): { queued: number; track: string; from: number; to: number } {
    const p = parseRangeRequest({ ...data, id: reqId ?? data.id });
    if (!p.ok) {
      this.rc.received++;
      this.rc.refused++;
      throw new Error(p.reason);
    }
    const r = this.requestRange(p.req);
    if (!r.ok) throw new Error(r.reason);
    return { queued: r.queued, track: p.req.track, from: p.req.fromMs, to: p.req.toMs };
  }

  /** One scan round (public for tests): at most one batch queued, on the next idle link. */
  scan(): void {
    if (this.closed) return;
    this.scans++;
    const rec = this.safeRecordings();
    if (!rec) return;
    // Range requests first, in arrival order, each on its own track's link.
    for (const job of this.ranges) {
      if (job.busy) continue;
      if (job.st.link.parked) {
        job.st.link.want();
        continue;
      }
      if (!job.st.link.idle) continue;
      this.runRange(rec, job);
      return;
    }
    const n = this.tracks.length;
    for (let i = 0; i < n; i++) {
      const st = this.tracks[(this.rr + i) % n]!;
      if (!st.cfg.auto) continue;
      const parked = st.link.parked;
      if (!parked && !st.link.idle) continue;
      // A parked link is opened only when the scan finds something owed (nothing is queued then).
      if (this.runAuto(rec, st, parked)) {
        if (parked) st.link.want();
        this.rr = (this.rr + i + 1) % n;
        return;
      }
    }
  }

  private safeRecordings(): { root: string; index: Pick<IndexDb, 'list' | 'db'> } | null {
    try {
      const r = this.o.recordings();
      if (!r) return null;
      return { root: r.root, index: r.reader() };
    } catch {
      return null; // recordings not started yet, or closing
    }
  }

  private segments(index: Pick<IndexDb, 'list'>, ref: TrackRef, from: number, to: number): SegmentRow[] {
    return index.list({ channel: ref.channel, source: ref.source, track: ref.track, fromMs: from, toMs: to, limit: 10_000 }) as SegmentRow[];
  }

  private delivered(index: Pick<IndexDb, 'db'>, st: TrackState, from: number, to: number): Coverage {
    const up = st.cfg.upstream;
    const spans: Span[] = [...this.o.liveSpans.live(up, from, to).spans, ...this.backfilledByUpstream.live(up, from, to).spans];
    try {
      for (const r of readDeliverySpans(index, { ...st.cfg.from, fromMs: from, toMs: to, upstream: st.cfg.upstream })) spans.push({ from: r.from_ms, to: r.to_ms });
    } catch {
      // unreadable rows: the in-memory spans still hold this run's deliveries
    }
    return new Coverage(spans);
  }

  /** One auto-backfill round of a track: true when something was owed (queued, or with `probe` only found). */
  private runAuto(rec: { root: string; index: Pick<IndexDb, 'list' | 'db'> }, st: TrackState, probe = false): boolean {
    const now = this.now();
    const lo = Math.max(st.doneBefore, now - (this.o.lookbackMs ?? 6 * 3600_000));
    let hi = now - (this.o.settleMs ?? 3000);
    const pending = st.cfg.live?.pendingSinceWall() ?? null;
    if (pending !== null) hi = Math.min(hi, pending - 1);
    if (hi <= lo) return false;
    // An open segment's row lags its file by up to the recorder's fsync interval: list with slack.
    const segs = this.segments(rec.index, st.cfg.from, lo - 60_000, hi);
    const cov = this.delivered(rec.index, st, lo, hi);
    /** Newest wallclock known to be on disk: nothing after it may be called done. */
    let known = -Infinity;
    for (const seg of segs) {
      if (seg.kind !== 'data' || mimeKind(seg.mime) === 'video') {
        st.videoSkipped++;
        continue;
      }
      const a = Math.max(lo, seg.wall_start_ms);
      const b = Math.min(hi, seg.wall_end_ms);
      // An open segment's row runs ahead of its file (the row has the writer's last record, the
      // file only what was flushed): only a closed segment's end is known to be on disk.
      const open = seg.state === 'recording';
      if (!open && seg.wall_end_ms > known) known = seg.wall_end_ms;
      if (b >= a && cov.coversRange(a, b)) {
        if (b > known) known = b; // every record up to b was delivered live, on disk or not
        continue; // one delivered span holds it all: no read
      }
      let scan: RecordScan;
      try {
        scan = scanSegmentRecords(rec.root, seg.path, {
          offset: st.resume?.path === seg.path ? st.resume.offset : 0,
          accept: owedIn(cov, lo, hi),
          maxRecords: this.o.batchRecords ?? 2000,
          maxReadBytes: this.o.maxReadBytesPerScan ?? READ_BYTES_PER_SCAN,
          stopAfterWall: hi,
          wholeMillis: true,
        });
      } catch (err) {
        st.readErrors++;
        st.lastError = (err as Error).message.slice(0, 200);
        continue;
      }
      const owed = scan.records;
      if (owed.length > 0) {
        // Everything before the batch was delivered: the next round starts at the batch (re-read
        // if the batch is lost with its session, skipped once its delivery is confirmed).
        st.resume = { path: seg.path, offset: scan.firstOffset };
        st.doneBefore = Math.max(st.doneBefore, owed[0]!.wallclock - 1);
        if (probe) return true; // the session opens; the next round reads this batch again and sends it
        st.link.enqueue(seg.mime, owed, this.batchId(st, seg.path, scan));
        st.recordsQueued += owed.length;
        return true;
      }
      if (scan.stop === 'budget') {
        // Read budget spent on delivered records: resume here next round, nothing past it is known.
        st.resume = { path: seg.path, offset: scan.nextOffset };
        if (Number.isFinite(scan.lastWall)) st.doneBefore = Math.max(st.doneBefore, Math.min(hi, scan.lastWall - 1));
        return false;
      }
      if (scan.lastWall > known) known = scan.lastWall; // records actually read
      if (scan.stop === 'end' || scan.stop === 'wall') st.resume = { path: seg.path, offset: scan.nextOffset };
    }
    // Nothing owed up to hi (everything recorded there is delivered): never look before it again.
    st.doneBefore = Math.max(st.doneBefore, Math.min(hi, known));
    return false;
  }

  /**
   * The batch id of a scan's records: the previous batch's when this one starts exactly where that
   * one's read ended in the same segment (every record between was sent: one delivered span, no
   * sliver between batches reported missing), else a new one (a span starts anew).
   */
  private batchId(st: TrackState, path: string, scan: RecordScan): number {
    // A batch is read only once the link confirmed the one before, so an equal offset means the
    // previous batch was delivered up to the very record this one starts with.
    const l = st.lastEnd;
    st.batches++;
    const id = l && l.path === path && l.offset === scan.firstOffset ? l.batch : ++this.spanIds;
    st.lastEnd = { path, offset: scan.nextOffset, batch: id };
    return id;
  }

  private runRange(rec: { root: string; index: Pick<IndexDb, 'list' | 'db'> }, job: RangeJob): void {
    const { req, st } = job;
    const segs = this.segments(rec.index, st.cfg.from, job.cursor, req.toMs);
    const limit = this.o.batchRecords ?? 2000;
    for (const seg of segs) {
      if (job.doneSegs.has(seg.path)) continue;
      if (seg.kind !== 'data' || mimeKind(seg.mime) === 'video') {
        if (!isH264(seg.mime)) {
          st.videoSkipped++;
          continue;
        }
        this.readVideo(rec.root, job, seg);
        return;
      }
      let scan: RecordScan;
      try {
        scan = scanSegmentRecords(rec.root, seg.path, {
          offset: job.pos?.path === seg.path ? job.pos.offset : 0,
          accept: (r) => r.wallclock >= req.fromMs && r.wallclock <= req.toMs,
          maxRecords: limit,
          maxReadBytes: this.o.maxReadBytesPerScan ?? READ_BYTES_PER_SCAN,
          stopAfterWall: req.toMs,
          wholeMillis: true,
        });
      } catch (err) {
        st.readErrors++;
        st.lastError = (err as Error).message.slice(0, 200);
        job.doneSegs.add(seg.path);
        continue;
      }
      // Continue exactly after the last record scanned (offsets, not wallclocks: records of one
      // millisecond on both sides of a batch edge are all sent, once).
      job.pos = { path: seg.path, offset: scan.nextOffset };
      const batch = scan.records;
      if (batch.length > 0) {
        job.first = false;
        job.sent += batch.length;
        st.link.enqueue(seg.mime, batch, this.batchId(st, seg.path, scan));
        st.recordsQueued += batch.length;
        return;
      }
      if (scan.stop === 'budget') return; // the next round reads on from job.pos
      job.doneSegs.add(seg.path); // read to its end (or past the range)
    }
    // Nothing more in the range: done.
    this.ranges = this.ranges.filter((r) => r !== job);
    this.rc.completed++;
  }

  /**
   * One batch of a video range, read asynchronously (mediabunny): access units from the keyframe
   * at or before the range start, then continuing after the last one sent; ≤ 300 units / 4 MB.
   */
  private readVideo(root: string, job: RangeJob, seg: SegmentRow): void {
    const { st, req } = job;
    job.busy = true;
    const range = job.first ? { fromKeyMs: job.cursor, toMs: req.toMs } : { afterMs: job.cursor, toMs: req.toMs };
    readVideoUnits(root, seg, range, { maxUnits: 300, maxBytes: 4 * 1024 * 1024 }).then(
      (units) => {
        job.busy = false;
        if (this.closed) return;
        if (units.length === 0) {
          job.doneSegs.add(seg.path);
          return;
        }
        job.first = false;
        job.cursor = units[units.length - 1]!.wallclock;
        job.sent += units.length;
        st.batches++;
        st.lastEnd = null;
        st.link.enqueue(seg.mime, units, ++this.spanIds);
        st.recordsQueued += units.length;
      },
      (err: unknown) => {
        job.busy = false;
        job.doneSegs.add(seg.path);
        st.readErrors++;
        st.lastError = (err as Error).message.slice(0, 200);
      },
    );
  }

  stats(): BackfillStats {
    return {
      tracks: this.tracks.map((t) => ({
        track: t.key,
        upstream: t.cfg.upstream,
        auto: t.cfg.auto,
        doneBefore: Number.isFinite(t.doneBefore) ? t.doneBefore : null,
        batches: t.batches,
        recordsQueued: t.recordsQueued,
        readErrors: t.readErrors,
        videoSkipped: t.videoSkipped,
        lastError: t.lastError,
        link: t.link.stats(),
      })),
      rangeRequests: { ...this.rc, queued: this.ranges.length },
      scans: this.scans,
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const t of this.tracks) t.link.close();
  }
}
