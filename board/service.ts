// The board as one runtime component: detected once at start, profile chosen, thermal watched.
// app.ts constructs it, shows stats() under "board" and calls close() on stop.

import { detectBoard, type BoardInfo } from './detect.js';
import { profileFor, type BoardProfile } from './profiles.js';
import { createThermalMonitor, type ThermalMonitor } from './thermal.js';

export interface BoardService {
  readonly info: BoardInfo;
  readonly profile: BoardProfile;
  readonly thermal: ThermalMonitor;
  stats(): Record<string, unknown>;
  /** Idempotent, never throws. */
  close(): void;
}

export interface BoardServiceOptions {
  root?: string;
  thermalIntervalMs?: number;
  vcgencmd?: string;
}

export async function createBoardService(opts: BoardServiceOptions = {}): Promise<BoardService> {
  const root = opts.root ?? '/';
  const info = await detectBoard(root);
  const profile = profileFor(info);
  const thermal = createThermalMonitor({
    profile,
    root,
    ...(opts.thermalIntervalMs !== undefined ? { intervalMs: opts.thermalIntervalMs } : {}),
    ...(opts.vcgencmd !== undefined ? { vcgencmd: opts.vcgencmd } : {}),
  });
  return {
    info,
    profile,
    thermal,
    stats: () => ({
      id: info.id,
      model: info.model,
      arch: info.arch,
      memMb: info.memMb,
      pm2MaxMemoryRestartMb: profile.memory.pm2MaxMemoryRestartMb,
      engineBudgetMb: profile.memory.engineBudgetMb,
      hardwareH264: profile.hardwareH264,
      thermal: thermal.stats(),
    }),
    close: () => thermal.close(),
  };
}
