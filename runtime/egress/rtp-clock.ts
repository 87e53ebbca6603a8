// RTP timestamps → the engine's capture clock, for frames that arrive over WebRTC (WHIP ingest):
// the sender's timing, not the arrival time, so network jitter and bursts do not reach the
// recordings or the consumers. Pure, no I/O.
//  - The first packet anchors: its RTP timestamp ↔ its arrival on the capture clock.
//  - Later timestamps are unwrapped (32-bit, signed difference to the last one) and scaled by the
//    clock rate (90 kHz for video): ts = anchorUs + (extended − anchorRtp) · 1e6 / rate.
//  - RTCP sender reports map RTP time to the sender's NTP wall clock; frame wallclocks come from
//    the latest SR when there is one (else anchor wall time + media time).
//  - A timestamp that lands far from arrival (the sender restarted its clock, a jump) re-anchors,
//    counted; a step backwards is held at the previous time, counted (time never runs back).

/** 1900-01-01 → 1970-01-01 in seconds (NTP era 0 to Unix epoch). */
const NTP_UNIX_OFFSET_S = 2_208_988_800;
/** A sender's RTCP wallclock is trusted only this close to ours (LAN clocks agree within seconds). */
export const MAX_SR_WALL_SKEW_MS = 10_000;

export interface RtpClockStats {
  anchored: boolean;
  /** Re-anchors: the media clock strayed beyond maxSkewUs from arrival (sender restart, jump). */
  reanchors: number;
  /** Frames whose time stepped back (held at the previous frame's time). */
  clamped: number;
  wraps: number;
  senderReports: number;
  /** Sender reports whose wallclock was further than MAX_SR_WALL_SKEW_MS from ours (ignored). */
  srRejected: number;
}

export class RtpClock {
  private anchorRtp = 0; // extended RTP time of the anchor
  private anchorUs = 0; // capture clock at the anchor
  private anchorWallMs = 0;
  private lastExt: number | null = null; // last extended RTP timestamp (a JS number: exact to 2^53)
  private lastUs = -Infinity;
  private sr: { ext: number; wallMs: number } | null = null;
  private c = { reanchors: 0, clamped: 0, wraps: 0, senderReports: 0, srRejected: 0 };

  /**
   * @param rate RTP clock rate (90 000 for video)
   * @param maxSkewUs how far the mapped time may drift from arrival before re-anchoring: beyond
   *   any jitter buffer a live feed needs (2 s), far below a clock restart.
   */
  constructor(
    private readonly rate = 90_000,
    private readonly maxSkewUs = 2_000_000,
  ) {}

  /** Extend a 32-bit RTP timestamp against the last one (signed 32-bit difference). */
  private extend(ts32: number): number {
    const ts = ts32 >>> 0;
    // The first timestamp starts one full cycle up, so a slightly earlier one stays positive.
    if (this.lastExt === null) return ts + 0x1_0000_0000;
    const lastLow = this.lastExt % 0x1_0000_0000;
    let diff = ts - lastLow;
    if (diff > 0x7fff_ffff) diff -= 0x1_0000_0000;
    else if (diff < -0x8000_0000) diff += 0x1_0000_0000;
    const ext = this.lastExt + diff;
    if (Math.floor(ext / 0x1_0000_0000) !== Math.floor(this.lastExt / 0x1_0000_0000)) this.c.wraps++;
    return ext;
  }

  /**
   * Capture-clock µs and wall-clock ms for a frame with RTP timestamp `ts32` that arrived at
   * `arrivalUs` (capture clock) / `arrivalWallMs`.
   */
  map(ts32: number, arrivalUs: number, arrivalWallMs: number): { ts: number; wallclock: number } {
    const ext = this.extend(ts32);
    if (this.lastExt === null) this.anchor(ext, arrivalUs, arrivalWallMs);
    this.lastExt = ext;
    let us = this.anchorUs + ((ext - this.anchorRtp) * 1e6) / this.rate;
    if (Math.abs(us - arrivalUs) > this.maxSkewUs) {
      this.c.reanchors++;
      this.anchor(ext, Math.max(arrivalUs, this.lastUs), arrivalWallMs);
      this.sr = null; // the sender's media clock moved: its last SR no longer maps it
      us = this.anchorUs;
    } else if (us < this.lastUs) {
      this.c.clamped++; // out-of-order timestamps (B-frames): the engine's clock never runs back
      us = this.lastUs;
    }
    this.lastUs = us;
    const wallclock = this.sr ? this.sr.wallMs + ((ext - this.sr.ext) * 1000) / this.rate : this.anchorWallMs + ((ext - this.anchorRtp) * 1000) / this.rate;
    return { ts: Math.round(us), wallclock: Math.round(wallclock) };
  }

  private anchor(ext: number, us: number, wallMs: number): void {
    this.anchorRtp = ext;
    this.anchorUs = us;
    this.anchorWallMs = wallMs;
  }

  /** An RTCP sender report: `ntp` is the 64-bit NTP timestamp, `rtpTs` the RTP time of that instant. */
  senderReport(ntp: bigint, rtpTs: number, localWallMs = Date.now()): void {
    const sec = Number(ntp >> 32n);
    const frac = Number(ntp & 0xffff_ffffn) / 0x1_0000_0000;
    const wallMs = (sec - NTP_UNIX_OFFSET_S + frac) * 1000;
    if (!Number.isFinite(wallMs) || wallMs <= 0) return; // a sender without a wall clock sends 0
    if (Math.abs(wallMs - localWallMs) > MAX_SR_WALL_SKEW_MS) {
      // A sender whose clock is off (an RTC at 1970, no NTP yet): its wallclock would file the
      // recordings under the wrong day and let retention delete them. Keep the arrival anchor.
      this.c.srRejected++;
      this.sr = null;
      return;
    }
    // Extend against the stream without moving it (an SR may precede or trail the packets).
    const ext = this.lastExt === null ? (rtpTs >>> 0) + 0x1_0000_0000 : this.extendPeek(rtpTs);
    this.sr = { ext, wallMs };
    this.c.senderReports++;
  }

  private extendPeek(ts32: number): number {
    const lastLow = this.lastExt! % 0x1_0000_0000;
    let diff = (ts32 >>> 0) - lastLow;
    if (diff > 0x7fff_ffff) diff -= 0x1_0000_0000;
    else if (diff < -0x8000_0000) diff += 0x1_0000_0000;
    return this.lastExt! + diff;
  }

  stats(): RtpClockStats {
    return { anchored: this.lastExt !== null, reanchors: this.c.reanchors, clamped: this.c.clamped, wraps: this.c.wraps, senderReports: this.c.senderReports, srRejected: this.c.srRejected };
  }
}
