// Thermal watch: SoC temperature from /sys/class/thermal and, on a Pi, `vcgencmd get_throttled`.
// A pure policy turns readings into a step-down level (with hysteresis); the monitor is the thin
// shell that polls, keeps counters for stats() and tells listeners when the level changes.

import { execFile } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { BoardProfile, ThermalPolicy, ThermalStep } from './profiles.js';

// --- pure ----------------------------------------------------------------------------------------

/** Decoded `vcgencmd get_throttled` bits (Raspberry Pi firmware). */
export interface ThrottledFlags {
  raw: number;
  underVoltage: boolean;
  freqCapped: boolean;
  throttled: boolean;
  softTempLimit: boolean;
  underVoltageOccurred: boolean;
  freqCappedOccurred: boolean;
  throttledOccurred: boolean;
  softTempLimitOccurred: boolean;
}

/** `throttled=0x50005` → flags; null when the text is not that shape. */
export function parseThrottled(text: string): ThrottledFlags | null {
  const m = /throttled=0x([0-9a-fA-F]{1,8})/.exec(text);
  if (!m) return null;
  const raw = parseInt(m[1]!, 16);
  const bit = (n: number): boolean => (raw & (1 << n)) !== 0;
  return {
    raw,
    underVoltage: bit(0),
    freqCapped: bit(1),
    throttled: bit(2),
    softTempLimit: bit(3),
    underVoltageOccurred: bit(16),
    freqCappedOccurred: bit(17),
    throttledOccurred: bit(18),
    softTempLimitOccurred: bit(19),
  };
}

export type ThermalLevel = 0 | 1 | 2 | 3;

/**
 * Next level from the hottest zone and the firmware flags. Going up is immediate; going down needs
 * the temperature to fall hysteresisC below the current level's threshold. Firmware throttling (or
 * a soft temp limit, or under-voltage: a weak supply browns out under encode load) holds at least
 * level 1 whatever the thermometer says.
 */
export function nextThermalLevel(current: ThermalLevel, tempC: number | null, flags: ThrottledFlags | null, p: ThermalPolicy): ThermalLevel {
  const th = [-Infinity, p.warmC, p.hotC, p.criticalC];
  let byTemp: ThermalLevel = current;
  if (tempC !== null) {
    let up: ThermalLevel = 0;
    for (let l = 3; l >= 1; l--) {
      if (tempC >= th[l]!) {
        up = l as ThermalLevel;
        break;
      }
    }
    if (up >= current) byTemp = up;
    else {
      // Step down one level at a time, each only below its threshold minus hysteresis.
      let l = current;
      while (l > up && tempC < th[l]! - p.hysteresisC) l = (l - 1) as ThermalLevel;
      byTemp = l;
    }
  }
  const floor: ThermalLevel = flags && (flags.throttled || flags.freqCapped || flags.softTempLimit || flags.underVoltage) ? 1 : 0;
  return Math.max(byTemp, floor) as ThermalLevel;
}

/** Apply a level's step to configured video settings. */
export function applyStep(base: { fps: number; bitrateKbps: number }, step: ThermalStep): { fps: number; bitrateKbps: number } {
  return {
    fps: Math.max(1, Math.floor(base.fps * step.fpsScale)),
    bitrateKbps: Math.max(64, Math.floor(base.bitrateKbps * step.bitrateScale)),
  };
}

// --- I/O shell -----------------------------------------------------------------------------------

export interface ZoneReading {
  zone: string;
  type: string;
  tempC: number;
}

/**
 * Zones whose reading is not a temperature to act on. The Jetson Nano's PMIC-Die zone is a
 * placeholder that always reads 100 °C (it only trips at the PMIC's own limit).
 */
const IGNORED_ZONE_TYPES = new Set(['PMIC-Die']);

/** Every readable thermal zone under <root>/sys/class/thermal. Absurd values are skipped. */
export async function readThermalZones(root = '/'): Promise<ZoneReading[]> {
  const dir = join(root, 'sys/class/thermal');
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => /^thermal_zone\d+$/.test(n)).sort();
  } catch {
    return [];
  }
  const out: ZoneReading[] = [];
  for (const zone of names) {
    try {
      const milli = Number((await readFile(join(dir, zone, 'temp'), 'utf8')).trim());
      const type = (await readFile(join(dir, zone, 'type'), 'utf8').catch(() => zone)).trim();
      if (IGNORED_ZONE_TYPES.has(type)) continue;
      // Disabled zones read -40 °C or 0 or garbage; a SoC above 150 °C is a broken sensor.
      if (!Number.isFinite(milli) || milli <= 0 || milli > 150_000) continue;
      out.push({ zone, type, tempC: Math.round(milli / 100) / 10 });
    } catch {
      // A zone that cannot be read (permissions, hot-unplugged sensor) is skipped.
    }
  }
  return out;
}

export interface ThermalState {
  level: ThermalLevel;
  tempC: number | null;
  zone: string | null;
  throttled: ThrottledFlags | null;
  step: ThermalStep;
}

export interface ThermalMonitorOptions {
  profile: Pick<BoardProfile, 'thermal'>;
  root?: string;
  /** Poll period; 5 s is fast enough for a SoC's thermal time constant and costs nothing. */
  intervalMs?: number;
  /** The vcgencmd binary (default 'vcgencmd' on PATH). Only called when the profile asks for it. */
  vcgencmd?: string;
  /** Kill a hung vcgencmd after this long. */
  vcgencmdTimeoutMs?: number;
  /** Start polling right away (default true). Tests call sample() themselves. */
  autoStart?: boolean;
}

export interface ThermalMonitor {
  /** Read sensors now and update the level. Never throws. */
  sample(): Promise<ThermalState>;
  state(): ThermalState;
  /** Configured fps/bitrate → what to use now. */
  adjust(base: { fps: number; bitrateKbps: number }): { fps: number; bitrateKbps: number };
  onChange(cb: (s: ThermalState) => void): () => void;
  stats(): Record<string, number | string | boolean | null>;
  close(): void;
}

export function createThermalMonitor(opts: ThermalMonitorOptions): ThermalMonitor {
  const policy = opts.profile.thermal;
  const root = opts.root ?? '/';
  const intervalMs = Math.max(100, opts.intervalMs ?? 5000);
  const vcgencmd = opts.vcgencmd ?? 'vcgencmd';
  const vcTimeout = opts.vcgencmdTimeoutMs ?? 2000;
  const ev = new EventEmitter<{ change: [ThermalState] }>();
  let useVc = policy.vcgencmd;
  let st: ThermalState = { level: 0, tempC: null, zone: null, throttled: null, step: policy.steps[0] };
  const c = { samples: 0, stepDowns: 0, stepUps: 0, readErrors: 0, vcgencmdErrors: 0 };
  let lastError: string | null = null;
  let timer: NodeJS.Timeout | null = null;
  let closed = false;
  let inFlight: Promise<ThermalState> | null = null;

  const readVc = (): Promise<ThrottledFlags | null> =>
    new Promise((resolve) => {
      execFile(vcgencmd, ['get_throttled'], { timeout: vcTimeout, maxBuffer: 4096 }, (err, stdout) => {
        if (err) {
          c.vcgencmdErrors++;
          lastError = `vcgencmd: ${(err as NodeJS.ErrnoException).code ?? err.message}`;
          // Not installed (container, Ubuntu on a Pi): stop asking instead of failing every poll.
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') useVc = false;
          resolve(null);
          return;
        }
        const flags = parseThrottled(stdout);
        if (!flags) {
          c.vcgencmdErrors++;
          lastError = `vcgencmd: unexpected output ${JSON.stringify(stdout.slice(0, 60))}`;
        }
        resolve(flags);
      });
    });

  const doSample = async (): Promise<ThermalState> => {
    const [zones, flags] = await Promise.all([readThermalZones(root), useVc ? readVc() : Promise.resolve(null)]);
    c.samples++;
    if (zones.length === 0) c.readErrors++;
    const hottest = zones.reduce<ZoneReading | null>((a, z) => (a === null || z.tempC > a.tempC ? z : a), null);
    const tempC = hottest ? hottest.tempC : null;
    const level = nextThermalLevel(st.level, tempC, flags, policy);
    const prev = st.level;
    st = { level, tempC, zone: hottest ? `${hottest.zone}:${hottest.type}` : null, throttled: flags, step: policy.steps[level] };
    if (level > prev) c.stepDowns++;
    if (level < prev) c.stepUps++;
    if (level !== prev) {
      for (const l of ev.listeners('change')) {
        try {
          (l as (s: ThermalState) => void)(st);
        } catch (err) {
          lastError = `listener: ${(err as Error).message}`;
        }
      }
    }
    return st;
  };

  const sample = (): Promise<ThermalState> => {
    if (closed) return Promise.resolve(st);
    // One sample at a time: a slow vcgencmd must not pile up overlapping reads.
    inFlight ??= doSample().finally(() => {
      inFlight = null;
    });
    return inFlight;
  };

  const schedule = (): void => {
    if (closed) return;
    timer = setTimeout(() => {
      void sample().finally(schedule);
    }, intervalMs);
    timer.unref();
  };
  if (opts.autoStart !== false) {
    void sample().finally(schedule);
  }

  return {
    sample,
    state: () => st,
    adjust: (base) => applyStep(base, st.step),
    onChange(cb) {
      ev.on('change', cb);
      return () => ev.off('change', cb);
    },
    stats() {
      return {
        ...c,
        level: st.level,
        tempC: st.tempC,
        zone: st.zone,
        fpsScale: st.step.fpsScale,
        bitrateScale: st.step.bitrateScale,
        throttledRaw: st.throttled ? `0x${st.throttled.raw.toString(16)}` : null,
        underVoltage: st.throttled?.underVoltage ?? null,
        firmwareThrottled: st.throttled ? st.throttled.throttled || st.throttled.freqCapped || st.throttled.softTempLimit : null,
        vcgencmd: useVc,
        lastError,
      };
    },
    close() {
      if (closed) return;
      closed = true;
      if (timer) clearTimeout(timer);
      timer = null;
      ev.removeAllListeners();
    },
  };
}
