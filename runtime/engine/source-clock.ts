// A source's own media clock (ffmpeg pts on a pipe, RTMP/FLV milliseconds, lavfi frame numbers)
// mapped onto the one capture clock. Pure, no I/O: the caller passes the arrival time.
//
// Why: a frame stamped when it is *read* carries the pipe's jitter. After a 0.4 s stall ffmpeg
// writes several frames within microseconds; stamped on arrival they get (nearly) equal times,
// round to the same muxer tick and readers discard them ("non monotonically increasing dts").
// Stamped from the source's clock they keep their real spacing.
//
//  - The first frame anchors: offset = arrival − source time (its delay through the pipe).
//  - Between adjustments every frame keeps its exact source spacing, however bunched its arrival:
//    after a stall frames come late in a burst; at the end of a stream an encoder flushes its
//    lookahead early (arrival − source time shrinks to ~0). Neither moves the offset.
//  - Drift: each window (10 s of source time) sets the target offset to the least delay seen in
//    it; the offset moves toward the target by at most 5 % of the source time between frames, so a
//    frame interval bends by 5 % at most and two frames never get the same time.
//  - A frame mapped more than `maxLagUs` behind or `maxLeadUs` ahead of its arrival, or a source
//    time stepping back by more than `maxStepBackUs`, is a new timeline (encoder restart,
//    publisher reset, a clock jump): re-anchor at arrival, counted.
//  - Output is strictly increasing (≥ previous + 1 µs), also across re-anchors and runs
//    (`notBeforeUs`).

export interface SourceClockOptions {
  /** A mapped time this far behind arrival re-anchors (5 s: beyond any pipe stall worth keeping). */
  maxLagUs?: number;
  /**
   * A mapped time this far ahead of arrival re-anchors. 1 s: more than any encoder's lookahead
   * (a frame the encoder flushes at the end arrives before its time), far less than a clock jump.
   */
  maxLeadUs?: number;
  /** A source time going back this far is a new timeline, not reordering. */
  maxStepBackUs?: number;
  /** Source time over which the smallest delay is taken when following drift. */
  windowUs?: number;
  /** The previous run's last output on this track: output stays above it. */
  notBeforeUs?: number;
}

export interface SourceClockStats {
  anchored: boolean;
  /** New timelines (source clock restarted or jumped). */
  reanchors: number;
  /** Frames whose mapped time was raised to stay strictly after the previous one. */
  bumped: number;
  /** Largest lag (arrival − mapped) seen, µs: how late the slowest frame reached us. */
  maxLagSeenUs: number;
}

/** How fast the offset follows its target: a share of the source time between two frames. */
const SLEW = 0.05;

export class SourceClock {
  private offset = 0;
  private target = 0;
  private lastSrc: number | null = null;
  private lastOut: number;
  /** Smallest delay (arrival − source) in the current window, and where the window began. */
  private windowMin = Infinity;
  private windowStart = 0;
  private readonly maxLagUs: number;
  private readonly maxLeadUs: number;
  private readonly maxStepBackUs: number;
  private readonly windowUs: number;
  private readonly st: SourceClockStats = { anchored: false, reanchors: 0, bumped: 0, maxLagSeenUs: 0 };

  constructor(o: SourceClockOptions = {}) {
    this.maxLagUs = o.maxLagUs ?? 5_000_000;
    this.maxLeadUs = o.maxLeadUs ?? 1_000_000;
    this.maxStepBackUs = o.maxStepBackUs ?? 1_000_000;
    this.windowUs = o.windowUs ?? 10_000_000;
    this.lastOut = o.notBeforeUs ?? -Infinity;
  }

  private anchor(srcUs: number, delay: number): void {
    this.offset = delay;
    this.target = delay;
    this.windowMin = Infinity;
    this.windowStart = srcUs;
  }

  /** Capture-clock µs for a frame whose source time is `srcUs`, read at `arrivalUs`. */
  map(srcUs: number, arrivalUs: number): number {
    const delay = arrivalUs - srcUs;
    if (this.lastSrc === null) {
      this.anchor(srcUs, delay);
      this.st.anchored = true;
    } else {
      const step = srcUs - this.lastSrc;
      if (step < -this.maxStepBackUs || delay - this.offset > this.maxLagUs || this.offset - delay > this.maxLeadUs) {
        this.anchor(srcUs, delay);
        this.st.reanchors++;
      } else {
        if (step > 0 && this.offset !== this.target) {
          const d = Math.max(-step * SLEW, Math.min(step * SLEW, this.target - this.offset));
          this.offset += d;
        }
        this.st.maxLagSeenUs = Math.max(this.st.maxLagSeenUs, Math.round(delay - this.offset));
      }
    }
    this.windowMin = Math.min(this.windowMin, delay);
    if (srcUs - this.windowStart >= this.windowUs) {
      this.target = this.windowMin; // follow drift: the least delay of the window that ended
      this.windowMin = Infinity;
      this.windowStart = srcUs;
    }
    this.lastSrc = srcUs;
    let out = Math.round(srcUs + this.offset);
    if (out <= this.lastOut) {
      out = this.lastOut + 1;
      this.st.bumped++;
    }
    this.lastOut = out;
    return out;
  }

  /** The last output (µs), −∞ before the first frame. */
  get lastUs(): number {
    return this.lastOut;
  }

  stats(): SourceClockStats {
    return { ...this.st };
  }
}

/** Unwraps a 32-bit millisecond clock (FLV/RTMP timestamps) by signed deltas. */
export class MsUnwrapper {
  private last: number | null = null;
  private unwrapped = 0;

  push(rawMs: number): number {
    const raw = rawMs >>> 0;
    if (this.last === null) this.unwrapped = raw;
    else this.unwrapped += ((raw - this.last) << 0) | 0;
    this.last = raw;
    return this.unwrapped;
  }
}
