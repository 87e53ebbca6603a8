// Attached game controllers: the Linux joystick API (/dev/input/js*, 8-byte js_event) and evdev
// (/dev/input/event*, struct input_event), mapped by config to PTZ / motor velocities. Works with no
// network at all: the runtime feeds the mapped output straight into the control router.
//
// js_event (linux/joystick.h), little-endian on every board we run on:
//   u32 time (ms), s16 value, u8 type (0x01 button, 0x02 axis, | 0x80 synthetic initial state), u8 number
// input_event (linux/input.h): struct timeval (16 bytes on 64-bit, 8 on 32-bit ARM), u16 type,
//   u16 code, s32 value. EV_KEY = 1 (buttons), EV_ABS = 3 (axes; range from config, evdev has no
//   range in-band).

import fs from 'node:fs';
import { Backoff, EdgeError, type DriverStats } from '../../runtime/engine/api.js';

export const JS_EVENT_SIZE = 8;
export const JS_EVENT_BUTTON = 0x01;
export const JS_EVENT_AXIS = 0x02;
export const JS_EVENT_INIT = 0x80;

export interface InputEvent {
  kind: 'axis' | 'button';
  number: number;
  /** Axis: normalised to [-1, 1]. Button: 0 or 1. */
  value: number;
  init: boolean;
}

/** Decode whole js_events from `buf`; returns the events and the unconsumed tail (< 8 bytes). */
export function parseJsEvents(buf: Buffer): { events: InputEvent[]; rest: Buffer } {
  const events: InputEvent[] = [];
  let i = 0;
  for (; i + JS_EVENT_SIZE <= buf.length; i += JS_EVENT_SIZE) {
    const value = buf.readInt16LE(i + 4);
    const type = buf[i + 6]!;
    const number = buf[i + 7]!;
    const t = type & ~JS_EVENT_INIT;
    if (t === JS_EVENT_BUTTON) events.push({ kind: 'button', number, value: value ? 1 : 0, init: (type & JS_EVENT_INIT) !== 0 });
    else if (t === JS_EVENT_AXIS) events.push({ kind: 'axis', number, value: Math.max(-1, value / 32767), init: (type & JS_EVENT_INIT) !== 0 });
    // other types: ignored (not defined by the kernel API)
  }
  return { events, rest: Buffer.from(buf.subarray(i)) };
}

export function encodeJsEvent(timeMs: number, value: number, type: number, number: number): Buffer {
  const b = Buffer.alloc(JS_EVENT_SIZE);
  b.writeUInt32LE(timeMs >>> 0, 0);
  b.writeInt16LE(Math.max(-32768, Math.min(32767, Math.round(value))), 4);
  b[6] = type & 0xff;
  b[7] = number & 0xff;
  return b;
}

export interface EvdevAxisRange {
  min: number;
  max: number;
}

/** Decode evdev input_events. eventSize 24 (64-bit) or 16 (32-bit). Unknown axes use ±32767. */
export function parseEvdevEvents(buf: Buffer, eventSize: 16 | 24, ranges: Record<number, EvdevAxisRange> = {}): { events: InputEvent[]; rest: Buffer } {
  const events: InputEvent[] = [];
  const off = eventSize - 8;
  let i = 0;
  for (; i + eventSize <= buf.length; i += eventSize) {
    const type = buf.readUInt16LE(i + off);
    const code = buf.readUInt16LE(i + off + 2);
    const value = buf.readInt32LE(i + off + 4);
    if (type === 1) events.push({ kind: 'button', number: code, value: value ? 1 : 0, init: false });
    else if (type === 3) {
      const r = ranges[code] ?? { min: -32767, max: 32767 };
      const span = r.max - r.min;
      const n = span > 0 ? ((value - r.min) / span) * 2 - 1 : 0;
      events.push({ kind: 'axis', number: code, value: Math.max(-1, Math.min(1, n)), init: false });
    }
  }
  return { events, rest: Buffer.from(buf.subarray(i)) };
}

// ---------------------------------------------------------------------------------------------
// Mapping (pure)

export interface AxisMap {
  axis: number;
  invert?: boolean;
}

export interface JoystickMapping {
  /** Dead zone as a fraction of full deflection (0..0.5). */
  deadzone: number;
  /** Expo 0..1: 0 linear, 1 cubic (fine control near centre). */
  expo: number;
  ptz?: { pan?: AxisMap; tilt?: AxisMap; zoom?: AxisMap };
  /** tank: left/right axes; arcade: throttle + steer axes mixed. */
  motor?: { mode: 'tank'; left: AxisMap; right: AxisMap } | { mode: 'arcade'; throttle: AxisMap; steer: AxisMap };
  /** Button numbers. */
  buttons?: { stop?: number; presets?: Record<string, number> };
}

export function shapeAxis(x: number, deadzone: number, expo: number): number {
  if (!Number.isFinite(x)) return 0;
  const a = Math.min(1, Math.abs(x));
  if (a <= deadzone) return 0;
  const lin = (a - deadzone) / (1 - deadzone);
  const y = (1 - expo) * lin + expo * lin * lin * lin;
  return Math.sign(x) * Math.round(y * 1000) / 1000;
}

export interface MappedState {
  ptz: { pan: number; tilt: number; zoom: number };
  motor: { left: number; right: number };
}

export type MappedAction = { type: 'stop' } | { type: 'preset'; id: string };

export class JoystickMapper {
  private readonly axes = new Map<number, number>();
  constructor(readonly m: JoystickMapping) {}

  private read(a: AxisMap | undefined): number {
    if (!a) return 0;
    const v = shapeAxis(this.axes.get(a.axis) ?? 0, this.m.deadzone, this.m.expo);
    return a.invert ? -v || 0 : v;
  }

  /** Apply one event; returns button actions it triggered (on press, not release). */
  apply(e: InputEvent): MappedAction[] {
    if (e.kind === 'axis') {
      this.axes.set(e.number, e.value);
      return [];
    }
    if (e.value !== 1 || e.init) return [];
    const out: MappedAction[] = [];
    const b = this.m.buttons;
    if (b?.stop === e.number) out.push({ type: 'stop' });
    for (const [id, n] of Object.entries(b?.presets ?? {})) if (n === e.number) out.push({ type: 'preset', id });
    return out;
  }

  state(): MappedState {
    const p = this.m.ptz;
    const ptz = { pan: this.read(p?.pan), tilt: this.read(p?.tilt), zoom: this.read(p?.zoom) };
    let motor = { left: 0, right: 0 };
    const mm = this.m.motor;
    if (mm?.mode === 'tank') motor = { left: this.read(mm.left), right: this.read(mm.right) };
    else if (mm?.mode === 'arcade') {
      const t = this.read(mm.throttle);
      const s = this.read(mm.steer);
      const c = (x: number) => Math.round(Math.max(-1, Math.min(1, x)) * 1000) / 1000;
      motor = { left: c(t + s), right: c(t - s) };
    }
    return { ptz, motor };
  }

  /** Forget all axis positions (device lost): everything reads as centred. */
  reset(): void {
    this.axes.clear();
  }
}

// ---------------------------------------------------------------------------------------------
// I/O shell

export interface JoystickInputOptions {
  path: string;
  format?: 'js' | 'evdev';
  evdevEventSize?: 16 | 24;
  evdevRanges?: Record<number, EvdevAxisRange>;
  /** Poll interval when no bytes are waiting. 10 ms: below a human's reaction, ~100 syscalls/s. */
  pollMs?: number;
  backoff?: { initialMs: number; maxMs: number };
}

const READ_CHUNK = 64 * JS_EVENT_SIZE;

/**
 * Reads a joystick device (or a fifo/pty carrying the same bytes) with non-blocking reads polled
 * every pollMs: a blocking read would pin a libuv thread until the next stick movement and keep the
 * process from exiting. Reopens with Backoff when the device goes away (ENODEV on unplug, EOF when a
 * fifo writer leaves); onLost fires on every loss so the owner can stop what it drove.
 */
export class JoystickInput {
  private fd: number | null = null;
  private rest: Buffer = Buffer.alloc(0);
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private gotData = false;
  private readonly buf = Buffer.alloc(READ_CHUNK);
  private readonly backoff: Backoff;
  private readonly evL: Array<(e: InputEvent) => void> = [];
  private readonly lostL: Array<(why: string) => void> = [];
  private readonly openL: Array<() => void> = [];
  private readonly c = { opens: 0, openFailures: 0, losses: 0, events: 0, bytes: 0 };
  private lastError: string | null = null;

  constructor(private readonly o: JoystickInputOptions) {
    if (!o.path || o.path.includes('\0')) throw new EdgeError('JOYSTICK_BAD_PATH', 'joystick path required');
    this.backoff = new Backoff({ initialMs: o.backoff?.initialMs ?? 250, maxMs: o.backoff?.maxMs ?? 5000 });
  }

  onEvent(cb: (e: InputEvent) => void): void {
    this.evL.push(cb);
  }
  onLost(cb: (why: string) => void): void {
    this.lostL.push(cb);
  }
  onOpen(cb: () => void): void {
    this.openL.push(cb);
  }

  get isOpen(): boolean {
    return this.fd !== null;
  }

  start(): void {
    if (this.fd === null && !this.timer && !this.closed) this.open();
  }

  private open(): void {
    this.timer = null;
    if (this.closed) return;
    fs.open(this.o.path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK, (err, fd) => {
      if (this.closed) {
        if (!err) fs.close(fd, () => {});
        return;
      }
      if (err) {
        this.c.openFailures++;
        this.lastError = `open: ${err.code ?? err.message}`;
        this.timer = setTimeout(() => this.open(), this.backoff.next(Date.now()));
        return;
      }
      this.fd = fd;
      this.rest = Buffer.alloc(0);
      this.gotData = false;
      this.c.opens++;
      this.backoff.healthy(Date.now());
      for (const cb of this.openL) cb();
      this.read();
    });
  }

  private read(): void {
    this.timer = null;
    const fd = this.fd;
    if (fd === null || this.closed) return;
    fs.read(fd, this.buf, 0, READ_CHUNK, null, (err, n) => {
      if (this.fd !== fd) return;
      if (err) {
        if (err.code === 'EAGAIN' || err.code === 'EWOULDBLOCK') {
          this.timer = setTimeout(() => this.read(), this.o.pollMs ?? 10);
          return;
        }
        this.lost(`read: ${err.code ?? err.message}`);
        return;
      }
      if (n === 0) {
        // EOF: a fifo whose writer left (or none came yet). Lost only once data had flowed.
        if (this.gotData) this.lost('end of stream');
        else this.timer = setTimeout(() => this.read(), this.o.pollMs ?? 10);
        return;
      }
      this.gotData = true;
      this.c.bytes += n;
      this.feed(Buffer.from(this.buf.subarray(0, n)));
      setImmediate(() => this.read());
    });
  }

  private feed(b: Buffer): void {
    const buf = this.rest.length ? Buffer.concat([this.rest, b]) : b;
    const r = this.o.format === 'evdev' ? parseEvdevEvents(buf, this.o.evdevEventSize ?? 24, this.o.evdevRanges) : parseJsEvents(buf);
    this.rest = r.rest;
    for (const e of r.events) {
      this.c.events++;
      for (const cb of this.evL) {
        try {
          cb(e);
        } catch {
          // a listener's throw must not stop input
        }
      }
    }
  }

  private lost(why: string): void {
    const fd = this.fd;
    this.fd = null;
    if (fd !== null) fs.close(fd, () => {});
    this.c.losses++;
    this.lastError = why;
    for (const cb of this.lostL) cb(why);
    if (!this.closed) this.timer = setTimeout(() => this.open(), this.backoff.next(Date.now()));
  }

  stats(): DriverStats {
    return { path: this.o.path, open: this.fd !== null, ...this.c, lastError: this.lastError };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const fd = this.fd;
    this.fd = null;
    if (fd !== null) fs.close(fd, () => {});
  }
}
