// The WHIP side of thin uplinks (issue 8), pure: RTCP receiver reports → uplink drain samples,
// and the video gate a scheduler mode sets. No I/O.
//
// A WHIP session has no socket backlog to watch (UDP), but its receiver reports every second or
// so what fraction of the packets sent since its previous report was lost, and NACKs each packet
// it missed. Loss is the UDP equivalent of a backlog: a link that drops a share of what we offer
// is saturated, and what got through (sent × (1 − loss)) measures its capacity. The loss of an
// interval is the larger of the report's fraction lost (loss left after retransmission) and the
// share of packets NACKed (loss on the wire: a retransmitted packet counts as received in the
// report). Without loss the link carried everything we offered — a lower bound only. A REMB
// below the offered rate is the receiver's own measurement of the ceiling: saturated too.
import type { DrainSample } from '../uplink/estimator.js';
import type { TrackMode } from '../uplink/scheduler.js';
import type { SentTotals } from './webrtc.js';

export interface ReceiverReportSample {
  /** RTCP fraction lost, 0..255 (loss since the previous report, 8-bit fixed point). */
  fractionLost: number;
  /** Interarrival jitter in RTP clock units. */
  jitter: number;
}

export interface RtcpDrainStats {
  reports: number;
  lossyReports: number;
  /** Last fraction lost of a receiver report, 0..1. */
  lastFractionLost: number;
  /** Share of the packets of the last interval the receiver NACKed, 0..1. */
  lastNackedShare: number;
  /** Last jitter in ms (90 kHz clock). */
  lastJitterMs: number;
  rembBytesPerSec: number | null;
}

export class RtcpDrainMeter {
  private prevAt: number | null = null;
  private prev: SentTotals = { bytes: 0, packets: 0, nacked: 0 };
  private c: RtcpDrainStats = { reports: 0, lossyReports: 0, lastFractionLost: 0, lastNackedShare: 0, lastJitterMs: 0, rembBytesPerSec: null };

  /**
   * @param lossThreshold loss at or above this counts as saturation: 2 % is above what a healthy
   *   Wi-Fi/LTE path loses at random, well below what a full queue drops.
   * @param clockRate RTP clock of the jitter figure.
   */
  constructor(
    private readonly lossThreshold = 0.02,
    private readonly clockRate = 90_000,
  ) {}

  /** A new session: the next report starts a fresh interval. */
  reset(): void {
    this.prevAt = null;
  }

  /**
   * One receiver report for our SSRC at `nowMs`; `totals` are the feed's cumulative payload
   * bytes, packets and NACKed packets; `rembBytesPerSec` the receiver's latest REMB (null: none).
   */
  observe(nowMs: number, totals: SentTotals, rr: ReceiverReportSample, rembBytesPerSec: number | null = null): DrainSample | null {
    const f = Math.min(1, Math.max(0, (Number.isFinite(rr.fractionLost) ? rr.fractionLost : 0) / 256));
    this.c.reports++;
    this.c.lastFractionLost = f;
    this.c.lastJitterMs = Number.isFinite(rr.jitter) ? (rr.jitter * 1000) / this.clockRate : 0;
    this.c.rembBytesPerSec = rembBytesPerSec && rembBytesPerSec > 0 ? rembBytesPerSec : null;
    if (this.prevAt === null || totals.bytes < this.prev.bytes || totals.packets < this.prev.packets || totals.nacked < this.prev.nacked) {
      this.prevAt = nowMs;
      this.prev = { ...totals };
      return null;
    }
    const intervalMs = nowMs - this.prevAt;
    if (!(intervalMs > 0)) return null;
    const sent = totals.bytes - this.prev.bytes;
    const packets = totals.packets - this.prev.packets;
    const nacked = totals.nacked - this.prev.nacked;
    this.prevAt = nowMs;
    this.prev = { ...totals };
    const nackShare = packets > 0 ? Math.min(1, nacked / packets) : 0;
    this.c.lastNackedShare = nackShare;
    const offered = (sent * 1000) / intervalMs;
    const remb = this.c.rembBytesPerSec;
    if (remb !== null && remb < offered) {
      return { bytes: (remb * intervalMs) / 1000, intervalMs, backlogged: true, source: 'whip', atMs: nowMs };
    }
    const loss = Math.max(f, nackShare);
    const lossy = loss >= this.lossThreshold;
    if (lossy) this.c.lossyReports++;
    return { bytes: sent * (1 - loss), intervalMs, backlogged: lossy, source: 'whip', atMs: nowMs };
  }

  stats(): RtcpDrainStats {
    return { ...this.c };
  }
}

/**
 * Which video access units a scheduler mode lets through: all (full), keyframes only, none
 * (paused). Stepping up waits for the next keyframe so the receiver never gets a P-frame whose
 * reference it never saw. Counts what it held back.
 */
export class VideoModeGate {
  private mode: TrackMode = 'full';
  private awaitKey = false;
  readonly held = { keyframesOnly: 0, paused: 0, awaitingKey: 0 };

  /** Returns true when the caller should ask the source for a keyframe (a step up). */
  set(mode: TrackMode): boolean {
    if (mode === this.mode) return false;
    const up = mode === 'full' || (mode === 'keyframes-only' && this.mode === 'paused');
    this.mode = mode;
    if (up) this.awaitKey = true;
    return up;
  }

  get current(): TrackMode {
    return this.mode;
  }

  pass(key: boolean): boolean {
    if (this.mode === 'paused') {
      this.held.paused++;
      return false;
    }
    if (this.awaitKey) {
      if (!key) {
        this.held.awaitingKey++;
        return false;
      }
      this.awaitKey = false;
    }
    if (this.mode === 'keyframes-only' && !key) {
      this.held.keyframesOnly++;
      return false;
    }
    return true;
  }
}
