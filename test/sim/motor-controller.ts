// Motor controllers on the far end of a pty, parsing real bytes:
// - SabertoothSim: packetized serial (address, command, data, 7-bit checksum); bad checksums counted
//   and ignored; honours the serial-timeout command (stops by itself when packets stop).
// - LineMotorSim: "M <left> <right>" lines → "OK", "?" → "STATUS V=… I=… F=…", junk → "ERR …";
//   firmware watchdog stops the motors when no drive line arrived within watchdogMs.
import type { SerialPort } from 'serialport';
import { SabertoothDecoder, decodeCommand } from '../../drivers/motor/sabertooth.js';
import { closePeer, openPeer } from './serial-pty.js';

export interface MotorLogEntry {
  at: number;
  type: 'drive' | 'stop' | 'watchdog-stop' | 'timeout-set' | 'status' | 'error' | 'autobaud';
  left?: number;
  right?: number;
}

abstract class MotorSim {
  port: SerialPort | null = null;
  readonly log: MotorLogEntry[] = [];
  speeds = { left: 0, right: 0 };
  protected watchdogMs = 0;
  private watchdog: NodeJS.Timeout | null = null;

  constructor(
    readonly path: string,
    readonly baudRate: number,
  ) {}

  async open(): Promise<void> {
    this.port = await openPeer(this.path, this.baudRate);
    this.port.on('data', (b: Buffer) => this.onBytes(b));
    this.port.on('error', () => {});
  }

  async close(): Promise<void> {
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdog = null;
    const p = this.port;
    this.port = null;
    await closePeer(p);
  }

  protected abstract onBytes(b: Buffer): void;

  protected set(left: number, right: number): void {
    const at = Date.now();
    this.speeds = { left, right };
    this.log.push({ at, type: left === 0 && right === 0 ? 'stop' : 'drive', left, right });
    this.feed();
  }

  protected feed(): void {
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdog = null;
    if (this.watchdogMs > 0) {
      this.watchdog = setTimeout(() => {
        this.watchdog = null;
        if (this.speeds.left !== 0 || this.speeds.right !== 0) {
          this.speeds = { left: 0, right: 0 };
          this.log.push({ at: Date.now(), type: 'watchdog-stop' });
        }
      }, this.watchdogMs);
    }
  }

  get moving(): boolean {
    return this.speeds.left !== 0 || this.speeds.right !== 0;
  }
}

export class SabertoothSim extends MotorSim {
  readonly decoder = new SabertoothDecoder();
  private m1 = 0;
  private m2 = 0;
  constructor(
    path: string,
    readonly address = 128,
    baudRate = 9600,
  ) {
    super(path, baudRate);
  }

  protected onBytes(b: Buffer): void {
    // 0xAA is the autobaud byte: not a packet (address bytes are 128..135).
    let bytes = b;
    if (bytes.includes(0xaa)) {
      this.log.push({ at: Date.now(), type: 'autobaud' });
      bytes = Buffer.from(bytes.filter((x) => x !== 0xaa));
    }
    for (const p of this.decoder.push(bytes)) {
      if (p.address !== this.address) continue;
      const c = decodeCommand(p);
      if (c.type === 'motor') {
        if (c.motor === 1) this.m1 = c.speed / 127;
        else this.m2 = c.speed / 127;
        // The driver sends M1 and M2 back to back; record once both are in (on M2).
        if (c.motor === 2) this.set(this.m1, this.m2);
        else this.feed();
      } else if (c.type === 'timeout') {
        this.watchdogMs = c.ms;
        this.log.push({ at: Date.now(), type: 'timeout-set' });
      }
    }
  }
}

export class LineMotorSim extends MotorSim {
  private buf = '';
  voltage = 12.4;
  current = 0.8;
  faults: string[] = [];
  badLines = 0;

  constructor(path: string, baudRate = 115200, watchdogMs = 500) {
    super(path, baudRate);
    this.watchdogMs = watchdogMs;
  }

  protected onBytes(b: Buffer): void {
    this.buf += b.toString('latin1');
    if (this.buf.length > 4096) this.buf = this.buf.slice(-256);
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      this.onLine(line);
    }
  }

  private reply(s: string): void {
    this.port?.write(s + '\r\n');
  }

  private onLine(line: string): void {
    const m = /^M (-?\d+) (-?\d+)$/.exec(line);
    if (m) {
      const l = Number(m[1]) / 1000;
      const r = Number(m[2]) / 1000;
      if (Math.abs(l) > 1 || Math.abs(r) > 1) {
        this.badLines++;
        this.reply('ERR range');
        return;
      }
      this.set(l, r);
      this.reply('OK');
      return;
    }
    if (line === '?') {
      this.log.push({ at: Date.now(), type: 'status' });
      this.reply(`STATUS V=${this.voltage} I=${this.current} F=${this.faults.length ? this.faults.join(',') : 'none'}`);
      return;
    }
    this.badLines++;
    this.log.push({ at: Date.now(), type: 'error' });
    this.reply('ERR syntax');
  }
}
