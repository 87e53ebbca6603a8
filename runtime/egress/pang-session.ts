// The shell every pang link to an upstream shares (live publisher, backfill publisher, pull-down):
// one WebSocket session at a time with what issue 14 asks of a robot's link —
//  - the TCP phase of a connect is cut after connectTimeoutMs (2 s, or 3× the last connect's RTT):
//    a SYN sent into a dead path is retransmitted at 1 s, 3 s, 7 s…, so a fresh attempt is how a
//    returning link is found within a second or two;
//  - socket options before any data: TCP_NOTSENT_LOWAT keeps the kernel's unsent queue small
//    (the backlog then sits in ws.bufferedAmount, which the sender sees), SO_SNDBUF bounds what is
//    in flight, TCP_USER_TIMEOUT and keepalive probes let the kernel give up on a dead path;
//  - what the peer's TCP stack acknowledged (TcpProbe + AckTracker), or what the upstream itself
//    acknowledged (`REXTXACK{"id":"rx","received":N}` from a moth-edge relay asked with `ack=1`);
//  - a dead path is noticed from acknowledgements, not from a socket error: bytes outstanding and
//    no ack progress for deadAfterMs (5 s) ends the session as a network failure (fast retry);
//  - closes are classified: Moth refuses by closing right after the upgrade (long backoff), a
//    session that ran and went away is the network (short backoff).
import type { Socket } from 'node:net';
import WebSocket, { type RawData } from 'ws';
import { isNetworkErrno, type FailureClass } from '../engine/api.js';
import { AckTracker } from './ack-tracker.js';
import { failureClassOf, ReconnectingLink, type LinkBackoff } from './link.js';
import { classifyClose, connectErrorCode, pangSessionUrl, redactPangUrl, type EgressLog, type PangEndpoint } from './pang-link.js';
import { openPangOrFail } from './pang-socket.js';
import { parseDeliveryAck } from '../pang/wire.js';
import { TcpProbe, type TcpProbeStats, type TcpSample } from './tcp-probe.js';
import { wsClientFrameBytes } from '../uplink/estimator.js';

/** Link-level TCP settings (egress.link in the config). */
export interface PangTcpOptions {
  /** Bytes outstanding and no acknowledgement progress for this long: the path is dead. */
  deadAfterMs: number;
  /** TCP phase of a connect (SYN → established); the handshake timeout covers TLS and the upgrade. */
  connectTimeoutMs: number;
  /** TCP_NOTSENT_LOWAT: unsent bytes the kernel may hold. */
  notsentLowatBytes: number;
  /** SO_SNDBUF = measured rate × this, within [sndbufMinBytes, sndbufMaxBytes]. */
  sndbufTargetMs: number;
  sndbufMinBytes: number;
  sndbufMaxBytes: number;
  /** Keepalive probes while nothing flows (seconds idle, seconds between probes, probes). */
  keepaliveIdleSec: number;
  keepaliveIntervalSec: number;
  keepaliveCount: number;
}

export const DEFAULT_PANG_TCP: PangTcpOptions = {
  deadAfterMs: 5000,
  connectTimeoutMs: 2000,
  // 16 KiB: a few packets ready behind the congestion window; the rest waits where we can see it.
  notsentLowatBytes: 16 * 1024,
  // Half a second of what the link carries may be in flight: on a 1 Mbit/s cell that is 64 KiB.
  sndbufTargetMs: 500,
  sndbufMinBytes: 32 * 1024,
  sndbufMaxBytes: 4 * 1024 * 1024,
  keepaliveIdleSec: 3,
  keepaliveIntervalSec: 1,
  keepaliveCount: 3,
};

export interface PangLinkOptions {
  name: string;
  kind: string;
  url: string;
  /** Redacted URL for logs and stats. */
  target: string;
  /** The stream key, stripped from any error message. */
  secret?: string | undefined;
  caFile?: string | undefined;
  insecure?: boolean | undefined;
  log: EgressLog;
  backoff: LinkBackoff;
  handshakeTimeoutMs: number;
  refusalWindowMs: number;
  maxPayload?: number | undefined;
  tcp?: Partial<PangTcpOptions> | undefined;
}

/** What the three pang links (live, backfill, pull) are given about their upstream. */
export interface PangEndpointOptions {
  name: string;
  endpoint: PangEndpoint;
  caFile?: string | undefined;
  insecure?: boolean | undefined;
  log: EgressLog;
  backoff: LinkBackoff;
  handshakeTimeoutMs?: number | undefined;
  refusalWindowMs?: number | undefined;
  tcp?: Partial<PangTcpOptions> | undefined;
}

/** The shell's options for one pang role at an endpoint (with `ack=1` asked of a publisher's relay). */
export function pangLinkOptions(kind: string, role: 'pub' | 'sub', o: PangEndpointOptions, extra: { ack?: boolean; maxPayload?: number } = {}): PangLinkOptions {
  const url = pangSessionUrl(o.endpoint, role, extra.ack ? { ack: '1' } : {});
  return {
    name: o.name,
    kind,
    url,
    target: redactPangUrl(url),
    secret: o.endpoint.key,
    caFile: o.caFile,
    insecure: o.insecure,
    log: o.log,
    backoff: o.backoff,
    handshakeTimeoutMs: o.handshakeTimeoutMs ?? 10_000,
    refusalWindowMs: o.refusalWindowMs ?? 3000,
    tcp: o.tcp,
    ...(extra.maxPayload !== undefined ? { maxPayload: extra.maxPayload } : {}),
  };
}

export interface PangSessionStats {
  /** How the link knows what was delivered: the upstream's XACK, the kernel's TCP state, or neither. */
  ackSource: 'upstream' | 'tcp' | 'procfs' | 'none';
  probe: TcpProbeStats | null;
  /** WebSocket bytes handed to ws this session, and of those acknowledged. */
  wireOut: number;
  ackedWire: number;
  /** Bytes sent and not yet acknowledged now (ws buffer + kernel). */
  unacked: number;
  /** Sessions ended because nothing was acknowledged for deadAfterMs while bytes were outstanding. */
  deadDetected: number;
  connectTimeouts: number;
  lastConnectMs: number | null;
  rttMs: number | null;
  retransmits: number | null;
  /** XACK delivery acks received from the upstream (moth-edge relays). */
  upstreamAcks: number;
  /** Refusals while the server still held a session of ours the path had lost (retried fast). */
  zombieRefusals: number;
}

export abstract class PangLink extends ReconnectingLink {
  protected ws: WebSocket | null = null;
  protected openedAt = 0;
  /** WebSocket bytes handed to ws this session (framing included). */
  protected wireOut = 0;
  /** Non-empty binary messages sent this session (what an upstream XACK counts). */
  protected msgsOut = 0;
  /** What the upstream says it received this session; null until it says anything (Moth never does). */
  protected upstreamReceived: number | null = null;
  protected readonly tcp: PangTcpOptions;
  private socket: Socket | null = null;
  private probe: TcpProbe | null = null;
  private acks = new AckTracker(true);
  private lastSample: TcpSample | null = null;
  private connectError: string | null = null;
  private connectTimer: NodeJS.Timeout | null = null;
  private attemptAt = 0;
  private lastConnectMs: number | null = null;
  private progressAt = 0;
  private progressAcked = -1;
  private progressUpstream: number | null = null;
  private sndbufFor = 0;
  private readonly secure: boolean;
  private readonly ls = { deadDetected: 0, connectTimeouts: 0, upstreamAcks: 0, zombieRefusals: 0 };
  /** When a session of ours last ended by the network: the server may still hold it (a zombie). */
  private lastLostAt = -Infinity;
  /** How long a server may hold a session we lost: its idle timeout (the `timeout` we asked for, else Moth's 30 s). */
  private readonly zombieMs: number;
  private lastProbeStats: TcpProbeStats | null = null;
  private opens = 0;

  /** Sessions opened so far (a change tells the uplink scheduler to forget a track's last mode). */
  get sessions(): number {
    return this.opens;
  }

  constructor(protected readonly po: PangLinkOptions) {
    super(po.name, po.kind, po.target, po.log, po.backoff);
    this.tcp = { ...DEFAULT_PANG_TCP, ...po.tcp };
    this.secure = /^wss:/i.test(po.url);
    const t = Number(new URL(po.url).searchParams.get('timeout') ?? '');
    this.zombieMs = ((t >= 1 && t <= 3600 ? t : 30) + 2) * 1000;
  }

  /** The session is open: start the subclass's work (subscribe, send the MIME, timers). */
  protected abstract onOpen(ws: WebSocket): void;
  /** A message from the upstream (delivery acks are taken out before). */
  protected onMessage(_raw: RawData, _isBinary: boolean): void {}
  /** Release the subclass's session resources (idempotent, never throws). */
  protected abstract endSession(): void;
  /** Wire offset / message count now acknowledged: the subclass settles what it had in flight. */
  protected onAcked(): void {}
  /** Called by pumpAfter() when a paced sender may send again. */
  protected pumpAgain(): void {}

  private paceTimer: NodeJS.Timeout | null = null;

  /** Call pumpAgain() in `ms` (one pending at a time; dropped when the session ends). */
  protected pumpAfter(ms: number): void {
    if (this.paceTimer) return;
    this.paceTimer = setTimeout(() => {
      this.paceTimer = null;
      this.pumpAgain();
    }, Math.max(1, Math.ceil(ms)));
    this.paceTimer.unref?.();
  }

  protected attempt(): void {
    this.connectError = null;
    this.attemptAt = Date.now();
    const ws = openPangOrFail(
      this.po.url,
      {
        handshakeTimeoutMs: this.po.handshakeTimeoutMs,
        insecure: this.po.insecure,
        caFile: this.po.caFile,
        ...(this.po.maxPayload !== undefined ? { maxPayload: this.po.maxPayload } : {}),
        onSocket: (s) => this.onSocket(s),
      },
      (code, msg) => this.failed(code, msg),
    );
    if (!ws) return;
    this.ws = ws;
    ws.on('open', () => {
      if (ws !== this.ws) return;
      this.opens++;
      this.openedAt = Date.now();
      this.wireOut = 0;
      this.msgsOut = 0;
      this.upstreamReceived = null;
      this.acks = new AckTracker(!this.secure);
      this.acks.open(this.probe?.sample() ?? null);
      this.progressAt = this.openedAt;
      this.progressAcked = -1;
      this.progressUpstream = null;
      this.onOpen(ws);
    });
    ws.on('message', (raw, isBinary) => {
      if (ws !== this.ws) return;
      if (!isBinary) {
        const text = rawText(raw);
        const n = text.startsWith('REXTXACK') ? parseDeliveryAck(text) : null;
        if (n !== null) {
          this.ls.upstreamAcks++;
          if (this.upstreamReceived === null || n > this.upstreamReceived) this.upstreamReceived = Math.min(n, this.msgsOut);
          this.onAcked();
          return;
        }
      }
      this.onMessage(raw, isBinary);
    });
    // ws answers a server's ping with a pong of the same payload: those bytes are on the wire too.
    ws.on('ping', (data: Buffer) => {
      this.wireOut += wsClientFrameBytes(data.length);
    });
    ws.on('error', (err) => {
      // ws follows every error with 'close'; remember why, without the URL (it holds the key).
      this.connectError = `${connectErrorCode(err)}|${sanitizeSecret(err.message, this.po.secret)}|${isNetworkErrno((err as NodeJS.ErrnoException).code) || /timed? ?out/i.test(err.message) ? 'network' : ''}`;
    });
    ws.on('close', (code) => {
      if (ws !== this.ws) return;
      this.onClose(code);
    });
  }

  private onSocket(s: Socket): void {
    this.socket = s;
    const limit = Math.min(this.po.handshakeTimeoutMs, Math.max(this.tcp.connectTimeoutMs, 3 * (this.lastConnectMs ?? 0)));
    this.connectTimer = setTimeout(() => {
      this.connectTimer = null;
      if (this.socket !== s || s.connecting === false) return;
      this.ls.connectTimeouts++;
      const e = Object.assign(new Error(`TCP connect timed out after ${limit} ms`), { code: 'ETIMEDOUT' });
      s.destroy(e);
    }, limit);
    this.connectTimer.unref?.();
    s.once('connect', () => {
      if (this.connectTimer) clearTimeout(this.connectTimer);
      this.connectTimer = null;
      if (this.socket !== s) return;
      this.lastConnectMs = Date.now() - this.attemptAt;
      const probe = TcpProbe.for(s);
      this.probe = probe;
      probe.tune({
        notsentLowatBytes: this.tcp.notsentLowatBytes,
        sndbufBytes: this.sndbufFor > 0 ? this.sndbufFor : this.tcp.sndbufMinBytes * 8,
        userTimeoutMs: this.tcp.deadAfterMs + 1000,
        keepalive: { idleSec: this.tcp.keepaliveIdleSec, intervalSec: this.tcp.keepaliveIntervalSec, count: this.tcp.keepaliveCount },
      });
    });
  }

  private onClose(code: number): void {
    const opened = this.openedAt > 0;
    if (!opened) {
      const [errCode, msg, hint] = (this.connectError ?? 'UPSTREAM_CONNECT_FAILED|connection failed|network').split('|', 3);
      this.failed(errCode!, msg ?? 'connection failed', connectClass(errCode!, hint));
      return;
    }
    const since = Date.now() - this.openedAt;
    if (code === 1009) {
      this.failed('UPSTREAM_MESSAGE_TOO_BIG', `a message exceeded ${this.po.maxPayload ?? 'the'} bytes limit`, 'refused');
      return;
    }
    const kind = classifyClose(code, since, this.po.refusalWindowMs);
    const now = Date.now();
    if (kind === 'refused' && now - this.lastLostAt < this.zombieMs && (code === 1006 || code === 4409)) {
      // Busy, most likely with our own session the path lost: the server holds it until its idle
      // timeout. That is the network's doing, not a no: retry on the fast ladder until it expires.
      this.ls.zombieRefusals++;
      this.failed('UPSTREAM_BUSY', `server refused the session ${since} ms after the upgrade (code ${code}): it still holds our previous session, lost ${Math.round((now - this.lastLostAt) / 1000)} s ago, until its idle timeout`, 'network');
    } else if (kind === 'refused') this.failed('UPSTREAM_REFUSED', `server closed the session ${since} ms after the upgrade (code ${code}): wrong key, unknown channel or track busy`, 'refused');
    else if (kind === 'dropped') this.failed('UPSTREAM_DROPPED', `session lost after ${Math.round(since / 1000)} s (code ${code})`, 'network');
    else this.failed('UPSTREAM_CLOSED', `server closed the session (code ${code})`, code >= 4400 && code < 4500 ? 'refused' : 'network');
  }

  /** Sends one binary message and counts its wire bytes (and it, when not empty). */
  protected sendBinary(data: Buffer): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    ws.send(data, { binary: true });
    this.wireOut += wsClientFrameBytes(data.length);
    if (data.length > 0) this.msgsOut++;
  }

  protected sendText(text: string): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    ws.send(text, { binary: false });
    this.wireOut += wsClientFrameBytes(Buffer.byteLength(text));
  }

  get bufferedBytes(): number {
    return this.ws?.bufferedAmount ?? 0;
  }

  /**
   * Bytes wait to be sent: in ws's buffer, or unsent in the kernel (congestion- or window-limited).
   * Waiting at both ends of an interval means the link, not the demand, set the rate.
   */
  protected get waiting(): boolean {
    const notsent = this.lastSample?.notsent ?? -1;
    return this.bufferedBytes > 0 || notsent > 0;
  }

  /** True when the upstream acknowledges by XACK (a moth-edge relay): message counts rule. */
  protected get upstreamAcks(): boolean {
    return this.upstreamReceived !== null;
  }

  /** The acknowledged wire offset after the last sample (0 before any). */
  protected get ackedWire(): number {
    return this.acks.ackedWire;
  }

  /**
   * One look at the kernel (call it from the link's tick): updates the acknowledged offset, and
   * ends the session as dead when bytes are outstanding and nothing was acknowledged for
   * deadAfterMs. Returns false when it ended the session.
   */
  protected checkLink(now: number): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return true;
    const buffered = ws.bufferedAmount;
    const s = this.probe?.sample() ?? null;
    this.lastSample = s;
    if (this.probe) this.lastProbeStats = this.probe.stats();
    let outstanding: boolean;
    let acked: number;
    if (s) {
      this.acks.observe({ established: s.established, wireOut: this.wireOut, buffered, outq: s.outq, bytesAcked: s.bytesAcked });
      // Not established (reset, closing): the close event follows; nothing counts as progress.
      outstanding = buffered > 0 || s.outq > 0 || !s.established;
      acked = s.bytesAcked ?? this.acks.ackedWire;
    } else {
      // No probe (not Linux): the old rule — a backlog that does not shrink.
      outstanding = buffered > 0;
      acked = this.wireOut - buffered;
    }
    // Progress: the kernel saw an acknowledgement, or the upstream acknowledged more messages.
    if ((!outstanding && (!s || s.established)) || acked !== this.progressAcked || this.upstreamReceived !== this.progressUpstream) {
      this.progressAcked = acked;
      this.progressUpstream = this.upstreamReceived;
      this.progressAt = now;
    }
    this.onAcked();
    if (outstanding && now - this.progressAt > this.tcp.deadAfterMs) {
      this.ls.deadDetected++;
      const unacked = this.wireOut - this.acks.ackedWire;
      this.failed('UPSTREAM_STALLED', `nothing acknowledged by the server for ${Math.round((now - this.progressAt) / 1000)} s (${unacked} B outstanding): the path is dead`, 'network');
      return false;
    }
    return true;
  }

  /**
   * A quick look at what is acknowledged now (no dead-path judgement): for a sender that waits on
   * acknowledgements between the link's ticks. Returns the smoothed RTT in ms (0 unknown).
   */
  protected refreshAcks(): number {
    const ws = this.ws;
    if (!ws || !this.probe) return 0;
    const s = this.probe.sample();
    if (!s) return 0;
    this.lastSample = s;
    this.acks.observe({ established: s.established, wireOut: this.wireOut, buffered: ws.bufferedAmount, outq: s.outq, bytesAcked: s.bytesAcked });
    this.onAcked();
    return s.rttUs > 0 ? s.rttUs / 1000 : 0;
  }

  /** Size the kernel send buffer for the measured rate (bytes/s; null: keep). */
  protected sizeSendBuffer(bytesPerSec: number | null): void {
    if (bytesPerSec === null || !Number.isFinite(bytesPerSec) || bytesPerSec <= 0) return;
    const want = Math.round(Math.min(this.tcp.sndbufMaxBytes, Math.max(this.tcp.sndbufMinBytes, (bytesPerSec * this.tcp.sndbufTargetMs) / 1000)));
    // Move only on a real change: setsockopt on every tick would churn the kernel's accounting.
    if (this.sndbufFor > 0 && Math.abs(want - this.sndbufFor) < this.sndbufFor * 0.25) return;
    this.sndbufFor = want;
    this.probe?.tune({ sndbufBytes: want });
  }

  protected teardown(): void {
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.connectTimer = null;
    if (this.paceTimer) clearTimeout(this.paceTimer);
    this.paceTimer = null;
    // A last look before the socket goes: what was acknowledged up to now still counts.
    const ws = this.ws;
    if (ws && ws.readyState === WebSocket.OPEN && this.probe) {
      const s = this.probe.sample();
      if (s) this.acks.observe({ established: s.established, wireOut: this.wireOut, buffered: ws.bufferedAmount, outq: s.outq, bytesAcked: s.bytesAcked });
      this.onAcked();
    }
    try {
      this.endSession();
    } catch {
      // endSession implementations swallow their own errors; a throw must not leak the socket
    }
    this.ws = null;
    this.socket = null;
    if (this.probe) this.lastProbeStats = this.probe.stats();
    this.probe = null;
    this.openedAt = 0;
    if (ws) {
      ws.removeAllListeners('open');
      ws.removeAllListeners('message');
      ws.removeAllListeners('ping');
      ws.on('error', () => {}); // late errors of a socket we are abandoning
      try {
        ws.terminate();
      } catch {
        // terminate on a never-connected socket can throw in old ws versions
      }
    }
  }

  sessionStats(): PangSessionStats {
    const s = this.lastSample;
    const probe = this.probe?.stats() ?? this.lastProbeStats;
    return {
      ackSource: this.upstreamReceived !== null ? 'upstream' : probe?.kind === 'native' ? 'tcp' : probe?.kind === 'procfs' ? 'procfs' : 'none',
      probe,
      wireOut: this.wireOut,
      ackedWire: this.acks.ackedWire,
      unacked: Math.max(0, this.wireOut - this.acks.ackedWire),
      deadDetected: this.ls.deadDetected,
      connectTimeouts: this.ls.connectTimeouts,
      lastConnectMs: this.lastConnectMs,
      rttMs: s && s.rttUs >= 0 ? Math.round(s.rttUs / 100) / 10 : null,
      retransmits: s && s.totalRetrans >= 0 ? s.totalRetrans : null,
      upstreamAcks: this.ls.upstreamAcks,
      zombieRefusals: this.ls.zombieRefusals,
    };
  }

  protected override failed(code: string, message: string, cls?: FailureClass): void {
    // An open session that ended by the network may live on at the server for a while (a zombie).
    if (this.openedAt > 0 && (cls ?? failureClassOf(code)) === 'network' && code !== 'UPSTREAM_BUSY') this.lastLostAt = Date.now();
    super.failed(code, message, cls);
  }

  /** For the retry shell: a connect that failed after waiting long enough need not wait again. */
  protected override attemptSpentMs(now: number): number {
    return this.openedAt === 0 && this.attemptAt > 0 ? now - this.attemptAt : 0;
  }
}

/** A connect failure's class: the network (refused/reset/unreachable/timeout, DNS) or the peer (TLS, 4xx). */
function connectClass(code: string, hint: string | undefined): FailureClass {
  if (hint === 'network') return 'network';
  if (code === 'UPSTREAM_TLS' || code === 'UPSTREAM_CA_FILE' || code === 'UPSTREAM_HTTP_REFUSED') return 'refused';
  return 'network';
}

function rawText(raw: RawData): string {
  if (Buffer.isBuffer(raw)) return raw.toString('utf8');
  if (Array.isArray(raw)) return Buffer.concat(raw).toString('utf8');
  return Buffer.from(raw as ArrayBuffer).toString('utf8');
}

/** Error messages from ws/TLS may quote the URL: strip the key if it shows up. */
export function sanitizeSecret(message: string, secret: string | undefined): string {
  let m = message;
  if (secret) m = m.split(secret).join('***');
  m = m.replace(/([?&](?:key|token)=)[^&\s]+/gi, '$1***');
  return m.slice(0, 300);
}
