// pang query options (pang-protocol.md, seed 001). Pure: a URL in, options or a refusal out.
// Ranges out of bounds get the documented default and a warning (logged once per session);
// values that cannot name a resource (channel, labels) or an unknown codec are refusals (4400).

export type PangRole = 'pub' | 'sub' | 'meb' | 'ctl';
export const PANG_ROLES: readonly PangRole[] = ['pub', 'sub', 'meb', 'ctl'];
export type PangCodec = 'jpeg' | 'vp8' | 'h264';

export interface PangOptions {
  role: PangRole;
  channel: { kind: 'id'; id: string } | { kind: 'instant'; name: string };
  source: string;
  track: string;
  mode: 'single' | 'bundle';
  style: 'mono' | 'multi';
  /** Idle seconds before the session is closed. */
  timeout: number;
  key: string | undefined;
  mime: string | undefined;
  /** Buffer slots (Moth). Accepted and range-checked; the engine bounds by bytes. */
  len: number;
  total: number | undefined;
  order: number | undefined;
  wait: 'force' | undefined;
  codec: PangCodec | undefined;
  /**
   * moth-edge extension (issue 14): a publisher asking `ack=1` gets `REXTXACK{"id":"rx","received":N}`
   * texts back, N = binary messages this server took from the session. A Moth ignores the option.
   */
  ack: boolean;
}

export type ParseResult =
  | { ok: true; options: PangOptions; warnings: string[] }
  | { ok: false; code: 4400; reason: string };

const LABEL = /^[A-Za-z0-9_.-]{1,64}$/;
const MAX_MIME = 512;
const MAX_KEY = 256;

function intIn(raw: string | null, min: number, max: number): number | null {
  if (raw === null || !/^-?\d{1,10}$/.test(raw)) return null;
  const n = Number(raw);
  return n >= min && n <= max ? n : null;
}

/** Parse `/pang/ws/<role>?…`. `path` is the URL path, `query` its search params. */
export function parsePangOptions(path: string, query: URLSearchParams): ParseResult {
  const m = /^\/pang\/ws\/([a-z]+)\/?$/.exec(path);
  const role = m?.[1] as PangRole | undefined;
  if (!role || !PANG_ROLES.includes(role)) {
    return { ok: false, code: 4400, reason: `unknown pang endpoint ${path.slice(0, 64)}` };
  }
  const warnings: string[] = [];
  const fail = (reason: string): ParseResult => ({ ok: false, code: 4400, reason });

  const ch = query.get('channel');
  if (!ch) return fail('channel is required (channel=<xid> or channel=instant&name=<name>)');
  let channel: PangOptions['channel'];
  if (ch === 'instant') {
    const name = query.get('name');
    if (!name || !LABEL.test(name)) return fail('channel=instant needs name=<1..64 of A-Z a-z 0-9 _ . ->');
    channel = { kind: 'instant', name };
  } else {
    if (!LABEL.test(ch)) return fail('channel must be a 20-char xid (or a configured channel name)');
    channel = { kind: 'id', id: ch };
  }

  const label = (k: 'source' | 'track', def: string): string | null => {
    const v = query.get(k);
    if (v === null || v === '') return def;
    return LABEL.test(v) ? v : null;
  };
  const source = label('source', 'base');
  if (source === null) return fail('source must be 1..64 of A-Z a-z 0-9 _ . -');
  const track = label('track', 'video');
  if (track === null) return fail('track must be 1..64 of A-Z a-z 0-9 _ . -');

  const enumOpt = <T extends string>(k: string, allowed: readonly T[], def: T): T => {
    const v = query.get(k);
    if (v === null || v === '') return def;
    if ((allowed as readonly string[]).includes(v)) return v as T;
    warnings.push(`${k}=${v.slice(0, 32)} is not one of ${allowed.join('|')}; using ${def}`);
    return def;
  };
  const mode = enumOpt('mode', ['single', 'bundle'] as const, 'single');
  const style = enumOpt('style', ['mono', 'multi'] as const, 'mono');

  const rangeOpt = (k: string, min: number, max: number, def: number): number => {
    const raw = query.get(k);
    if (raw === null || raw === '') return def;
    const n = intIn(raw, min, max);
    if (n === null) {
      warnings.push(`${k}=${raw.slice(0, 32)} is outside ${min}..${max}; using ${def}`);
      return def;
    }
    return n;
  };
  const timeout = rangeOpt('timeout', 1, 3600, 30);
  const len = rangeOpt(query.has('len') ? 'len' : 'buf_len', 2, 10, 5);

  let total: number | undefined;
  let order: number | undefined;
  if (query.has('total')) {
    const t = intIn(query.get('total'), 2, 10);
    if (t === null) warnings.push(`total=${query.get('total')?.slice(0, 32)} is outside 2..10; ignored`);
    else {
      total = t;
      const o = intIn(query.get('order'), 0, t - 1);
      if (o === null) {
        warnings.push(`order must be 0..${t - 1} when total=${t}; using 0`);
        order = 0;
      } else order = o;
    }
  } else if (query.has('order')) {
    warnings.push('order without total is ignored');
  }

  const w = query.get('wait');
  let wait: 'force' | undefined;
  if (w !== null && w !== '') {
    if (w === 'force') wait = 'force';
    else warnings.push(`wait=${w.slice(0, 32)} is not "force"; ignored`);
  }

  let codec: PangCodec | undefined;
  const c = query.get('codec');
  if (c !== null && c !== '') {
    const lc = c.toLowerCase();
    if (lc !== 'jpeg' && lc !== 'vp8' && lc !== 'h264') return fail(`codec=${c.slice(0, 32)} is not one of jpeg|vp8|h264`);
    codec = lc;
  }

  const a = query.get('ack');
  let ack = false;
  if (a !== null && a !== '') {
    if (a === '1' || a === 'true') ack = true;
    else if (a !== '0' && a !== 'false') warnings.push(`ack=${a.slice(0, 32)} is not 1 or 0; ignored`);
  }

  const key = query.get('key') ?? undefined;
  if (key !== undefined && key.length > MAX_KEY) return fail(`key longer than ${MAX_KEY} characters`);
  const mime = query.get('mime') ?? undefined;
  if (mime !== undefined && (mime.length > MAX_MIME || !/^[\x20-\x7e]+$/.test(mime))) {
    return fail(`mime must be printable ASCII up to ${MAX_MIME} characters`);
  }

  return {
    ok: true,
    options: { role, channel, source, track, mode, style, timeout, key: key || undefined, mime: mime || undefined, len, total, order, wait, codec, ack },
    warnings,
  };
}
