// pm2 application definition for moth-edge (`pm2 start ecosystem.config.js`).
//
// ESM like the rest of the package: pm2 loads this file with require(), which takes an ES module
// (no top-level await) on Node >= 20.19 / 22.12. The board decides the memory limits; see
// board/pm2.ts for the MOTH_EDGE_BOARD / MOTH_EDGE_MAX_MEMORY overrides.

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pm2Limits } from './dist/board/pm2.js';

const here = dirname(fileURLToPath(import.meta.url));
const limits = pm2Limits(process.env);
const logDir = process.env.MOTH_EDGE_LOG_DIR || join(here, 'logs');
// No config file → the runtime's embedded demo (test pattern + simulated IMU).
const configFile = process.env.MOTH_EDGE_CONFIG || (existsSync('/etc/moth-edge/config.yaml') ? '/etc/moth-edge/config.yaml' : '');

export const apps = [
  {
    name: process.env.MOTH_EDGE_PM2_NAME || 'moth-edge',
    cwd: here,
    // Node itself is the program (interpreter 'none'): pm2's fork container would import cli.js
    // as a module, so cli.js would not see itself as the entry point (and pm2 code would share our
    // process). The runtime gets signals directly and its own argv.
    script: process.execPath,
    interpreter: 'none',
    args: [`--max-old-space-size=${limits.nodeMaxOldSpaceMb}`, join(here, 'dist/runtime/cli.js'), 'run'],
    exec_mode: 'fork',
    instances: 1,
    autorestart: true,
    // Per board profile (pi4: 600M, Pi Zero 2 W: ~145M on its 417 MiB, ...).
    max_memory_restart: limits.maxMemoryRestart,
    // The runtime stops gracefully within 5 s (drivers stopped, files flushed, hard cap in cli.ts);
    // pm2 must wait longer than that before SIGKILL.
    // (pm2 7 stops with SIGINT, or PM2_KILL_SIGNAL set for the daemon; the runtime handles both.)
    kill_timeout: 8000,
    // A crash loop backs off 200 ms → ×1.5 … capped at 15 s by pm2; reset after a stable run.
    exp_backoff_restart_delay: 200,
    min_uptime: '10s',
    // Kill the whole tree on stop: ffmpeg children run in their own process groups.
    treekill: true,
    out_file: join(logDir, 'moth-edge.out.log'),
    error_file: join(logDir, 'moth-edge.err.log'),
    merge_logs: true,
    time: true,
    env: {
      NODE_ENV: 'production',
      MOTH_EDGE_CONFIG: configFile,
      MOTH_EDGE_BOARD_ID: limits.board,
    },
  },
];

export default { apps };
