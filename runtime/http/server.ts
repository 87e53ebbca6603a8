// The runtime's one HTTP server: API routes through the Router, WebSocket upgrades by path
// prefix (pang, /shot/ws). Binds 127.0.0.1 unless configured otherwise.

import http, { type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { Router, sendError } from './router.js';

export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

export interface HttpServerOptions {
  host: string;
  port: number;
  /** Bound on open sockets: one runaway client cannot exhaust file descriptors. */
  maxConnections: number;
}

export class HttpServer {
  readonly router = new Router();
  private readonly upgrades: Array<{ prefix: string; handler: UpgradeHandler }> = [];
  private readonly server: Server;
  private closing: Promise<void> | undefined;
  requests = 0;
  notFound = 0;
  upgradesRefused = 0;

  constructor(private readonly opts: HttpServerOptions) {
    this.server = http.createServer((req, res) => {
      this.requests++;
      this.router.handle(req, res).then(
        (handled) => {
          if (!handled) {
            this.notFound++;
            sendError(res, 404, 'NOT_FOUND', `no route for ${req.method} ${req.url?.split('?')[0]}`);
          }
        },
        (err) => sendError(res, 500, 'INTERNAL', String((err as Error)?.message ?? err)),
      );
    });
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
      u.handler(req, socket, head);
    });
    this.server.on('clientError', (_err, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    });
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
    return { requests: this.requests, notFound: this.notFound, upgradesRefused: this.upgradesRefused };
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
