// A source's own media clock (ffmpeg pts on a pipe, RTMP/FLV milliseconds, lavfi frame numbers)
// mapped onto the one capture clock. Pure, no I/O: the caller passes the arrival time.
//
// Why: a frame stamped when it is *read* carries the pipe's jitter. After a 0.4 s stall ffmpeg
// writes several frames within microseconds; stamped on arrival they get (nearly) equal times,
// round to the same muxer tick and readers discard them ("non monotonically increasing dts").
// Stamped from the source's clock they keep their real spacing.
//
//  - The first frame anchors: offset = arrival − source time.
//  - A frame that would land in the future (mapped > arrival) pulls the offset down to it: the
//    mapping follows the earliest arrivals, i.e. the least-delayed path through the pipe.
//  - The offset creeps up by at most `slewPpm` of elapsed source time while frames arrive later
//    than mapped, so a source clock slower than ours cannot fall behind without bound; 1000 ppm is
//    far above any crystal's drift and far below anything that would bend a frame interval.
//  - A mapped time further than `maxLagUs` behind arrival, or a source time stepping back by more
//    than `maxStepBackUs`, is a new timeline (encoder restart, publisher reset): re-anchor, counted.
//  - Output is strictly increasing (≥ previous + 1 µs), also across re-anchors and runs
//    (`notBeforeUs`): two frames never share a capture time.

export interface SourceClockOptions {
  /** A mapped time this far behind arrival re-anchors (5 s: beyond any pipe stall worth keeping). */
  maxLagUs?: number;
  /** A source time going back this far is a new timeline, not reordering. */
  maxStepBackUs?: number;
  /** How fast the offset may follow a slower source clock, parts per million of source time. */
  slewPpm?: number;
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

export class SourceClock {
  private offset = 0;
  private lastSrc: number | null = null;
  private lastOut: number;
  private readonly maxLagUs: number;
  private readonly maxStepBackUs: number;
  private readonly slew: number;
  private readonly st: SourceClockStats = { anchored: false, reanchors: 0, bumped: 0, maxLagSeenUs: 0 };

  constructor(o: SourceClockOptions = {}) {
    this.maxLagUs = o.maxLagUs ?? 5_000_000;
    this.maxStepBackUs = o.maxStepBackUs ?? 1_000_000;
    this.slew = (o.slewPpm ?? 1000) / 1e6;
    this.lastOut = o.notBeforeUs ?? -Infinity;
  }

  /** Capture-clock µs for a frame whose source time is `srcUs`, read at `arrivalUs`. */
  map(srcUs: number, arrivalUs: number): number {
    if (this.lastSrc === null) {
      this.offset = arrivalUs - srcUs;
      this.st.anchored = true;
    } else {
      const step = srcUs - this.lastSrc;
      let mapped = srcUs + this.offset;
      if (step < -this.maxStepBackUs || arrivalUs - mapped > this.maxLagUs) {
        this.offset = arrivalUs - srcUs;
        this.st.reanchors++;
      } else if (mapped > arrivalUs) {
        this.offset = arrivalUs - srcUs;
      } else if (step > 0) {
        this.offset += Math.min(arrivalUs - mapped, step * this.slew);
        mapped = srcUs + this.offset;
        this.st.maxLagSeenUs = Math.max(this.st.maxLagSeenUs, Math.round(arrivalUs - mapped));
      }
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
