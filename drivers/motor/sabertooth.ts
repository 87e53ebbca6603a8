// Sabertooth packetized serial, pure (no I/O). Dimension Engineering Sabertooth 2x12/2x25/2x32
// "Packetized Serial" mode: 4 bytes address (128..135), command, data (0..127), checksum =
// (address + command + data) & 0x7F. Commands used: 0/1 motor 1 forward/backward, 4/5 motor 2
// forward/backward (data = speed 0..127), 14 serial timeout (data × 100 ms; 0 = off): the controller
// itself stops both motors when no valid packet arrived within that time — the hardware dead-man.

import { EdgeError } from '../../runtime/engine/api.js';

export const SABERTOOTH_PACKET_LEN = 4;
export const SABERTOOTH_MAX = 127;

export const CMD = {
  M1_FORWARD: 0,
  M1_BACKWARD: 1,
  MIN_VOLTAGE: 2,
  MAX_VOLTAGE: 3,
  M2_FORWARD: 4,
  M2_BACKWARD: 5,
  SERIAL_TIMEOUT: 14,
  BAUD: 15,
} as const;

export interface SabertoothPacket {
  address: number;
  command: number;
  data: number;
}

export type SabertoothCommand =
  | { type: 'motor'; motor: 1 | 2; speed: number } // speed -127..127
  | { type: 'timeout'; ms: number }
  | { type: 'other'; command: number; data: number };

function checkAddress(address: number): void {
  if (!Number.isInteger(address) || address < 128 || address > 135) {
    throw new EdgeError('SABERTOOTH_BAD_ADDRESS', `Sabertooth address must be 128..135, got ${address}`, { address });
  }
}

export function encodePacket(p: SabertoothPacket): Buffer {
  return Buffer.from([p.address & 0xff, p.command & 0x7f, p.data & 0x7f, (p.address + p.command + p.data) & 0x7f]);
}

/** [-1,1] → command + 0..127 for motor 1 or 2. */
export function encodeMotor(address: number, motor: 1 | 2, speed: number): Buffer {
  checkAddress(address);
  const s = Number.isFinite(speed) ? Math.max(-1, Math.min(1, speed)) : 0;
  const data = Math.round(Math.abs(s) * SABERTOOTH_MAX);
  const fwd = motor === 1 ? CMD.M1_FORWARD : CMD.M2_FORWARD;
  const back = motor === 1 ? CMD.M1_BACKWARD : CMD.M2_BACKWARD;
  return encodePacket({ address, command: s < 0 ? back : fwd, data });
}

/** Serial timeout in ms (rounded up to the device's 100 ms unit, max 12.7 s; 0 disables). */
export function encodeSerialTimeout(address: number, ms: number): Buffer {
  checkAddress(address);
  const data = Math.max(0, Math.min(127, Math.ceil(ms / 100)));
  return encodePacket({ address, command: CMD.SERIAL_TIMEOUT, data });
}

export function parsePacket(b: Uint8Array): SabertoothPacket {
  if (b.length !== SABERTOOTH_PACKET_LEN) {
    throw new EdgeError('SABERTOOTH_BAD_PACKET', `packet must be 4 bytes, got ${b.length}`);
  }
  const [address, command, data, checksum] = [b[0]!, b[1]!, b[2]!, b[3]!];
  if (address < 128 || address > 135) throw new EdgeError('SABERTOOTH_BAD_PACKET', `bad address ${address}`);
  if (command > 127 || data > 127) throw new EdgeError('SABERTOOTH_BAD_PACKET', `command/data above 127`);
  const sum = (address + command + data) & 0x7f;
  if (sum !== checksum) throw new EdgeError('SABERTOOTH_BAD_CHECKSUM', `checksum ${checksum} != ${sum}`);
  return { address, command, data };
}

export function decodeCommand(p: SabertoothPacket): SabertoothCommand {
  switch (p.command) {
    case CMD.M1_FORWARD:
      return { type: 'motor', motor: 1, speed: p.data };
    case CMD.M1_BACKWARD:
      return { type: 'motor', motor: 1, speed: -p.data };
    case CMD.M2_FORWARD:
      return { type: 'motor', motor: 2, speed: p.data };
    case CMD.M2_BACKWARD:
      return { type: 'motor', motor: 2, speed: -p.data };
    case CMD.SERIAL_TIMEOUT:
      return { type: 'timeout', ms: p.data * 100 };
    default:
      return { type: 'other', command: p.command, data: p.data };
  }
}

/** Stream decoder: resyncs on an address byte (>= 128); holds at most 3 bytes between calls. */
export class SabertoothDecoder {
  private buf: Buffer = Buffer.alloc(0);
  readonly counters = { packets: 0, badChecksum: 0, skippedBytes: 0 };

  push(chunk: Uint8Array): SabertoothPacket[] {
    const out: SabertoothPacket[] = [];
    const b = this.buf.length ? Buffer.concat([this.buf, chunk]) : Buffer.from(chunk);
    let i = 0;
    while (b.length - i >= SABERTOOTH_PACKET_LEN) {
      const a = b[i]!;
      if (a < 128 || a > 135) {
        i++;
        this.counters.skippedBytes++;
        continue;
      }
      try {
        out.push(parsePacket(b.subarray(i, i + SABERTOOTH_PACKET_LEN)));
        this.counters.packets++;
        i += SABERTOOTH_PACKET_LEN;
      } catch {
        this.counters.badChecksum++;
        i++;
      }
    }
    this.buf = Buffer.from(b.subarray(i));
    return out;
  }
}
