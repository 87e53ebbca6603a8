// The uplink scheduler's encoder cap on one link's video source (issue 8): ask the engine for at
// most N bytes/s on behalf of "uplink" (merged with other callers such as thermal), remember what
// the track offered before so the scheduler can tell when the uncapped demand fits again, and stop
// offering the source as cappable once it refused. Shared by the pang and WHIP publishers.

import type { TrackRef, TrackSource } from '../engine/api.js';

export const UPLINK_CALLER = 'uplink';
/** A new cap within this fraction of the current one is not requested. */
export const CAP_HYSTERESIS = 0.15;

export interface EncoderCapStats {
  bytesPerSec: number | null;
  uncappedBytesPerSec: number | null;
  unsupported: boolean;
  requests: number;
  refused: number;
  lifts: number;
  /** Re-caps within CAP_HYSTERESIS of the cap in force, not requested. */
  kept: number;
}

export class UplinkEncoderCap {
  private bytesPerSec: number | null = null;
  /** What the track offered before the cap; undefined when no cap is in force. */
  private uncappedBps: number | undefined;
  private unsupported = false;
  private readonly c = { requests: 0, refused: 0, lifts: 0, kept: 0 };

  constructor(private readonly source: Pick<TrackSource, 'requestEncodingCap'>) {}

  /** False once the source refused a cap: the scheduler goes straight to keyframes-only. */
  get cappable(): boolean {
    return !this.unsupported;
  }

  get capped(): boolean {
    return this.uncappedBps !== undefined;
  }

  get uncapped(): number | undefined {
    return this.uncappedBps;
  }

  /**
   * Cap `ref`'s encoder to `bytesPerSec` (null lifts it); `demandNow` is the track's current
   * demand, remembered as the uncapped figure at the first cap. False when the source cannot.
   */
  set(ref: TrackRef | null, bytesPerSec: number | null, demandNow: number | undefined): boolean {
    if (bytesPerSec === null) {
      if (this.uncappedBps === undefined) return true;
      this.uncappedBps = undefined;
      this.bytesPerSec = null;
      this.c.lifts++;
      try {
        if (ref) this.source.requestEncodingCap(ref, UPLINK_CALLER, null);
      } catch {
        // the track went away: nothing is capped any more
      }
      return true;
    }
    if (this.unsupported || !ref) return false;
    // The budget moves every round; a cap within 15 % of the one in force is kept (each change
    // can cost the encoder a restart and an IDR, which itself eats the thin link).
    if (this.bytesPerSec !== null && Math.abs(bytesPerSec - this.bytesPerSec) <= this.bytesPerSec * CAP_HYSTERESIS) {
      this.c.kept++;
      return true;
    }
    let ok = false;
    try {
      ok = this.source.requestEncodingCap(ref, UPLINK_CALLER, { bitrateBps: Math.max(8000, Math.round(bytesPerSec * 8)) });
    } catch {
      ok = false;
    }
    this.c.requests++;
    if (!ok) {
      this.unsupported = true;
      this.c.refused++;
      return false;
    }
    this.uncappedBps ??= demandNow; // demand now follows the cap
    this.bytesPerSec = bytesPerSec;
    return true;
  }

  stats(): EncoderCapStats {
    return { bytesPerSec: this.bytesPerSec, uncappedBytesPerSec: this.uncappedBps ?? null, unsupported: this.unsupported, ...this.c };
  }
}
