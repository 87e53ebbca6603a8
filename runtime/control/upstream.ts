// The upstream Moth meb client: the runtime joins ws(s)://host/pang/ws/meb?channel=…&source=…&track=…
// as a participant, takes every REXTXCMD text as a command and answers on the same meb with
// REXTXACK/REXTXERR carrying the request id. Each connection is its own control session: when it
// drops, whatever it was moving stops.
//
// Liveness. Moth never answers pings and sends nothing on an idle meb, so silence on the meb proves
// nothing, and a path that dies without a FIN (Wi-Fi gone) would keep "connected" for minutes. So:
// - a second session on /pang/ws/ctl sends {"type":"ping"} every probeIntervalMs; Moth answers
//   "pong". No answer (and no other byte) for deadAfterMs → the path is dead: both sessions are
//   dropped (the devices they moved stop) and the client rejoins on the network ladder;
// - TCP keepalive on both sockets (idle 1 s) keeps NAT state and lets the kernel end a dead path
//   on its own in time;
// - we keep the meb alive with an empty binary message every keepaliveMs (Moth's idle timeout);
// - a session that moves a device and hears nothing from the operator for silenceStopMs stops its
//   devices (the session stays: the operator's next fresh command moves again).
// Refusals. Moth refuses (bad key, channel, licence) by dropping TCP right after the upgrade: a
// close within refusalWindowMs of joining, an HTTP 4xx to the upgrade or a 44xx close is a refusal
// (long ladder, 1 s → 60 s); anything else is the network (short ladder, 250 ms → 1 s). "joined" is
// logged only once the session outlived the refusal window.

import { TcpProbe } from '../egress/tcp-probe.js';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import WebSocket from 'ws';
import { EdgeError, RetryPolicy, httpFailureClass, isNetworkErrno, type FailureClass } from '../engine/api.js';
import type { Logger } from '../log.js';
import type { UpstreamControlConfig } from './config.js';
import { CMD_PREFIX } from './command.js';

export interface CommandSink {
  onText(sessionId: string, text: string): Promise<string | undefined>;
  onSessionClosed(sessionId: string): void;
  /** The session's link went silent while it moved something: stop its devices, keep the session. */
  onSessionSilent?(sessionId: string): void;
  /** True while the session moves a device. */
  controlsMotion?(sessionId: string): boolean;
}

/** Replies waiting for the socket at most; a meb that stops draining must not grow memory. */
const MAX_BUFFERED_BYTES = 256 * 1024;
/** The idle time before TCP keepalive probes start (the kernel's interval/count apply after it). */
const TCP_KEEPALIVE_IDLE_MS = 1000;

type State = 'idle' | 'connecting' | 'joining' | 'joined' | 'backoff' | 'closed';

export interface UpstreamStatus {
  connected: boolean;
  state: State;
  reason: string | null;
}

export class UpstreamControlClient {
  private ws: WebSocket | null = null;
  private probeWs: WebSocket | null = null;
  private session: string | null = null;
  private n = 0;
  private state: State = 'idle';
  private timer: NodeJS.Timeout | null = null;
  private keepalive: NodeJS.Timeout | null = null;
  private joinTimer: NodeJS.Timeout | null = null;
  private watch: NodeJS.Timeout | null = null;
  private probeTimer: NodeJS.Timeout | null = null;
  private probeRetry: NodeJS.Timeout | null = null;
  private readonly retry: RetryPolicy;
  /** Last byte from the meb (operator traffic) and from the probe (pong), ms epoch. */
  private lastMebIn = 0;
  private lastProbeIn = 0;
  private probeAvailable = true;
  private probeN = 0;
  private silentReleased = false;
  /** Sets the current attempt's failure reason. */
  private attemptError: (why: string) => void = () => {};
  private readonly c = {
    connects: 0,
    opens: 0,
    joins: 0,
    closes: 0,
    refusals: 0,
    networkFailures: 0,
    deadPaths: 0,
    commandsIn: 0,
    repliesOut: 0,
    repliesDropped: 0,
    otherTexts: 0,
    probesSent: 0,
    probeAnswers: 0,
    probeRefused: 0,
    silenceStops: 0,
  };
  private lastError: string | null = null;
  private lastClose: number | null = null;
  private lastClass: FailureClass | null = null;
  private joinedAt: number | null = null;
  private readonly tls: { ca?: Buffer; rejectUnauthorized: boolean };
  private readonly silenceStopMs: number;

  constructor(
    private readonly cfg: UpstreamControlConfig,
    private readonly sink: CommandSink,
    private readonly log: Logger,
    opts: { silenceStopMs?: number } = {},
  ) {
    this.retry = new RetryPolicy({
      refused: { initialMs: cfg.retry.refused.initialMs, maxMs: cfg.retry.refused.maxMs, resetAfterMs: 10_000 },
      network: { initialMs: cfg.retry.network.initialMs, maxMs: cfg.retry.network.maxMs, resetAfterMs: 0 },
    });
    this.silenceStopMs = opts.silenceStopMs ?? 750;
    let ca: Buffer | undefined;
    if (cfg.caFile) {
      try {
        ca = readFileSync(cfg.caFile);
      } catch (e) {
        throw new EdgeError('CONTROL_UPSTREAM_CA', `cannot read caFile ${cfg.caFile}: ${(e as Error).message}`);
      }
    }
    this.tls = { ...(ca ? { ca } : {}), rejectUnauthorized: !cfg.insecure };
  }

  private query(): URLSearchParams {
    const q = new URLSearchParams({ channel: this.cfg.channel, source: this.cfg.source, track: this.cfg.track });
    if (this.cfg.name) q.set('name', this.cfg.name);
    return q;
  }

  /** The meb URL without the key (for logs and stats). */
  get url(): string {
    return `${this.cfg.url.replace(/\/$/, '')}/pang/ws/meb?${this.query()}`;
  }

  private withKey(path: string): string {
    const u = `${this.cfg.url.replace(/\/$/, '')}${path}?${this.query()}`;
    return this.cfg.key ? `${u}&key=${encodeURIComponent(this.cfg.key)}` : u;
  }

  /** Joined (outlived the refusal window) and the path answers. */
  get connected(): boolean {
    return this.state === 'joined' && this.ws?.readyState === WebSocket.OPEN;
  }

  status(): UpstreamStatus {
    const reason = this.connected ? null : this.lastError ?? (this.state === 'idle' ? 'not started' : this.state);
    return { connected: this.connected, state: this.state, reason };
  }

  start(): void {
    if (this.state === 'idle') this.connect();
  }

  private socketOptions(): WebSocket.ClientOptions {
    return { handshakeTimeout: this.cfg.connectTimeoutMs, maxPayload: 64 * 1024, ...this.tls };
  }

  private connect(): void {
    this.timer = null;
    if (this.state === 'closed') return;
    this.state = 'connecting';
    this.c.connects++;
    const ws = new WebSocket(this.withKey('/pang/ws/meb'), this.socketOptions());
    this.ws = ws;
    const session = `upstream#${++this.n}`;
    let cls: FailureClass | null = null;
    let opened = false;
    /** Moth refuses before it relays anything: a session that got a message was accepted. */
    let heard = false;
    /** What went wrong with this attempt (becomes lastError when it closes). */
    let why: string | null = null;
    this.attemptError = (m) => (why = m);
    ws.on('upgrade', (res: IncomingMessage) => keepAlive(res, this.cfg.deadAfterMs));
    ws.on('unexpected-response', (_req, res: IncomingMessage) => {
      // An HTTP answer instead of the upgrade: 4xx is the server saying no.
      cls = httpFailureClass(res.statusCode);
      why = `server answered HTTP ${res.statusCode} to the upgrade`;
      res.resume();
      ws.terminate();
    });
    ws.on('open', () => {
      opened = true;
      this.c.opens++;
      this.session = session;
      this.state = 'joining';
      this.lastMebIn = Date.now();
      this.silentReleased = false;
      this.keepalive = setInterval(() => {
        if (ws.readyState === WebSocket.OPEN) ws.send(Buffer.alloc(0));
      }, this.cfg.keepaliveMs);
      // Moth refuses by dropping TCP right after the upgrade: joined only once that window passed.
      this.joinTimer = setTimeout(() => {
        this.joinTimer = null;
        if (this.ws !== ws || ws.readyState !== WebSocket.OPEN) return;
        this.state = 'joined';
        this.joinedAt = Date.now();
        this.c.joins++;
        this.lastError = null;
        this.retry.healthy(Date.now());
        this.log.info({ url: this.url, probe: this.cfg.probe }, 'control upstream joined');
      }, this.cfg.refusalWindowMs);
      if (this.cfg.probe === 'ctl') this.openProbe(ws);
      this.watch = setInterval(() => this.check(ws, session), Math.min(100, this.silenceStopMs / 5));
      this.watch.unref();
    });
    ws.on('message', (data: WebSocket.RawData, isBinary: boolean) => {
      heard = true;
      this.lastMebIn = Date.now();
      this.silentReleased = false;
      if (isBinary) return;
      const text = data.toString();
      if (!text.startsWith(CMD_PREFIX)) {
        this.c.otherTexts++;
        return;
      }
      this.c.commandsIn++;
      this.sink.onText(session, text).then(
        (reply) => {
          if (!reply) return;
          if (ws.readyState !== WebSocket.OPEN || ws.bufferedAmount > MAX_BUFFERED_BYTES) {
            this.c.repliesDropped++;
            return;
          }
          ws.send(reply);
          this.c.repliesOut++;
        },
        () => {
          this.c.repliesDropped++;
        },
      );
    });
    ws.on('error', (e: Error & { code?: string }) => {
      why ??= redactKey(e.message).slice(0, 200);
      if (cls === null && (isNetworkErrno(e.code) || /handshake has timed out|ETIMEDOUT|socket hang up/i.test(e.message))) cls = 'network';
    });
    ws.on('close', (code: number) => {
      if (this.ws !== ws) return;
      const wasState = this.state;
      this.teardown(ws, session);
      this.c.closes++;
      this.lastClose = code;
      if (this.state === 'closed') return;
      // Classify: the server said no, or the network failed us.
      let kind: FailureClass;
      if (cls !== null) kind = cls;
      else if (code >= 4400 && code < 4500) kind = 'refused';
      else if (opened && wasState === 'joining' && !heard) kind = 'refused';
      else kind = 'network';
      this.lastClass = kind;
      if (kind === 'refused') this.c.refusals++;
      else this.c.networkFailures++;
      const delay = this.retry.next(Date.now(), kind);
      this.state = 'backoff';
      if (kind === 'refused') {
        this.lastError = why ?? `closed right after joining (code ${code})`;
        this.log.warn({ url: this.url, code, retryMs: delay, refusals: this.c.refusals }, `control upstream refused by the server (${this.lastError}); retry in ${delay} ms`);
      } else {
        this.lastError = why ?? `closed (code ${code})`;
        this.log.warn({ url: this.url, code, retryMs: delay, wasJoined: wasState === 'joined' }, `control upstream ${wasState === 'joined' ? 'lost' : 'unreachable'} (${this.lastError}); retry in ${delay} ms`);
      }
      this.timer = setTimeout(() => this.connect(), delay);
    });
  }

  /** Every ~100 ms while joined: a dead path (probe silent) drops the sessions; operator silence stops devices. */
  private check(ws: WebSocket, session: string): void {
    if (this.ws !== ws || ws.readyState !== WebSocket.OPEN) return;
    const now = Date.now();
    if (this.cfg.probe === 'ctl' && this.probeAvailable && now - Math.max(this.lastProbeIn, this.lastMebIn) > this.cfg.deadAfterMs) {
      this.c.deadPaths++;
      this.attemptError(`no answer from the server for ${this.cfg.deadAfterMs} ms (dead path)`);
      ws.terminate(); // close → classified 'network' (the path, not the server)
      return;
    }
    if (!this.silentReleased && now - this.lastMebIn > this.silenceStopMs && (this.sink.controlsMotion?.(session) ?? false)) {
      // The operator's link went quiet mid-move: stop now rather than at the lease's end.
      this.silentReleased = true;
      this.c.silenceStops++;
      this.sink.onSessionSilent?.(session);
    }
  }

  private openProbe(meb: WebSocket): void {
    this.probeRetry = null;
    if (this.ws !== meb || meb.readyState !== WebSocket.OPEN || this.state === 'closed') return;
    const p = new WebSocket(this.withKey('/pang/ws/ctl'), this.socketOptions());
    this.probeWs = p;
    let openedAt = 0;
    p.on('upgrade', (res: IncomingMessage) => keepAlive(res, this.cfg.deadAfterMs));
    p.on('unexpected-response', (_req, res: IncomingMessage) => {
      if (httpFailureClass(res.statusCode) === 'refused') this.probeUnavailable(`HTTP ${res.statusCode}`);
      res.resume();
      p.terminate();
    });
    p.on('open', () => {
      openedAt = Date.now();
      this.lastProbeIn = openedAt;
      const ping = () => {
        if (p.readyState !== WebSocket.OPEN) return;
        this.c.probesSent++;
        p.send(JSON.stringify({ type: 'ping', req_id: `probe-${++this.probeN}` }));
      };
      ping();
      this.probeTimer = setInterval(ping, this.cfg.probeIntervalMs);
    });
    p.on('message', () => {
      this.lastProbeIn = Date.now();
      this.c.probeAnswers++;
    });
    p.on('error', () => {});
    p.on('close', (code: number) => {
      if (this.probeTimer) clearInterval(this.probeTimer);
      this.probeTimer = null;
      if (this.probeWs !== p) return;
      this.probeWs = null;
      // Closed right after opening (or 44xx): this server does not take ctl sessions for us.
      if ((code >= 4400 && code < 4500) || (openedAt > 0 && this.lastProbeIn === openedAt && Date.now() - openedAt < this.cfg.refusalWindowMs)) {
        this.probeUnavailable(`ctl session closed (code ${code})`);
        return;
      }
      // Lost while the meb lives: reopen soon; the deadline decides whether the path is dead.
      if (this.probeAvailable && this.ws === meb) this.probeRetry = setTimeout(() => this.openProbe(meb), Math.min(1000, this.cfg.probeIntervalMs));
    });
  }

  private probeUnavailable(why: string): void {
    if (!this.probeAvailable) return;
    this.probeAvailable = false;
    this.c.probeRefused++;
    this.log.warn({ url: this.url, why }, 'control upstream: the server refused the ctl liveness probe; a silent path drop is now noticed only by TCP keepalive');
  }

  private teardown(ws: WebSocket, session: string): void {
    this.ws = null;
    for (const t of [this.joinTimer, this.probeRetry]) if (t) clearTimeout(t);
    for (const t of [this.keepalive, this.watch, this.probeTimer]) if (t) clearInterval(t);
    this.joinTimer = this.probeRetry = this.keepalive = this.watch = this.probeTimer = null;
    const p = this.probeWs;
    this.probeWs = null;
    if (p) {
      p.removeAllListeners('close');
      p.on('error', () => {});
      p.terminate();
    }
    void ws;
    if (this.session === session) {
      // The link is gone: stop what this upstream session was moving, now.
      this.sink.onSessionClosed(session);
      this.session = null;
    }
    this.joinedAt = null;
  }

  stats(): Record<string, unknown> {
    return {
      url: this.url,
      connected: this.connected,
      state: this.state,
      ...this.c,
      probe: this.cfg.probe === 'off' ? 'off' : this.probeAvailable ? 'ctl' : 'refused',
      lastProbeAgoMs: this.lastProbeIn ? Date.now() - this.lastProbeIn : null,
      joinedForMs: this.joinedAt ? Date.now() - this.joinedAt : null,
      lastClose: this.lastClose,
      lastClass: this.lastClass,
      retry: this.retry.stats(),
      lastError: this.lastError,
    };
  }

  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const ws = this.ws;
    if (ws) {
      ws.removeAllListeners('close');
      ws.on('error', () => {});
      this.teardown(ws, this.session ?? '');
      ws.terminate();
    }
    if (this.session) this.sink.onSessionClosed(this.session);
    this.session = null;
  }
}

/**
 * TCP keepalive on the upgraded socket (NAT state stays), and with the native addon the probe
 * cadence plus TCP_USER_TIMEOUT: the kernel itself ends a path whose bytes go unacknowledged for
 * deadAfterMs, the same bound the ctl probe applies (runtime/egress/tcp-probe.ts).
 */
function keepAlive(res: IncomingMessage, deadAfterMs: number): void {
  try {
    TcpProbe.for(res.socket).tune({
      keepalive: { idleSec: Math.max(1, Math.round(TCP_KEEPALIVE_IDLE_MS / 1000)), intervalSec: 1, count: Math.max(1, Math.floor(deadAfterMs / 1000) - 1) },
      userTimeoutMs: deadAfterMs,
    });
  } catch {
    // a socket already gone
  }
}

function redactKey(s: string): string {
  return s.replace(/key=[^&\s]*/g, 'key=***');
}
