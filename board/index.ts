// board/: detection, profiles, thermal step-down and the `moth-edge board` command.
export { detectBoard, detectBoardSync, parsePiRevision, parseNvTegraRelease, BOARD_IDS, type BoardId, type BoardInfo } from './detect.js';
export {
  PROFILES,
  profileFor,
  chooseEncoder,
  pm2MemoryString,
  type BoardProfile,
  type EncoderChoice,
  type ThermalPolicy,
  type ThermalStep,
  type VideoDefaults,
} from './profiles.js';
export {
  createThermalMonitor,
  nextThermalLevel,
  parseThrottled,
  applyStep,
  readThermalZones,
  type ThermalMonitor,
  type ThermalMonitorOptions,
  type ThermalState,
  type ThrottledFlags,
} from './thermal.js';
export { runBoardCli, boardReport, probeFfmpegEncoders, type BoardReport } from './cli.js';
export { pm2Limits, type Pm2Limits } from './pm2.js';
export { createBoardService, type BoardService, type BoardServiceOptions } from './service.js';
export { createThermalGovernor, capForLevel, governedTracks, THERMAL_CALLER, type GovernedTrack, type ThermalGovernor, type ThermalGovernorOptions } from './thermal-governor.js';
