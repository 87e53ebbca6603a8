// The one PTZ head contract every driver (ONVIF, Hikvision ISAPI, Pelco-D) implements.
// Velocities are normalised to [-1, 1]; each driver maps them to its device's range.

import type { DriverStats } from '../../runtime/engine/api.js';
import type { LinkEvent, LinkSnapshot } from '../link/link-state.js';

export interface PtzVelocity {
  /** -1 = full speed left, +1 = full speed right. */
  pan: number;
  /** -1 = full speed down, +1 = full speed up. */
  tilt: number;
  /** -1 = zoom out (wide), +1 = zoom in (tele). */
  zoom: number;
}

export interface PtzCapabilities {
  continuous: boolean;
  absolute: boolean;
  relative: boolean;
  zoom: boolean;
  presets: boolean;
  status: boolean;
}

export interface PtzPreset {
  id: string;
  name: string;
}

export interface PtzStatus {
  /** Device-reported position in the device's own normalised units, when it reports one. */
  position?: { pan: number; tilt: number; zoom: number };
  /** True while the last command sent was a non-zero velocity. */
  moving: boolean;
  /** False while the device cannot be reached. */
  online: boolean;
  /** Device-specific extra fields (move status, raw units). */
  detail?: Record<string, string | number | boolean>;
}

export interface PtzDriver {
  readonly kind: 'onvif' | 'isapi' | 'pelco-d';
  readonly name: string;
  capabilities(): PtzCapabilities;
  /** Continuous move at the given velocities. Rejects with EdgeError on device or link failure. */
  move(v: PtzVelocity): Promise<void>;
  stop(): Promise<void>;
  gotoPreset(id: string): Promise<void>;
  setPreset(id: string, name?: string): Promise<void>;
  presets(): Promise<PtzPreset[]>;
  status(): Promise<PtzStatus>;
  /** The device link now (serial port open; HTTP device answering). */
  linkStatus(): LinkSnapshot;
  /** Every change of the link; on up, `stopped` says whether the driver already sent Stop itself. */
  onLinkChange(cb: (e: LinkEvent) => void): void;
  stats(): DriverStats;
  /** Idempotent, never throws. */
  close(): Promise<void>;
}

/** Clamp to [-1, 1]; NaN → 0. Velocities are validated upstream, this is the last guard. */
export function clampUnit(x: number): number {
  if (!Number.isFinite(x)) return 0;
  return Math.max(-1, Math.min(1, x));
}

export function isZeroVelocity(v: PtzVelocity): boolean {
  return v.pan === 0 && v.tilt === 0 && v.zoom === 0;
}

/** Preset ids are short tokens (digits or ONVIF tokens): they reach URLs and SOAP bodies. */
export const PRESET_ID_RE = /^[A-Za-z0-9_.-]{1,64}$/;
/** Preset names are shown to users and sent in XML: printable, no markup characters. */
export const PRESET_NAME_RE = /^[^<>&"'\u0000-\u001f]{1,64}$/;
