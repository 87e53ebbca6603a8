// The upstream Moth meb client: the runtime joins ws(s)://host/pang/ws/meb?channel=…&source=…&track=…
// as a participant, takes every REXTXCMD text as a command and answers on the same meb with
// REXTXACK/REXTXERR carrying the request id. Moth never answers pings, so liveness is never judged by
// pongs: we keep the session open with an empty binary message every keepaliveMs. A refusal is a
// close without a close frame (1006) — every close is followed by a jittered, capped backoff.
// Each connection is its own control session: when it drops, whatever it was moving stops.

import WebSocket from 'ws';
import { Backoff } from '../engine/api.js';
import type { Logger } from '../log.js';
import type { UpstreamControlConfig } from './config.js';
import { CMD_PREFIX, MAX_COMMAND_BYTES } from './command.js';

export interface CommandSink {
  onText(sessionId: string, text: string): Promise<string | undefined>;
  onSessionClosed(sessionId: string): void;
}

/** Replies waiting for the socket at most; a meb that stops draining must not grow memory. */
const MAX_BUFFERED_BYTES = 256 * 1024;

export class UpstreamControlClient {
  private ws: WebSocket | null = null;
  private session: string | null = null;
  private n = 0;
  private timer: NodeJS.Timeout | null = null;
  private keepalive: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly backoff: Backoff;
  private readonly c = { connects: 0, opens: 0, closes: 0, commandsIn: 0, repliesOut: 0, repliesDropped: 0, otherTexts: 0, tooLarge: 0 };
  private lastError: string | null = null;
  private lastClose: number | null = null;

  constructor(
    private readonly cfg: UpstreamControlConfig,
    private readonly sink: CommandSink,
    private readonly log: Logger,
  ) {
    this.backoff = new Backoff({ initialMs: cfg.reconnectInitialMs, maxMs: Math.max(cfg.reconnectInitialMs, cfg.reconnectMaxMs), resetAfterMs: 10_000 });
  }

  /** The meb URL without the key (for logs and stats). */
  get url(): string {
    const q = new URLSearchParams({ channel: this.cfg.channel, source: this.cfg.source, track: this.cfg.track });
    if (this.cfg.name) q.set('name', this.cfg.name);
    return `${this.cfg.url.replace(/\/$/, '')}/pang/ws/meb?${q}`;
  }

  get connected(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  start(): void {
    if (!this.closed && !this.ws && !this.timer) this.connect();
  }

  private connect(): void {
    this.timer = null;
    if (this.closed) return;
    this.c.connects++;
    const url = this.cfg.key ? `${this.url}&key=${encodeURIComponent(this.cfg.key)}` : this.url;
    const ws = new WebSocket(url, { handshakeTimeout: 10_000, maxPayload: 64 * 1024 });
    this.ws = ws;
    const session = `upstream#${++this.n}`;
    ws.on('open', () => {
      this.c.opens++;
      this.session = session;
      this.backoff.healthy(Date.now());
      this.keepalive = setInterval(() => {
        if (ws.readyState === WebSocket.OPEN) ws.send(Buffer.alloc(0));
      }, this.cfg.keepaliveMs);
      this.log.info({ url: this.url }, 'control upstream joined');
    });
    ws.on('message', (data: WebSocket.RawData, isBinary: boolean) => {
      if (isBinary) return;
      const text = data.toString();
      if (!text.startsWith(CMD_PREFIX)) {
        this.c.otherTexts++;
        return;
      }
      if (text.length > MAX_COMMAND_BYTES) {
        this.c.tooLarge++;
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
    ws.on('error', (e) => {
      this.lastError = e.message.replace(/key=[^&\s]*/g, 'key=***').slice(0, 200);
    });
    ws.on('close', (code) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.c.closes++;
      this.lastClose = code;
      if (this.keepalive) clearInterval(this.keepalive);
      this.keepalive = null;
      if (this.session === session) {
        // The link is gone: stop what this upstream session was moving, now.
        this.sink.onSessionClosed(session);
        this.session = null;
      }
      if (this.closed) return;
      const delay = this.backoff.next(Date.now());
      this.log.warn({ url: this.url, code, retryMs: delay }, 'control upstream closed');
      this.timer = setTimeout(() => this.connect(), delay);
    });
  }

  stats(): Record<string, number | string | boolean | null> {
    return { url: this.url, connected: this.connected, ...this.c, lastClose: this.lastClose, backoffMs: this.backoff.lastDelayMs, lastError: this.lastError };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.keepalive) clearInterval(this.keepalive);
    this.timer = this.keepalive = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.removeAllListeners('close');
      ws.on('error', () => {});
      ws.terminate();
    }
    if (this.session) this.sink.onSessionClosed(this.session);
    this.session = null;
  }
}
