// The logger recordings/ needs: the engine's LevelLog (pino-compatible), so the runtime passes its
// pino child and tests pass a silent or collecting one. Repeated failures go through the engine's
// ThrottledLog (one implementation for the whole runtime).

import type { LevelLog } from '../runtime/engine/api.js';

export { ThrottledLog } from '../runtime/engine/api.js';

export type RecLog = LevelLog;

export const silentLog: RecLog = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};
