// werift glue shared by the WHIP publisher, the WHEP server and WHIP ingest: peer connection
// set-up for H.264, a bounded wait for ICE gathering / connection, and RtpFeed, which moves one
// engine consumer's access units into an RTP sender without transcoding and turns PLI/FIR into
// keyframe requests.
import type {
  RTCPeerConnection,
  RTCRtpCodecParameters,
  RtcpPayloadSpecificFeedback,
  RTCRtpSender,
  RTCDataChannel,
  RTCIceTransport,
} from 'werift';
import type * as WeriftModule from 'werift';
import { EdgeError, mimeBase, mimeKind, type ConsumerHandle, type TrackRef, type TrackSource } from '../engine/api.js';
import { packetizeH264, ParamSetCache } from './h264-rtp.js';
import { nativeSrtp, nativeSrtpError, newPlan, PLAN, type NativeSrtp, type NativeSrtpContext } from '../native/index.js';

// werift is ~35 MB of RSS: loaded on the first WebRTC session, not at start (a robot that only
// speaks pang never pays for it). Every path that creates a peer awaits loadWerift() first.
let werift: typeof WeriftModule | undefined;

export async function loadWerift(): Promise<typeof WeriftModule> {
  werift ??= await import('werift');
  return werift;
}

/** werift after loadWerift() resolved (throws a typed error before). */
export function loadedWerift(): typeof WeriftModule {
  return lib();
}

function lib(): typeof WeriftModule {
  if (!werift) throw new EdgeError('WEBRTC_NOT_LOADED', 'werift is not loaded: await loadWerift() before creating a peer');
  return werift;
}

export interface PeerOptions {
  /** Extra host addresses to offer (loopback for same-host peers, field notes). */
  additionalHostAddresses?: string[];
  /** H.264 profile-level-ids to offer/accept, most preferred first. */
  h264Profiles?: string[];
  /** STUN/TURN for peers beyond the LAN. */
  iceServers?: Array<{ urls: string; username?: string; credential?: string }>;
}

export function h264Codec(profileLevelId: string): RTCRtpCodecParameters {
  return new (lib().RTCRtpCodecParameters)({
    mimeType: 'video/H264',
    clockRate: 90000,
    rtcpFeedback: [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'ccm', parameter: 'fir' }],
    parameters: `level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=${profileLevelId}`,
  });
}

export function createPeer(opts: PeerOptions = {}): RTCPeerConnection {
  const profiles = opts.h264Profiles && opts.h264Profiles.length > 0 ? opts.h264Profiles : ['42e01f'];
  return new (lib().RTCPeerConnection)({
    codecs: { video: profiles.map(h264Codec), audio: [] },
    iceServers: opts.iceServers ?? [],
    iceAdditionalHostAddresses: opts.additionalHostAddresses ?? ['127.0.0.1'],
    iceUseIpv6: false,
  });
}

/** Resolve when ICE gathering completes, or after `ms` with what was gathered (never hangs). */
export function gatheringComplete(pc: RTCPeerConnection, ms: number): Promise<void> {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    const sub = pc.iceGatheringStateChange.subscribe((s) => {
      if (s === 'complete') done();
    });
    function done(): void {
      clearTimeout(t);
      sub.unSubscribe();
      resolve();
    }
  });
}

/** Resolve on 'connected'; reject on 'failed'/'closed' or after `ms` (typed EdgeErrors). */
export function connected(pc: RTCPeerConnection, ms: number, codePrefix: string): Promise<void> {
  if (pc.connectionState === 'connected') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => finish(new EdgeError(`${codePrefix}_ICE_TIMEOUT`, `ICE did not connect within ${ms} ms`)), ms);
    const sub = pc.connectionStateChange.subscribe((s) => {
      if (s === 'connected') finish();
      else if (s === 'failed' || s === 'closed') finish(new EdgeError(`${codePrefix}_ICE_FAILED`, `peer connection ${s}`));
    });
    function finish(err?: Error): void {
      clearTimeout(t);
      sub.unSubscribe();
      if (err) reject(err);
      else resolve();
    }
  });
}

export interface RtpFeedStats {
  track: string;
  framesOut: number;
  packetsOut: number;
  bytesOut: number;
  recordsOut: number;
  rtcpIn: number;
  plis: number;
  firs: number;
  /** Distinct RTP packets the receiver NACKed (lost on the way, before retransmission). */
  nacked: number;
  keyframeRequestsGranted: number;
  keyframeRequestsDenied: number;
  waitingForKeyframe: boolean;
  /** Direct RTP path in use (null: werift's sendRtp); packets that fell back to werift's path. */
  directRtp: DirectRtpStats | null;
  /** Frames skipped: not H.264, no MIME yet, or a record that did not fit the data channel buffer. */
  skipped: { notH264: number; noMime: number; channelFull: number };
  consumer: ReturnType<ConsumerHandle['stats']> | null;
}

/** Cumulative counters of a video feed (NACKed: distinct sequence numbers the receiver asked again). */
export interface SentTotals {
  bytes: number;
  packets: number;
  nacked: number;
}

/** Optional hooks a feed's owner passes (the WHIP publisher: uplink demand, mode gate, RR). */
export interface RtpFeedHooks {
  /** Every video access unit the track offers (before any gate): bytes and keyframe flag. */
  onVideoFrame?: (bytes: number, key: boolean) => void;
  /** Lets a video access unit through (the uplink scheduler's mode); false holds it back. */
  gate?: (key: boolean) => boolean;
  /**
   * A receiver report block about our SSRC (fraction lost 0..255, jitter in RTP units), with the
   * feed's cumulative totals (payload bytes, packets, distinct packets NACKed) and REMB in bytes/s.
   */
  onReceiverReport?: (rr: { fractionLost: number; jitter: number }, totals: SentTotals, rembBytesPerSec: number | null) => void;
}

const RTP_MTU = 1200; // fits a 1280-byte IPv6 minimum MTU path with SRTP and header overhead

/**
 * The parts of werift 0.24's RTCRtpSender / DTLS / ICE objects the direct RTP path touches
 * (private in its typings, public at run time). Checked per access unit by DirectRtpPath.usable():
 * when any of it is missing or different (a werift upgrade), the feed uses sender.sendRtp.
 */
interface SenderInternals {
  ssrc: number;
  codec?: { payloadType?: number };
  redRedundantPayloadType?: number;
  headerExtensions?: unknown[];
  timestampOffset?: number;
  seqOffset?: number;
  rtpCache?: unknown[];
  ntpTimestamp?: bigint;
  rtpTimestamp?: number;
  octetCount?: number;
  packetCount?: number;
  headerBytesSent?: number;
  sequenceNumber?: number;
  timestamp?: number;
  runRtcp?: () => Promise<void>;
  rtcpRunning?: boolean;
  dtlsTransport?: {
    state?: string;
    bytesSent?: number;
    packetsSent?: number;
    srtp?: { encrypt(payload: Buffer, header: unknown): Buffer; localContext?: SrtpContextInternals };
    iceTransport?: { connection?: IceInternals };
  };
}
/** werift's SrtpContext (rtp/src/srtp/context): session keys and the per-SSRC rollover state. */
interface SrtpContextInternals {
  profile?: number;
  srtpSessionKey?: Buffer;
  srtpSessionSalt?: Buffer;
  srtpSessionAuthTag?: Buffer;
  getSrtpSsrcState?(ssrc: number): RocState;
  updateRolloverCount?(seq: number, s: RocState): void;
}
interface RocState {
  ssrc: number;
  rolloverCounter: number;
  lastSequenceNumber: number;
  rolloverHasProcessed?: boolean;
}
type UdpSocket = { send(b: Buffer, port: number, addr: string): void; getSendQueueCount?(): number };
interface IceInternals {
  state?: string;
  nominated?: { packetsSent: number; bytesSent: number; remoteAddr: [string, number]; protocol?: { transport?: { type?: string; closed?: boolean; socket?: UdpSocket } } };
  send?: (data: Buffer) => Promise<void>;
  canSendApplicationData?: () => boolean;
}

const RTP_HISTORY_SIZE = 128; // werift's NACK history (RTCRtpSender), indexed by seq % 128

/** Direct RTP path counters (RtpFeedStats.directRtp). */
export interface DirectRtpStats {
  /** Packets that went through werift's sendRtp because the direct path did not apply. */
  packetsFallback: number;
  /**
   * The native sender (runtime/native: SRTP protect + one sendmmsg per access unit): packets it
   * sent, packets it dropped on a full socket buffer, calls that failed (that access unit went
   * the JavaScript way), and why it is off (null: in use).
   */
  native: { packets: number; drops: number; errors: number; off: string | null };
  /** Packets the JavaScript direct loop sent (werift's SRTP session, one dgram send each). */
  packetsJs: number;
}

/**
 * One entry of werift's NACK history (RTCRtpSender.rtpCache): what its NACK handler reads is
 * `header` (an RtpHeader, for the sequence number check and the SRTP resend) and `payload`. A
 * direct path owns 128 of them and rewrites one per packet (seq % 128, the slot werift reads):
 * header and payload are built only when a NACK asks, the payload from the access unit it came
 * from (offset, length and FU-A header bytes), so a packet costs no object at all. werift's
 * handler reads both synchronously before its first await, so a later rewrite cannot race it.
 */
class HistoryEntry {
  private h: InstanceType<typeof WeriftModule.RtpHeader> | null = null;
  private pt = 0;
  private seq = -1;
  private ts = 0;
  private marker = false;
  private ssrc = 0;
  private buf: Buffer = EMPTY;
  private off = 0;
  private len = 0;
  /** FU indicator << 8 | FU header; 0: the bytes are the payload as they are. */
  private fu = 0;

  set(pt: number, seq: number, ts: number, marker: boolean, ssrc: number, buf: Buffer, off: number, len: number, fu: number): void {
    this.h = null;
    this.pt = pt;
    this.seq = seq;
    this.ts = ts;
    this.marker = marker;
    this.ssrc = ssrc;
    this.buf = buf;
    this.off = off;
    this.len = len;
    this.fu = fu;
  }

  get header(): InstanceType<typeof WeriftModule.RtpHeader> {
    this.h ??= new (lib().RtpHeader)({ payloadType: this.pt, sequenceNumber: this.seq, timestamp: this.ts, marker: this.marker, ssrc: this.ssrc });
    return this.h;
  }

  get payload(): Buffer {
    if (this.fu === 0) return this.buf.subarray(this.off, this.off + this.len);
    const p = Buffer.allocUnsafe(this.len + 2);
    p[0] = this.fu >>> 8;
    p[1] = this.fu & 0xff;
    this.buf.copy(p, 2, this.off, this.off + this.len);
    return p;
  }
}
const EMPTY = Buffer.alloc(0);

/** The dgram socket's file descriptor, read without Socket#_handle (deprecated, DEP0112). */
export function socketFd(sock: object): number | null {
  const sym = Object.getOwnPropertySymbols(sock).find((k) => k.description === 'state symbol');
  const state = sym ? (sock as Record<symbol, { handle?: { fd?: unknown } } | undefined>)[sym] : undefined;
  const fd = state?.handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : null;
}

/**
 * Direct RTP path for pass-through video (issue 4 CPU target): werift's RTCRtpSender.sendRtp is
 * built for one packet from a track — per packet it rebuilds the header-extension list, reads the
 * NTP clock, runs five nested async functions (sender → DTLS → ICE → protocol → UDP) and feeds a
 * send-side BWE we do not negotiate. Here one access unit goes out in one synchronous call: with
 * the native addon (runtime/native) the RTP headers, SRTP protection (werift's session keys and
 * rollover counter) and one sendmmsg() on the nominated pair's UDP socket happen in C; without it
 * a JavaScript loop does the same through werift's SRTP session and one dgram send per packet.
 * What werift's RTCP sender report and NACK retransmission read is kept up to date either way
 * (packet/octet counts, RTP/NTP timestamps, the 128-packet history, the SRTP rollover state), so
 * SR and NACK keep working unchanged.
 * Used only when the session has no header extensions, no RED and a plain UDP pair; anything
 * else goes through sender.sendRtp.
 */
export class DirectRtpPath {
  private readonly s: SenderInternals;
  /** Packets that went through werift's own path because the direct one did not apply. */
  fallbacks = 0;
  private packetsJs = 0;
  private readonly nat = { packets: 0, drops: 0, errors: 0, off: null as string | null };
  /** Native context for werift's current SRTP context (a DTLS restart makes a new one). */
  private nctx: { for: SrtpContextInternals; ctx: NativeSrtpContext } | null = null;
  /** The nominated pair's socket and its fd (read once per socket). */
  private fdOf: { sock: UdpSocket; fd: number | null } | null = null;
  /** This path's NACK history entries, slot = seq % 128 (rewritten in place, see HistoryEntry). */
  private readonly history = Array.from({ length: RTP_HISTORY_SIZE }, () => new HistoryEntry());
  /** sendAnnexB's packet plan (runtime/native PLAN layout), one per path. */
  private plan: Uint32Array | null = null;
  /** Payload bytes of the last access unit sendAnnexB sent (RtpFeed's bytesOut). */
  lastPayloadBytes = 0;

  constructor(sender: RTCRtpSender, useNative = true) {
    this.s = sender as unknown as SenderInternals;
    if (!useNative) this.nat.off = 'disabled for this path';
    else if (!nativeSrtp()) this.nat.off = `addon not loaded: ${nativeSrtpError() ?? 'unknown'}`;
  }

  stats(): DirectRtpStats {
    return { packetsFallback: this.fallbacks, native: { ...this.nat }, packetsJs: this.packetsJs };
  }

  private socket(): { pair: NonNullable<IceInternals['nominated']>; sock: UdpSocket } | null {
    const ice = this.s.dtlsTransport?.iceTransport?.connection;
    const pair = ice?.nominated;
    const t = pair?.protocol?.transport;
    if (!pair || !t || t.type !== 'udp' || t.closed || !t.socket || ice.state === 'closed' || ice.state === 'failed') return null;
    // RFC 7675: no media on a pair whose consent expired (werift's own send path checks the same).
    if (typeof ice.canSendApplicationData === 'function' && !ice.canSendApplicationData()) return null;
    return { pair, sock: t.socket };
  }

  /** The nominated pair and its socket when this session can use the direct path right now, else null. */
  private usable(): { pair: NonNullable<IceInternals['nominated']>; sock: UdpSocket } | null {
    const s = this.s;
    const ok =
      s.dtlsTransport?.state === 'connected' &&
      typeof s.codec?.payloadType === 'number' &&
      !s.redRedundantPayloadType &&
      Array.isArray(s.headerExtensions) &&
      s.headerExtensions.length === 0 &&
      Array.isArray(s.rtpCache) &&
      typeof s.dtlsTransport.srtp?.encrypt === 'function' &&
      (s.timestampOffset ?? 0) === 0 &&
      (s.seqOffset ?? 0) === 0;
    return ok ? this.socket() : null;
  }

  /** Send the payloads of one access unit; returns packets sent, or -1 when not usable (caller falls back). */
  send(payloads: readonly Buffer[], firstSeq: number, timestamp: number): number {
    const out = this.usable();
    if (!out) {
      this.fallbacks += payloads.length;
      return -1;
    }
    const wire = this.sendNative(payloads, firstSeq, timestamp, out) ?? this.sendJs(payloads, firstSeq, timestamp, out);
    this.sent(out, payloads.length, wire, firstSeq, timestamp);
    return payloads.length;
  }

  /**
   * Packetize, protect and send one Annex-B access unit in the addon (RTP payloads of at most
   * `mtu` bytes, the bytes packetizeH264 makes); returns packets sent, or -1 when the native path
   * does not apply right now (the caller packetizes in JavaScript and calls send()).
   */
  sendAnnexB(au: Buffer, firstSeq: number, timestamp: number, mtu: number): number {
    if (this.nat.off !== null) return -1;
    const out = this.usable();
    if (!out) return -1;
    const t = this.nativeTarget(out, firstSeq);
    if (!t) return -1;
    const plan = (this.plan ??= newPlan());
    try {
      const sent = t.n.sendAnnexB(t.ctx, t.fd, t.addr, t.port, this.s.codec!.payloadType!, firstSeq, timestamp, this.s.ssrc, t.roc, au, mtu, plan);
      this.nat.packets += sent;
      this.nat.drops += plan[0]! - sent;
    } catch (e) {
      this.nat.errors++;
      this.nat.off = (e as Error).message;
      return -1;
    }
    const count = plan[0]!;
    const local = t.local;
    const state = local.getSrtpSsrcState(this.s.ssrc);
    let seq = firstSeq;
    for (let i = 0, k = PLAN.HEAD; i < count; i++, k += PLAN.STRIDE) {
      local.updateRolloverCount(seq, state);
      this.keep(seq, timestamp, i === count - 1, au, plan[k]!, plan[k + 1]!, plan[k + 2]!);
      seq = (seq + 1) & 0xffff;
    }
    const bytes = plan[1]!;
    this.lastPayloadBytes = bytes;
    this.sent(out, count, bytes + (12 + t.tagLen) * count, firstSeq, timestamp);
    return count;
  }

  /** After an access unit went: the DTLS/ICE counters, the sender's last sequence number and RTP/NTP timestamps for its SR. */
  private sent(out: { pair: NonNullable<IceInternals['nominated']> }, packets: number, wire: number, firstSeq: number, timestamp: number): void {
    const s = this.s;
    const dtls = s.dtlsTransport!;
    dtls.bytesSent = (dtls.bytesSent ?? 0) + wire;
    dtls.packetsSent = (dtls.packetsSent ?? 0) + packets;
    out.pair.packetsSent += packets;
    out.pair.bytesSent += wire;
    s.sequenceNumber = (firstSeq + packets - 1) & 0xffff;
    s.timestamp = timestamp;
    s.rtpTimestamp = timestamp;
    s.ntpTimestamp = lib().ntpTime(); // one NTP reading per access unit: every packet of it shares the RTP timestamp
    if (!s.rtcpRunning) void s.runRtcp?.().catch(() => undefined); // starts werift's SR loop once
  }

  /**
   * What werift's SR and NACK read, per packet: the history entry and the payload/header counts.
   * The payload is buf[off, off + len), behind the FU indicator and header `fu` when not 0.
   */
  private keep(seq: number, timestamp: number, marker: boolean, buf: Buffer, off: number, len: number, fu: number): void {
    const s = this.s;
    const e = this.history[seq % RTP_HISTORY_SIZE]!;
    e.set(s.codec!.payloadType!, seq, timestamp, marker, s.ssrc, buf, off, len, fu);
    s.rtpCache![seq % RTP_HISTORY_SIZE] = e;
    s.octetCount = (s.octetCount ?? 0) + len + (fu === 0 ? 0 : 2);
    s.headerBytesSent = (s.headerBytesSent ?? 0) + 12;
    s.packetCount = ((s.packetCount ?? 0) + 1) >>> 0;
  }

  /** werift's SRTP session and one dgram send per packet; returns the bytes put on the wire. */
  private sendJs(payloads: readonly Buffer[], firstSeq: number, timestamp: number, out: { pair: NonNullable<IceInternals['nominated']>; sock: UdpSocket }): number {
    const srtp = this.s.dtlsTransport!.srtp!;
    const [addr, port] = out.pair.remoteAddr;
    let wire = 0;
    let seq = firstSeq;
    for (let i = 0; i < payloads.length; i++) {
      const payload = payloads[i]!;
      const marker = i === payloads.length - 1;
      const enc = srtp.encrypt(payload, new (lib().RtpHeader)({ payloadType: this.s.codec!.payloadType!, sequenceNumber: seq, timestamp, marker, ssrc: this.s.ssrc }));
      try {
        out.sock.send(enc, port, addr);
      } catch {
        // a closing socket: teardown follows from the connection state
      }
      this.keep(seq, timestamp, marker, payload, 0, payload.length, 0);
      wire += enc.length;
      seq = (seq + 1) & 0xffff;
    }
    this.packetsJs += payloads.length;
    return wire;
  }

  /**
   * What a native send needs: the addon, werift's SRTP context (its native copy made once per
   * context: a DTLS restart makes a new one), the socket fd, the destination and the first
   * packet's rollover counter (werift's rule, its state untouched until sent). null when the
   * native path does not apply (turned off with the reason when it never will).
   */
  private nativeTarget(out: { pair: NonNullable<IceInternals['nominated']>; sock: UdpSocket }, firstSeq: number): { n: NativeSrtp; ctx: NativeSrtpContext; local: Required<SrtpContextInternals>; fd: number; addr: string; port: number; roc: number; tagLen: number } | null {
    const n = nativeSrtp()!;
    const local = this.s.dtlsTransport!.srtp!.localContext;
    if (!local || typeof local.getSrtpSsrcState !== 'function' || typeof local.updateRolloverCount !== 'function') {
      this.nat.off = 'werift SRTP context without the expected fields';
      return null;
    }
    // libuv still holding earlier sends (a full socket buffer): keep their order, go the JS way.
    if ((out.sock.getSendQueueCount?.() ?? 0) > 0) return null;
    if (this.fdOf?.sock !== out.sock) this.fdOf = { sock: out.sock, fd: socketFd(out.sock) };
    const fd = this.fdOf.fd;
    if (fd === null) {
      this.nat.off = 'no fd on the UDP socket';
      return null;
    }
    const profile = local.profile;
    try {
      if (this.nctx?.for !== local) {
        this.nctx = { for: local, ctx: n.createContext(profile ?? -1, local.srtpSessionKey!, local.srtpSessionSalt!, profile === 7 ? null : (local.srtpSessionAuthTag ?? null)) };
      }
    } catch (e) {
      this.nat.errors++;
      this.nat.off = (e as Error).message;
      return null;
    }
    const state = local.getSrtpSsrcState(this.s.ssrc);
    const probe = { ...state };
    local.updateRolloverCount(firstSeq, probe);
    const [addr, port] = out.pair.remoteAddr;
    return { n, ctx: this.nctx.ctx, local: local as Required<SrtpContextInternals>, fd, addr, port, roc: probe.rolloverCounter, tagLen: profile === 7 ? 16 : 10 };
  }

  /**
   * The addon: protect and sendmmsg the whole access unit, then the same bookkeeping as sendJs
   * (werift's rollover state advanced exactly as its own encrypt would). Returns the bytes put on
   * the wire, or null when the native path does not apply or failed before sending (the caller
   * sends the access unit the JavaScript way; a failure is counted and turns the native path off).
   */
  private sendNative(payloads: readonly Buffer[], firstSeq: number, timestamp: number, out: { pair: NonNullable<IceInternals['nominated']>; sock: UdpSocket }): number | null {
    if (this.nat.off !== null) return null;
    const t = this.nativeTarget(out, firstSeq);
    if (!t) return null;
    const local = t.local;
    const tagLen = t.tagLen;
    try {
      const sent = t.n.sendAu(t.ctx, t.fd, t.addr, t.port, this.s.codec!.payloadType!, firstSeq, timestamp, this.s.ssrc, t.roc, payloads);
      this.nat.packets += sent;
      this.nat.drops += payloads.length - sent;
    } catch (e) {
      this.nat.errors++;
      this.nat.off = (e as Error).message;
      return null;
    }
    const state = local.getSrtpSsrcState(this.s.ssrc);
    let wire = 0;
    let seq = firstSeq;
    for (let i = 0; i < payloads.length; i++) {
      const payload = payloads[i]!;
      local.updateRolloverCount(seq, state);
      this.keep(seq, timestamp, i === payloads.length - 1, payload, 0, payload.length, 0);
      wire += 12 + payload.length + tagLen;
      seq = (seq + 1) & 0xffff;
    }
    return wire;
  }
}

/**
 * One track → one WebRTC peer: video through an RTP sender (H.264 pass-through, SPS/PPS in front
 * of every IDR, 90 kHz timestamps from the capture clock); data records through a data channel.
 */
export class RtpFeed {
  private consumer: ConsumerHandle | null = null;
  private params = new ParamSetCache();
  private seq = Math.floor(Math.random() * 0xffff);
  private pumping = false;
  private closed = false;
  private needKey = true;
  private lastKeyReq = 0;
  /** When the receiver last sent RTCP (RR, PLI, REMB…): a silent receiver is a dead session. */
  lastRtcpAt = 0;
  private unsubs: Array<() => void> = [];
  private direct: DirectRtpPath | null;
  private readonly nackSeen = new Set<number>();
  private c = { nacked: 0, rtcpIn: 0, framesOut: 0, packetsOut: 0, bytesOut: 0, recordsOut: 0, plis: 0, firs: 0, granted: 0, denied: 0, notH264: 0, noMime: 0, channelFull: 0 };

  constructor(
    private readonly source: TrackSource,
    readonly ref: TrackRef,
    private readonly out: { sender: RTCRtpSender } | { channel: RTCDataChannel },
    private readonly label: string,
    /** Engine queue ceiling for this viewer: 4 MB ≈ two 720p GOPs; a slow peer loses GOP tails. */
    private readonly ceilingBytes = 4 * 1024 * 1024,
    /**
     * Send video through DirectRtpPath when the session allows it (false: always werift's sendRtp;
     * 'js': the direct path without the native sender).
     */
    directRtp: boolean | 'js' = true,
    private readonly hooks: RtpFeedHooks = {},
  ) {
    this.direct = directRtp !== false && 'sender' in out ? new DirectRtpPath(out.sender, directRtp !== 'js') : null;
  }

  start(): void {
    if (this.consumer || this.closed) return;
    const c = this.source.subscribe(this.ref, { label: this.label, ceilingBytes: this.ceilingBytes, fromCache: true, texts: false });
    this.consumer = c;
    c.onReadable(() => this.pump());
    if ('sender' in this.out) {
      const sender = this.out.sender;
      const sub = sender.onRtcp.subscribe((p) => {
        this.c.rtcpIn++;
        this.lastRtcpAt = Date.now();
        if (p.type === lib().RtcpRrPacket.type || p.type === lib().RtcpSrPacket.type) {
          const reports = (p as { reports?: Array<{ ssrc: number; fractionLost: number; jitter: number }> }).reports ?? [];
          const mine = reports.find((r) => r.ssrc === sender.ssrc);
          if (mine && this.hooks.onReceiverReport) {
            const remb = Number((sender as unknown as { receiverEstimatedMaxBitrate?: bigint }).receiverEstimatedMaxBitrate ?? 0n) / 8;
            this.hooks.onReceiverReport({ fractionLost: mine.fractionLost, jitter: mine.jitter }, { bytes: this.c.bytesOut, packets: this.c.packetsOut, nacked: this.c.nacked }, remb > 0 ? remb : null);
          }
          return;
        }
        if (p.type === lib().RtcpTransportLayerFeedback.type) {
          // Generic NACK: loss as the receiver saw it, before retransmission repaired it (the
          // receiver report's fraction lost counts repaired packets as received).
          const lost = (p as { feedback?: { count?: number; lost?: number[] } }).feedback;
          if (lost?.count === 1 && Array.isArray(lost.lost)) {
            for (const seq of lost.lost) {
              if (this.nackSeen.has(seq)) continue;
              // Bounded: 1024 recent sequence numbers are enough to not count one loss twice.
              if (this.nackSeen.size >= 1024) this.nackSeen.clear();
              this.nackSeen.add(seq);
              this.c.nacked++;
            }
          }
          return;
        }
        if (p.type !== lib().RtcpPayloadSpecificFeedback.type) return;
        const count = (p as RtcpPayloadSpecificFeedback).feedback.count;
        if (count === 1) this.c.plis++;
        else if (count === 4) this.c.firs++;
        else return;
        this.keyframe();
      });
      this.unsubs.push(() => sub.unSubscribe());
    }
    this.pump();
  }

  /** Ask the source for a keyframe (at most every 500 ms: browsers repeat PLIs while waiting). */
  private keyframe(): void {
    const now = Date.now();
    if (now - this.lastKeyReq < 500) return;
    this.lastKeyReq = now;
    if (this.source.requestKeyframe(this.ref)) this.c.granted++;
    else this.c.denied++; // the driver cannot: the next natural IDR will do, and this is counted
  }

  private pump(): void {
    if (this.pumping || this.closed) return;
    this.pumping = true;
    try {
      for (let item = this.consumer?.next(); item; item = this.consumer?.next()) {
        if (item.type !== 'frame') continue;
        const mime = item.mime ?? this.consumer?.mime();
        if (!mime) {
          this.c.noMime++;
          continue;
        }
        if ('channel' in this.out) {
          const ch = this.out.channel;
          if (ch.readyState !== 'open') continue;
          // 1 MB of unsent data per channel: a stalled peer drops records instead of growing memory.
          if (ch.bufferedAmount > 1024 * 1024) {
            this.c.channelFull++;
            continue;
          }
          ch.send(item.frame.data);
          this.c.recordsOut++;
          this.c.bytesOut += item.frame.data.length;
          continue;
        }
        if (mimeKind(mime) !== 'video' || mimeBase(mime) !== 'video/h264') {
          this.c.notH264++;
          continue;
        }
        const au = this.params.apply(item.frame.data);
        this.hooks.onVideoFrame?.(au.length, item.frame.key);
        if (this.needKey) {
          if (!item.frame.key) continue;
          this.needKey = false;
        }
        if (this.hooks.gate && !this.hooks.gate(item.frame.key)) continue;
        this.sendAu(au, item.frame.ts);
      }
    } finally {
      this.pumping = false;
    }
  }

  private sendAu(au: Buffer, tsUs: number): void {
    if (!('sender' in this.out)) return;
    const sender = this.out.sender;
    const timestamp = Math.floor((tsUs * 9) / 100) >>> 0; // µs → 90 kHz, wrapping at 2^32
    if (this.direct) {
      // The addon packetizes, protects and sends: no per-packet Buffer in JavaScript.
      const n = this.direct.sendAnnexB(au, this.seq, timestamp, RTP_MTU);
      if (n >= 0) {
        this.seq = (this.seq + n) & 0xffff;
        this.c.packetsOut += n;
        this.c.bytesOut += this.direct.lastPayloadBytes;
        this.c.framesOut++;
        return;
      }
    }
    const payloads = packetizeH264(au, RTP_MTU);
    if (this.direct) {
      const n = this.direct.send(payloads, this.seq, timestamp);
      if (n >= 0) {
        this.seq = (this.seq + n) & 0xffff;
        this.c.packetsOut += n;
        for (const p of payloads) this.c.bytesOut += p.length;
        this.c.framesOut++;
        return;
      }
    }
    payloads.forEach((payload, i) => {
      const header = new (lib().RtpHeader)({
        payloadType: 96, // rewritten by werift to the negotiated payload type
        sequenceNumber: this.seq,
        timestamp,
        marker: i === payloads.length - 1,
        ssrc: 0, // werift sets the sender's SSRC
      });
      this.seq = (this.seq + 1) & 0xffff;
      this.c.packetsOut++;
      this.c.bytesOut += payload.length;
      void sender.sendRtp(new (lib().RtpPacket)(header, payload)).catch(() => {
        // a send after the transport closed; teardown follows from the connection state
      });
    });
    this.c.framesOut++;
  }

  stats(): RtpFeedStats {
    return {
      track: `${this.ref.channel}/${this.ref.source}/${this.ref.track}`,
      framesOut: this.c.framesOut,
      packetsOut: this.c.packetsOut,
      bytesOut: this.c.bytesOut,
      recordsOut: this.c.recordsOut,
      rtcpIn: this.c.rtcpIn,
      plis: this.c.plis,
      firs: this.c.firs,
      nacked: this.c.nacked,
      keyframeRequestsGranted: this.c.granted,
      keyframeRequestsDenied: this.c.denied,
      waitingForKeyframe: this.needKey,
      directRtp: this.direct ? this.direct.stats() : null,
      skipped: { notH264: this.c.notH264, noMime: this.c.noMime, channelFull: this.c.channelFull },
      consumer: this.consumer ? this.consumer.stats() : null,
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const u of this.unsubs.splice(0)) {
      try {
        u();
      } catch {
        // unsubscribing a finished event is harmless
      }
    }
    const c = this.consumer;
    this.consumer = null;
    try {
      c?.close();
    } catch {
      // engine consumers close idempotently
    }
  }
}

/**
 * Close a werift peer connection without letting a late error escape. `extra` are ICE transports
 * seen before BUNDLE (a data channel created next to a transceiver gets its own transport, which
 * werift drops from its list without closing its UDP sockets): they are stopped too.
 */
export function closePeer(pc: RTCPeerConnection | null, extra: readonly RTCIceTransport[] = []): void {
  if (!pc) return;
  const all = new Set<RTCIceTransport>([...extra, ...pc.iceTransports]);
  const stopAll = (): void => {
    for (const t of all) {
      if (t.state === 'closed') continue;
      t.stop().catch(() => {
        // a transport that never gathered has nothing to release
      });
    }
  };
  pc.close().then(stopAll, stopAll);
}
