// Board profiles: one data table keyed by board id. Memory ceilings, the encoder order, default
// video settings and thermal thresholds/step-downs. profileFor() scales memory to the RAM the
// board actually has (a 1 GB Pi 4 must not get the 8 GB Pi 4's ceilings).

import type { BoardId, BoardInfo } from './detect.js';

/** Ways to produce H.264: take the camera's own H.264, or encode with an ffmpeg encoder. */
export type EncoderChoice = 'passthrough' | 'h264_v4l2m2m' | 'h264_nvmpi' | 'libx264';

export interface ThermalStep {
  /** Multiply the configured fps by this (floored, never below 1). */
  fpsScale: number;
  /** Multiply the configured bitrate by this. */
  bitrateScale: number;
}

export interface ThermalPolicy {
  /** Level 1 from this SoC temperature (°C). */
  warmC: number;
  /** Level 2. */
  hotC: number;
  /** Level 3. */
  criticalC: number;
  /** A level is left only when the temperature fell this far below its threshold (no flapping). */
  hysteresisC: number;
  /** steps[0] is level 0 (no change); steps[n] applies at level n. */
  steps: [ThermalStep, ThermalStep, ThermalStep, ThermalStep];
  /** Ask `vcgencmd get_throttled` (Raspberry Pi firmware) too. */
  vcgencmd: boolean;
}

export interface VideoDefaults {
  width: number;
  height: number;
  fps: number;
  bitrateKbps: number;
}

export interface BoardProfile {
  id: BoardId;
  name: string;
  /** RAM (MiB) the table values are written for; smaller boards scale down. */
  referenceMemMb: number;
  memory: {
    /** pm2 restarts the runtime above this RSS (ecosystem.config.js max_memory_restart). */
    pm2MaxMemoryRestartMb: number;
    /** The stream engine's total byte ceiling for all tracks and consumer queues. */
    engineBudgetMb: number;
    /** node --max-old-space-size: V8 heap, below the pm2 limit so GC works before pm2 kills. */
    nodeMaxOldSpaceMb: number;
  };
  /** Hardware H.264 encoder of the board, or null (Pi 5 and Orin Nano have none). */
  hardwareH264: string | null;
  /** Preference order; the first one available wins. */
  encoders: EncoderChoice[];
  /** libx264 preset where libx264 is used: ultrafast keeps a small core real-time. */
  x264Preset: 'ultrafast' | 'superfast' | 'veryfast';
  video: VideoDefaults;
  thermal: ThermalPolicy;
}

const PI_STEPS: ThermalPolicy['steps'] = [
  { fpsScale: 1, bitrateScale: 1 },
  { fpsScale: 0.75, bitrateScale: 0.75 },
  { fpsScale: 0.5, bitrateScale: 0.5 },
  { fpsScale: 0.25, bitrateScale: 0.35 },
];
// The Zero 2 W has one small heatsink-less SoC and 512 MB: step down harder and earlier.
const ZERO_STEPS: ThermalPolicy['steps'] = [
  { fpsScale: 1, bitrateScale: 1 },
  { fpsScale: 0.66, bitrateScale: 0.6 },
  { fpsScale: 0.4, bitrateScale: 0.4 },
  { fpsScale: 0.2, bitrateScale: 0.25 },
];
// libx264 boards: fps is what costs CPU (and heat); bitrate alone barely changes encode load.
const SOFT_ENC_STEPS: ThermalPolicy['steps'] = [
  { fpsScale: 1, bitrateScale: 1 },
  { fpsScale: 0.66, bitrateScale: 0.8 },
  { fpsScale: 0.5, bitrateScale: 0.6 },
  { fpsScale: 0.33, bitrateScale: 0.4 },
];

/**
 * Thresholds: Pi firmware soft-throttles at 80 °C (Pi 3+ / Zero 2 W: 60 °C soft limit is opt-in)
 * and hard-throttles at 85 °C; we step down before the firmware does so the stream degrades on
 * our terms. Tegra parts throttle near 97 °C (Nano) / 99 °C (Orin).
 */
export const PROFILES: Readonly<Record<BoardId, BoardProfile>> = {
  'pi-zero-2w': {
    id: 'pi-zero-2w',
    name: 'Raspberry Pi Zero 2 W',
    referenceMemMb: 512,
    memory: { pm2MaxMemoryRestartMb: 180, engineBudgetMb: 48, nodeMaxOldSpaceMb: 128 },
    hardwareH264: 'h264_v4l2m2m',
    encoders: ['passthrough', 'h264_v4l2m2m', 'libx264'],
    x264Preset: 'ultrafast',
    video: { width: 640, height: 480, fps: 15, bitrateKbps: 800 },
    thermal: { warmC: 68, hotC: 75, criticalC: 80, hysteresisC: 3, steps: ZERO_STEPS, vcgencmd: true },
  },
  pi3: {
    id: 'pi3',
    name: 'Raspberry Pi 3',
    referenceMemMb: 1024,
    memory: { pm2MaxMemoryRestartMb: 300, engineBudgetMb: 96, nodeMaxOldSpaceMb: 220 },
    hardwareH264: 'h264_v4l2m2m',
    encoders: ['passthrough', 'h264_v4l2m2m', 'libx264'],
    x264Preset: 'ultrafast',
    video: { width: 1280, height: 720, fps: 25, bitrateKbps: 2000 },
    thermal: { warmC: 70, hotC: 76, criticalC: 81, hysteresisC: 3, steps: PI_STEPS, vcgencmd: true },
  },
  pi4: {
    id: 'pi4',
    name: 'Raspberry Pi 4 / 400 / CM4',
    referenceMemMb: 4096,
    memory: { pm2MaxMemoryRestartMb: 600, engineBudgetMb: 192, nodeMaxOldSpaceMb: 448 },
    hardwareH264: 'h264_v4l2m2m',
    encoders: ['passthrough', 'h264_v4l2m2m', 'libx264'],
    x264Preset: 'ultrafast',
    video: { width: 1920, height: 1080, fps: 30, bitrateKbps: 4000 },
    thermal: { warmC: 72, hotC: 78, criticalC: 82, hysteresisC: 3, steps: PI_STEPS, vcgencmd: true },
  },
  pi5: {
    id: 'pi5',
    name: 'Raspberry Pi 5 / 500 / CM5',
    referenceMemMb: 4096,
    memory: { pm2MaxMemoryRestartMb: 800, engineBudgetMb: 256, nodeMaxOldSpaceMb: 600 },
    // No H.264 encoder block on BCM2712: camera passthrough first, else libx264 at 720p.
    hardwareH264: null,
    encoders: ['passthrough', 'libx264'],
    x264Preset: 'ultrafast',
    video: { width: 1280, height: 720, fps: 30, bitrateKbps: 2500 },
    thermal: { warmC: 72, hotC: 78, criticalC: 82, hysteresisC: 3, steps: SOFT_ENC_STEPS, vcgencmd: true },
  },
  'jetson-nano': {
    id: 'jetson-nano',
    name: 'NVIDIA Jetson Nano',
    referenceMemMb: 4096,
    // 4 GB shared with the GPU: leave room for CUDA/vision processes on the robot.
    memory: { pm2MaxMemoryRestartMb: 700, engineBudgetMb: 224, nodeMaxOldSpaceMb: 520 },
    // NVENC through ffmpeg needs jetson-ffmpeg's h264_nvmpi; stock ffmpeg falls through to libx264.
    hardwareH264: 'h264_nvmpi',
    encoders: ['passthrough', 'h264_nvmpi', 'libx264'],
    x264Preset: 'ultrafast',
    video: { width: 1920, height: 1080, fps: 30, bitrateKbps: 4000 },
    thermal: { warmC: 75, hotC: 85, criticalC: 92, hysteresisC: 4, steps: PI_STEPS, vcgencmd: false },
  },
  'jetson-orin-nano': {
    id: 'jetson-orin-nano',
    name: 'NVIDIA Jetson Orin Nano',
    referenceMemMb: 8192,
    memory: { pm2MaxMemoryRestartMb: 1200, engineBudgetMb: 384, nodeMaxOldSpaceMb: 900 },
    // Orin Nano has no NVENC: camera passthrough first, then libx264 (6× A78AE holds 1080p30 ultrafast).
    hardwareH264: null,
    encoders: ['passthrough', 'libx264'],
    x264Preset: 'ultrafast',
    video: { width: 1920, height: 1080, fps: 30, bitrateKbps: 4000 },
    thermal: { warmC: 80, hotC: 88, criticalC: 94, hysteresisC: 4, steps: SOFT_ENC_STEPS, vcgencmd: false },
  },
  'generic-arm64': {
    id: 'generic-arm64',
    name: 'Generic arm64 board',
    referenceMemMb: 2048,
    memory: { pm2MaxMemoryRestartMb: 512, engineBudgetMb: 160, nodeMaxOldSpaceMb: 384 },
    hardwareH264: null,
    encoders: ['passthrough', 'libx264'],
    x264Preset: 'ultrafast',
    video: { width: 1280, height: 720, fps: 30, bitrateKbps: 2500 },
    thermal: { warmC: 75, hotC: 85, criticalC: 92, hysteresisC: 4, steps: SOFT_ENC_STEPS, vcgencmd: false },
  },
  'generic-x86': {
    id: 'generic-x86',
    name: 'Generic x86 machine',
    referenceMemMb: 4096,
    memory: { pm2MaxMemoryRestartMb: 1024, engineBudgetMb: 320, nodeMaxOldSpaceMb: 768 },
    hardwareH264: null,
    encoders: ['passthrough', 'libx264'],
    x264Preset: 'veryfast',
    video: { width: 1920, height: 1080, fps: 30, bitrateKbps: 4000 },
    thermal: { warmC: 80, hotC: 90, criticalC: 97, hysteresisC: 4, steps: SOFT_ENC_STEPS, vcgencmd: false },
  },
};

/** Never go below this pm2 ceiling: Node + the runtime's own code need ~60–90 MB RSS. */
const MIN_PM2_MB = 128;
/** The runtime may use at most this share of RAM: the robot's other processes need the rest. */
const MAX_RAM_SHARE = 0.35;

/** The profile for a detected board, with memory ceilings scaled down to the RAM present. */
export function profileFor(board: Pick<BoardInfo, 'id' | 'memMb'>): BoardProfile {
  const base = PROFILES[board.id] ?? PROFILES['generic-x86'];
  const p: BoardProfile = structuredClone(base);
  if (board.memMb !== null && board.memMb > 0) {
    const cap = Math.max(MIN_PM2_MB, Math.floor(board.memMb * MAX_RAM_SHARE));
    if (cap < p.memory.pm2MaxMemoryRestartMb) {
      const k = cap / p.memory.pm2MaxMemoryRestartMb;
      p.memory = {
        pm2MaxMemoryRestartMb: cap,
        engineBudgetMb: Math.max(16, Math.floor(p.memory.engineBudgetMb * k)),
        nodeMaxOldSpaceMb: Math.max(96, Math.floor(p.memory.nodeMaxOldSpaceMb * k)),
      };
    }
  }
  return p;
}

/**
 * The encoder to use for a camera that does not give H.264 itself: the first entry of the
 * profile's order (after passthrough) that ffmpeg offers. `available` = ffmpeg's encoder names.
 */
export function chooseEncoder(profile: BoardProfile, available: ReadonlySet<string>, cameraGivesH264 = false): EncoderChoice | null {
  for (const e of profile.encoders) {
    if (e === 'passthrough') {
      if (cameraGivesH264) return e;
      continue;
    }
    if (available.has(e)) return e;
  }
  return null;
}

/** pm2 wants a string like "600M". */
export function pm2MemoryString(profile: BoardProfile): string {
  return `${profile.memory.pm2MaxMemoryRestartMb}M`;
}
