// The local pang server, wire-compatible with a Moth server (pang-protocol.md):
// /pang/ws/pub, /sub, /meb, /ctl. Drivers and remote publishers write the same engine tracks,
// so a local camera and a remote publisher look the same to subscribers.

import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, WebSocket, type RawData } from 'ws';
import {
  captureClockUs,
  EdgeError,
  type ConsumerHandle,
  type QueueItem,
  type SubscribeOptions,
  type TrackRef,
} from '../engine/api.js';
import type { Channel, Engine, TrackPublisher } from '../engine/engine.js';
import type { Router } from '../http/router.js';
import { HttpError } from '../http/router.js';
import type { Logger } from '../log.js';
import { ThrottledLog } from '../log.js';
import { ctlError, ctlReply, parseCtl, type CtlRequest } from './ctl.js';
import { parsePangOptions, type PangCodec, type PangOptions } from './options.js';
import { secretEquals } from '../http/auth.js';
import { clientAddress, presentedToken, type AccessGate } from '../http/access.js';
import { CLOSE, deliveryAckText, detectKey, mimeFromText } from './wire.js';

/** The control side's hook (issue: control): commands over ctl and meb. */
export interface PangCommandHandler {
  onText(sessionId: string, text: string): Promise<string | undefined>;
  onSessionClosed(sessionId: string): void;
  /** True while the session moves a device: then its silence is a dropped link (pinged, see liveness). */
  controlsMotion?(sessionId: string): boolean;
}

/** Per-consumer codec (issue: egress): pass-through or a shared transcoder. */
export interface PangTranscoder {
  subscribe(ref: TrackRef, codec: PangCodec, opts: SubscribeOptions): ConsumerHandle;
}

export interface PangServerOptions {
  maxMessageBytes: number;
  /** Socket-level send buffer per session before the engine queue's drop policy takes over. */
  sendHighWaterBytes?: number;
  maxSessions?: number;
  log: Logger;
  commands?: PangCommandHandler;
  transcoder?: PangTranscoder;
  /**
   * The server's access model (access.ts): a channel with a key takes that key (or the pang door's
   * token); a channel without one, and creating an instant channel, takes the pang door's token
   * (key=, token= or a Bearer header) unless the door is open (loopback, no token). Wrong keys count
   * as failed authentications per address.
   */
  access?: AccessGate;
  /**
   * A ctl/meb session that moves a device is pinged every silenceMs/3 and dropped when nothing (no
   * pong, no message) arrived for silenceMs: a link that died without a FIN stops its devices within
   * ~1 s instead of at the end of the command's lease. Default 750; 0 = off.
   */
  silenceMs?: number;
}

type Role = PangOptions['role'];

interface Session {
  id: string;
  role: Role;
  ws: WebSocket;
  channel: Channel;
  options: PangOptions;
  remote: string;
  createdAt: number;
  msgsIn: number;
  msgsOut: number;
  bytesIn: number;
  bytesOut: number;
  backDropped: number;
  consumer?: ConsumerHandle;
  publisher?: TrackPublisher;
  close(code: number, reason: string): void;
}

export class PangServer {
  private readonly wss: WebSocketServer;
  private readonly sessions = new Map<string, Session>();
  private readonly throttled: ThrottledLog;
  private readonly highWater: number;
  private readonly maxSessions: number;
  private closed = false;
  // Counters (stats()).
  private accepted = 0;
  private readonly refused: Record<string, number> = {};
  private idleClosed = 0;
  private ctlRequests = 0;
  private ctlErrors = 0;
  private keepalives = 0;
  /** XACK delivery acks sent to publishers that asked with ack=1 (issue 14). */
  private acksSent = 0;
  private optionWarnings = 0;
  private silenceDrops = 0;

  constructor(
    private readonly engine: Engine,
    private readonly opts: PangServerOptions,
  ) {
    this.highWater = opts.sendHighWaterBytes ?? 512 * 1024;
    this.maxSessions = opts.maxSessions ?? 200;
    this.throttled = new ThrottledLog(opts.log);
    this.wss = new WebSocketServer({ noServer: true, maxPayload: opts.maxMessageBytes, perMessageDeflate: false });
  }

  /** A non-WebSocket request to a ws path gets a clear 426, not a hang. */
  registerRoutes(router: Router): void {
    router.route('GET', '/pang/ws/*', () => {
      throw new HttpError(426, 'UPGRADE_REQUIRED', 'this is a WebSocket endpoint: connect with ws:// (Upgrade: websocket)');
    });
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, req));
  }

  private refuse(ws: WebSocket, code: number, reason: string, remote: string): void {
    this.refused[code] = (this.refused[code] ?? 0) + 1;
    this.throttled.warn(`refuse:${code}:${reason}`, `pang refused ${remote}: ${code} ${reason}`);
    ws.close(code, reason.slice(0, 120));
  }

  /** A keyless channel (or a new instant one) without the door's token. */
  private deny(ws: WebSocket, ip: string, given: string | undefined, remote: string): void {
    const d = this.opts.access!.check('pang', ip, given);
    if (d.ok) return; // cannot happen: the caller saw the token fail
    this.refuse(ws, d.status === 429 ? CLOSE.TOO_MANY : CLOSE.BAD_KEY, d.code === 'AUTH_REQUIRED' ? 'a key or token is required' : d.message, remote);
  }

  private onConnection(ws: WebSocket, req: IncomingMessage): void {
    const remote = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`;
    ws.on('error', () => {});
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://local');
    } catch {
      this.refuse(ws, CLOSE.BAD_REQUEST, 'malformed URL', remote);
      return;
    }
    const parsed = parsePangOptions(url.pathname, url.searchParams);
    if (!parsed.ok) {
      this.refuse(ws, parsed.code, parsed.reason, remote);
      return;
    }
    const o = parsed.options;
    const ip = clientAddress(req);
    const gate = this.opts.access;
    const blocked = gate?.blockedFor(ip) ?? 0;
    if (blocked > 0) {
      this.refuse(ws, CLOSE.TOO_MANY, `too many failed authentications; retry in ${blocked} s`, remote);
      return;
    }
    if (this.sessions.size >= this.maxSessions) {
      this.refuse(ws, CLOSE.TOO_MANY, `session limit ${this.maxSessions} reached`, remote);
      return;
    }
    // The pang door's token, when the client gave one (token=, Bearer, or key= on a keyless channel).
    const tokenGiven = presentedToken(req);
    const doorToken = gate?.token('pang');
    const tokenOk = (t: string | undefined) => doorToken !== undefined && t !== undefined && secretEquals(t, doorToken);
    const doorOpen = !gate || gate.isOpen('pang');
    let channel: Channel | undefined;
    if (o.channel.kind === 'instant') {
      const existing = this.engine.findInstantChannel(o.channel.name);
      if (!existing && !doorOpen && !tokenOk(tokenGiven ?? o.key)) {
        // Creating a channel is the door's to allow: a stranger cannot claim a name (and its key).
        this.deny(ws, ip, tokenGiven ?? o.key, remote);
        return;
      }
      try {
        channel = existing ?? this.engine.instantChannel(o.channel.name, o.key);
      } catch (err) {
        this.refuse(ws, CLOSE.TOO_MANY, (err as Error).message, remote);
        return;
      }
    } else {
      channel = this.engine.findChannel(o.channel.id);
      if (!channel) {
        this.refuse(ws, CLOSE.GONE, 'unknown channel', remote);
        return;
      }
    }
    if (channel.key !== undefined) {
      // A channel key opens its own channel; the door's token opens every channel.
      const keyOk = o.key !== undefined && secretEquals(o.key, channel.key);
      if (!keyOk && !tokenOk(tokenGiven ?? o.key)) {
        if (o.key === undefined && tokenGiven === undefined) this.refuse(ws, CLOSE.BAD_KEY, 'channel requires a key', remote);
        else {
          gate?.fail('pang', ip);
          this.refuse(ws, CLOSE.BAD_KEY, 'wrong key', remote);
        }
        return;
      }
    } else if (!doorOpen && !tokenOk(tokenGiven ?? o.key)) {
      this.deny(ws, ip, tokenGiven ?? o.key, remote);
      return;
    }
    if (parsed.warnings.length) {
      // moth-edge rule: out-of-range options fall back to defaults, logged once per session.
      this.optionWarnings += parsed.warnings.length;
      this.opts.log.warn({ remote, role: o.role }, `pang options: ${parsed.warnings.join('; ')}`);
    }
    const s: Session = {
      id: randomBytes(8).toString('hex'),
      role: o.role,
      ws,
      channel,
      options: o,
      remote,
      createdAt: Date.now(),
      msgsIn: 0,
      msgsOut: 0,
      bytesIn: 0,
      bytesOut: 0,
      backDropped: 0,
      close: (code, reason) => {
        if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(code, reason);
      },
    };
    try {
      if (o.role === 'pub') this.startPub(s);
      else if (o.role === 'sub') this.startSub(s);
      else if (o.role === 'meb') this.startMeb(s);
      else this.startCtl(s);
    } catch (err) {
      const code = err instanceof EdgeError && err.code === 'TRACK_BUSY' ? CLOSE.BUSY : CLOSE.BAD_REQUEST;
      this.refuse(ws, code, code === CLOSE.BUSY ? 'track already published' : (err as Error).message, remote);
      return;
    }
    this.accepted++;
    this.sessions.set(s.id, s);
    ws.once('close', () => {
      this.sessions.delete(s.id);
      s.publisher?.close();
      s.consumer?.close();
      this.opts.commands?.onSessionClosed(s.id);
    });
  }

  private ref(s: Session, track = s.options.track): TrackRef {
    return { channel: s.channel.id, source: s.options.source, track };
  }

  /** Close the session after `timeout` s of silence, per `lastActivity()`. */
  private idleTimer(s: Session, lastActivity: () => number, enabled: () => boolean = () => true): void {
    const ms = s.options.timeout * 1000;
    const timer = setInterval(() => {
      if (enabled() && Date.now() - lastActivity() > ms) {
        this.idleClosed++;
        s.close(CLOSE.IDLE, `idle for ${s.options.timeout} s`);
      }
    }, Math.min(1000, ms));
    timer.unref();
    s.ws.once('close', () => clearInterval(timer));
  }

  private startPub(s: Session): void {
    const o = s.options;
    const pub = this.engine.publisher(this.ref(s), { label: `pang-pub ${s.remote}` }, o.style);
    s.publisher = pub;
    let mime = o.mime;
    if (mime) pub.setMime(mime);
    let lastIn = Date.now();
    let warnedNoMime = false;
    if (o.mode === 'bundle') {
      // Bundle mode: what subscribers send back reaches the publisher, bounded by its socket buffer.
      pub.onBack((item) => this.sendItem(s, item, true));
    }
    // ack=1 (issue 14): tell the publisher how many binary messages this relay has taken, so it can
    // call a record delivered when we hold it, not when a TCP stack acknowledged it. One text per
    // 50 ms at most, only when the count moved.
    let received = 0;
    let ackTimer: NodeJS.Timeout | null = null;
    const ackNow = (): void => {
      ackTimer = null;
      if (s.ws.readyState !== s.ws.OPEN) return;
      this.sendRaw(s, deliveryAckText(received), false);
      this.acksSent++;
    };
    if (o.ack) s.ws.once('close', () => ackTimer && clearTimeout(ackTimer));
    s.ws.on('message', (data: RawData, isBinary: boolean) => {
      lastIn = Date.now();
      const buf = toBuffer(data);
      s.msgsIn++;
      s.bytesIn += buf.length;
      if (!isBinary) {
        const text = buf.toString('utf8');
        const m = mimeFromText(text);
        if (m) {
          mime = m;
          pub.setMime(m);
        }
        pub.text(text);
        return;
      }
      // Moth keepalive: an empty binary message. Nothing to relay.
      if (buf.length === 0) {
        this.keepalives++;
        return;
      }
      if (!mime && !warnedNoMime) {
        warnedNoMime = true;
        this.opts.log.warn({ remote: s.remote, track: pub.ref.track }, 'pang publisher sent binary before any MIME; relaying it (viewers may ignore it until a MIME arrives)');
      }
      pub.write({ ts: captureClockUs(), wallclock: Date.now(), key: detectKey(mime, buf), data: buf });
      received++;
      if (o.ack && !ackTimer) {
        ackTimer = setTimeout(ackNow, 50);
        ackTimer.unref?.();
      }
    });
    this.idleTimer(s, () => lastIn);
  }

  private startSub(s: Session): void {
    const o = s.options;
    const ref = this.ref(s);
    const opts: SubscribeOptions = { label: `pang-sub ${s.remote}` };
    const consumer =
      o.codec && this.opts.transcoder ? this.opts.transcoder.subscribe(ref, o.codec, opts) : this.engine.subscribe(ref, opts);
    if (o.codec && !this.opts.transcoder) {
      consumer.close();
      throw new EdgeError('CODEC_UNAVAILABLE', `codec=${o.codec} conversion is not available here`);
    }
    s.consumer = consumer;
    let lastData = Date.now();
    let lastMime: string | undefined;
    const first = consumer.mime();
    if (first) {
      lastMime = first;
      this.sendRaw(s, first, false);
    }
    const pump = this.pumpConsumer(s, consumer, (item) => {
      lastData = Date.now();
      // The MIME in effect travels in-band: a driver's MIME change reaches the viewer before the frame.
      if (item.type === 'frame' && item.mime && item.mime !== lastMime) {
        lastMime = item.mime;
        this.sendRaw(s, item.mime, false);
      } else if (item.type === 'text') {
        const m = mimeFromText(item.text);
        if (m) lastMime = m;
      }
    });
    consumer.onReadable(pump);
    consumer.onClose((reason) => {
      if (reason === 'publisher gone') s.close(CLOSE.GONE, 'publisher gone');
      else if (reason === 'engine stopping') s.close(CLOSE.GOING_AWAY, 'server stopping');
      else if (reason !== 'closed by consumer') s.close(CLOSE.CLOSED_BY_CTL, reason);
    });
    pump();
    const track = this.engine.findTrack(ref);
    // wait=force: keep waiting while the track has no publisher at all.
    this.idleTimer(s, () => lastData, () => !(o.wait === 'force' && (track?.publisherCount ?? 0) === 0));
    s.ws.on('message', (data: RawData, isBinary: boolean) => {
      const buf = toBuffer(data);
      s.msgsIn++;
      s.bytesIn += buf.length;
      if (isBinary && (buf.length === 0 || (buf.length === 4 && buf.toString() === 'ping'))) {
        this.keepalives++; // viewers keep alive with a binary "ping"
        return;
      }
      if (o.mode !== 'bundle' || !track) return;
      const item: QueueItem = isBinary
        ? { type: 'frame', frame: { ts: captureClockUs(), wallclock: Date.now(), key: true, data: buf }, mime: undefined, origin: 0 }
        : { type: 'text', text: buf.toString('utf8'), origin: 0 };
      track.sendBack(item);
    });
  }

  private startMeb(s: Session): void {
    // meb ("medusa"): everyone sends and receives, nobody gets their own messages. A namespace of
    // its own so a meb named "video" never mixes with a camera track.
    const ref = this.ref(s, `meb:${s.options.track}`);
    const pub = this.engine.publisher(ref, { label: `pang-meb ${s.remote}` }, 'multi');
    s.publisher = pub;
    const consumer = this.engine.subscribe(ref, { label: `pang-meb ${s.remote}`, selfOrigin: pub.origin, fromCache: false });
    s.consumer = consumer;
    let lastIn = Date.now();
    const pump = this.pumpConsumer(s, consumer);
    consumer.onReadable(pump);
    s.ws.on('message', (data: RawData, isBinary: boolean) => {
      lastIn = Date.now();
      const buf = toBuffer(data);
      s.msgsIn++;
      s.bytesIn += buf.length;
      if (isBinary) {
        if (buf.length === 0) return;
        pub.write({ ts: captureClockUs(), wallclock: Date.now(), key: true, data: buf });
        return;
      }
      const text = buf.toString('utf8');
      pub.text(text);
      if (text.startsWith('REXTXCMD') && this.opts.commands) {
        this.opts.commands.onText(s.id, text).then(
          (reply) => {
            if (reply) this.sendRaw(s, reply, false);
          },
          (err) => this.sendRaw(s, `REXTXERR${JSON.stringify({ error: String((err as Error)?.message ?? err) })}`, false),
        );
      }
    });
    this.idleTimer(s, () => lastIn);
    this.liveness(s, () => lastIn, (t) => (lastIn = t));
  }

  /**
   * While the session moves a device: ping it every silenceMs/3 (clients pong) and drop it when
   * nothing arrived for silenceMs. The drop closes the session, and its devices stop (onSessionClosed).
   */
  private liveness(s: Session, lastActivity: () => number, touch: (t: number) => void): void {
    const silenceMs = this.opts.silenceMs ?? 750;
    const commands = this.opts.commands;
    if (!silenceMs || !commands?.controlsMotion) return;
    s.ws.on('pong', () => touch(Date.now()));
    let activeSince = 0;
    const timer = setInterval(() => {
      if (!commands.controlsMotion!(s.id)) {
        activeSince = 0;
        return;
      }
      const now = Date.now();
      if (!activeSince) activeSince = now;
      if (now - Math.max(lastActivity(), activeSince) > silenceMs) {
        this.silenceDrops++;
        this.throttled.warn(`silence:${s.remote}`, `pang ${s.role} session ${s.remote} silent for ${silenceMs} ms while moving a device: dropped, its devices stop`);
        s.ws.terminate();
        return;
      }
      if (s.ws.readyState === WebSocket.OPEN) s.ws.ping();
    }, Math.max(50, Math.floor(silenceMs / 3)));
    timer.unref();
    s.ws.once('close', () => clearInterval(timer));
  }

  private startCtl(s: Session): void {
    let lastIn = Date.now();
    s.ws.on('message', (data: RawData, isBinary: boolean) => {
      lastIn = Date.now();
      const buf = toBuffer(data);
      s.msgsIn++;
      s.bytesIn += buf.length;
      if (isBinary) {
        if (buf.length === 0 || buf.toString() === 'ping') return;
        this.ctlErrors++;
        this.sendRaw(s, ctlError('ctl takes JSON text messages'), false);
        return;
      }
      const text = buf.toString('utf8');
      const p = parseCtl(text);
      this.ctlRequests++;
      if (!p.ok) {
        this.ctlErrors++;
        this.sendRaw(s, ctlError(p.reason), false);
        return;
      }
      if (!p.known) {
        if (this.opts.commands) {
          this.opts.commands.onText(s.id, text).then(
            (reply) => this.sendRaw(s, reply ?? ctlError(`unknown request type "${p.req.type}"`, p.req), false),
            (err) => this.sendRaw(s, ctlError(String((err as Error)?.message ?? err), p.req), false),
          );
          return;
        }
        this.ctlErrors++;
        this.sendRaw(s, ctlError(`unknown request type "${p.req.type}"`, p.req), false);
        return;
      }
      try {
        this.sendRaw(s, this.ctl(s, p.req), false);
      } catch (err) {
        this.ctlErrors++;
        this.sendRaw(s, ctlError((err as Error).message, p.req), false);
      }
    });
    this.idleTimer(s, () => lastIn);
    this.liveness(s, () => lastIn, (t) => (lastIn = t));
  }

  private ctl(s: Session, req: CtlRequest): string {
    const ch = s.channel;
    const d = req.data;
    const str = (k: string, def?: string): string => {
      const v = d[k];
      if (v === undefined && def !== undefined) return def;
      if (typeof v !== 'string' || !v) throw new Error(`"${k}" is required in data`);
      return v;
    };
    switch (req.type) {
      case 'ping':
        return ctlReply(req, 'pong', {});
      case 'info_channel':
        return ctlReply(req, 'info_channel', this.channelInfo(ch));
      case 'info_source': {
        const src = str('source', s.options.source);
        const tracks = ch.sources.get(src);
        if (!tracks) throw new Error(`unknown source "${src}"`);
        return ctlReply(req, 'info_source', { source: src, tracks: [...tracks.values()].map((t) => trackSummary(t.stats())) });
      }
      case 'info_track': {
        const src = str('source', s.options.source);
        const tr = str('track', s.options.track);
        const t = this.engine.findTrack({ channel: ch.id, source: src, track: tr });
        if (!t) throw new Error(`unknown track "${src}/${tr}"`);
        return ctlReply(req, 'info_track', t.stats());
      }
      case 'set_channel': {
        if (d.key !== undefined) {
          if (typeof d.key !== 'string' || d.key.length > 256) throw new Error('"key" must be a string up to 256 chars, or "off"');
          ch.key = d.key === 'off' || d.key === '' ? undefined : d.key;
        }
        if (d.record !== undefined) ch.record = d.record === true || d.record === 'on';
        if (d.trans !== undefined) ch.trans = d.trans === true || d.trans === 'on';
        return ctlReply(req, 'set_channel', this.channelInfo(ch));
      }
      case 'close_channel': {
        for (const other of this.sessions.values()) {
          if (other.channel === ch && other !== s) other.close(CLOSE.CLOSED_BY_CTL, 'channel closed');
        }
        this.engine.closeChannel(ch.id, 'channel closed');
        return ctlReply(req, 'close_channel', { id: ch.id });
      }
      case 'show_session':
        return ctlReply(req, 'show_session', { sessions: [...this.sessions.values()].filter((x) => x.channel === ch).map(sessionInfo) });
      case 'info_session': {
        const x = this.sessions.get(str('id'));
        if (!x || x.channel !== ch) throw new Error('unknown session');
        return ctlReply(req, 'info_session', sessionInfo(x));
      }
      case 'close_session': {
        const x = this.sessions.get(str('id'));
        if (!x || x.channel !== ch) throw new Error('unknown session');
        x.close(CLOSE.CLOSED_BY_CTL, 'closed by ctl');
        return ctlReply(req, 'close_session', { id: x.id });
      }
      default:
        throw new Error(`unknown request type "${req.type}"`);
    }
  }

  /**
   * Drain a consumer into a session's socket. While the socket holds less than the high-water mark
   * every item goes straight out; once it is full the pump waits for that message to flush, and
   * meanwhile the consumer queue (and its whole-GOP drop policy) absorbs what arrives.
   */
  private pumpConsumer(s: Session, consumer: ConsumerHandle, beforeSend?: (item: QueueItem) => void): () => void {
    let draining = false;
    const pump = () => {
      if (draining) return;
      while (s.ws.readyState === WebSocket.OPEN) {
        const item = consumer.next();
        if (!item) return;
        beforeSend?.(item);
        const size = item.type === 'frame' ? item.frame.data.length : item.text.length;
        if (s.ws.bufferedAmount + size < this.highWater) {
          this.sendItem(s, item, false);
          continue;
        }
        draining = true;
        this.sendItem(s, item, false, () => {
          draining = false;
          pump();
        });
        return;
      }
    };
    return pump;
  }

  private channelInfo(ch: Channel) {
    return {
      id: ch.id,
      name: ch.name ?? null,
      instant: ch.instant,
      hasKey: ch.key !== undefined,
      record: ch.record,
      trans: ch.trans,
      createdAt: ch.createdAt,
      sources: [...ch.sources.entries()].map(([name, tracks]) => ({
        name,
        tracks: [...tracks.values()].map((t) => trackSummary(t.stats())),
      })),
    };
  }

  private sendItem(s: Session, item: QueueItem, back: boolean, cb?: () => void): void {
    if (back && s.ws.bufferedAmount >= this.highWater) {
      s.backDropped++; // a slow bundle publisher loses back-channel messages, counted
      return;
    }
    if (item.type === 'text') this.sendRaw(s, item.text, false, cb);
    else this.sendRaw(s, item.frame.data, true, cb);
  }

  private sendRaw(s: Session, data: string | Buffer, binary: boolean, cb?: () => void): void {
    if (s.ws.readyState !== WebSocket.OPEN) return;
    s.msgsOut++;
    s.bytesOut += typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    if (cb) s.ws.send(data, { binary }, () => cb());
    else s.ws.send(data, { binary });
  }

  sessionList() {
    return [...this.sessions.values()].map(sessionInfo);
  }

  stats() {
    const byRole: Record<string, number> = { pub: 0, sub: 0, meb: 0, ctl: 0 };
    let backDropped = 0;
    for (const s of this.sessions.values()) {
      byRole[s.role]!++;
      backDropped += s.backDropped;
    }
    return {
      sessions: this.sessions.size,
      byRole,
      accepted: this.accepted,
      refused: { ...this.refused },
      silenceDrops: this.silenceDrops,
      idleClosed: this.idleClosed,
      keepalives: this.keepalives,
      acksSent: this.acksSent,
      ctlRequests: this.ctlRequests,
      ctlErrors: this.ctlErrors,
      optionWarnings: this.optionWarnings,
      backDropped,
    };
  }

  /** Close every session (1001) and stop accepting. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const done: Promise<void>[] = [];
    for (const s of this.sessions.values()) {
      done.push(
        new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            s.ws.terminate();
            resolve();
          }, 1000);
          s.ws.once('close', () => {
            clearTimeout(t);
            resolve();
          });
          s.close(CLOSE.GOING_AWAY, 'server stopping');
        }),
      );
    }
    await Promise.all(done);
    this.wss.close();
  }
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data as ArrayBuffer);
}

function sessionInfo(s: Session) {
  return {
    id: s.id,
    role: s.role,
    channel: s.channel.id,
    source: s.options.source,
    track: s.options.track,
    mode: s.options.mode,
    remote: s.remote,
    createdAt: s.createdAt,
    msgsIn: s.msgsIn,
    msgsOut: s.msgsOut,
    bytesIn: s.bytesIn,
    bytesOut: s.bytesOut,
    backDropped: s.backDropped,
    consumer: s.consumer?.stats() ?? null,
  };
}

function trackSummary(t: { track: string; mime: string | null; fps: number; bitrateBps: number; framesIn: number; consumers: unknown[]; publishers: unknown[] }) {
  return {
    track: t.track,
    mime: t.mime,
    fps: t.fps,
    bitrateBps: t.bitrateBps,
    framesIn: t.framesIn,
    consumers: t.consumers.length,
    publishers: t.publishers.length,
  };
}
