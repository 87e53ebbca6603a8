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
    if (!(opts.initialMs > 0) || !(opts.maxMs >= opts.initialMs)) {
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

  get attempts(): number {
    return this.attempt;
  }
}
