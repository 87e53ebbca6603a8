// The runtime's one HTTP server: API routes through the Router, WebSocket upgrades by path
// prefix (pang, /shot/ws). Binds 127.0.0.1 unless configured otherwise. With `tls` it serves https
// and wss on the same port. Every request and upgrade passes the AccessGate first (access.ts: one
// model for every door); pang upgrades are judged by the pang server (channel keys).

import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { Router, sendError } from './router.js';
import { clientAddress, doorOf, presentedToken, type AccessDecision, type AccessGate } from './access.js';

export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

export interface HttpServerOptions {
  host: string;
  port: number;
  /** Bound on open sockets: one runaway client cannot exhaust file descriptors. */
  maxConnections: number;
  /** PEM certificate and key: https + wss on the same port. */
  tls?: { cert: string; key: string };
  /** Token checks per door; without it every door is open (tests of one component). */
  access?: AccessGate;
}

export class HttpServer {
  readonly router = new Router();
  private readonly upgrades: Array<{ prefix: string; handler: UpgradeHandler }> = [];
  private readonly server: Server;
  private closing: Promise<void> | undefined;
  requests = 0;
  notFound = 0;
  upgradesRefused = 0;
  authRefused = 0;

  constructor(private readonly opts: HttpServerOptions) {
    const handler = (req: IncomingMessage, res: ServerResponse): void => {
      this.requests++;
      const denied = this.authorize(req);
      if (denied) {
        this.authRefused++;
        const headers: Record<string, string> = { 'www-authenticate': 'Bearer realm="moth-edge"' };
        if (denied.retryAfterS) headers['retry-after'] = String(denied.retryAfterS);
        for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
        req.resume();
        sendError(res, denied.status, denied.code, denied.message);
        return;
      }
      this.router.handle(req, res).then(
        (handled) => {
          if (!handled) {
            this.notFound++;
            sendError(res, 404, 'NOT_FOUND', `no route for ${req.method} ${req.url?.split('?')[0]}`);
          }
        },
        (err) => sendError(res, 500, 'INTERNAL', String((err as Error)?.message ?? err)),
      );
    };
    this.server = opts.tls ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key }, handler) : http.createServer(handler);
    this.server.maxConnections = opts.maxConnections;
    this.server.headersTimeout = 10_000;
    this.server.requestTimeout = 60_000;
    this.server.on('upgrade', (req, socket, head) => {
      const path = (req.url ?? '/').split('?')[0]!;
      const u = this.upgrades.find((x) => path === x.prefix || path.startsWith(x.prefix.endsWith('/') ? x.prefix : `${x.prefix}/`));
      if (!u) {
        this.upgradesRefused++;
        socket.end('HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{"error":{"code":"NOT_FOUND","message":"no WebSocket endpoint here"}}');
        return;
      }
      socket.on('error', () => {});
      const denied = this.authorize(req);
      if (denied) {
        this.upgradesRefused++;
        this.authRefused++;
        const retry = denied.retryAfterS ? `Retry-After: ${denied.retryAfterS}\r\n` : '';
        const body = JSON.stringify({ error: { code: denied.code, message: denied.message } });
        socket.end(`HTTP/1.1 ${denied.status} ${denied.status === 429 ? 'Too Many Requests' : 'Unauthorized'}\r\nWWW-Authenticate: Bearer realm="moth-edge"\r\n${retry}Content-Type: application/json\r\nConnection: close\r\n\r\n${body}`);
        return;
      }
      u.handler(req, socket, head);
    });
    this.server.on('clientError', (_err, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    });
  }

  /** The gate's verdict for a request (null = let it through). pang decides for itself. */
  private authorize(req: IncomingMessage): (AccessDecision & { ok: false }) | null {
    const gate = this.opts.access;
    if (!gate) return null;
    const door = doorOf((req.url ?? '/').split('?')[0]!);
    if (door === null || door === 'pang') return null;
    const d = gate.check(door, clientAddress(req), presentedToken(req));
    return d.ok ? null : d;
  }

  get tls(): boolean {
    return this.opts.tls !== undefined;
  }

  onUpgrade(prefix: string, handler: UpgradeHandler): void {
    this.upgrades.push({ prefix, handler });
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port, this.opts.host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  address(): AddressInfo | null {
    return this.server.address() as AddressInfo | null;
  }

  stats() {
    return { requests: this.requests, notFound: this.notFound, upgradesRefused: this.upgradesRefused, authRefused: this.authRefused, tls: this.tls, access: this.opts.access?.stats() ?? null };
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    return this.closing;
  }
}
