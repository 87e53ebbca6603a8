// Structured logs (pino) with secrets redacted, and a throttle for repeated failures
// ("upstream refused ×37 in 60s") so a flapping link cannot flood an SD card.

import pino, { type Logger } from 'pino';

export type { Logger } from 'pino';

const REDACT_PATHS = [
  'key', 'token', 'password', 'pass', 'secret', 'authorization', 'auth',
  '*.key', '*.token', '*.password', '*.pass', '*.secret', '*.authorization', '*.auth',
  'headers.authorization', 'req.headers.authorization',
];

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { app: 'moth-edge' },
      redact: { paths: REDACT_PATHS, censor: '***' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}

/** A logger that prints nothing (tests, CLI subcommands). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

export { redactUrl, ThrottledLog, type LevelLog } from './engine/throttled-log.js';
