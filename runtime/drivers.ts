// The one visible place where config kinds become capture drivers (MediaMTX's source switch).

import type { LevelLog, SourceDriver } from './engine/api.js';
import { createOnvifDriver } from '../drivers/camera/onvif.js';
import { createRpicamDriver } from '../drivers/camera/rpicam.js';
import { createRtspDriver } from '../drivers/camera/rtsp.js';
import { createTestPatternDriver } from '../drivers/camera/testpattern.js';
import { createV4l2Driver } from '../drivers/camera/v4l2.js';
import { createGpsDriver } from '../drivers/sensor/gps.js';
import { createLineSensorDriver } from '../drivers/sensor/line.js';
import { SimulatedSensorDriver } from '../drivers/sensor/simulated.js';
import type { Config, DriverConfig } from './config/schema.js';
import type { DeviceAuthRegistry } from '../drivers/auth/device-auth.js';

export interface DriverContext {
  /**
   * The board's H.264 encoder for cameras that need encoding (V4L2 `encoder: auto`): from
   * `chooseEncoder(board.profile, probeFfmpegEncoders())`; libx264 when absent.
   */
  boardEncoder?: 'h264_v4l2m2m' | 'libx264';
  /** The driver's logger (serial sensors log port losses and returns through it). */
  log?: LevelLog;
  /** Camera accounts shared with the PTZ drivers (one lock-out state per host+user). */
  accounts?: DeviceAuthRegistry;
}

export function createSourceDriver(cfg: DriverConfig, config: Config, ctx: DriverContext = {}): SourceDriver {
  const deps = { ffmpegPath: config.ffmpeg.path, ...(ctx.accounts ? { accounts: ctx.accounts } : {}) };
  switch (cfg.kind) {
    case 'testpattern':
      return createTestPatternDriver(cfg, deps);
    case 'rtsp':
      return createRtspDriver(cfg, deps);
    case 'v4l2':
      return createV4l2Driver(cfg, { ...deps, ...(ctx.boardEncoder ? { boardEncoder: ctx.boardEncoder } : {}) });
    case 'rpicam':
      return createRpicamDriver(cfg);
    case 'onvif':
      return createOnvifDriver(cfg, deps);
    case 'simulated':
      return new SimulatedSensorDriver(cfg);
    case 'gps':
      return createGpsDriver(cfg, ctx.log ? { log: ctx.log } : {});
    case 'serial-lines':
      return createLineSensorDriver(cfg, ctx.log ? { log: ctx.log } : {});
  }
}
