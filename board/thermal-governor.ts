// Thermal step-down applied to running cameras: when the thermal monitor's level changes, every
// video track gets an encoding cap on behalf of "thermal" — the profile's step applied to that
// track's configured fps/bitrate — and the cap is lifted (null) back at level 0. The engine routes
// each request to the track's driver (encoder cameras restart capped; passthrough ones cannot and
// are counted unserved). Pure policy in capForLevel; the governor is the thin listener.

import type { EncodingCap, TrackRef, TrackSource } from '../runtime/engine/api.js';
import type { ThermalStep } from './profiles.js';
import { applyStep, type ThermalLevel, type ThermalMonitor, type ThermalState } from './thermal.js';

/** A video track and what its driver is configured to encode. */
export interface GovernedTrack {
  ref: TrackRef;
  fps: number;
  bitrateKbps: number;
}

export const THERMAL_CALLER = 'thermal';

/** The cap for one track at a level: null at level 0 (nothing capped). */
export function capForLevel(level: ThermalLevel, step: ThermalStep, t: Pick<GovernedTrack, 'fps' | 'bitrateKbps'>): EncodingCap | null {
  if (level === 0) return null;
  const s = applyStep({ fps: t.fps, bitrateKbps: t.bitrateKbps }, step);
  return { fps: s.fps, bitrateBps: s.bitrateKbps * 1000 };
}

export interface ThermalGovernorOptions {
  thermal: Pick<ThermalMonitor, 'state' | 'onChange'>;
  engine: Pick<TrackSource, 'requestEncodingCap'>;
  /** Video tracks with their configured fps/bitrate (at most a few per robot). */
  tracks: GovernedTrack[];
}

export interface ThermalGovernor {
  /** Apply the monitor's current level to every track again (after a driver restart, say). */
  apply(): void;
  stats(): Record<string, number | string | null>;
  /** Stop listening. Idempotent, never throws. Caps stay with the engine (it is closing too). */
  close(): void;
}

export function createThermalGovernor(o: ThermalGovernorOptions): ThermalGovernor {
  const tracks = o.tracks.slice(0, 64); // bounded: one entry per configured video track
  const c = { levelChanges: 0, requests: 0, served: 0, unserved: 0 };
  let level: ThermalLevel = 0;
  let lastCap: string | null = null;
  let closed = false;

  const applyState = (s: ThermalState): void => {
    level = s.level;
    const caps: string[] = [];
    for (const t of tracks) {
      const cap = capForLevel(s.level, s.step, t);
      c.requests++;
      let ok = false;
      try {
        ok = o.engine.requestEncodingCap(t.ref, THERMAL_CALLER, cap);
      } catch {
        ok = false; // a track that is gone right now: counted, retried at the next change
      }
      if (ok) c.served++;
      else c.unserved++;
      if (cap) caps.push(`${t.ref.track}:${cap.fps}fps/${Math.round((cap.bitrateBps ?? 0) / 1000)}k`);
    }
    lastCap = caps.length ? caps.join(' ') : null;
  };

  const off = o.thermal.onChange((s) => {
    if (closed) return;
    c.levelChanges++;
    applyState(s);
  });
  // A robot that boots hot starts capped.
  if (o.thermal.state().level > 0) applyState(o.thermal.state());

  return {
    apply: () => {
      if (!closed) applyState(o.thermal.state());
    },
    stats: () => ({ ...c, level, tracks: tracks.length, caps: lastCap }),
    close: () => {
      if (closed) return;
      closed = true;
      try {
        off();
      } catch {
        // the monitor is already closed
      }
    },
  };
}

/** Driver kinds that publish one H.264 video track (sensors and ingests are not governed). */
const VIDEO_KINDS = new Set(['testpattern', 'v4l2', 'rpicam', 'rtsp', 'onvif']);

/**
 * The video tracks a governor caps, from the configured sources. Every H.264 camera is asked, the
 * passthrough ones (RTSP, ONVIF, an H.264 USB camera) included: they answer false and the engine
 * counts the request unserved, which is how stats show a hot robot that could not step down.
 * Without a configured fps/bitrate (passthrough) the cap is computed from 30 fps / 4 Mbit/s.
 */
export function governedTracks(
  sources: Array<{ channel: string; source: string; driver: { kind: string; track?: string; fps?: number; bitrateKbps?: number; codec?: string; output?: string } }>,
): GovernedTrack[] {
  const out: GovernedTrack[] = [];
  for (const s of sources) {
    const d = s.driver;
    if (!VIDEO_KINDS.has(d.kind) || d.codec === 'jpeg' || d.output === 'jpeg') continue;
    out.push({ ref: { channel: s.channel, source: s.source, track: d.track ?? 'video' }, fps: d.fps ?? 30, bitrateKbps: d.bitrateKbps ?? 4000 });
  }
  return out;
}
