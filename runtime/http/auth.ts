// Secrets compared one way everywhere: stream keys (pang), control and WHIP bearer tokens.

import { createHash, timingSafeEqual } from 'node:crypto';

/** Constant-time string comparison (hashed first, so the length does not leak either). */
export function secretEquals(given: string, expected: string): boolean {
  const h = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(h(given), h(expected));
}

/** True when an Authorization header carries `Bearer <token>` with exactly this token. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(.+?)\s*$/i.exec(header ?? '');
  return !!m && secretEquals(m[1]!, token);
}
