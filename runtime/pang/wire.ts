// Pure pieces of the pang wire contract shared by the server and clients.

import { mimeBase } from '../engine/api.js';
import { isKeyframe } from '../engine/h264.js';

/** Close codes (pang-protocol.md, moth-edge rule) so tools can tell why. */
export const CLOSE = {
  BAD_REQUEST: 4400,
  BAD_KEY: 4401,
  GONE: 4404,
  IDLE: 4408,
  BUSY: 4409,
  CLOSED_BY_CTL: 4410,
  TOO_MANY: 4429,
  GOING_AWAY: 1001,
} as const;

const MIME_RE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,127}(\s*;.*)?$/i;

/** True when a plain text message is a MIME (what a publisher sends first and re-sends). */
export function looksLikeMime(s: string): boolean {
  return s.length <= 512 && MIME_RE.test(s) && !/[\r\n]/.test(s);
}

/** `REXTMIME<mime>` → { head: 'MIME', body }; undefined for a text without the REXT prefix. */
export function parseRext(s: string): { head: string; body: string } | undefined {
  if (s.length < 8 || !s.startsWith('REXT')) return undefined;
  return { head: s.slice(4, 8), body: s.slice(8) };
}

/** The MIME a text message sets, if it sets one. */
export function mimeFromText(s: string): string | undefined {
  const r = parseRext(s);
  if (r) return r.head === 'MIME' && looksLikeMime(r.body) ? r.body : undefined;
  return looksLikeMime(s) ? s : undefined;
}

/** Keyframe-ness of a published binary message under a MIME. */
export function detectKey(mime: string | undefined, data: Buffer): boolean {
  if (!mime) return true;
  const base = mimeBase(mime);
  if (base === 'video/h264') return isKeyframe(data);
  if (base === 'video/vp8') return data.length > 0 && (data[0]! & 1) === 0;
  return true;
}

/** `REXTXACK{"id":"rx","received":N}`: the relay got N binary messages of this session. */
export function parseDeliveryAck(text: string): number | null {
  if (!text.startsWith('REXTXACK{') || text.length > 256) return null;
  try {
    const j = JSON.parse(text.slice(8)) as { id?: unknown; received?: unknown };
    return j.id === 'rx' && typeof j.received === 'number' && Number.isSafeInteger(j.received) && j.received >= 0 ? j.received : null;
  } catch {
    return null;
  }
}

export function deliveryAckText(received: number): string {
  return `REXTXACK${JSON.stringify({ id: 'rx', received })}`;
}
