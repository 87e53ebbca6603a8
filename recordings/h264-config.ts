// Just enough H.264 to build an MP4 track: find the SPS in an Annex-B access unit and read the
// codec string and picture size. Hostile input gives null, never a throw. The parsing itself is
// the engine's shared H.264 module (runtime/engine/h264.ts, part of its public surface).

import { nalUnits, NAL, parseSps as parseSpsNal } from '../runtime/engine/h264.js';

export interface AvcInfo {
  /** RFC 6381 codec string, e.g. avc1.64001f */
  codec: string;
  width: number;
  height: number;
}

function buf(u8: Uint8Array): Buffer {
  return Buffer.isBuffer(u8) ? u8 : Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

/** NAL unit payloads (without start codes) of an Annex-B buffer. */
export function annexBNals(au: Uint8Array): Buffer[] {
  return nalUnits(buf(au));
}

/** True when the access unit holds an IDR slice (type 5). */
export function hasIdr(au: Uint8Array): boolean {
  return annexBNals(au).some((n) => (n[0]! & 0x1f) === NAL.IDR);
}

/** True when the buffer holds at least one NAL unit that is a slice (1..5). */
export function hasSlice(au: Uint8Array): boolean {
  return annexBNals(au).some((n) => {
    const t = n[0]! & 0x1f;
    return t >= 1 && t <= 5;
  });
}

export function parseSps(nal: Uint8Array): AvcInfo | null {
  try {
    const s = parseSpsNal(buf(nal));
    return { codec: `avc1.${s.profileLevelId}`, width: s.width, height: s.height };
  } catch {
    return null; // truncated or hostile SPS: the caller counts a malformed frame
  }
}

/** The SPS info of an access unit, or null when it carries none (or a broken one). */
export function avcInfoOf(au: Uint8Array): AvcInfo | null {
  const sps = annexBNals(au).find((n) => (n[0]! & 0x1f) === NAL.SPS);
  return sps ? parseSps(sps) : null;
}
