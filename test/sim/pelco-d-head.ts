// A Pelco-D PTZ head on the far end of a pty: parses real bytes, rejects bad checksums (counted, not
// acted on), integrates position from speed over time, stores/calls presets, answers position queries.
import type { SerialPort } from 'serialport';
import { PelcoDDecoder, decodeCommand, encodeResponse, type PelcoDCommand } from '../../drivers/ptz/pelco-d.js';
import { closePeer, openPeer } from './serial-pty.js';

export interface SimLogEntry {
  at: number;
  /** performance.now() at receipt, for latency measurements. */
  t: number;
  type: 'move' | 'stop' | 'preset' | 'query' | 'other';
  pan?: number;
  tilt?: number;
  zoom?: number;
  op?: string;
  id?: number;
}

/** Degrees per second at full speed (0x3F). */
const DEG_PER_S = 60;

export class PelcoDHeadSim {
  port: SerialPort | null = null;
  readonly decoder = new PelcoDDecoder();
  readonly log: SimLogEntry[] = [];
  /** pan 0..360, tilt -90..90 (degrees), zoom 0..1 */
  pos = { pan: 180, tilt: 0, zoom: 0 };
  vel = { pan: 0, tilt: 0, zoom: 0 };
  presets = new Map<number, { pan: number; tilt: number; zoom: number }>();
  private lastT = Date.now();
  otherAddressFrames = 0;

  constructor(
    readonly path: string,
    readonly address = 1,
    readonly baudRate = 9600,
  ) {}

  async open(): Promise<void> {
    this.port = await openPeer(this.path, this.baudRate);
    this.port.on('data', (b: Buffer) => this.onBytes(b));
    this.port.on('error', () => {});
  }

  async close(): Promise<void> {
    const p = this.port;
    this.port = null;
    await closePeer(p);
  }

  private integrate(): void {
    const now = Date.now();
    const dt = (now - this.lastT) / 1000;
    this.lastT = now;
    this.pos.pan = (((this.pos.pan + this.vel.pan * DEG_PER_S * dt) % 360) + 360) % 360;
    this.pos.tilt = Math.max(-90, Math.min(90, this.pos.tilt + this.vel.tilt * DEG_PER_S * dt));
    this.pos.zoom = Math.max(0, Math.min(1, this.pos.zoom + this.vel.zoom * 0.5 * dt));
  }

  private onBytes(b: Buffer): void {
    for (const f of this.decoder.push(b)) {
      if (f.address !== this.address) {
        this.otherAddressFrames++;
        continue;
      }
      this.apply(decodeCommand(f));
    }
  }

  private apply(c: PelcoDCommand): void {
    this.integrate();
    const at = Date.now();
    const t = performance.now();
    switch (c.type) {
      case 'stop':
        this.vel = { pan: 0, tilt: 0, zoom: 0 };
        this.log.push({ at, t, type: 'stop' });
        break;
      case 'move':
        this.vel = { pan: c.pan / 0x3f, tilt: c.tilt / 0x3f, zoom: c.zoom };
        this.log.push({ at, t, type: 'move', pan: this.vel.pan, tilt: this.vel.tilt, zoom: this.vel.zoom });
        break;
      case 'preset':
        this.log.push({ at, t, type: 'preset', op: c.op, id: c.id });
        if (c.op === 'set') this.presets.set(c.id, { ...this.pos });
        else if (c.op === 'clear') this.presets.delete(c.id);
        else {
          const p = this.presets.get(c.id);
          this.vel = { pan: 0, tilt: 0, zoom: 0 };
          if (p) this.pos = { ...p };
        }
        break;
      case 'query': {
        this.log.push({ at, t, type: 'query', op: c.what });
        const v =
          c.what === 'pan' ? Math.round(this.pos.pan * 100) : c.what === 'tilt' ? (Math.round(this.pos.tilt * 100) + 0x10000) % 0x10000 : Math.round(this.pos.zoom * 0xffff);
        this.port?.write(encodeResponse(this.address, c.what, v));
        break;
      }
      default:
        this.log.push({ at, t, type: 'other' });
    }
  }

  /** The velocity the head is moving with now (normalised -1..1). */
  get moving(): boolean {
    return this.vel.pan !== 0 || this.vel.tilt !== 0 || this.vel.zoom !== 0;
  }
}
