// Jittered, capped exponential backoff, reset after a stretch of healthy running.
// Pure: the caller passes the clock, so tests need no timers.

export interface BackoffOptions {
  /** First delay in ms. */
  initialMs: number;
  /** Cap in ms: no delay is ever longer. */
  maxMs: number;
  /** Growth per failure. */
  factor?: number;
  /** 0..1: the delay is drawn from [d·(1-jitter), d]. "Full jitter" spreads a fleet's reconnects. */
  jitter?: number;
  /** After this many ms of healthy running, the next failure starts from initialMs again. */
  resetAfterMs?: number;
  /** Random source in [0,1); injectable for deterministic tests. */
  random?: () => number;
}

export class Backoff {
  private readonly o: Required<BackoffOptions>;
  private attempt = 0;
  private healthySince: number | null = null;
  /** Total failures seen, never reset (for stats). */
  failures = 0;
  lastDelayMs = 0;

  constructor(opts: BackoffOptions) {
    if (!(opts.initialMs > 0) || !(opts.maxMs >= opts.initialMs) || !((opts.resetAfterMs ?? 0) >= 0)) {
      throw new RangeError(`backoff needs 0 < initialMs <= maxMs, got ${opts.initialMs}..${opts.maxMs}`);
    }
    this.o = {
      initialMs: opts.initialMs,
      maxMs: opts.maxMs,
      factor: opts.factor ?? 2,
      jitter: opts.jitter ?? 0.5,
      resetAfterMs: opts.resetAfterMs ?? 10_000,
      random: opts.random ?? Math.random,
    };
  }

  /** The run is healthy from `now` (e.g. the first frame arrived, the upstream accepted data). */
  healthy(now: number): void {
    if (this.healthySince === null) this.healthySince = now;
  }

  /** A failure at `now`: returns how long to wait before the next attempt. */
  next(now: number): number {
    if (this.healthySince !== null && now - this.healthySince >= this.o.resetAfterMs) this.attempt = 0;
    this.healthySince = null;
    const base = Math.min(this.o.maxMs, this.o.initialMs * this.o.factor ** this.attempt);
    if (base < this.o.maxMs) this.attempt++;
    const jitter = Math.min(1, Math.max(0, this.o.jitter));
    const delay = Math.round(base * (1 - jitter * this.o.random()));
    this.failures++;
    this.lastDelayMs = Math.max(1, delay);
    return this.lastDelayMs;
  }

  reset(): void {
    this.attempt = 0;
    this.healthySince = null;
  }

  /** A failure elsewhere ended the healthy stretch: apply its reset rule without climbing. */
  settle(now: number): void {
    if (this.healthySince !== null && now - this.healthySince >= this.o.resetAfterMs) this.attempt = 0;
    this.healthySince = null;
  }

  get attempts(): number {
    return this.attempt;
  }
}

// ---------------------------------------------------------------------------------------------
// Two retry policies (issue 14): a peer that says no is asked again slowly; a network that is
// down is retried quickly, for as long as it stays down. A Moth restart (ECONNREFUSED for a few
// seconds) or a Wi-Fi drop is not a refusal, and doubling up to 60 s there kept video dark for
// up to 20 s after the link came back.

/** Why an attempt failed, as far as the retry policy cares. */
export type FailureClass =
  /** The peer answered no: a 44xx close, HTTP 4xx, RTSP 401/404, Moth's close right after the upgrade. */
  | 'refused'
  /** The peer never answered: refused/reset/unreachable/timeout, a dead path, a stall. */
  | 'network';

export interface RetryPolicyOptions {
  /** Ladder after a refusal. Default 1 s → 60 s, ×2, half jitter, reset after 10 s healthy. */
  refused?: Partial<BackoffOptions>;
  /** Ladder while the network is down. Default 250 ms → 1 s, ×2, half jitter; any healthy run resets it. */
  network?: Partial<BackoffOptions>;
  random?: () => number;
}

export const DEFAULT_REFUSED_BACKOFF: BackoffOptions = { initialMs: 1000, maxMs: 60_000, factor: 2, jitter: 0.5, resetAfterMs: 10_000 };
// 250 ms first: a restarted server is back within a second; 1 s cap: at most a few attempts per
// second at the start, then one every 0.5–1 s for as long as the path stays down (no tight loop),
// so a returning link or camera is found within a second (issue 14: live again ≤ 2 s).
export const DEFAULT_NETWORK_BACKOFF: BackoffOptions = { initialMs: 250, maxMs: 1000, factor: 2, jitter: 0.5, resetAfterMs: 0 };

export class RetryPolicy {
  private readonly refusedLadder: Backoff;
  private readonly networkLadder: Backoff;
  /** Failures per class since start (for stats). */
  readonly counts: Record<FailureClass, number> = { refused: 0, network: 0 };
  lastDelayMs = 0;
  lastClass: FailureClass | null = null;

  constructor(o: RetryPolicyOptions = {}) {
    const random = o.random ?? Math.random;
    this.refusedLadder = new Backoff({ ...DEFAULT_REFUSED_BACKOFF, ...o.refused, random });
    this.networkLadder = new Backoff({ ...DEFAULT_NETWORK_BACKOFF, ...o.network, random });
  }

  /** The link or source works from `now` (a frame arrived, the peer accepted data). */
  healthy(now: number): void {
    this.refusedLadder.healthy(now);
    this.networkLadder.healthy(now);
  }

  /** A failure of `cls` at `now`: how long to wait before the next attempt. */
  next(now: number, cls: FailureClass): number {
    this.counts[cls]++;
    this.lastClass = cls;
    // Both ladders see the end of a healthy stretch; only the failing one climbs.
    const other = cls === 'refused' ? this.networkLadder : this.refusedLadder;
    other.settle(now);
    this.lastDelayMs = (cls === 'refused' ? this.refusedLadder : this.networkLadder).next(now);
    return this.lastDelayMs;
  }

  reset(): void {
    this.refusedLadder.reset();
    this.networkLadder.reset();
  }

  /** Total failures of both classes. */
  get failures(): number {
    return this.counts.refused + this.counts.network;
  }

  stats(): { refused: number; network: number; lastClass: FailureClass | null; lastDelayMs: number } {
    return { refused: this.counts.refused, network: this.counts.network, lastClass: this.lastClass, lastDelayMs: this.lastDelayMs };
  }
}

const NETWORK_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENETRESET',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EADDRNOTAVAIL',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

/** A socket-level error code (errno or undici's) that means "the network", not "the peer said no". */
export function isNetworkErrno(code: string | undefined | null): boolean {
  return typeof code === 'string' && NETWORK_ERRNOS.has(code);
}

/**
 * Class of an HTTP(-like) answer: 4xx is the peer saying no (except 408 Request Timeout), 5xx and
 * no answer at all are treated as the path or the service being down for now.
 */
export function httpFailureClass(status: number | null | undefined): FailureClass {
  if (typeof status !== 'number') return 'network';
  if (status >= 400 && status < 500 && status !== 408) return 'refused';
  return 'network';
}
