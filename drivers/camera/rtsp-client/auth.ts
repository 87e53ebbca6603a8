// RTSP client authentication, pure: Basic and Digest (RFC 2617 / 7616 through the shared digest
// code in drivers/ptz/digest.ts: MD5, qop=auth with nc/cnonce, or no qop as most cameras send).
// Digest is preferred when the camera offers both. A 401 with stale=true is a new nonce, not a
// wrong password: the caller retries once with it. Credentials never leave this object except as
// the Authorization header value.

import { buildAuthorization, parseChallenge, type DigestChallenge } from '../../ptz/digest.js';
import { RtspError } from './message.js';

export interface Credentials {
  username: string;
  password: string;
}

/** Nonce renewals per connection: a camera that keeps answering 401 with new nonces is refusing us. */
const MAX_STALE_RETRIES = 3;

type Scheme = { kind: 'basic'; realm: string } | { kind: 'digest'; challenge: DigestChallenge; nc: number };

export class RtspAuth {
  private scheme: Scheme | undefined;
  /** 401s answered with new credentials; a second 401 for the same nonce is a wrong password. */
  challenges = 0;
  staleRetries = 0;

  constructor(private readonly creds: Credentials | undefined) {}

  get hasCredentials(): boolean {
    return this.creds !== undefined;
  }

  get method(): 'none' | 'basic' | 'digest' {
    return this.scheme?.kind ?? 'none';
  }

  /**
   * Take a 401's WWW-Authenticate values. Returns true when a retry with credentials makes sense
   * (first challenge, or a stale nonce), false when the credentials were already refused.
   * Throws RTSP_AUTH_FAILED when there are no credentials or no usable scheme.
   */
  onUnauthorized(wwwAuthenticate: string[] | undefined): boolean {
    if (!this.creds) throw new RtspError('RTSP_AUTH_FAILED', '401 Unauthorized: the camera needs credentials and none are configured');
    const list = (wwwAuthenticate ?? []).slice(0, 8);
    const prev = this.scheme;
    if (list.some((h) => /^\s*Digest\s/i.test(h))) {
      let ch: DigestChallenge;
      try {
        ch = parseChallenge(list);
      } catch (e) {
        throw new RtspError('RTSP_AUTH_FAILED', `401 Unauthorized: ${(e as Error).message}`);
      }
      this.scheme = { kind: 'digest', challenge: ch, nc: 0 };
      this.challenges++;
      if (!prev) return true;
      // stale=true, or a camera that rotates its nonce without saying so: retry a bounded number of times
      const newNonce = prev.kind === 'digest' && prev.challenge.nonce !== ch.nonce;
      if ((ch.stale || newNonce) && this.staleRetries < MAX_STALE_RETRIES) {
        this.staleRetries++;
        return true;
      }
      return false;
    }
    const basic = list.find((h) => /^\s*Basic(\s|$)/i.test(h));
    if (basic) {
      const realm = /realm="([^"]{0,256})"/i.exec(basic)?.[1] ?? '';
      this.scheme = { kind: 'basic', realm };
      this.challenges++;
      return !prev;
    }
    const offered = list.map((h) => h.trim().split(/\s/, 1)[0]!.slice(0, 16)).join(',') || 'none';
    throw new RtspError('RTSP_AUTH_FAILED', `401 Unauthorized: no supported auth scheme offered (${offered})`);
  }

  /** The Authorization header for one request, or undefined before any challenge. */
  authorization(method: string, uri: string): string | undefined {
    const s = this.scheme;
    if (!s || !this.creds) return undefined;
    if (s.kind === 'basic') return `Basic ${Buffer.from(`${this.creds.username}:${this.creds.password}`, 'utf8').toString('base64')}`;
    s.nc++;
    return buildAuthorization(s.challenge, this.creds, method, uri, s.nc);
  }
}
