// Uplink budget estimation (pure, no I/O): how many bytes/s the upstream link really carries.
// Inputs are drain samples — bytes the link carried per interval — from pang publishers (what the
// peer acknowledged, issue 14), WHIP receiver reports and the recordings sync uploader.
// A sample taken while the socket held a backlog the whole interval measures capacity; a sample
// without backlog only proves a lower bound (the link carried what we offered, maybe more).
// State is O(1): an EWMA, never a list of samples.

/** 'whip': samples from RTCP receiver reports of a WHIP session (runtime/egress/whip-uplink.ts). */
export type DrainSource = 'pang' | 'sync' | 'whip';

export interface DrainSample {
  /** Bytes accepted by the network during the interval (negative or non-finite values are ignored). */
  bytes: number;
  intervalMs: number;
  /** The sender had bytes waiting for the whole interval: the link, not the demand, set the rate. */
  backlogged: boolean;
  source: DrainSource;
  /** Sample time (ms, any monotonic-ish clock the caller uses consistently). */
  atMs: number;
}

export interface UplinkEstimate {
  /** Usable upstream bytes/s, or null before any sample. Never negative. */
  bytesPerSec: number | null;
  /**
   * True when the estimate rests on recent backlogged samples (a measured capacity). False means
   * it is only a lower bound (nothing was ever queued) or stale.
   */
  confident: boolean;
  /** Recent rate actually carried (EWMA of every sample, backlogged or not). */
  carriedBytesPerSec: number;
  samples: number;
  backloggedSamples: number;
  /** Samples dropped as invalid (negative, NaN, zero interval). */
  rejected: number;
  lastSampleAt: number | null;
  bySource: Record<DrainSource, number>;
}

export interface EstimatorOptions {
  /** EWMA half-life: 3 s follows an LTE cell change within a few seconds without chasing one burst. */
  halfLifeMs?: number;
  /** Confidence needs at least this weight of backlogged time in the recent window (0..1). */
  confidenceWeight?: number;
  /** An estimate with no sample for this long is stale: not confident. */
  staleAfterMs?: number;
  /** Ignore intervals longer than this (a suspended timer): 30 s. */
  maxIntervalMs?: number;
}

export class UplinkEstimator {
  private est: number | null = null;
  private carried = 0;
  /** Decaying share of recent time that was backlogged (0..1). */
  private satWeight = 0;
  private n = 0;
  private nSat = 0;
  private nRejected = 0;
  private lastAt: number | null = null;
  private readonly bySource: Record<DrainSource, number> = { pang: 0, sync: 0, whip: 0 };
  private readonly halfLifeMs: number;
  private readonly confidenceWeight: number;
  private readonly staleAfterMs: number;
  private readonly maxIntervalMs: number;

  constructor(opts: EstimatorOptions = {}) {
    this.halfLifeMs = opts.halfLifeMs ?? 3000;
    this.confidenceWeight = opts.confidenceWeight ?? 0.25;
    this.staleAfterMs = opts.staleAfterMs ?? 15_000;
    this.maxIntervalMs = opts.maxIntervalMs ?? 30_000;
  }

  add(s: DrainSample): void {
    if (!Number.isFinite(s.bytes) || !Number.isFinite(s.intervalMs) || !Number.isFinite(s.atMs) || s.bytes < 0 || s.intervalMs <= 0 || s.intervalMs > this.maxIntervalMs) {
      this.nRejected++;
      return;
    }
    const rate = (s.bytes * 1000) / s.intervalMs;
    if (!Number.isFinite(rate)) {
      this.nRejected++;
      return;
    }
    const alpha = 1 - Math.pow(2, -s.intervalMs / this.halfLifeMs);
    this.n++;
    this.bySource[s.source]++;
    this.lastAt = this.lastAt === null ? s.atMs : Math.max(this.lastAt, s.atMs);
    this.carried = this.n === 1 ? rate : this.carried + alpha * (rate - this.carried);
    this.satWeight = this.satWeight * (1 - alpha) + (s.backlogged ? alpha : 0);
    if (s.backlogged) {
      this.nSat++;
      this.est = this.est === null ? rate : this.est + alpha * (rate - this.est);
    } else {
      // Not backlogged: the link carried all we offered, so capacity is at least that much. A
      // second or more of it is evidence; a shorter interval only through the smoothed rate:
      // acknowledgements arrive in bursts (a receive window opening at once), and one 250 ms burst
      // is not a capacity.
      const bound = s.intervalMs >= 1000 ? rate : this.carried;
      if (this.est === null || bound > this.est) this.est = bound;
    }
  }

  /**
   * Forget everything: a new connection after a drop runs over a path the old samples no longer
   * describe (a cut link came back; a new cell). The next samples start a fresh estimate.
   */
  reset(): void {
    this.est = null;
    this.carried = 0;
    this.satWeight = 0;
    this.lastAt = null;
  }

  /** The current estimate; pass `nowMs` to mark an estimate without recent samples as not confident. */
  estimate(nowMs?: number): UplinkEstimate {
    const stale = this.lastAt === null || (nowMs !== undefined && nowMs - this.lastAt > this.staleAfterMs);
    return {
      bytesPerSec: this.est === null ? null : Math.max(0, this.est),
      confident: !stale && this.nSat > 0 && this.satWeight >= this.confidenceWeight,
      carriedBytesPerSec: Math.max(0, this.carried),
      samples: this.n,
      backloggedSamples: this.nSat,
      rejected: this.nRejected,
      lastSampleAt: this.lastAt,
      bySource: { ...this.bySource },
    };
  }
}

/**
 * A socket's acknowledged bytes as drain samples (issue 14): what the peer's TCP stack (or the
 * upstream) acknowledged per interval. Backlogged when bytes were waiting to be sent at both ends
 * of the interval (with TCP_NOTSENT_LOWAT the waiting happens in ws's buffer): then the link, not
 * the demand, set the rate. Pure: the caller passes the clock.
 */
export class AckMeter {
  private prevAt: number | null = null;
  private prevAcked = 0;
  private prevWaiting = false;

  constructor(private readonly source: DrainSource = 'pang') {}

  reset(): void {
    this.prevAt = null;
  }

  observe(nowMs: number, ackedTotal: number, waiting: boolean): DrainSample | null {
    if (this.prevAt === null || ackedTotal < this.prevAcked) {
      this.prevAt = nowMs;
      this.prevAcked = ackedTotal;
      this.prevWaiting = waiting;
      return null;
    }
    const intervalMs = nowMs - this.prevAt;
    if (intervalMs <= 0) return null;
    const s: DrainSample = { bytes: ackedTotal - this.prevAcked, intervalMs, backlogged: this.prevWaiting && waiting, source: this.source, atMs: nowMs };
    this.prevAt = nowMs;
    this.prevAcked = ackedTotal;
    this.prevWaiting = waiting;
    return s;
  }
}

/**
 * Sync uploader throughput as lower-bound samples: uploadedBytes is cumulative and counts whole
 * files, so it proves what the link carried, never its ceiling (the uploader may be rate-capped).
 */
export class CounterMeter {
  private prevAt: number | null = null;
  private prev = 0;
  constructor(private readonly source: DrainSource = 'sync') {}
  observe(nowMs: number, total: number): DrainSample | null {
    if (this.prevAt === null || total < this.prev) {
      this.prevAt = nowMs;
      this.prev = total;
      return null;
    }
    const intervalMs = nowMs - this.prevAt;
    if (intervalMs <= 0) return null;
    const s: DrainSample = { bytes: total - this.prev, intervalMs, backlogged: false, source: this.source, atMs: nowMs };
    this.prevAt = nowMs;
    this.prev = total;
    return s;
  }
}

/** Bytes a client→server WebSocket frame puts on the wire for a payload (header + mask). */
export function wsClientFrameBytes(payload: number): number {
  const ext = payload > 65535 ? 8 : payload > 125 ? 2 : 0;
  return payload + 2 + ext + 4;
}

/**
 * One figure for a link shared by several sockets: each backlogged socket measures its share of
 * the link and each idle one a lower bound, so the sum is the usable total. Confident when any
 * part is (the link was saturated somewhere recently).
 */
export function combineEstimates(parts: UplinkEstimate[]): { bytesPerSec: number | null; confident: boolean; carriedBytesPerSec: number; links: number } {
  let total: number | null = null;
  let carried = 0;
  let confident = false;
  for (const p of parts) {
    if (p.bytesPerSec !== null) total = (total ?? 0) + p.bytesPerSec;
    carried += p.carriedBytesPerSec;
    confident ||= p.confident;
  }
  return { bytesPerSec: total, confident, carriedBytesPerSec: carried, links: parts.length };
}
