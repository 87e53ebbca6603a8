// Motor controllers on a serial line: Sabertooth packetized serial and the line protocol for custom
// firmware. Both keep the controller's own watchdog fed while moving (re-send the current command
// every keepaliveMs) and send Stop first on every (re)open of the port.

import { EdgeError, type DriverStats } from '../../runtime/engine/api.js';
import { LinkMonitor, type LinkEvent, type LinkSnapshot } from '../link/link-state.js';
import { SerialLink, linkReason, type SerialLinkOptions } from '../serial/port.js';
import { checkTemplate, formatDrive, parseReply } from './line-protocol.js';
import { encodeMotor, encodeSerialTimeout } from './sabertooth.js';
import type { MotorDriver, MotorSpeeds, MotorStatus } from './types.js';

interface BaseOptions {
  name: string;
  path: string;
  baudRate: number;
  /** Re-send the current drive command this often while moving. Must be well under the device watchdog. */
  keepaliveMs?: number;
  serial?: Partial<SerialLinkOptions>;
}

abstract class SerialMotor implements MotorDriver {
  abstract readonly kind: 'sabertooth' | 'line';
  readonly name: string;
  protected readonly link: SerialLink;
  protected speeds: MotorSpeeds = { left: 0, right: 0 };
  private keepalive: NodeJS.Timeout | null = null;
  private readonly linkState: LinkMonitor;
  protected readonly c = { drives: 0, stops: 0, keepalives: 0, refusedLinkDown: 0 };
  private closing = false;

  constructor(o: BaseOptions, lines: boolean) {
    this.name = o.name;
    this.link = new SerialLink({ presenceCheckMs: 1000, ...o.serial, path: o.path, baudRate: o.baudRate, lines });
    this.linkState = new LinkMonitor({ up: false, reason: `serial port ${o.path} not open yet` });
    const every = Math.max(20, o.keepaliveMs ?? 150);
    this.link.onOpen(() => {
      this.speeds = { left: 0, right: 0 };
      for (const b of this.openFrames()) this.link.write(b);
      this.link.write(this.driveFrame({ left: 0, right: 0 }), { key: 'motion' });
      this.linkState.markUp(true);
    });
    this.link.onClose((e) => {
      // The controller's watchdog stops it; we forget the speed so nothing is replayed after replug.
      this.speeds = { left: 0, right: 0 };
      this.linkState.markDown(`serial port ${o.path} lost: ${linkReason(e)}`);
    });
    this.link.onOpenFailure((e) => this.linkState.markDown(`serial port ${o.path} cannot be opened: ${linkReason(e)}`));
    this.keepalive = setInterval(() => {
      if (this.closing || !this.link.isOpen) return;
      if (this.speeds.left !== 0 || this.speeds.right !== 0) {
        this.link.write(this.driveFrame(this.speeds), { key: 'motion' });
        this.c.keepalives++;
      }
    }, every);
    this.keepalive.unref();
  }

  protected start(): void {
    this.link.start();
  }

  /** Frames sent once on every open, before the initial Stop (e.g. arming the device watchdog). */
  protected openFrames(): Buffer[] {
    return [];
  }
  protected abstract driveFrame(s: MotorSpeeds): Buffer;

  linkStatus(): LinkSnapshot {
    return this.linkState.snapshot();
  }

  onLinkChange(cb: (e: LinkEvent) => void): void {
    this.linkState.on(cb);
  }

  async drive(s: MotorSpeeds): Promise<void> {
    const clamp = (x: number) => (Number.isFinite(x) ? Math.max(-1, Math.min(1, x)) : 0);
    const next = { left: clamp(s.left), right: clamp(s.right) };
    if (!this.link.write(this.driveFrame(next), { key: 'motion' })) {
      this.c.refusedLinkDown++;
      throw new EdgeError('MOTOR_LINK_DOWN', 'serial port not open', { motor: this.name, path: this.link.path });
    }
    this.speeds = next;
    if (next.left === 0 && next.right === 0) this.c.stops++;
    else this.c.drives++;
  }

  stop(): Promise<void> {
    return this.drive({ left: 0, right: 0 });
  }

  abstract status(): Promise<MotorStatus>;

  stats(): DriverStats {
    return {
      kind: this.kind,
      ...this.c,
      left: this.speeds.left,
      right: this.speeds.right,
      ...this.link.actuatorStats(),
    };
  }

  async close(): Promise<void> {
    if (this.closing) return this.link.close();
    this.closing = true;
    if (this.keepalive) clearInterval(this.keepalive);
    this.keepalive = null;
    if (this.link.isOpen) this.link.write(this.driveFrame({ left: 0, right: 0 }), { key: 'motion' });
    await this.link.close();
  }
}

export interface SabertoothOptions extends BaseOptions {
  /** Packetized serial address 128..135 (DIP switches). */
  address: number;
  /** Device-side serial timeout: the controller stops by itself without packets for this long. */
  deviceTimeoutMs?: number;
}

export class SabertoothDriver extends SerialMotor {
  readonly kind = 'sabertooth' as const;
  private readonly address: number;
  private readonly deviceTimeoutMs: number;

  constructor(o: SabertoothOptions) {
    super(o, false);
    encodeMotor(o.address, 1, 0); // validates the address
    this.address = o.address;
    this.deviceTimeoutMs = o.deviceTimeoutMs ?? 500;
    this.start();
  }

  protected override openFrames(): Buffer[] {
    // Autobaud byte 0xAA first (Sabertooth needs it after power-up), then arm the hardware dead-man.
    return [Buffer.from([0xaa]), encodeSerialTimeout(this.address, this.deviceTimeoutMs)];
  }

  protected driveFrame(s: MotorSpeeds): Buffer {
    return Buffer.concat([encodeMotor(this.address, 1, s.left), encodeMotor(this.address, 2, s.right)]);
  }

  async status(): Promise<MotorStatus> {
    // Packetized serial is one-way: no voltage/current telemetry.
    return { online: this.link.isOpen, speeds: { ...this.speeds }, faults: [] };
  }
}

export interface LineMotorOptions extends BaseOptions {
  /** Drive line template with {left} and {right}. Default "M {left} {right}". */
  template?: string;
  /** Speeds are sent as integers in -scale..scale. Default 1000. */
  scale?: number;
  /** Line that asks for a STATUS reply. Default "?". */
  statusCommand?: string;
  /** Wait for OK/ERR at most this long; unanswered commands are counted. */
  ackTimeoutMs?: number;
}

export class LineMotorDriver extends SerialMotor {
  readonly kind = 'line' as const;
  private readonly template: string;
  private readonly scale: number;
  private readonly statusCommand: string;
  private readonly ackTimeoutMs: number;
  /** Send times of commands waiting for OK/ERR, oldest first; bounded like the serial queue. */
  private unacked: number[] = [];
  private statusWaiters: Array<(s: MotorStatus) => void> = [];
  private lastReplyAt = 0;
  private lastStatus: Pick<MotorStatus, 'voltage' | 'current' | 'faults'> = { faults: [] };
  private readonly lc = { acks: 0, errReplies: 0, ackTimeouts: 0, unknownLines: 0, statusReplies: 0 };
  private lastDeviceError: string | null = null;

  constructor(o: LineMotorOptions) {
    super(o, true);
    this.template = o.template ?? 'M {left} {right}';
    checkTemplate(this.template);
    this.scale = o.scale ?? 1000;
    this.statusCommand = o.statusCommand ?? '?';
    if (!/^[A-Za-z0-9?!#$ _-]{1,16}$/.test(this.statusCommand)) {
      throw new EdgeError('MOTOR_BAD_TEMPLATE', 'status command must be 1..16 printable characters');
    }
    this.ackTimeoutMs = o.ackTimeoutMs ?? 250;
    this.link.onLine((line) => this.onLine(line));
    this.link.onClose(() => {
      this.unacked = [];
    });
    this.start();
  }

  protected driveFrame(s: MotorSpeeds): Buffer {
    this.expireAcks();
    this.unacked.push(Date.now());
    if (this.unacked.length > 16) {
      this.unacked.shift();
      this.lc.ackTimeouts++;
    }
    return Buffer.from(formatDrive(this.template, s.left, s.right, this.scale), 'latin1');
  }

  private expireAcks(): void {
    const now = Date.now();
    while (this.unacked.length && now - this.unacked[0]! > this.ackTimeoutMs) {
      this.unacked.shift();
      this.lc.ackTimeouts++;
    }
  }

  private onLine(line: string): void {
    const r = parseReply(line);
    this.lastReplyAt = Date.now();
    switch (r.type) {
      case 'ack':
        this.unacked.shift();
        this.lc.acks++;
        break;
      case 'err':
        this.unacked.shift();
        this.lc.errReplies++;
        this.lastDeviceError = r.message;
        break;
      case 'status': {
        this.lc.statusReplies++;
        this.lastStatus = { voltage: r.voltage, current: r.current, faults: r.faults };
        const w = this.statusWaiters;
        this.statusWaiters = [];
        const s = this.snapshot();
        for (const cb of w) cb(s);
        break;
      }
      default:
        this.lc.unknownLines++;
    }
  }

  private snapshot(): MotorStatus {
    return {
      online: this.link.isOpen,
      speeds: { ...this.speeds },
      ...this.lastStatus,
      lastReplyAgoMs: this.lastReplyAt ? Date.now() - this.lastReplyAt : undefined,
    };
  }

  async status(): Promise<MotorStatus> {
    if (!this.link.isOpen) return this.snapshot();
    if (this.statusWaiters.length >= 4) return this.snapshot();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.statusWaiters = this.statusWaiters.filter((w) => w !== done);
        resolve(this.snapshot());
      }, 500);
      const done = (s: MotorStatus) => {
        clearTimeout(t);
        resolve(s);
      };
      this.statusWaiters.push(done);
      this.link.write(Buffer.from(this.statusCommand + '\n', 'latin1'));
    });
  }

  override stats(): DriverStats {
    this.expireAcks();
    return { ...super.stats(), ...this.lc, unacked: this.unacked.length, deviceError: this.lastDeviceError };
  }
}
