// Encoding caps for the cameras that run their own encoder child (testpattern, V4L2 encode,
// rpicam-vid): the encoder cannot change fps/bitrate while it runs, so a changed cap restarts the
// child with capped arguments inside the same driver run. The track stays one track (the
// supervisor never sees a failure) and the new child starts with an IDR, so consumers continue at
// that keyframe. Passthrough sources (RTSP, H.264 cameras, ingest) do not use this: they return
// false from setEncodingCap and the engine counts the request unserved.

import { EncodingCaps, type EncodingCap } from '../../runtime/engine/api.js';

export interface CappedSettings {
  fps: number;
  bitrateKbps: number;
}

export class EncoderCapLoop {
  private readonly caps = new EncodingCaps();
  private inner: AbortController | undefined;
  /** Effective-cap changes asked for. */
  capChanges = 0;
  /** Encoder children restarted to apply a cap. */
  restartsForCap = 0;
  /** The settings the running (or next) child uses. */
  current: CappedSettings;

  constructor(private readonly base: CappedSettings) {
    this.current = { ...base };
  }

  /** Record a caller's cap; a change restarts the running encoder at once. Always true (servable). */
  set(by: string, cap: EncodingCap | null): boolean {
    if (!this.caps.set(by, cap)) return true;
    this.capChanges++;
    // the running child ends cleanly; run() starts the next one with the new settings
    this.inner?.abort();
    return true;
  }

  /** Configured values with every cap applied (a cap never raises a value; fps ≥ 1, bitrate ≥ 64 kbit/s). */
  settings(): CappedSettings {
    const a = this.caps.apply(this.base.bitrateKbps * 1000, this.base.fps);
    return { fps: Math.max(1, Math.floor(a.fps)), bitrateKbps: Math.max(64, Math.floor(a.bitrateBps / 1000)) };
  }

  /**
   * Run encoder children until `signal` aborts or one fails: `once` runs one child with the given
   * settings and must resolve when its signal aborts (runChild/PipeSource do).
   */
  async run(signal: AbortSignal, once: (s: CappedSettings, signal: AbortSignal) => Promise<void>): Promise<void> {
    let first = true;
    while (!signal.aborted) {
      if (!first) this.restartsForCap++;
      first = false;
      const inner = new AbortController();
      const onAbort = () => inner.abort();
      signal.addEventListener('abort', onAbort, { once: true });
      this.inner = inner;
      this.current = this.settings();
      try {
        await once(this.current, inner.signal);
      } finally {
        signal.removeEventListener('abort', onAbort);
        this.inner = undefined;
      }
      // `once` resolved: either the driver stops (outer abort) or a cap changed (inner abort only)
      if (!inner.signal.aborted) return;
    }
  }

  stats(): Record<string, number | string> {
    const c = this.caps.effective();
    return {
      capFps: c.fps ?? '',
      capBitrateBps: c.bitrateBps ?? '',
      encodeFps: this.current.fps,
      encodeBitrateKbps: this.current.bitrateKbps,
      capChanges: this.capChanges,
      restartsForCap: this.restartsForCap,
      capsBy: Object.keys(this.caps.byCaller()).join(','),
    };
  }
}
