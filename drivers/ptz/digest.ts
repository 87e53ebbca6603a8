// HTTP Digest authentication (RFC 7616, with RFC 2617 compatibility), pure (no I/O).
// Client side: parse a WWW-Authenticate challenge, build the Authorization header (qop=auth with
// nc/cnonce; MD5, MD5-sess, SHA-256, SHA-256-sess). Server side (used by the ISAPI simulator and
// tests): parse an Authorization header and verify it. qop=auth-int is not supported on purpose:
// ISAPI devices offer "auth", and we never silently degrade to Basic.

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { EdgeError } from '../../runtime/engine/api.js';

export type DigestAlgorithm = 'MD5' | 'MD5-sess' | 'SHA-256' | 'SHA-256-sess';

export interface DigestChallenge {
  realm: string;
  nonce: string;
  qop: string[];
  algorithm: DigestAlgorithm;
  opaque?: string;
  stale: boolean;
}

const MAX_HEADER = 4096;

/** Split `k=v, k="v, with comma"` into pairs. Bounded by MAX_HEADER. */
export function parseAuthParams(s: string): Record<string, string> {
  if (s.length > MAX_HEADER) throw new EdgeError('DIGEST_BAD_HEADER', `auth header longer than ${MAX_HEADER}`);
  const out: Record<string, string> = {};
  const re = /\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*(?:,|$)/gy;
  let m: RegExpExecArray | null;
  let last = 0;
  while ((m = re.exec(s)) !== null) {
    if (m[0].length === 0) break;
    out[m[1]!.toLowerCase()] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3]!;
    last = re.lastIndex;
  }
  if (s.slice(last).trim().length > 0) throw new EdgeError('DIGEST_BAD_HEADER', 'unparsable auth parameters');
  return out;
}

/** Pick the Digest challenge out of one or several WWW-Authenticate values. */
export function parseChallenge(headers: string | string[] | undefined): DigestChallenge {
  const list = headers === undefined ? [] : Array.isArray(headers) ? headers : [headers];
  const digests = list.filter((h) => /^\s*Digest\s/i.test(h));
  if (digests.length === 0) {
    const schemes = list.map((h) => h.trim().split(/\s/, 1)[0]).join(',') || 'none';
    throw new EdgeError('DIGEST_NOT_OFFERED', `server offers no Digest challenge (offers: ${schemes}); Basic is never used`, {
      schemes,
    });
  }
  const parsed = digests.map((h) => parseAuthParams(h.replace(/^\s*Digest\s+/i, '')));
  // Prefer SHA-256 when the server offers both (RFC 7616 §3.7).
  parsed.sort((a, b) => (algOf(b).startsWith('SHA') ? 1 : 0) - (algOf(a).startsWith('SHA') ? 1 : 0));
  const p = parsed[0]!;
  if (p['realm'] === undefined || !p['nonce']) throw new EdgeError('DIGEST_BAD_HEADER', 'challenge without realm/nonce');
  const algorithm = algOf(p);
  const qop = (p['qop'] ?? '').split(',').map((x) => x.trim()).filter(Boolean);
  if (qop.length > 0 && !qop.includes('auth')) {
    throw new EdgeError('DIGEST_UNSUPPORTED', `server requires qop=${qop.join(',')}; only auth is supported`);
  }
  return { realm: p['realm'], nonce: p['nonce'], qop, algorithm, opaque: p['opaque'], stale: /^true$/i.test(p['stale'] ?? '') };
}

function algOf(p: Record<string, string>): DigestAlgorithm {
  const a = (p['algorithm'] ?? 'MD5').toUpperCase();
  if (a === 'MD5') return 'MD5';
  if (a === 'MD5-SESS') return 'MD5-sess';
  if (a === 'SHA-256') return 'SHA-256';
  if (a === 'SHA-256-SESS') return 'SHA-256-sess';
  throw new EdgeError('DIGEST_UNSUPPORTED', `digest algorithm ${a.slice(0, 32)} not supported`);
}

function h(alg: DigestAlgorithm, s: string): string {
  return createHash(alg.startsWith('SHA-256') ? 'sha256' : 'md5').update(s, 'utf8').digest('hex');
}

export interface DigestResponseInput {
  algorithm: DigestAlgorithm;
  username: string;
  password: string;
  realm: string;
  method: string;
  uri: string;
  nonce: string;
  /** Empty when the challenge had no qop (RFC 2069 style). */
  qop: '' | 'auth';
  nc: string;
  cnonce: string;
}

export function computeResponse(i: DigestResponseInput): string {
  let ha1 = h(i.algorithm, `${i.username}:${i.realm}:${i.password}`);
  if (i.algorithm.endsWith('-sess')) ha1 = h(i.algorithm, `${ha1}:${i.nonce}:${i.cnonce}`);
  const ha2 = h(i.algorithm, `${i.method}:${i.uri}`);
  return i.qop === 'auth'
    ? h(i.algorithm, `${ha1}:${i.nonce}:${i.nc}:${i.cnonce}:${i.qop}:${ha2}`)
    : h(i.algorithm, `${ha1}:${i.nonce}:${ha2}`);
}

function quote(s: string): string {
  return `"${s.replace(/["\\]/g, '\\$&')}"`;
}

/** Build the Authorization header value for one request. `nc` is the nonce count (1, 2, …). */
export function buildAuthorization(
  ch: DigestChallenge,
  creds: { username: string; password: string },
  method: string,
  uri: string,
  nc: number,
  cnonce: string = randomBytes(12).toString('hex'),
): string {
  const qop = ch.qop.includes('auth') ? 'auth' : '';
  const ncs = nc.toString(16).padStart(8, '0');
  const response = computeResponse({
    algorithm: ch.algorithm,
    username: creds.username,
    password: creds.password,
    realm: ch.realm,
    method,
    uri,
    nonce: ch.nonce,
    qop,
    nc: ncs,
    cnonce,
  });
  const parts = [
    `username=${quote(creds.username)}`,
    `realm=${quote(ch.realm)}`,
    `nonce=${quote(ch.nonce)}`,
    `uri=${quote(uri)}`,
    `algorithm=${ch.algorithm}`,
    `response=${quote(response)}`,
  ];
  if (qop) parts.push(`qop=${qop}`, `nc=${ncs}`, `cnonce=${quote(cnonce)}`);
  if (ch.opaque !== undefined) parts.push(`opaque=${quote(ch.opaque)}`);
  return `Digest ${parts.join(', ')}`;
}

export interface DigestCredentialsHeader {
  username: string;
  realm: string;
  nonce: string;
  uri: string;
  response: string;
  algorithm: DigestAlgorithm;
  qop: '' | 'auth';
  nc: string;
  cnonce: string;
  opaque?: string;
}

/** Server side: parse `Authorization: Digest …`. Throws EdgeError DIGEST_BAD_HEADER. */
export function parseAuthorization(header: string | undefined): DigestCredentialsHeader {
  if (!header || !/^\s*Digest\s/i.test(header)) throw new EdgeError('DIGEST_BAD_HEADER', 'not a Digest authorization');
  const p = parseAuthParams(header.replace(/^\s*Digest\s+/i, ''));
  for (const k of ['username', 'realm', 'nonce', 'uri', 'response']) {
    if (p[k] === undefined) throw new EdgeError('DIGEST_BAD_HEADER', `authorization without ${k}`);
  }
  const qop = p['qop'] === 'auth' ? 'auth' : p['qop'] === undefined ? '' : null;
  if (qop === null) throw new EdgeError('DIGEST_UNSUPPORTED', 'qop must be auth');
  return {
    username: p['username']!,
    realm: p['realm']!,
    nonce: p['nonce']!,
    uri: p['uri']!,
    response: p['response']!,
    algorithm: algOf(p),
    qop,
    nc: p['nc'] ?? '',
    cnonce: p['cnonce'] ?? '',
    opaque: p['opaque'],
  };
}

/** Server side: constant-time check of a parsed authorization against the password. */
export function verifyAuthorization(a: DigestCredentialsHeader, password: string, method: string): boolean {
  const expected = computeResponse({ ...a, password, method });
  const x = Buffer.from(expected);
  const y = Buffer.from(a.response.toLowerCase());
  return x.length === y.length && timingSafeEqual(x, y);
}
