// Pelco-D framing, pure (no I/O).
//
// A frame is 7 bytes: FF addr cmd1 cmd2 data1 data2 checksum, checksum = (addr+cmd1+cmd2+data1+data2) mod 256.
// cmd2 bits: 0x02 right, 0x04 left, 0x08 up, 0x10 down, 0x20 zoom tele, 0x40 zoom wide.
// data1 = pan speed 0x00..0x3F (0x40 = turbo, not used), data2 = tilt speed 0x00..0x3F.
// Extended commands (cmd1 = 0, bit 0 of cmd2 set): 0x03 set preset, 0x05 clear preset, 0x07 go to preset
// (data2 = preset 1..255); 0x51/0x53/0x55 query pan/tilt/zoom position, answered by 0x59/0x5B/0x5D with
// data1:data2 = position (pan/tilt in 1/100 degree, zoom in device units).

import { EdgeError } from '../../runtime/engine/api.js';
import { clampUnit, type PtzVelocity } from './types.js';

export const PELCO_D_SYNC = 0xff;
export const PELCO_D_FRAME_LEN = 7;
export const PELCO_D_MAX_SPEED = 0x3f;

export type PelcoQuery = 'pan' | 'tilt' | 'zoom';
const QUERY_CMD: Record<PelcoQuery, number> = { pan: 0x51, tilt: 0x53, zoom: 0x55 };
const RESPONSE_CMD: Record<number, PelcoQuery> = { 0x59: 'pan', 0x5b: 'tilt', 0x5d: 'zoom' };

export type PelcoDCommand =
  | { type: 'move'; pan: number; tilt: number; zoom: -1 | 0 | 1 } // pan/tilt: signed speed -63..63
  | { type: 'stop' }
  | { type: 'preset'; op: 'set' | 'clear' | 'goto'; id: number }
  | { type: 'query'; what: PelcoQuery }
  | { type: 'response'; what: PelcoQuery; value: number }
  | { type: 'other'; cmd1: number; cmd2: number; data1: number; data2: number };

export interface PelcoDFrame {
  address: number;
  cmd1: number;
  cmd2: number;
  data1: number;
  data2: number;
}

function checkAddress(address: number): void {
  if (!Number.isInteger(address) || address < 1 || address > 255) {
    throw new EdgeError('PELCO_BAD_ADDRESS', `Pelco-D address must be 1..255, got ${address}`, { address });
  }
}

export function encodeFrame(f: PelcoDFrame): Buffer {
  const b = Buffer.from([PELCO_D_SYNC, f.address & 0xff, f.cmd1 & 0xff, f.cmd2 & 0xff, f.data1 & 0xff, f.data2 & 0xff, 0]);
  b[6] = (b[1]! + b[2]! + b[3]! + b[4]! + b[5]!) & 0xff;
  return b;
}

/** [-1,1] → 0..0x3F, with any non-zero input giving at least speed 1 (a slow nudge must move). */
export function speedByte(v: number): number {
  const a = Math.abs(clampUnit(v));
  if (a === 0) return 0;
  return Math.max(1, Math.round(a * PELCO_D_MAX_SPEED));
}

export function encodeMove(address: number, v: PtzVelocity): Buffer {
  checkAddress(address);
  let cmd2 = 0;
  const pan = clampUnit(v.pan);
  const tilt = clampUnit(v.tilt);
  const zoom = clampUnit(v.zoom);
  if (pan > 0) cmd2 |= 0x02;
  else if (pan < 0) cmd2 |= 0x04;
  if (tilt > 0) cmd2 |= 0x08;
  else if (tilt < 0) cmd2 |= 0x10;
  // Pelco-D zoom has no speed: any deflection beyond a small threshold zooms.
  if (zoom > 0.05) cmd2 |= 0x20;
  else if (zoom < -0.05) cmd2 |= 0x40;
  return encodeFrame({ address, cmd1: 0, cmd2, data1: speedByte(pan), data2: speedByte(tilt) });
}

export function encodeStop(address: number): Buffer {
  checkAddress(address);
  return encodeFrame({ address, cmd1: 0, cmd2: 0, data1: 0, data2: 0 });
}

export function encodePreset(address: number, op: 'set' | 'clear' | 'goto', id: number): Buffer {
  checkAddress(address);
  if (!Number.isInteger(id) || id < 1 || id > 255) {
    throw new EdgeError('PELCO_BAD_PRESET', `Pelco-D preset must be 1..255, got ${id}`, { id });
  }
  const cmd2 = op === 'set' ? 0x03 : op === 'clear' ? 0x05 : 0x07;
  return encodeFrame({ address, cmd1: 0, cmd2, data1: 0, data2: id });
}

export function encodeQuery(address: number, what: PelcoQuery): Buffer {
  checkAddress(address);
  return encodeFrame({ address, cmd1: 0, cmd2: QUERY_CMD[what], data1: 0, data2: 0 });
}

export function encodeResponse(address: number, what: PelcoQuery, value: number): Buffer {
  const cmd2 = what === 'pan' ? 0x59 : what === 'tilt' ? 0x5b : 0x5d;
  const v = Math.max(0, Math.min(0xffff, Math.round(value)));
  return encodeFrame({ address, cmd1: 0, cmd2, data1: v >> 8, data2: v & 0xff });
}

/** Parse exactly one 7-byte frame. Throws EdgeError PELCO_BAD_FRAME / PELCO_BAD_CHECKSUM. */
export function parseFrame(b: Uint8Array): PelcoDFrame {
  if (b.length !== PELCO_D_FRAME_LEN) {
    throw new EdgeError('PELCO_BAD_FRAME', `Pelco-D frame must be 7 bytes, got ${b.length}`);
  }
  if (b[0] !== PELCO_D_SYNC) throw new EdgeError('PELCO_BAD_FRAME', `Pelco-D frame must start with 0xFF, got ${b[0]}`);
  const sum = (b[1]! + b[2]! + b[3]! + b[4]! + b[5]!) & 0xff;
  if (sum !== b[6]) {
    throw new EdgeError('PELCO_BAD_CHECKSUM', `Pelco-D checksum ${b[6]} != ${sum}`, { expected: sum, got: b[6] });
  }
  return { address: b[1]!, cmd1: b[2]!, cmd2: b[3]!, data1: b[4]!, data2: b[5]! };
}

/** What a frame means. Never throws. */
export function decodeCommand(f: PelcoDFrame): PelcoDCommand {
  const { cmd1, cmd2, data1, data2 } = f;
  if (cmd1 === 0 && (cmd2 & 0x01) === 1) {
    if (cmd2 === 0x03) return { type: 'preset', op: 'set', id: data2 };
    if (cmd2 === 0x05) return { type: 'preset', op: 'clear', id: data2 };
    if (cmd2 === 0x07) return { type: 'preset', op: 'goto', id: data2 };
    if (cmd2 === 0x51) return { type: 'query', what: 'pan' };
    if (cmd2 === 0x53) return { type: 'query', what: 'tilt' };
    if (cmd2 === 0x55) return { type: 'query', what: 'zoom' };
    const r = RESPONSE_CMD[cmd2];
    if (r) return { type: 'response', what: r, value: (data1 << 8) | data2 };
    return { type: 'other', cmd1, cmd2, data1, data2 };
  }
  if (cmd1 === 0 && cmd2 === 0 && data1 === 0 && data2 === 0) return { type: 'stop' };
  if (cmd1 !== 0 || (cmd2 & 0x81) !== 0) return { type: 'other', cmd1, cmd2, data1, data2 };
  const right = (cmd2 & 0x02) !== 0;
  const left = (cmd2 & 0x04) !== 0;
  const up = (cmd2 & 0x08) !== 0;
  const down = (cmd2 & 0x10) !== 0;
  const tele = (cmd2 & 0x20) !== 0;
  const wide = (cmd2 & 0x40) !== 0;
  const ps = Math.min(data1, PELCO_D_MAX_SPEED);
  const ts = Math.min(data2, PELCO_D_MAX_SPEED);
  return {
    type: 'move',
    pan: right === left ? 0 : right ? ps : -ps,
    tilt: up === down ? 0 : up ? ts : -ts,
    zoom: tele === wide ? 0 : tele ? 1 : -1,
  };
}

export interface PelcoDecoderStats {
  frames: number;
  badChecksum: number;
  /** Bytes skipped while looking for a sync byte. */
  skippedBytes: number;
}

/**
 * Stream decoder: feed arbitrary chunks, get whole valid frames. Resynchronises on 0xFF after garbage
 * or a bad checksum. Holds at most 6 bytes between calls, whatever the input.
 */
export class PelcoDDecoder {
  private buf: Buffer = Buffer.alloc(0);
  readonly counters: PelcoDecoderStats = { frames: 0, badChecksum: 0, skippedBytes: 0 };

  push(chunk: Uint8Array): PelcoDFrame[] {
    const out: PelcoDFrame[] = [];
    let b = this.buf.length ? Buffer.concat([this.buf, chunk]) : Buffer.from(chunk);
    let i = 0;
    while (b.length - i >= PELCO_D_FRAME_LEN) {
      if (b[i] !== PELCO_D_SYNC) {
        i++;
        this.counters.skippedBytes++;
        continue;
      }
      try {
        out.push(parseFrame(b.subarray(i, i + PELCO_D_FRAME_LEN)));
        this.counters.frames++;
        i += PELCO_D_FRAME_LEN;
      } catch {
        // A bad checksum: this 0xFF was not a frame start (or the frame is damaged); look further.
        this.counters.badChecksum++;
        i++;
      }
    }
    // Keep the unconsumed tail (< 7 bytes) from the last sync byte on.
    let rest = b.subarray(i);
    const sync = rest.indexOf(PELCO_D_SYNC);
    if (sync < 0) {
      this.counters.skippedBytes += rest.length;
      rest = Buffer.alloc(0);
    } else if (sync > 0) {
      this.counters.skippedBytes += sync;
      rest = rest.subarray(sync);
    }
    this.buf = Buffer.from(rest);
    b = Buffer.alloc(0);
    return out;
  }

  get pendingBytes(): number {
    return this.buf.length;
  }
}
