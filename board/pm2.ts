// What pm2's ecosystem file needs from the board, computed synchronously (pm2 loads the ecosystem
// file with require(), so it cannot await).

import { BOARD_IDS, detectBoardSync, type BoardId } from './detect.js';
import { pm2MemoryString, profileFor } from './profiles.js';

export interface Pm2Limits {
  board: BoardId;
  model: string;
  /** pm2's max_memory_restart, e.g. "600M". */
  maxMemoryRestart: string;
  /** node --max-old-space-size, below the pm2 limit so V8 collects before pm2 kills. */
  nodeMaxOldSpaceMb: number;
}

/**
 * Board limits for pm2. Environment overrides, for images where detection is wrong or for tests:
 * MOTH_EDGE_BOARD (a profile id), MOTH_EDGE_ROOT (read /proc and /sys under this dir),
 * MOTH_EDGE_MAX_MEMORY (pm2 form, e.g. "400M").
 */
export function pm2Limits(env: NodeJS.ProcessEnv = process.env): Pm2Limits {
  const detected = detectBoardSync(env.MOTH_EDGE_ROOT || '/');
  const forced = env.MOTH_EDGE_BOARD;
  const board = forced && (BOARD_IDS as readonly string[]).includes(forced) ? { ...detected, id: forced as BoardId } : detected;
  const profile = profileFor(board);
  const override = env.MOTH_EDGE_MAX_MEMORY;
  return {
    board: board.id,
    model: board.model,
    maxMemoryRestart: override && /^\d{2,6}[MG]$/.test(override) ? override : pm2MemoryString(profile),
    nodeMaxOldSpaceMb: profile.memory.nodeMaxOldSpaceMb,
  };
}
