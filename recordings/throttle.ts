// Token bucket for the upload bandwidth cap. Pure: the caller passes the clock.

export class TokenBucket {
  private tokens: number;
  private last: number;

  /** rate in bytes/s; burst = bytes allowed at once (one read chunk, so a cap never stalls a chunk forever). */
  constructor(private rate: number, private burst: number, now: number) {
    if (!(rate > 0) || !(burst > 0)) throw new RangeError('token bucket needs rate > 0 and burst > 0');
    this.tokens = burst;
    this.last = now;
  }

  /** Take n bytes; returns how many ms to wait before sending them (0 = now). */
  take(n: number, now: number): number {
    this.refill(now);
    this.tokens -= n;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens * 1000) / this.rate);
  }

  /** A new rate (and burst) from `now` on; what was earned at the old rate is kept (a debt stays a debt). */
  setRate(rate: number, now: number, burst = this.burst): void {
    if (!(rate > 0) || !(burst > 0)) throw new RangeError('token bucket needs rate > 0 and burst > 0');
    this.refill(now);
    this.rate = rate;
    this.burst = burst;
    this.tokens = Math.min(this.tokens, burst);
  }

  private refill(now: number): void {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.rate) / 1000);
    this.last = now;
  }
}
