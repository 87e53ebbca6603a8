// Channel ids in the rs/xid shape Moth uses: 12 bytes written as 20 chars of base32hex (0-9a-v).
// Ids of configured and ingest channels are derived from their name, so the same config gives the
// same ids after a restart (recordings stay in one folder, links keep their URLs).
import { createHash, randomBytes } from 'node:crypto';

const ALPHABET = '0123456789abcdefghijklmnopqrstuv';
export const XID_RE = /^[0-9a-v]{20}$/;

/** xid's text form of 12 bytes: 96 bits, big-endian, padded with 4 zero bits to 20 chars. */
export function encodeXid(bytes: Uint8Array): string {
  if (bytes.length !== 12) throw new RangeError('an xid is 12 bytes');
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  n <<= 4n;
  let s = '';
  for (let i = 19; i >= 0; i--) s += ALPHABET[Number((n >> BigInt(i * 5)) & 31n)];
  return s;
}

/** A fresh random channel id (instant channels without a name to derive from). */
export function randomChannelId(): string {
  return encodeXid(randomBytes(12));
}

/**
 * The stable id of a channel known by name. `scope` keeps a static channel and an instant channel
 * of the same name apart.
 */
export function channelIdFor(name: string, scope: 'static' | 'instant' = 'static'): string {
  return encodeXid(createHash('sha256').update(`moth-edge channel ${scope}\0${name}`).digest().subarray(0, 12));
}
