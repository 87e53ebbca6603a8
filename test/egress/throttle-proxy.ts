// A loopback TCP proxy that can throttle the client→server direction to N bytes/s (a thin
// uplink) and lift it again. Reading pauses while over budget, so TCP backpressure reaches the
// sender like on a real slow link.
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { nativeTcp, TCP_OPT } from '../../runtime/native/index.js';

/**
 * A userspace shaper terminates TCP: its kernel acknowledges whatever fits its receive buffer at
 * loopback speed, however slowly the proxy reads. Loopback autotuning grows that buffer to MBs —
 * a bloat no real bottleneck has in front of the acknowledgements. Bound it (accepted sockets
 * inherit the listener's SO_RCVBUF) so acknowledgements follow the shaped rate, as they do when a
 * router queue sits between the sender and the receiving host.
 */
export function boundReceiveWindow(server: Server, bytes = 64 * 1024): void {
  const fd = (server as unknown as { _handle?: { fd?: number } })._handle?.fd;
  const tcp = nativeTcp();
  if (tcp && typeof fd === 'number' && fd >= 0) tcp.setTcpOption(fd, TCP_OPT.RCVBUF, bytes);
}

export class ThrottleProxy {
  private server: Server | null = null;
  private conns = new Set<Socket>();
  private rate: number | null = null;
  private pausedUntil = 0;
  private resumers = new Set<() => void>();
  private timers = new Set<NodeJS.Timeout>();
  port = 0;
  bytesUp = 0;

  constructor(private readonly targetPort: number) {}

  async listen(): Promise<number> {
    const server = createServer((client) => {
      const up = connect(this.targetPort, '127.0.0.1');
      this.conns.add(client);
      this.conns.add(up);
      const end = (): void => {
        client.destroy();
        up.destroy();
        this.conns.delete(client);
        this.conns.delete(up);
      };
      client.on('error', end).on('close', end);
      up.on('error', end).on('close', end);
      up.pipe(client);
      const resume = (): void => {
        if (!client.destroyed) client.resume();
      };
      this.resumers.add(resume);
      client.on('close', () => this.resumers.delete(resume));
      client.on('data', (chunk: Buffer) => {
        this.bytesUp += chunk.length;
        if (!up.write(chunk)) {
          client.pause();
          up.once('drain', resume);
        }
        if (this.rate !== null) {
          client.pause();
          const now = performance.now();
          this.pausedUntil = Math.max(this.pausedUntil, now) + (chunk.length / this.rate) * 1000;
          const timer = setTimeout(() => {
            this.timers.delete(timer);
            resume();
          }, this.pausedUntil - now);
          this.timers.add(timer);
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    boundReceiveWindow(server);
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
    return this.port;
  }

  /** bytes per second, or null for no limit. */
  setRate(bytesPerSec: number | null): void {
    this.rate = bytesPerSec;
    if (bytesPerSec === null) {
      this.pausedUntil = 0;
      for (const t of this.timers) clearTimeout(t);
      this.timers.clear();
      for (const r of this.resumers) r();
    }
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const c of this.conns) c.destroy();
    this.conns.clear();
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }
}
