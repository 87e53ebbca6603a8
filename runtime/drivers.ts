// The one visible place where config kinds become capture drivers (MediaMTX's source switch).

import type { SourceDriver } from './engine/api.js';
import { createTestPatternDriver } from '../drivers/camera/testpattern.js';
import { SimulatedSensorDriver } from '../drivers/sensor/simulated.js';
import type { Config, DriverConfig } from './config/schema.js';

export function createSourceDriver(cfg: DriverConfig, config: Config): SourceDriver {
  const deps = { ffmpegPath: config.ffmpeg.path };
  switch (cfg.kind) {
    case 'testpattern':
      return createTestPatternDriver(cfg, deps);
    case 'simulated':
      return new SimulatedSensorDriver(cfg);
  }
}
