// A real Engine for egress tests, with one static channel and a test-pattern track fed from
// the real ffmpeg's H.264 (see h264Fixture).
import { captureClockUs, type Frame, type TrackRef } from '../../runtime/engine/api.js';
import { Engine } from '../../runtime/engine/engine.js';
import type { H264Fixture } from './fake-source.js';

export function testEngine(channels: string[] = ['cam']): Engine {
  const engine = new Engine({
    memoryCeilingBytes: 256 * 1024 * 1024,
    consumerQueueBytes: 8 * 1024 * 1024,
    gopCacheBytes: 8 * 1024 * 1024,
    trackLingerMs: 5000,
    instantChannelTtlMs: 3600_000,
    maxInstantChannels: 16,
  });
  for (const id of channels) engine.addStaticChannel({ id });
  return engine;
}

/** Feed fixture AUs into an engine track at the fixture rate; keyframe requests are counted. */
export function feedEngine(engine: Engine, ref: TrackRef, fx: H264Fixture, opts: { loop?: boolean; onFrame?: (f: Frame, i: number) => void } = {}): { stop(): void; sent(): number; keyRequests(): number; done: Promise<void> } {
  let keyRequests = 0;
  const pub = engine.publisher(ref, { label: 'test-pattern', requestKeyframe: () => (keyRequests++, true) });
  pub.setMime(fx.mime);
  let i = 0;
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  const t0 = performance.now();
  const period = 1000 / fx.fps;
  const tick = (): void => {
    if (stopped) return;
    const due = Math.floor((performance.now() - t0) / period) + 1;
    while (i < due) {
      if (!opts.loop && i >= fx.aus.length) {
        stopped = true;
        resolveDone();
        return;
      }
      const au = fx.aus[i % fx.aus.length]!;
      const frame: Frame = { ts: captureClockUs(), wallclock: Date.now(), key: au.key, data: au.data };
      opts.onFrame?.(frame, i);
      pub.write(frame);
      i++;
    }
    timer = setTimeout(tick, period / 2);
  };
  tick();
  return {
    stop: () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      pub.close();
      resolveDone();
    },
    sent: () => i,
    keyRequests: () => keyRequests,
    done,
  };
}
