// The RTSP client's I/O shell: one TCP connection to the camera, OPTIONS → DESCRIBE → SETUP →
// PLAY, then RTP over the same connection ($-interleaved) or over a UDP port pair, keepalive
// before the session timeout, TEARDOWN when the signal aborts. Everything that parses is in the
// pure modules next to it (message, auth, sdp, rtp-h264). No child process: no ffmpeg, and no
// password in any process's argv.
//
// run() resolves after an abort (TEARDOWN sent, sockets closed) and rejects with an EdgeError when
// the camera goes away, refuses us, or stops sending (START_TIMEOUT / STALLED): the supervisor
// restarts it, and the depacketizer makes the new run start at a keyframe.

import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import { captureClockUs, EdgeError } from '../../../runtime/engine/api.js';
import { RtspAuth, type Credentials } from './auth.js';
import {
  header,
  interleave,
  parseSessionHeader,
  parseTransportHeader,
  RtspReader,
  serializeRequest,
  serializeResponse,
  type RtspResponse,
  type RtspServerRequest,
} from './message.js';
import { H264Depacketizer, readRtpHeader, RtpClock, RtpReorderBuffer, type DepacketizedUnit, type RtpHeader, type RtpPacket } from './rtp-h264.js';
import { parseSdp, type H264SdpTrack } from './sdp.js';

export interface RtspSessionOptions {
  /** rtsp://host[:port]/path without userinfo (credentials come separately). */
  url: string;
  credentials?: Credentials;
  transport: 'tcp' | 'udp';
  /** Connect + handshake + first access unit. */
  startTimeoutMs: number;
  /** No RTP this long while playing → STALLED. */
  stallTimeoutMs: number;
  /** One request's reply. */
  requestTimeoutMs?: number;
  /**
   * TCP interleaved only: when a read leaves an access unit unfinished (the rest of the frame's
   * packet burst is still on its way), stop reading for this long so the rest arrives in one read
   * instead of one wakeup per packet or two. Bounds the latency it adds. 0 = read as data comes.
   */
  readCoalesceMs?: number;
  /**
   * UDP only: the local ports RTP/RTCP pairs are bound in, inclusive (RTP even, RTCP the odd one
   * above it), so a firewall can open exactly this range. Default 20000..63999.
   */
  rtpPortRange?: readonly [number, number];
  userAgent?: string;
}

export const DEFAULT_RTP_PORT_RANGE: readonly [number, number] = [20000, 63999];

/**
 * The even RTP ports of a range whose RTCP port (+1) is in it too: `count` pairs from `first`.
 * Pure, for the config check and the binder.
 */
export function rtpPortPairs(range: readonly [number, number]): { first: number; count: number } {
  const first = range[0] + (range[0] % 2);
  return { first, count: Math.max(0, Math.floor((range[1] - first - 1) / 2) + 1) };
}

export interface RtspUnit {
  data: Buffer;
  key: boolean;
  /** Capture clock µs, from the RTP timestamp. */
  ts: number;
  wallclock: number;
  /** The SPS in effect (sprop or in-band), for the MIME. */
  sps: Buffer | undefined;
}

/** Counters that survive across sessions (the driver keeps one and passes it to every session). */
export class RtspClientCounters {
  sessions = 0;
  /** The local RTP/RTCP port pair of the last UDP session (what a firewall sees). */
  udpPorts: [number, number] | null = null;
  requests = 0;
  authChallenges = 0;
  staleNonceRetries = 0;
  keepalives = 0;
  keepaliveFailures = 0;
  teardowns = 0;
  rtpMalformed = 0;
  rtpOtherPayload = 0;
  rtpForeign = 0;
  rtcpPackets = 0;
  rtcpReportsSent = 0;
  serverRequests = 0;
  /** Replies to camera requests dropped because the camera stopped reading ours (bounded write buffer). */
  serverRepliesDropped = 0;
  clockReanchors = 0;
  bytesIn = 0;
  /** Socket reads: with bytesIn, how well the kernel batches packets (each read costs a JS call). */
  reads = 0;
  /** TCP: reads held back because a frame was unfinished (readCoalesceMs), one per hold. */
  readHolds = 0;
  /** Sessions that stopped holding reads because holding did not batch anything (see judgeHolds). */
  readHoldsGivenUp = 0;
  lastAuthMethod = 'none';
  lastTransport = '';
  /** The running session's depacketizer and UDP reorder buffer (read at stats time, not per packet). */
  live: Array<{ stats(): Record<string, number> }> = [];
  private base: Record<string, number> = {};

  /** Depacketizer (and reorder) counters summed over sessions. */
  depacketizer(): Record<string, number> {
    const sum: Record<string, number> = { ...this.base };
    for (const l of this.live) for (const [k, v] of Object.entries(l.stats())) sum[k] = (sum[k] ?? 0) + v;
    return sum;
  }

  /** A session ended: its counters join the totals. */
  endSession(): void {
    this.base = this.depacketizer();
    this.live = [];
  }
}

const CRLF_TIMEOUT_MS = 10_000;
/** RTCP receiver reports keep UDP NAT bindings and strict cameras alive (RFC 3550: ~5 s). */
const RTCP_RR_INTERVAL_MS = 5000;
const USER_AGENT = 'moth-edge';
/**
 * The TCP read buffer. A read takes at most this much; more waiting in the kernel is read in the
 * same wakeup (libuv reads again while the buffer fills). 256 KiB holds a held-back keyframe burst
 * of a 720p/1080p camera in one read.
 */
const READ_BUFFER_BYTES = 256 * 1024;
/** Read holds are judged over this many access units (about a second of video)… */
const HOLD_JUDGE_UNITS = 30;
/** …and given up when they leave more reads per unit than this (see judgeHolds). */
const HOLD_MAX_READS_PER_UNIT = 2.5;
/** Bytes we let wait in the socket toward the camera before dropping replies to its requests. */
const MAX_PENDING_WRITE_BYTES = 64 * 1024;

/** Upper bound of readCoalesceMs: a hold longer than this is a latency bug, not batching. */
export const MAX_READ_COALESCE_MS = 50;

export class RtspSession {
  private sock: Socket | undefined;
  private readonly reader = new RtspReader();
  private readonly auth: RtspAuth;
  private cseq = 0;
  private pending: { cseq: number; resolve: (r: RtspResponse) => void; reject: (e: Error) => void; timer: NodeJS.Timeout } | undefined;
  private sessionId: string | undefined;
  private timeoutS = 60;
  private publicMethods: string[] = [];
  private track: H264SdpTrack | undefined;
  private depack: H264Depacketizer | undefined;
  /** UDP only: packets may arrive out of order. */
  private reorder: RtpReorderBuffer | undefined;
  /** Replaced with the SDP's clock rate (90 kHz for H.264) once DESCRIBE answered. */
  private clock = new RtpClock();
  private rtpChannel = 0;
  private rtcpChannel = 1;
  private udp: { rtp: UdpSocket; rtcp: UdpSocket; serverRtp?: number; serverRtcp?: number } | undefined;
  private lastRtpAt = 0;
  /** close() ran: anything still being set up (a UDP pair binding) is released at once. */
  private closed = false;
  /** TCP: the read being parsed carried RTP (lastRtpAt is set once after it). */
  private rtpInRead = false;
  /** TCP: the last RTP packet ended its access unit (marker bit): nothing of a frame is pending. */
  private lastMarker = true;
  /** TCP read hold (readCoalesceMs): one reused timer, re-armed by refresh(); undefined = off. */
  private readonly coalesceMs: number;
  private holdTimer: NodeJS.Timeout | undefined;
  private holding = false;
  /** Reads and access units since holds were last judged (judgeHolds). */
  private heldReads = 0;
  private heldUnits = 0;
  private playing = false;
  private fail: ((e: Error) => void) | undefined;
  private timers: NodeJS.Timeout[] = [];
  private readonly ssrc = (Math.random() * 0xffffffff) >>> 0;
  private readonly target: URL;

  constructor(
    private readonly o: RtspSessionOptions,
    private readonly counters: RtspClientCounters,
  ) {
    this.auth = new RtspAuth(o.credentials);
    this.target = new URL(o.url);
    const c = o.readCoalesceMs ?? 0;
    this.coalesceMs = o.transport === 'tcp' && Number.isFinite(c) ? Math.max(0, Math.min(MAX_READ_COALESCE_MS, c)) : 0;
  }

  async run(onUnit: (u: RtspUnit) => void, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return;
    this.counters.sessions++;
    const failed = new Promise<never>((_, reject) => {
      this.fail = (e) => {
        this.fail = undefined;
        reject(e);
      };
    });
    failed.catch(() => {});
    // The supervisor passes one long-lived signal to every run: the listener must go with the run,
    // or each reconnect would keep this whole session (buffers, socket) alive.
    let onAbort = (): void => {};
    const aborted = new Promise<'aborted'>((resolve) => {
      onAbort = () => resolve('aborted');
      signal.addEventListener('abort', onAbort, { once: true });
    });
    const startTimer = setTimeout(() => this.fail?.(new EdgeError('START_TIMEOUT', `no access unit from the camera in ${this.o.startTimeoutMs} ms`, { host: this.target.host })), this.o.startTimeoutMs);
    this.timers.push(startTimer);
    let gotFirst = false;
    const emit = (u: RtspUnit) => {
      if (!gotFirst) {
        gotFirst = true;
        clearTimeout(startTimer);
      }
      onUnit(u);
    };
    try {
      const r = await Promise.race([this.handshake(emit), failed, aborted]);
      if (r === 'aborted') return;
      const end = await Promise.race([failed, aborted]);
      if (end === 'aborted') return;
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.counters.endSession();
      this.counters.clockReanchors += this.clock.reanchors;
      await this.close(signal.aborted);
    }
  }

  stats(): Record<string, number | string | boolean> {
    return { playing: this.playing, sessionTimeoutS: this.timeoutS, bufferedBytes: this.reader.buffered };
  }

  // ------------------------------------------------------------------ handshake

  private async handshake(emit: (u: RtspUnit) => void): Promise<void> {
    await this.connect();
    const url = this.target.href;
    // OPTIONS: which keepalive the camera takes; some cameras want it before DESCRIBE.
    const opt = await this.request('OPTIONS', url, [], true);
    if (opt.status >= 200 && opt.status < 300) this.publicMethods = (header(opt.headers, 'public') ?? '').split(',').map((s) => s.trim().toUpperCase());
    const desc = await this.request('DESCRIBE', url, [['Accept', 'application/sdp']]);
    const base = header(desc.headers, 'content-base') ?? header(desc.headers, 'content-location') ?? url;
    const sdp = parseSdp(desc.body.toString('utf8'), base);
    if (!sdp.h264) throw new EdgeError('RTSP_NO_H264', `the camera offers no H.264 video (media: ${sdp.media.join(',') || 'none'})`, { host: this.target.host });
    this.track = sdp.h264;
    this.clock = new RtpClock(sdp.h264.clockRate > 0 ? sdp.h264.clockRate : 90000);
    this.depack = new H264Depacketizer({ sps: sdp.h264.sps, pps: sdp.h264.pps });
    this.counters.live = [this.depack];
    let transport: string;
    if (this.o.transport === 'tcp') {
      transport = 'RTP/AVP/TCP;unicast;interleaved=0-1';
    } else {
      const [rtpPort] = await this.bindUdp();
      this.reorder = new RtpReorderBuffer();
      this.counters.live.push(this.reorder);
      transport = `RTP/AVP;unicast;client_port=${rtpPort}-${rtpPort + 1}`;
    }
    const setup = await this.request('SETUP', sdp.h264.control, [['Transport', transport]]);
    const sess = header(setup.headers, 'session');
    if (!sess) throw new EdgeError('RTSP_BAD_MESSAGE', 'SETUP reply without a Session', { host: this.target.host });
    const s = parseSessionHeader(sess);
    this.sessionId = s.id;
    this.timeoutS = s.timeoutS;
    const th = parseTransportHeader(header(setup.headers, 'transport') ?? '');
    this.counters.lastTransport = th.protocol;
    if (this.o.transport === 'tcp') {
      if (th.protocol !== 'tcp') throw new EdgeError('RTSP_TRANSPORT_UNSUPPORTED', 'asked for TCP, the camera answered with UDP', { host: this.target.host });
      [this.rtpChannel, this.rtcpChannel] = th.interleaved ?? [0, 1];
    } else {
      if (th.protocol !== 'udp') throw new EdgeError('RTSP_TRANSPORT_UNSUPPORTED', 'asked for UDP, the camera answered with TCP', { host: this.target.host });
      if (th.serverPort) {
        this.udp!.serverRtp = th.serverPort[0];
        this.udp!.serverRtcp = th.serverPort[1];
        this.punch();
      }
    }
    const play = sdp.sessionControl;
    this.playUrl = play;
    this.lastRtpAt = Date.now();
    this.playing = true;
    this.onRtpUnits = emit;
    await this.request('PLAY', play, [['Range', 'npt=0.000-']]);
    this.startKeepalive();
  }

  private onRtpUnits: ((u: RtspUnit) => void) | undefined;
  private playUrl: string | undefined;

  private connect(): Promise<void> {
    const port = this.target.port ? Number(this.target.port) : 554;
    const host = this.target.hostname.replace(/^\[|\]$/g, '');
    return new Promise((resolve, reject) => {
      // onread: the socket reads into one buffer of ours and calls us directly — no Readable
      // stream machinery (chunk allocation, nextTick, 'data' emit) per read. What is kept is
      // copied out in onData. Returning false stops reading (readStop): the read hold.
      const readBuf = Buffer.allocUnsafe(READ_BUFFER_BYTES);
      const s = connect({
        host,
        port,
        onread: {
          buffer: readBuf,
          // readBuf is the buffer node hands back: no view made per read
          callback: (n: number) => {
            this.onData(readBuf, n);
            return !this.holdReads();
          },
        },
      });
      this.sock = s;
      s.setNoDelay(true);
      const onErr = (e: NodeJS.ErrnoException) => reject(new EdgeError('RTSP_CONNECT_FAILED', `connect to ${this.target.host}: ${e.code ?? e.message}`, { host: this.target.host }));
      s.once('error', onErr);
      s.once('connect', () => {
        s.off('error', onErr);
        s.on('error', (e: NodeJS.ErrnoException) => this.fail?.(new EdgeError('RTSP_STREAM_ENDED', `connection to ${this.target.host}: ${e.code ?? e.message}`, { host: this.target.host })));
        s.on('close', () => this.fail?.(new EdgeError('RTSP_STREAM_ENDED', `the camera closed the connection (${this.target.host})`, { host: this.target.host })));
        resolve();
      });
    });
  }

  /** buf[0, n) is the read: `buf` is the shared read buffer, valid only during this call. */
  private onData(buf: Buffer, n: number): void {
    this.counters.bytesIn += n;
    this.counters.reads++;
    this.heldReads++;
    // No copy per read: the reader carries only a partial frame's or message's bytes, the
    // depacketizer copies the NAL bytes it keeps; interleaved frames are ranges of buf.
    try {
      this.reader.feed(buf, n, this.onFrame, this.onMessage);
    } catch (e) {
      this.fail?.(e as Error);
      return;
    }
    // the stall watchdog's clock: read once per read that carried RTP, not once per packet
    if (this.rtpInRead) {
      this.rtpInRead = false;
      this.lastRtpAt = Date.now();
    }
  }

  /** A reply to our request, or a request from the camera (kept off the per-packet path). */
  private readonly onMessage = (m: RtspResponse | RtspServerRequest): void => {
    if (m.type === 'response') {
      const p = this.pending;
      const cseq = Number(header(m.headers, 'cseq') ?? NaN);
      if (p && (cseq === p.cseq || Number.isNaN(cseq))) {
        clearTimeout(p.timer);
        this.pending = undefined;
        p.resolve(m);
      }
      return;
    }
    // A request from the camera (GET_PARAMETER ping, ANNOUNCE, REDIRECT): answer, do not act.
    this.counters.serverRequests++;
    const ok = m.method === 'OPTIONS' || m.method === 'GET_PARAMETER';
    const sock = this.sock;
    if (sock && sock.writableLength > MAX_PENDING_WRITE_BYTES) {
      // a camera that floods requests and never reads our replies must not grow our buffer
      this.counters.serverRepliesDropped++;
      return;
    }
    sock?.write(serializeResponse(ok ? 200 : 501, ok ? 'OK' : 'Not Implemented', header(m.headers, 'cseq')));
  };

  /**
   * Read coalescing (TCP, while playing): a camera sends a frame as a burst of RTP packets, and
   * the kernel wakes us for the first of them, then again for the rest, a wakeup (and a JS call)
   * each. When a read ends inside a frame (no marker bit yet, or half an interleaved packet
   * buffered), stop reading for readCoalesceMs: the rest of the burst piles up in the kernel's
   * socket buffer and comes in one read. A read that ends on a finished frame keeps reading, so
   * the first packet of the next frame is seen at once and the hold never delays a whole frame
   * interval. Returns true when reading stops (the onread callback then returns false).
   */
  private holdReads(): boolean {
    if (this.coalesceMs === 0 || !this.playing || this.holding || this.holdsOff) return false;
    if (this.lastMarker && this.reader.buffered === 0) return false;
    const s = this.sock;
    if (!s || s.destroyed) return false;
    this.holding = true;
    this.counters.readHolds++;
    // Ref'd on purpose: a socket that is not reading is not an active handle for libuv, and the
    // hold must not let the process think it has nothing left to do.
    if (this.holdTimer) this.holdTimer.refresh();
    else this.holdTimer = setTimeout(this.releaseReads, this.coalesceMs);
    return true;
  }

  /**
   * A sender with Nagle on and a large MSS (a server on the same host, some cameras) sends the
   * rest of a frame only when our ACK comes, and the kernel ACKs when we read: then a hold batches
   * nothing (measured on the GStreamer server over loopback: still three reads per frame), it only
   * delays the frame and adds a timer wakeup. Holding can bring a frame down to two reads (its first
   * packet, then the rest); every HOLD_JUDGE_UNITS access units, more than HOLD_MAX_READS_PER_UNIT
   * reads per unit means it does not work on this connection, and this session stops holding.
   */
  private holdsOff = false;

  private judgeHolds(): void {
    if (++this.heldUnits < HOLD_JUDGE_UNITS) return;
    if (this.heldReads > HOLD_MAX_READS_PER_UNIT * this.heldUnits) {
      this.holdsOff = true;
      this.counters.readHoldsGivenUp++;
    }
    this.heldReads = 0;
    this.heldUnits = 0;
  }

  /** End of a read hold (or close): read again; what piled up is read in the next poll. */
  private readonly releaseReads = (): void => {
    if (!this.holding) return;
    this.holding = false;
    const s = this.sock;
    if (s && !s.destroyed) s.resume();
  };

  /** TCP: an interleaved frame as a range of the read buffer (valid during this call only). */
  private readonly onFrame = (channel: number, buf: Buffer, start: number, end: number): void => {
    if (channel === this.rtpChannel) this.onRtpRange(buf, start, end);
    else if (channel === this.rtcpChannel) this.counters.rtcpPackets++;
  };

  private readonly hdr: RtpHeader = { marker: false, payloadType: 0, seq: 0, timestamp: 0, ssrc: 0, payloadStart: 0, payloadEnd: 0 };

  private onRtpRange(buf: Buffer, start: number, end: number): void {
    const depack = this.depack;
    if (!depack || !this.track || !this.playing) return;
    this.rtpInRead = true;
    const h = this.hdr;
    try {
      readRtpHeader(buf, start, end, h);
    } catch {
      this.counters.rtpMalformed++;
      return;
    }
    if (h.payloadType !== this.track.payloadType) {
      this.counters.rtpOtherPayload++;
      return;
    }
    this.lastMarker = h.marker;
    const units = depack.pushPayload(h.seq, h.timestamp, h.marker, buf, h.payloadStart, h.payloadEnd);
    if (units.length > 0) this.deliver(units);
  }

  private deliver(units: DepacketizedUnit[]): void {
    if (this.coalesceMs > 0 && !this.holdsOff) this.judgeHolds();
    const arrival = captureClockUs();
    const wall = Date.now();
    const sps = this.depack?.currentSps;
    for (const u of units) this.onRtpUnits?.({ data: u.data, key: u.key, ts: this.clock.toCapture(u.timestamp, arrival), wallclock: wall, sps });
  }

  /**
   * UDP: one datagram (its own buffer). A packet in sequence with nothing held goes straight to
   * the depacketizer (no object or array); the rest goes through the reorder buffer.
   */
  private onRtp(buf: Buffer): void {
    const depack = this.depack;
    if (!depack || !this.track || !this.playing) return;
    this.lastRtpAt = Date.now();
    const h = this.hdr;
    try {
      readRtpHeader(buf, 0, buf.length, h);
    } catch {
      this.counters.rtpMalformed++;
      return;
    }
    if (h.payloadType !== this.track.payloadType) {
      this.counters.rtpOtherPayload++;
      return;
    }
    const reorder = this.reorder;
    let units: DepacketizedUnit[];
    if (!reorder || reorder.passesInOrder(h.seq)) units = depack.pushPayload(h.seq, h.timestamp, h.marker, buf, h.payloadStart, h.payloadEnd);
    else {
      const p: RtpPacket = { marker: h.marker, payloadType: h.payloadType, seq: h.seq, timestamp: h.timestamp, ssrc: h.ssrc, payload: buf.subarray(h.payloadStart, h.payloadEnd) };
      units = [];
      for (const q of reorder.push(p)) for (const u of depack.push(q)) units.push(u);
    }
    if (units.length > 0) this.deliver(units);
  }

  /** One request, its reply; 401 → credentials (and a stale-nonce retry) → the same request again. */
  private async request(method: string, uri: string, extra: Array<[string, string]>, tolerant = false): Promise<RtspResponse> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const res = await this.send(method, uri, extra);
      if (res.status === 401) {
        let retry: boolean;
        try {
          retry = this.auth.onUnauthorized(res.headers.get('www-authenticate'));
        } catch (e) {
          if (tolerant) return res;
          throw e;
        }
        this.counters.authChallenges = this.auth.challenges;
        this.counters.staleNonceRetries = this.auth.staleRetries;
        this.counters.lastAuthMethod = this.auth.method;
        if (retry) continue;
        if (tolerant) return res;
        throw new EdgeError('RTSP_AUTH_FAILED', `${method}: 401 Unauthorized: the camera refused the ${this.auth.method} credentials`, { host: this.target.host, method });
      }
      if (res.status >= 200 && res.status < 300) return res;
      if (tolerant) return res;
      const code = res.status === 404 ? 'RTSP_NOT_FOUND' : res.status === 403 ? 'RTSP_AUTH_FAILED' : res.status === 461 ? 'RTSP_TRANSPORT_UNSUPPORTED' : 'RTSP_REQUEST_FAILED';
      throw new EdgeError(code, `${method}: ${res.status} ${res.reason.slice(0, 80)}`, { host: this.target.host, method, status: res.status });
    }
    throw new EdgeError('RTSP_AUTH_FAILED', `${method}: too many 401 challenges`, { host: this.target.host });
  }

  private send(method: string, uri: string, extra: Array<[string, string]>): Promise<RtspResponse> {
    const s = this.sock;
    if (!s || s.destroyed) return Promise.reject(new EdgeError('RTSP_STREAM_ENDED', 'not connected', { host: this.target.host }));
    if (this.pending) return Promise.reject(new EdgeError('RTSP_BUSY', 'a request is already waiting', { method }));
    const cseq = ++this.cseq;
    const headers: Array<[string, string]> = [['CSeq', String(cseq)], ['User-Agent', this.o.userAgent ?? USER_AGENT], ...extra];
    if (this.sessionId) headers.push(['Session', this.sessionId]);
    const a = this.auth.authorization(method, uri);
    if (a) headers.push(['Authorization', a]);
    const timeoutMs = this.o.requestTimeoutMs ?? CRLF_TIMEOUT_MS;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending = undefined;
        reject(new EdgeError('RTSP_TIMEOUT', `${method}: no reply in ${timeoutMs} ms`, { host: this.target.host, method }));
      }, timeoutMs);
      this.pending = { cseq, resolve, reject, timer };
      this.counters.requests++;
      s.write(serializeRequest(method, uri, headers));
    });
  }

  // ------------------------------------------------------------------ UDP

  /** An even/odd port pair on the interface the RTSP connection uses (not on every interface). */
  private async bindUdp(): Promise<[number, number]> {
    const addr = this.sock?.localAddress ?? '0.0.0.0';
    const family = addr.includes(':') ? 'udp6' : 'udp4';
    const { first, count } = rtpPortPairs(this.o.rtpPortRange ?? DEFAULT_RTP_PORT_RANGE);
    // From a random pair on, in order: a narrow firewall range (a few pairs per camera) is tried
    // whole; a wide one at most 64 times.
    const start = Math.floor(Math.random() * count);
    const tries = Math.min(count, 64);
    for (let i = 0; i < tries; i++) {
      const port = first + 2 * ((start + i) % count);
      const rtp = createSocket({ type: family });
      const rtcp = createSocket({ type: family });
      const ok = await bindBoth(rtp, rtcp, addr, port);
      if (!ok) continue;
      if (this.closed) {
        // the session closed (start timeout, abort) while the pair was binding: nothing would close it
        for (const u of [rtp, rtcp]) {
          try {
            u.close();
          } catch {
            // already closed
          }
        }
        throw new EdgeError('RTSP_CLOSED', 'session closed', { host: this.target.host });
      }
      const remote = this.sock?.remoteAddress;
      rtp.on('message', (m, rinfo) => {
        if (remote && rinfo.address !== remote) return void this.counters.rtpForeign++;
        this.counters.bytesIn += m.length;
        this.onRtp(m);
      });
      rtcp.on('message', (_m, rinfo) => {
        if (remote && rinfo.address !== remote) return void this.counters.rtpForeign++;
        this.counters.rtcpPackets++;
      });
      rtp.on('error', () => {});
      rtcp.on('error', () => {});
      this.udp = { rtp, rtcp };
      this.counters.udpPorts = [port, port + 1];
      return [port, port + 1];
    }
    const [lo, hi] = this.o.rtpPortRange ?? DEFAULT_RTP_PORT_RANGE;
    throw new EdgeError('RTSP_UDP_BIND_FAILED', `no free UDP port pair for RTP/RTCP in ${lo}-${hi} (${tries} tried): widen rtpPortRange`, { host: this.target.host });
  }

  /** Packets toward the camera's ports so a NAT/firewall on our side opens the return path. */
  private punch(): void {
    const u = this.udp;
    const host = this.sock?.remoteAddress;
    if (!u || !host) return;
    const rtp = Buffer.alloc(12);
    rtp[0] = 0x80;
    rtp[1] = this.track?.payloadType ?? 96;
    rtp.writeUInt32BE(this.ssrc, 8);
    if (u.serverRtp) u.rtp.send(rtp, u.serverRtp, host, () => {});
    if (u.serverRtcp) u.rtcp.send(this.receiverReport(), u.serverRtcp, host, () => {});
  }

  /** RTCP RR with no report blocks (RFC 3550 §6.4.2): "still here". */
  private receiverReport(): Buffer {
    const b = Buffer.alloc(8);
    b[0] = 0x80;
    b[1] = 201;
    b.writeUInt16BE(1, 2);
    b.writeUInt32BE(this.ssrc, 4);
    return b;
  }

  // ------------------------------------------------------------------ keepalive, watchdog

  private startKeepalive(): void {
    const method = this.publicMethods.includes('GET_PARAMETER') ? 'GET_PARAMETER' : 'OPTIONS';
    // Half the session timeout, like ffmpeg and go2rtc; at least every 30 s for servers that lie.
    const every = Math.max(1000, Math.min(30_000, (this.timeoutS * 1000) / 2));
    this.timers.push(setInterval(() => {
      if (this.pending) return; // a reply is still out: the session is busy, which counts as alive
      this.counters.keepalives++;
      this.request(method, method === 'OPTIONS' ? this.target.href : (this.track?.control ?? this.target.href), [], true)
        .then((r) => {
          if (r.status >= 300) this.counters.keepaliveFailures++;
        })
        .catch(() => void this.counters.keepaliveFailures++);
    }, every));
    this.timers.push(setInterval(() => {
      const u = this.udp;
      const host = this.sock?.remoteAddress;
      const rr = this.receiverReport();
      this.counters.rtcpReportsSent++;
      if (u && host && u.serverRtcp) u.rtcp.send(rr, u.serverRtcp, host, () => {});
      else if (!u && this.sock && !this.sock.destroyed) this.sock.write(interleave(this.rtcpChannel, rr));
    }, RTCP_RR_INTERVAL_MS));
    const check = Math.max(100, Math.min(1000, this.o.stallTimeoutMs / 4));
    this.timers.push(setInterval(() => {
      if (Date.now() - this.lastRtpAt > this.o.stallTimeoutMs) {
        this.fail?.(new EdgeError('STALLED', `no RTP from the camera for ${this.o.stallTimeoutMs} ms`, { host: this.target.host }));
      }
    }, check));
  }

  // ------------------------------------------------------------------ close

  /** TEARDOWN (best effort, bounded) when stopping on purpose, then close every socket. Never throws. */
  private async close(polite: boolean): Promise<void> {
    this.closed = true;
    this.fail = undefined;
    this.playing = false;
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
    // a held socket reads again (the TEARDOWN reply must get through); no new holds: not playing
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.releaseReads();
    const p = this.pending;
    this.pending = undefined;
    if (p) {
      clearTimeout(p.timer);
      p.reject(new EdgeError('RTSP_CLOSED', 'session closed'));
    }
    const s = this.sock;
    if (polite && s && !s.destroyed && this.sessionId) {
      try {
        this.counters.teardowns++;
        await Promise.race([
          this.send('TEARDOWN', this.playUrl ?? this.target.href, []).catch(() => undefined),
          new Promise((r) => setTimeout(r, 500)),
        ]);
      } catch {
        // best effort
      }
      const q = this.pending as { timer: NodeJS.Timeout } | undefined;
      if (q) clearTimeout(q.timer);
      this.pending = undefined;
    }
    s?.destroy();
    if (this.udp) {
      for (const u of [this.udp.rtp, this.udp.rtcp]) {
        try {
          u.close();
        } catch {
          // already closed
        }
      }
      this.udp = undefined;
    }
  }
}

function bindBoth(a: UdpSocket, b: UdpSocket, addr: string, port: number): Promise<boolean> {
  const bind = (s: UdpSocket, p: number) =>
    new Promise<boolean>((resolve) => {
      const onErr = () => resolve(false);
      s.once('error', onErr);
      s.bind(p, addr, () => {
        s.off('error', onErr);
        resolve(true);
      });
    });
  return bind(a, port).then(async (ok) => {
    if (!ok) {
      closeQuiet(a);
      closeQuiet(b);
      return false;
    }
    if (await bind(b, port + 1)) return true;
    closeQuiet(a);
    closeQuiet(b);
    return false;
  });
}

function closeQuiet(s: UdpSocket): void {
  try {
    s.close();
  } catch {
    // not bound
  }
}
