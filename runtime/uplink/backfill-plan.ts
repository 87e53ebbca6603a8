// Pure pieces of the store-and-forward backfill (issue 8): the `ts+` wire form, which recorded
// records were never delivered, and the XCMD range request. No I/O.
//
// Wire: Moth viewers read a MIME subtype prefix `ts+` as "each binary message starts with an
// 8-byte timestamp". moth-edge writes it as an unsigned 64-bit big-endian count of MICROSECONDS
// since the Unix epoch: the record's original capture wallclock, so a viewer places it in time.
import { mergeSpans, type Span } from './spans.js';

export const TS_PREFIX_BYTES = 8;

/** `application/json;x=1` → `application/ts+json;x=1` (idempotent). */
export function tsMime(mime: string): string {
  const semi = mime.indexOf(';');
  const base = semi < 0 ? mime : mime.slice(0, semi);
  const params = semi < 0 ? '' : mime.slice(semi);
  const slash = base.indexOf('/');
  if (slash < 0) return `application/ts+${base}${params}`;
  const sub = base.slice(slash + 1);
  if (sub.startsWith('ts+')) return mime;
  return `${base.slice(0, slash)}/ts+${sub}${params}`;
}

export function tsPrefixed(wallMs: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(TS_PREFIX_BYTES + payload.length);
  const us = Number.isFinite(wallMs) && wallMs > 0 ? BigInt(Math.round(wallMs * 1000)) : 0n;
  out.writeBigUInt64BE(us, 0);
  out.set(payload, TS_PREFIX_BYTES);
  return out;
}

export class TsPrefixError extends Error {
  readonly code = 'TS_PREFIX';
}

/** Split a `ts+` message; throws TsPrefixError on a message shorter than the prefix. */
export function parseTsPrefixed(msg: Uint8Array): { wallUs: bigint; wallMs: number; payload: Buffer } {
  if (msg.length < TS_PREFIX_BYTES) throw new TsPrefixError(`message of ${msg.length} B is shorter than the 8-byte timestamp`);
  const b = Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength);
  const wallUs = b.readBigUInt64BE(0);
  return { wallUs, wallMs: Number(wallUs) / 1000, payload: b.subarray(TS_PREFIX_BYTES) };
}

/** Membership test over delivered spans (closed intervals): a sorted, merged list + binary search. */
export class Coverage {
  private readonly spans: Span[];
  constructor(spans: Span[]) {
    this.spans = mergeSpans(spans);
  }
  covers(t: number): boolean {
    let lo = 0;
    let hi = this.spans.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const s = this.spans[mid]!;
      if (t < s.from) hi = mid - 1;
      else if (t > s.to) lo = mid + 1;
      else return true;
    }
    return false;
  }
  /** One delivered span holds all of [a, b]. */
  coversRange(a: number, b: number): boolean {
    for (const s of this.spans) if (s.from <= a && s.to >= b) return true;
    return false;
  }
  get size(): number {
    return this.spans.length;
  }
}

/**
 * Records of a track still owed upstream: inside [from, to] and covered by no delivered span
 * (live or backfill). Keeps file order (capture order). `limit` bounds one batch.
 */
export function undelivered<T extends { wallclock: number }>(records: Iterable<T>, delivered: Coverage, from: number, to: number, limit = Infinity): T[] {
  const isOwed = owedIn(delivered, from, to);
  const out: T[] = [];
  for (const r of records) {
    if (!isOwed(r)) continue;
    out.push(r);
    if (out.length >= limit) break;
  }
  return out;
}

/** The test `undelivered` applies to each record: inside [from, to] and in no delivered span. */
export function owedIn(delivered: Coverage, from: number, to: number): (r: { wallclock: number }) => boolean {
  return (r) => r.wallclock >= from && r.wallclock <= to && !delivered.covers(r.wallclock);
}

export interface RangeRequest {
  /** Request id echoed in XACK/XERR (1..64 chars). */
  id: string;
  /** Local track `channel/source/track`. */
  track: string;
  fromMs: number;
  toMs: number;
}

export type RangeParse = { ok: true; req: RangeRequest } | { ok: false; id: string; reason: string };

const TRACK_RE = /^[A-Za-z0-9_.-]{1,64}\/[A-Za-z0-9_.-]{1,64}\/[A-Za-z0-9_.-]{1,64}$/;
const ID_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
/** One request covers at most 24 h: a bigger one is split by the asker. */
export const MAX_RANGE_MS = 24 * 3600_000;

function time(v: unknown): number | null {
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'string' && v.length <= 40) {
    const n = /^\d{1,16}$/.test(v) ? Number(v) : Date.parse(v);
    return Number.isFinite(n) ? n : null;
  }
  return null;
}

/**
 * A range request as a JSON object: {"op":"range","id"|"req_id","track","from","to"}; from/to
 * epoch ms or ISO 8601. Used for `REXTXCMD{…}` on a pulled control track and for the local ctl
 * request type `backfill_range` (data holds the same fields).
 */
export function parseRangeRequest(o: unknown): RangeParse {
  if (o === null || typeof o !== 'object' || Array.isArray(o)) return { ok: false, id: '', reason: 'request must be a JSON object' };
  const j = o as Record<string, unknown>;
  const rawId = j.id ?? j.req_id;
  const id = typeof rawId === 'string' && ID_RE.test(rawId) ? rawId : typeof rawId === 'number' && Number.isSafeInteger(rawId) ? String(rawId) : '';
  if (!id) return { ok: false, id: '', reason: 'id: 1..64 of A-Z a-z 0-9 _ . : -' };
  if (j.op !== undefined && j.op !== 'range' && j.op !== 'backfill_range') return { ok: false, id, reason: `unknown op` };
  if (typeof j.track !== 'string' || !TRACK_RE.test(j.track)) return { ok: false, id, reason: 'track must be channel/source/track' };
  const from = time(j.from);
  const to = time(j.to);
  if (from === null || to === null) return { ok: false, id, reason: 'from and to must be epoch ms or ISO 8601' };
  if (from > to) return { ok: false, id, reason: 'from must not be after to' };
  if (to - from > MAX_RANGE_MS) return { ok: false, id, reason: 'range longer than 24 h' };
  return { ok: true, req: { id, track: j.track, fromMs: from, toMs: to } };
}

export const XCMD = 'REXTXCMD';
export const XACK = 'REXTXACK';
export const XERR = 'REXTXERR';

/** Parse a `REXTXCMD<json>` text; null when the text is not an XCMD at all. */
export function parseXcmd(text: string): RangeParse | null {
  if (!text.startsWith(XCMD)) return null;
  if (text.length > 4096) return { ok: false, id: '', reason: 'command over 4096 bytes' };
  let j: unknown;
  try {
    j = JSON.parse(text.slice(XCMD.length));
  } catch {
    return { ok: false, id: '', reason: 'command is not JSON' };
  }
  return parseRangeRequest(j);
}

export function xack(id: string, data: Record<string, unknown>): string {
  return `${XACK}${JSON.stringify({ id, ...data })}`;
}

export function xerr(id: string, error: string): string {
  return `${XERR}${JSON.stringify({ id, error })}`;
}
