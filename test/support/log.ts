// A logger whose lines a test can read: what an operator would see in the journal.
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../runtime/log.js';

export function capturingLogger(level = 'info'): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(l);
      cb();
    },
  });
  return { log: createLogger(level, sink), lines };
}
