// A loopback TCP proxy that models ONE shared thin uplink: bytes of every connection (client →
// server) enter one FIFO in arrival order and leave at `rate` bytes/s, like a router queue in front
// of an LTE modem. When the queue holds more than `queueBytes`, readers pause (TCP backpressure).
// Unlike a per-read-chunk throttle, a thin flow (telemetry) waits behind at most one queue of
// bytes instead of one read per round. Each connection may hold at most `queueBytes` in the FIFO
// before its reads pause (per-flow admission, as with Linux's default fq_codel): pausing every
// reader whenever the shared queue is full would hand out one read chunk per flow per round,
// which starves a flow of small messages — an artifact of Node streams, not of a real link.
// Server → client is not shaped.
import { boundReceiveWindow } from '../egress/throttle-proxy.js';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';

interface Pending {
  up: Socket;
  client: Socket;
  chunk: Buffer;
}

export class SharedLinkProxy {
  private server: Server | null = null;
  private conns = new Set<Socket>();
  private clients = new Set<Socket>();
  private fifo: Pending[] = [];
  private queued = 0;
  private perConn = new Map<Socket, number>();
  rate: number | null = null;
  private down = false;
  refusedWhileDown = 0;
  cuts = 0;
  private timer: NodeJS.Timeout | null = null;
  private lastTick = 0;
  private credit = 0;
  port = 0;
  bytesUp = 0;

  /** queueBytes: 64 KB ≈ 0.5 s at 1 Mbit/s, a typical modem buffer. */
  constructor(
    private readonly targetPort: number,
    private readonly queueBytes = 64 * 1024,
  ) {}

  async listen(): Promise<number> {
    const server = createServer((client) => {
      if (this.down) {
        // A cut link: the connection dies at once (the client sees a reset, then backs off).
        this.refusedWhileDown++;
        client.destroy();
        return;
      }
      const up = connect(this.targetPort, '127.0.0.1');
      this.conns.add(client);
      this.conns.add(up);
      this.clients.add(client);
      const end = (): void => {
        client.destroy();
        up.destroy();
        this.conns.delete(client);
        this.conns.delete(up);
        this.clients.delete(client);
        this.perConn.delete(client);
      };
      client.on('error', end).on('close', end);
      up.on('error', end).on('close', end);
      up.pipe(client);
      client.on('data', (chunk: Buffer) => {
        if (this.rate === null && this.fifo.length === 0) {
          this.bytesUp += chunk.length;
          up.write(chunk);
          return;
        }
        this.fifo.push({ up, client, chunk });
        this.queued += chunk.length;
        const mine = (this.perConn.get(client) ?? 0) + chunk.length;
        this.perConn.set(client, mine);
        if (mine > this.queueBytes) client.pause();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    boundReceiveWindow(server);
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
    this.timer = setInterval(() => this.tick(), 10);
    this.lastTick = performance.now();
    return this.port;
  }

  private tick(): void {
    const now = performance.now();
    const dt = (now - this.lastTick) / 1000;
    this.lastTick = now;
    // Credit is capped at 20 ms of rate: a link does not save up unused capacity.
    this.credit = this.rate === null ? Infinity : Math.min(this.credit + this.rate * dt, Math.max(1, this.rate * 0.02));
    while (this.fifo.length > 0 && this.credit >= 1) {
      const p = this.fifo[0]!;
      const n = Math.min(p.chunk.length, Math.floor(this.credit));
      if (!p.up.destroyed) p.up.write(p.chunk.subarray(0, n));
      this.bytesUp += n;
      this.credit -= n;
      this.queued -= n;
      this.perConn.set(p.client, (this.perConn.get(p.client) ?? n) - n);
      if (n === p.chunk.length) this.fifo.shift();
      else p.chunk = p.chunk.subarray(n);
    }
    if (this.rate === null) this.credit = 0;
    for (const c of this.clients) if (c.isPaused() && (this.perConn.get(c) ?? 0) <= this.queueBytes) c.resume();
  }

  /**
   * Cut the link: every connection is destroyed (bytes still queued in the link are lost, like a
   * modem losing the cell) and new ones fail until restore().
   */
  cut(): void {
    this.down = true;
    this.cuts++;
    this.fifo = [];
    this.queued = 0;
    this.perConn.clear();
    for (const c of this.conns) c.destroy();
    this.conns.clear();
    this.clients.clear();
  }

  restore(): void {
    this.down = false;
  }

  get isDown(): boolean {
    return this.down;
  }

  /** Bytes per second for the whole link, or null for unshaped. */
  setRate(bytesPerSec: number | null): void {
    this.rate = bytesPerSec;
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const c of this.conns) c.destroy();
    this.conns.clear();
    this.clients.clear();
    this.fifo = [];
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }
}
