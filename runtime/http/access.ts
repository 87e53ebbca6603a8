// One access model for every door of the local server. A door is what a client reaches:
//
//   control   PTZ / motor HTTP API (/ptz/…, /motors…)
//   pang      /pang/ws/pub|sub|meb|ctl on a channel without a key (a channel key opens its own channel)
//   whep      WHEP viewers (/whep/…)
//   whip      WHIP ingest (/whip/…)
//   api       stats, overview, sensors, stills, recordings, gaps (/api/…, /shot/ws)
//   metrics   Prometheus /metrics
//
// The dashboard's files (/, /dashboard/…) and /healthz are open: they carry no video, change
// nothing, and the dashboard must load to ask for the token. Rules:
// - A door's token is its own (server.access.<door>.token, egress.whipIngest.token) or server.token.
// - A door with a token requires it from every client, loopback included: `Authorization: Bearer …`,
//   or `?token=` where a browser cannot set headers (WebSockets); pang also takes it as `key=`.
// - A door without any token is open only while the server is bound to loopback; --check-config
//   refuses a config that leaves one open beyond loopback, and at run time such a door is closed.
// - Wrong tokens (and wrong pang keys) are failed authentications, counted per client address: after
//   maxFailures within windowMs the address gets 429 (pang: close 4429) on every door for blockMs.
//   A missing token is a plain 401 and not counted (no guess was made).
// Secrets are compared in constant time (auth.ts) and never logged.

import type { IncomingMessage } from 'node:http';
import { z } from 'zod';
import { secretEquals } from './auth.js';

export const DOORS = ['control', 'pang', 'whep', 'whip', 'api', 'metrics'] as const;
export type Door = (typeof DOORS)[number];

export interface RateLimit {
  /** Wrong tokens from one address within windowMs before it is blocked. */
  maxFailures: number;
  windowMs: number;
  /** How long a blocked address is refused on every door. */
  blockMs: number;
}

export const DEFAULT_RATE_LIMIT: RateLimit = { maxFailures: 10, windowMs: 60_000, blockMs: 60_000 };

export interface AccessOptions {
  bindIsLoopback: boolean;
  /** The effective token of each door (its own, else server.token); absent = no token. */
  tokens: Partial<Record<Door, string>>;
  rateLimit?: RateLimit;
  /** Addresses remembered at most (LRU): one scanner cannot grow memory. */
  maxAddresses?: number;
}

export type AccessDecision =
  | { ok: true; via: 'token' | 'open' }
  | { ok: false; status: 401 | 429; code: 'AUTH_REQUIRED' | 'AUTH_FAILED' | 'AUTH_RATE_LIMITED' | 'DOOR_CLOSED'; message: string; retryAfterS?: number };

interface DoorCounters {
  allowed: number;
  open: number;
  missing: number;
  wrong: number;
  limited: number;
}

/** The token a request presents: Bearer header first, then ?token= / ?access_token=. */
export function presentedToken(req: IncomingMessage): string | undefined {
  const m = /^Bearer\s+(.+?)\s*$/i.exec(req.headers['authorization'] ?? '');
  if (m) return m[1];
  try {
    const q = new URL(req.url ?? '/', 'http://x').searchParams;
    return q.get('token') ?? q.get('access_token') ?? undefined;
  } catch {
    return undefined;
  }
}

/** The client address without the IPv4-mapped prefix. */
export function clientAddress(req: IncomingMessage): string {
  return (req.socket.remoteAddress ?? '?').replace(/^::ffff:/, '');
}

export class AccessGate {
  private readonly rl: RateLimit;
  private readonly maxAddresses: number;
  /** Failure times per address (newest last, at most maxFailures kept) and the block end. */
  private readonly addr = new Map<string, { fails: number[]; blockedUntil: number }>();
  private readonly c: Record<Door, DoorCounters>;
  private blocks = 0;

  constructor(private readonly o: AccessOptions) {
    this.rl = o.rateLimit ?? DEFAULT_RATE_LIMIT;
    this.maxAddresses = o.maxAddresses ?? 4096;
    this.c = Object.fromEntries(DOORS.map((d) => [d, { allowed: 0, open: 0, missing: 0, wrong: 0, limited: 0 }])) as Record<Door, DoorCounters>;
  }

  /** Open without a token (loopback bind, no token configured). */
  isOpen(door: Door): boolean {
    return this.o.tokens[door] === undefined && this.o.bindIsLoopback;
  }

  /** A door that needs a token (or is closed for lack of one). */
  token(door: Door): string | undefined {
    return this.o.tokens[door];
  }

  /** Decide for one request to `door` from `address` presenting `presented`. */
  check(door: Door, address: string, presented: string | undefined, now = Date.now()): AccessDecision {
    const blocked = this.blockedFor(address, now);
    if (blocked > 0) {
      this.c[door].limited++;
      return { ok: false, status: 429, code: 'AUTH_RATE_LIMITED', message: `too many failed authentications from this address; retry in ${blocked} s`, retryAfterS: blocked };
    }
    const token = this.o.tokens[door];
    if (token === undefined) {
      if (this.o.bindIsLoopback) {
        this.c[door].open++;
        return { ok: true, via: 'open' };
      }
      // Fail closed: --check-config refuses this config; a programmatic one must not open a door.
      this.c[door].missing++;
      return { ok: false, status: 401, code: 'DOOR_CLOSED', message: `the server is bound beyond loopback and the ${door} door has no token: it is closed (set server.token)` };
    }
    if (presented === undefined || presented === '') {
      this.c[door].missing++;
      return { ok: false, status: 401, code: 'AUTH_REQUIRED', message: `the ${door} door needs a token: Authorization: Bearer <token>` };
    }
    if (!secretEquals(presented, token)) return this.fail(door, address, now);
    this.c[door].allowed++;
    return { ok: true, via: 'token' };
  }

  /** A failed authentication that was decided elsewhere (a wrong pang channel key). */
  fail(door: Door, address: string, now = Date.now()): AccessDecision & { ok: false } {
    this.c[door].wrong++;
    const e = this.entry(address);
    e.fails.push(now);
    while (e.fails.length && now - e.fails[0]! > this.rl.windowMs) e.fails.shift();
    if (e.fails.length >= this.rl.maxFailures) {
      e.blockedUntil = now + this.rl.blockMs;
      e.fails = [];
      this.blocks++;
    }
    while (e.fails.length > this.rl.maxFailures) e.fails.shift();
    return { ok: false, status: 401, code: 'AUTH_FAILED', message: 'wrong token' };
  }

  /** Seconds an address is still blocked (0 = not blocked). */
  blockedFor(address: string, now = Date.now()): number {
    const e = this.addr.get(address);
    return e && e.blockedUntil > now ? Math.ceil((e.blockedUntil - now) / 1000) : 0;
  }

  private entry(address: string): { fails: number[]; blockedUntil: number } {
    let e = this.addr.get(address);
    if (e) this.addr.delete(address);
    else e = { fails: [], blockedUntil: 0 };
    this.addr.set(address, e);
    if (this.addr.size > this.maxAddresses) this.addr.delete(this.addr.keys().next().value!);
    return e;
  }

  stats(now = Date.now()): { doors: Record<Door, DoorCounters & { open: number; protected: boolean }>; blocks: number; blockedAddresses: number } {
    let blocked = 0;
    for (const e of this.addr.values()) if (e.blockedUntil > now) blocked++;
    const doors = {} as Record<Door, DoorCounters & { protected: boolean }>;
    for (const d of DOORS) doors[d] = { ...this.c[d], protected: this.o.tokens[d] !== undefined };
    return { doors, blocks: this.blocks, blockedAddresses: blocked };
  }
}

/** Which door an HTTP path belongs to; null = open (dashboard files, /healthz) or handled elsewhere (pang). */
export function doorOf(path: string): Door | null | 'pang' {
  // Pages that hold no data (their data comes from the API with the token) and the health probe.
  if (path === '/' || path.startsWith('/dashboard/') || path === '/recordings' || path === '/healthz' || path === '/favicon.ico') return null;
  if (path.startsWith('/pang/')) return 'pang';
  if (path.startsWith('/ptz/') || path === '/ptz' || path === '/motors' || path.startsWith('/motors/')) return 'control';
  // Viewers: WHEP and HLS (live and recorded playlists and their media) are one door.
  if (path.startsWith('/whep/') || path.startsWith('/hls/')) return 'whep';
  if (path.startsWith('/whip/')) return 'whip';
  if (path === '/metrics') return 'metrics';
  return 'api';
}

/** The doors a config leaves open beyond loopback (for --check-config); empty when all are shut. */
export function openDoors(bindIsLoopback: boolean, tokens: Partial<Record<Door, string>>, enabled: Partial<Record<Door, boolean>> = {}): Door[] {
  if (bindIsLoopback) return [];
  return DOORS.filter((d) => enabled[d] !== false && tokens[d] === undefined);
}

// ---------------------------------------------------------------------------------------------
// Config: server.access (per-door tokens, failed-authentication rate limit).


const doorToken = z.object({ token: z.string().min(16).max(512) }).strict();

export const accessConfigSchema = z
  .object({
    control: doorToken.optional(),
    pang: doorToken.optional(),
    whep: doorToken.optional(),
    whip: doorToken.optional(),
    api: doorToken.optional(),
    metrics: doorToken.optional(),
    /** Failed authentications per client address, on every door together. */
    rateLimit: z
      .object({
        maxFailures: z.number().int().min(1).max(1000).default(DEFAULT_RATE_LIMIT.maxFailures),
        windowMs: z.number().int().min(1000).max(3_600_000).default(DEFAULT_RATE_LIMIT.windowMs),
        blockMs: z.number().int().min(1000).max(86_400_000).default(DEFAULT_RATE_LIMIT.blockMs),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .prefault({});
export type AccessConfig = z.infer<typeof accessConfigSchema>;

/** The part of the config the doors depend on (structural: no import of the whole schema). */
export interface DoorConfigView {
  server: { host: string; token?: string | undefined; access: AccessConfig };
  egress: { whipIngest: { enabled: boolean; token?: string | undefined }; whep: { enabled: boolean } };
}

export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/** Each door's effective token: its own, else (WHIP ingest: egress.whipIngest.token, else) server.token. */
export function doorTokens(c: DoorConfigView): Partial<Record<Door, string>> {
  const out: Partial<Record<Door, string>> = {};
  for (const d of DOORS) {
    const own = c.server.access[d]?.token ?? (d === 'whip' ? c.egress.whipIngest.token : undefined);
    const t = own ?? c.server.token;
    if (t !== undefined) out[d] = t;
  }
  return out;
}

/** Problems for --check-config: every door that would be open (or unusable) beyond loopback. */
export function accessIssues(c: DoorConfigView): Array<{ path: string[]; message: string }> {
  const open = openDoors(isLoopbackHost(c.server.host), doorTokens(c), { whip: c.egress.whipIngest.enabled, whep: c.egress.whep.enabled });
  return open.map((d) => ({
    path: ['server', 'token'],
    message: `server.host ${c.server.host} is not loopback and the ${d} door has no token: set server.token (>= 16 chars) or server.access.${d}.token`,
  }));
}

export function createAccessGate(c: DoorConfigView): AccessGate {
  return new AccessGate({ bindIsLoopback: isLoopbackHost(c.server.host), tokens: doorTokens(c), rateLimit: c.server.access.rateLimit });
}
