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


  /** When the running child started (ms, monotonic). */
  private startedAt = -Infinity;
  private restartTimer: NodeJS.Timeout | undefined;
  /** Cap changes that left the encoder's settings as they were (no restart). */
  capNoops = 0;

  /**
   * Minimum run of one encoder child before a cap restarts it: every restart costs a gap and an
   * IDR, and a caller that re-caps every second (a moving uplink estimate) must not turn the camera
   * into a restart loop. A change inside the window is applied when it ends (one timer).
   */
  constructor(
    private readonly base: CappedSettings,
    private readonly minRunMs = 5000,
  ) {
    this.current = { ...base };
  }

  /** Record a caller's cap; a change of the encoder's settings restarts it (at most once per minRunMs). Always true. */
  set(by: string, cap: EncodingCap | null): boolean {
    if (!this.caps.set(by, cap)) return true;
    this.capChanges++;
    const next = this.settings();
    if (next.fps === this.current.fps && next.bitrateKbps === this.current.bitrateKbps) {
      this.capNoops++;
      return true;
    }
    this.scheduleRestart();
    return true;
  }

  private scheduleRestart(): void {
    if (!this.inner || this.restartTimer) return; // not running: the next child takes settings() anyway
    const wait = this.startedAt + this.minRunMs - performance.now();
    if (wait <= 0) {
      // the running child ends cleanly; run() starts the next one with the new settings
      this.inner.abort();
      return;
    }
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      const s = this.settings();
      if (s.fps !== this.current.fps || s.bitrateKbps !== this.current.bitrateKbps) this.inner?.abort();
    }, wait);
    this.restartTimer.unref?.();
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
      this.startedAt = performance.now();
      try {
        await once(this.current, inner.signal);
      } finally {
        signal.removeEventListener('abort', onAbort);
        this.inner = undefined;
        if (this.restartTimer) clearTimeout(this.restartTimer);
        this.restartTimer = undefined;
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
      capNoops: this.capNoops,
      restartsForCap: this.restartsForCap,
      capsBy: Object.keys(this.caps.byCaller()).join(','),
    };
  }
}
