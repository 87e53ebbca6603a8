// One authentication state per device account, shared by every request that carries its
// credentials (ISAPI, ONVIF, RTSP on the same camera). Cameras lock an account after a few failed
// logins (Hikvision: 5, then 30 min); the runtime must never be the reason. So:
//
// - Single flight. Until the credentials are known good, exchanges that carry them run one at a
//   time: the first one logs in, the others wait for its verdict. Concurrent requests (a move, a
//   status poll and a preset list at once) cost one login, not three.
// - At most `maxTries` (2) refusals between two successes, counted over every request together;
//   then the account is locked out here for a long, growing time (lockoutMs, doubling up to
//   maxLockoutMs) and every call fails fast without touching the device.
// - One operator action (reset(): POST /ptz/<camera>/auth/reset, the dashboard's button) clears
//   the lock-out and allows `maxTries` fresh attempts.
// - A network failure says nothing about the credentials: it neither counts nor verifies.
//
// No I/O and no timers: the clock is passed in (tests need no waiting).

import { Backoff, EdgeError } from '../../runtime/engine/api.js';

export type AuthState = 'unverified' | 'ok' | 'locked';

export interface DeviceAuthOptions {
  /** For errors and stats: "ptz/front", "camera 192.168.1.64". Never a credential. */
  label: string;
  /** First lock-out after maxTries refusals; doubles per repeat. Default 10 min. */
  lockoutMs?: number;
  /** Cap of the growing lock-out. Default 1 h. */
  maxLockoutMs?: number;
  /** Refusals allowed between two successes (over all requests). Default 2. */
  maxTries?: number;
  /** Context added to errors (host, user): no secrets. */
  context?: Record<string, unknown>;
}

/** What one credentialed exchange tells the gate. */
export type AuthOutcome<T> = { ok: true; value: T } | { ok: false; refused: true };

/** Error codes of the family calling (PTZ_AUTH_FAILED / PTZ_AUTH_LOCKED, RTSP_AUTH_…). */
export interface AuthCodes {
  failed: string;
  locked: string;
}

const DEFAULT_CODES: AuthCodes = { failed: 'AUTH_FAILED', locked: 'AUTH_LOCKED' };

/** One use of the credentials, settled once with the device's verdict. */
export interface AuthTicket {
  /** The device accepted the credentials (a 2xx, a first frame). */
  accepted(): void;
  /** The device refused them: counted; returns the error to throw (failed, or locked out now). */
  refused(): EdgeError;
  /** No verdict (network, cancelled): nothing counted; the next one verifies. */
  inconclusive(): void;
}

export interface DeviceAuthStats {
  state: AuthState;
  /** Credentialed exchanges started. */
  attempts: number;
  /** Exchanges the device refused (each one counts on the device's lock-out counter too). */
  refusals: number;
  lockouts: number;
  /** Calls refused here while locked out (never reached the device). */
  refusedLocked: number;
  /** Calls that waited for another request's login instead of logging in themselves. */
  waitedForLogin: number;
  resets: number;
  lockedForMs: number;
}

export class DeviceAuth {
  private state: AuthState = 'unverified';
  private refusalsSinceOk = 0;
  private lockedUntil = 0;
  private verifying: Promise<void> | null = null;
  private readonly ladder: Backoff;
  private readonly maxTries: number;
  private readonly c = { attempts: 0, refusals: 0, lockouts: 0, refusedLocked: 0, waitedForLogin: 0, resets: 0 };
  private readonly lockoutMs: number;
  private readonly maxLockoutMs: number;
  /** Length of the current lock-out (for the message of the refusal that caused it). */
  private lastLockMs = 0;

  constructor(private readonly o: DeviceAuthOptions) {
    this.lockoutMs = o.lockoutMs ?? 600_000;
    this.maxLockoutMs = Math.max(this.lockoutMs, o.maxLockoutMs ?? 3_600_000);
    this.ladder = this.newLadder();
    this.maxTries = Math.max(1, o.maxTries ?? 2);
  }

  private newLadder(): Backoff {
    // No jitter: an operator reads "locked for 600 s" and can count on it. Reset after an hour of
    // accepted credentials.
    return new Backoff({ initialMs: this.lockoutMs, maxMs: this.maxLockoutMs, jitter: 0, resetAfterMs: 3_600_000 });
  }

  /** True while calls fail fast without reaching the device. */
  locked(now = Date.now()): boolean {
    if (this.state === 'locked' && now >= this.lockedUntil) {
      // The lock-out ran out: the next exchange verifies again, alone.
      this.state = 'unverified';
      this.refusalsSinceOk = 0;
    }
    return this.state === 'locked';
  }

  /** Throws the locked error when locked (for callers that check before opening a connection). */
  assertUnlocked(codes: AuthCodes = DEFAULT_CODES, now = Date.now()): void {
    if (!this.locked(now)) return;
    this.c.refusedLocked++;
    throw new EdgeError(codes.locked, `credentials were refused; not retrying for ${Math.ceil((this.lockedUntil - now) / 1000)} s (reset: POST …/auth/reset)`, {
      ...this.o.context,
      device: this.o.label,
      retryAfterS: Math.ceil((this.lockedUntil - now) / 1000),
    });
  }

  /**
   * Run one exchange that carries the credentials. `exchange` resolves {ok:true,value} when the
   * device accepted them, {ok:false,refused:true} when it refused them (a 401 to credentials, a
   * SOAP NotAuthorized), and rejects for anything else (network: neither counted nor verified).
   */
  async run<T>(exchange: () => Promise<AuthOutcome<T>>, codes: AuthCodes = DEFAULT_CODES): Promise<T> {
    const ticket = await this.acquire(codes);
    let out: AuthOutcome<T>;
    try {
      out = await exchange();
    } catch (e) {
      ticket.inconclusive();
      throw e;
    }
    if (out.ok) {
      ticket.accepted();
      return out.value;
    }
    throw ticket.refused();
  }

  /**
   * For exchanges that outlive one call (an RTSP stream): wait for the right to use the
   * credentials (alone while they are not known good; at once when they are), then settle the
   * ticket once with the device's verdict. Throws the locked error while locked out.
   */
  async acquire(codes: AuthCodes = DEFAULT_CODES): Promise<AuthTicket> {
    for (;;) {
      this.assertUnlocked(codes);
      if (this.state === 'ok') return this.ticket(codes, () => {});
      if (this.verifying) {
        // Someone is logging in: wait for the verdict, then go again (ok → concurrent; locked → fail fast).
        this.c.waitedForLogin++;
        await this.verifying;
        continue;
      }
      let done!: () => void;
      this.verifying = new Promise<void>((r) => (done = r));
      return this.ticket(codes, () => {
        this.verifying = null;
        done();
      });
    }
  }

  private ticket(codes: AuthCodes, release: () => void): AuthTicket {
    this.c.attempts++;
    let settled = false;
    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      release();
      return true;
    };
    return {
      accepted: () => {
        if (!settle()) return;
        if (this.state !== 'locked') this.state = 'ok';
        this.refusalsSinceOk = 0;
        this.ladder.healthy(Date.now());
      },
      refused: () => {
        const now = Date.now();
        const justLocked = settle() && this.refuse(now);
        return this.refusalError(codes, now, justLocked);
      },
      inconclusive: () => void settle(),
    };
  }

  /** Count a refusal; true when it started a lock-out. */
  private refuse(now: number): boolean {
    this.c.refusals++;
    this.refusalsSinceOk++;
    if (this.state === 'locked') return false;
    if (this.refusalsSinceOk >= this.maxTries) {
      const wait = this.ladder.next(now);
      this.lockedUntil = now + wait;
      this.state = 'locked';
      this.c.lockouts++;
      this.lastLockMs = wait;
      return true;
    }
    // One refusal: the next exchange verifies again, alone.
    this.state = 'unverified';
    return false;
  }

  private refusalError(codes: AuthCodes, now: number, justLocked: boolean): EdgeError {
    if (this.state === 'locked') {
      if (justLocked) {
        return new EdgeError(codes.failed, `device refused the credentials ${this.refusalsSinceOk} times; locked out for ${Math.round(this.lastLockMs / 1000)} s (reset: POST …/auth/reset)`, {
          ...this.o.context,
          device: this.o.label,
          retryAfterS: Math.round(this.lastLockMs / 1000),
        });
      }
      return this.lockedError(codes, now);
    }
    return new EdgeError(codes.failed, 'device refused the credentials', { ...this.o.context, device: this.o.label, triesLeft: this.maxTries - this.refusalsSinceOk });
  }

  private lockedError(codes: AuthCodes, now: number): EdgeError {
    return new EdgeError(codes.locked, `credentials were refused; not retrying for ${Math.ceil((this.lockedUntil - now) / 1000)} s`, {
      ...this.o.context,
      device: this.o.label,
    });
  }

  /** The operator's action: forget the lock-out; `maxTries` fresh attempts are allowed. */
  reset(): void {
    this.c.resets++;
    this.state = 'unverified';
    this.refusalsSinceOk = 0;
    this.lockedUntil = 0;
    this.ladder.reset();
  }

  /** Refusals left before a lock-out (0 while locked). */
  triesLeft(now = Date.now()): number {
    return this.locked(now) ? 0 : this.maxTries - this.refusalsSinceOk;
  }

  stats(now = Date.now()): DeviceAuthStats {
    this.locked(now);
    return { state: this.state, ...this.c, lockedForMs: this.state === 'locked' ? Math.max(0, this.lockedUntil - now) : 0 };
  }
}

/** The auth counters a driver puts in its stats() (flat, no secrets). */
export function authStats(a: DeviceAuth): Record<string, string | number | boolean> {
  const s = a.stats();
  return { authState: s.state, lockouts: s.lockouts, refusedLocked: s.refusedLocked, authWaits: s.waitedForLogin, locked: s.state === 'locked', lockedForMs: s.lockedForMs };
}

/**
 * Device accounts by (host, user): a camera's RTSP stream, its ISAPI PTZ and its ONVIF service log
 * into one account, so they share one DeviceAuth. Owned by the app (no module-level singleton);
 * bounded by the configured devices.
 */
export class DeviceAuthRegistry {
  private readonly m = new Map<string, DeviceAuth>();

  get(host: string, username: string, o: DeviceAuthOptions): DeviceAuth {
    const key = `${host.toLowerCase()}|${username}`;
    let a = this.m.get(key);
    if (!a) {
      a = new DeviceAuth(o);
      this.m.set(key, a);
    }
    return a;
  }

  get size(): number {
    return this.m.size;
  }
}
