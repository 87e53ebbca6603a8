// A loopback TCP proxy that can black-hole the path: stop forwarding in both directions without
// closing anything (Wi-Fi gone: no FIN, no RST), and restore it. Bytes sent into the hole are held
// and delivered on restore, as TCP's retransmissions would once the path is back; connections
// opened meanwhile are accepted (the kernel's SYN/ACK happens on the proxy's side) and stay silent
// until the restore. A connection either end closes is closed on the other side only while the
// path is up (a FIN cannot cross a black hole either).
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';

interface Pair {
  client: Socket;
  up: Socket;
  /** Held while black-holed: client→server and server→client. */
  held: { toUp: Buffer[]; toClient: Buffer[] };
  endPending: boolean;
}

export class BlackholeProxy {
  private server: Server | null = null;
  private readonly pairs = new Set<Pair>();
  private holed = false;
  port = 0;
  accepted = 0;

  constructor(private readonly targetPort: number) {}

  get blackholed(): boolean {
    return this.holed;
  }

  async listen(): Promise<number> {
    const server = createServer((client) => {
      this.accepted++;
      const up = connect(this.targetPort, '127.0.0.1');
      const p: Pair = { client, up, held: { toUp: [], toClient: [] }, endPending: false };
      this.pairs.add(p);
      const end = (): void => {
        if (this.holed) {
          // The other side cannot hear about it through the hole; it learns on restore.
          p.endPending = true;
          return;
        }
        this.drop(p);
      };
      client.on('error', end).on('close', end);
      up.on('error', end).on('close', end);
      client.on('data', (b: Buffer) => (this.holed ? p.held.toUp.push(b) : up.write(b)));
      up.on('data', (b: Buffer) => (this.holed ? p.held.toClient.push(b) : client.write(b)));
    });
    this.server = server;
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    this.port = (server.address() as AddressInfo).port;
    return this.port;
  }

  private drop(p: Pair): void {
    this.pairs.delete(p);
    p.client.destroy();
    p.up.destroy();
  }

  /** Stop forwarding; nothing is closed. */
  blackhole(): void {
    this.holed = true;
  }

  /** Forward again: held bytes go first, then closes that happened meanwhile. */
  restore(): void {
    this.holed = false;
    for (const p of [...this.pairs]) {
      if (p.endPending || p.client.destroyed || p.up.destroyed) {
        this.drop(p);
        continue;
      }
      for (const b of p.held.toUp.splice(0)) p.up.write(b);
      for (const b of p.held.toClient.splice(0)) p.client.write(b);
    }
  }

  /** Close every connection now (a hard cut: RST-like). */
  cut(): void {
    for (const p of [...this.pairs]) this.drop(p);
  }

  get connections(): number {
    return this.pairs.size;
  }

  async close(): Promise<void> {
    this.cut();
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }
}
