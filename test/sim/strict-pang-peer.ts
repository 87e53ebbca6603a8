// A deliberately strict Moth-like pang peer, written from docs/pang-protocol.md and the field
// notes on a real Moth Lite server:
//  - never answers a WebSocket ping with a pong;
//  - refuses a bad channel / wrong key / busy track by completing the upgrade and then closing
//    the TCP connection WITHOUT a close frame (the client sees 1006);
//  - closes a session after `timeout` s (default 30) without an inbound message (publisher) or
//    without new data (subscriber), again without a close frame;
//  - keeps no keyframe cache: a subscriber gets the current MIME, then only what is written after
//    it joined; when the publisher leaves the MIME is cleared;
//  - with `ring`, relays like Moth's engine (field notes, issue 14): each track keeps a small ring
//    of recent messages, each subscriber a cursor; a reader takes about `serviceMs` per message and
//    one that is more than `behind` slots behind jumps to the newest message (the skipped ones are
//    lost for that subscriber and counted). Moth: 600 back-to-back → ~10 delivered, 1 ms apart →
//    ~570, 20 ms apart → 600.
// It records every publisher message with its arrival time, for tests and the latency bench.
import { EventEmitter } from 'node:events';
import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';

export interface StrictPeerOptions {
  /** Static channels (rs/xid ids) and their keys (undefined: no key). */
  channels?: Record<string, string | undefined>;
  /** TLS: serve wss with this cert/key. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Default idle timeout in s when the client gives none (Moth: 30). */
  defaultTimeoutSec?: number;
  /** Refuse every session (a server at its licence limit). */
  refuseAll?: boolean;
  /** Moth's relay ring (see the header); unset: every message to every subscriber at once. */
  ring?: { slots: number; behind: number; serviceMs: number };
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
}

/** One subscriber's reader over a track's ring. */
interface RingReader {
  ws: WebSocket;
  /** Absolute index of the next message this reader sends. */
  cursor: number;
  busy: boolean;
  skipped: number;
  sent: number;
}

export interface PeerMessage {
  binary: boolean;
  data: Buffer;
  /** process.hrtime in µs at arrival (same clock as captureClockUs). */
  atUs: number;
}

interface TrackState {
  mime: string | undefined;
  publisher: WebSocket | null;
  subscribers: Set<WebSocket>;
  messages: PeerMessage[];
  /** Ring mode: the last `slots` relayed messages; `head` is the absolute index of the next one. */
  ring: Array<{ data: Buffer; binary: boolean }>;
  head: number;
  readers: Map<WebSocket, RingReader>;
}

export interface StrictPeerEvents {
  message: [path: string, msg: PeerMessage];
  refused: [reason: string];
  session: [role: string, path: string];
  idleClose: [role: string, path: string];
}

export class StrictPangPeer extends EventEmitter<StrictPeerEvents> {
  private server: Server | null = null;
  private wss = new WebSocketServer({ noServer: true, autoPong: false, perMessageDeflate: false });
  private sockets = new Set<Duplex>();
  private tracks = new Map<string, TrackState>();
  private instantKeys = new Map<string, string | undefined>();
  port = 0;
  refusals = 0;
  pingsIgnored = 0;
  /** Cap of recorded messages per track (bounded memory in long tests). */
  recordLimit = 20_000;

  constructor(private readonly opts: StrictPeerOptions = {}) {
    super();
  }

  get url(): string {
    return `${this.opts.tls ? 'wss' : 'ws'}://${this.opts.host ?? '127.0.0.1'}:${this.port}`;
  }

  /** Ring mode: messages each subscriber of `path` skipped (fell behind) and got. */
  readerStats(path: string): Array<{ skipped: number; sent: number }> {
    return [...(this.tracks.get(path)?.readers.values() ?? [])].map((r) => ({ skipped: r.skipped, sent: r.sent }));
  }

  async listen(port = 0): Promise<number> {
    const server = this.opts.tls
      ? createHttpsServer({ cert: this.opts.tls.cert, key: this.opts.tls.key })
      : createHttpServer();
    server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    server.on('secureConnection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    server.on('request', (_req, res) => {
      res.writeHead(404).end();
    });
    server.on('upgrade', (req, socket, head) => this.onUpgrade(req, socket, head));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, this.opts.host ?? '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
    return this.port;
  }

  track(path: string): TrackState {
    let t = this.tracks.get(path);
    if (!t) this.tracks.set(path, (t = { mime: undefined, publisher: null, subscribers: new Set(), messages: [], ring: [], head: 0, readers: new Map() }));
    return t;
  }

  messages(path: string): PeerMessage[] {
    return this.tracks.get(path)?.messages ?? [];
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const u = new URL(req.url ?? '/', 'http://x');
    const role = /^\/pang\/ws\/(pub|sub)$/.exec(u.pathname)?.[1];
    if (!role) {
      socket.destroy();
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onSession(ws, role as 'pub' | 'sub', u.searchParams, socket));
  }

  private refuse(socket: Duplex, reason: string): void {
    this.refusals++;
    this.emit('refused', reason);
    // Moth's refusal: TCP close without a close frame, right after the upgrade.
    socket.destroy();
  }

  private onSession(ws: WebSocket, role: 'pub' | 'sub', q: URLSearchParams, socket: Duplex): void {
    const channel = q.get('channel') ?? '';
    const key = q.get('key') ?? undefined;
    if (this.opts.refuseAll) return this.refuse(socket, 'licence limit');
    let chanId: string;
    if (channel === 'instant') {
      const name = q.get('name') ?? '';
      if (!name) return this.refuse(socket, 'instant without name');
      chanId = `instant:${name}`;
      if (!this.instantKeys.has(chanId)) this.instantKeys.set(chanId, key); // first key wins
      if (this.instantKeys.get(chanId) !== undefined && this.instantKeys.get(chanId) !== key) return this.refuse(socket, 'bad key');
    } else {
      const channels = this.opts.channels ?? {};
      if (!(channel in channels)) return this.refuse(socket, 'unknown channel');
      if (channels[channel] !== undefined && channels[channel] !== key) return this.refuse(socket, 'bad key');
      chanId = channel;
    }
    const path = `${chanId}/${q.get('source') || 'base'}/${q.get('track') || 'video'}`;
    const t = this.track(path);
    if (role === 'pub' && t.publisher) return this.refuse(socket, 'track busy');
    let timeoutSec = Number(q.get('timeout') ?? this.opts.defaultTimeoutSec ?? 30);
    if (!(timeoutSec >= 1 && timeoutSec <= 3600)) timeoutSec = this.opts.defaultTimeoutSec ?? 30;
    let idle: NodeJS.Timeout | null = null;
    const arm = (): void => {
      if (idle) clearTimeout(idle);
      idle = setTimeout(() => {
        this.emit('idleClose', role, path);
        socket.destroy(); // no close frame, like Moth
      }, timeoutSec * 1000);
    };
    arm();
    ws.on('ping', () => this.pingsIgnored++); // and no pong: autoPong is off
    ws.on('close', () => {
      if (idle) clearTimeout(idle);
      if (role === 'pub' && t.publisher === ws) {
        t.publisher = null;
        t.mime = undefined;
      }
      t.subscribers.delete(ws);
      t.readers.delete(ws);
    });
    ws.on('error', () => {});
    this.emit('session', role, path);
    if (role === 'sub') {
      t.subscribers.add(ws);
      if (t.mime) ws.send(t.mime, { binary: false });
      if (this.opts.ring) t.readers.set(ws, { ws, cursor: t.head, busy: false, skipped: 0, sent: 0 });
      (ws as WebSocket & { __arm?: () => void }).__arm = arm;
      return; // subscriber's inbound "ping" binaries are ignored; idle counts new data only
    }
    t.publisher = ws;
    ws.on('message', (raw: RawData, isBinary: boolean) => {
      arm();
      const data = Array.isArray(raw) ? Buffer.concat(raw) : Buffer.isBuffer(raw) ? raw : Buffer.from(raw as ArrayBuffer);
      const msg: PeerMessage = { binary: isBinary, data, atUs: Number(process.hrtime.bigint() / 1000n) };
      if (!isBinary) {
        const text = data.toString('utf8');
        if (text.startsWith('REXTMIME')) t.mime = text.slice(8);
        else if (!text.startsWith('REXT') && !/^(XCMD|XACK|XERR)/.test(text)) t.mime = text;
      }
      if (t.messages.length < this.recordLimit) t.messages.push(msg);
      this.emit('message', path, msg);
      if (this.opts.ring) {
        if (isBinary && data.length === 0) return; // keepalives are not data
        t.ring.push({ data, binary: isBinary });
        if (t.ring.length > this.opts.ring.slots) t.ring.shift();
        t.head++;
        for (const r of t.readers.values()) this.readRing(t, r);
        return;
      }
      for (const s of t.subscribers) {
        if (isBinary && data.length === 0) continue; // keepalives are not data
        s.send(data, { binary: isBinary });
        (s as WebSocket & { __arm?: () => void }).__arm?.();
      }
    });
  }

  /** One reader step: behind more than `behind` slots → jump to the newest; one message per serviceMs. */
  private readRing(t: TrackState, r: RingReader): void {
    const ring = this.opts.ring!;
    if (r.busy || r.cursor >= t.head || !t.readers.has(r.ws)) return;
    if (t.head - r.cursor > ring.behind) {
      r.skipped += t.head - 1 - r.cursor;
      r.cursor = t.head - 1;
    }
    const first = t.head - t.ring.length;
    const m = t.ring[r.cursor - first];
    r.cursor++;
    if (!m) return;
    r.busy = true;
    r.sent++;
    r.ws.send(m.data, { binary: m.binary });
    (r.ws as WebSocket & { __arm?: () => void }).__arm?.();
    setTimeout(() => {
      r.busy = false;
      this.readRing(t, r);
    }, ring.serviceMs);
  }

  /** Stop accepting and cut every session without close frames (a crash / restart). */
  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    for (const t of this.tracks.values()) {
      t.publisher = null;
      t.mime = undefined;
      t.subscribers.clear();
    }
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }
}
