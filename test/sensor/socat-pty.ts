// Test peer: a socat pty pair. The driver opens `dev`, the test writes device bytes into `feed`.
import type { ChildProcess } from 'node:child_process';
import { openSync, writeSync, closeSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { EventEmitter } from 'node:events';
import type { DriverOutput, Frame } from '../../runtime/engine/api.js';
import { spawnSocatPair } from '../sim/serial-pty.js';

export interface PtyPair {
  dev: string;
  feed: string;
  proc: ChildProcess;
  write(data: string | Buffer): void;
  /** Write without blocking the event loop (a full pty buffer blocks writeSync until the reader drains it). */
  writeAsync(data: string | Buffer): Promise<void>;
  /** Kill socat (the "device" vanishes) and wait for it to exit. SIGKILL leaves a dangling link. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export async function startPtyPair(dev: string, feed: string, timeoutMs = 5000): Promise<PtyPair> {
  const proc = await spawnSocatPair(dev, feed, timeoutMs);
  let fd: number | null = null;
  let fh: FileHandle | null = null;
  return {
    async writeAsync(data) {
      fh ??= await open(feed, 'w');
      const buf = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
      let off = 0;
      while (off < buf.length) off += (await fh.write(buf, off)).bytesWritten;
    },
    dev,
    feed,
    proc,
    write(data) {
      if (fd === null) fd = openSync(feed, 'w');
      const buf = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
      let off = 0;
      while (off < buf.length) off += writeSync(fd, buf, off);
    },
    async kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (fh !== null) {
        await fh.close().catch(() => {});
        fh = null;
      }
      if (fd !== null) {
        try {
          closeSync(fd);
        } catch {
          /* already gone */
        }
        fd = null;
      }
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise<void>((r) => proc.once('exit', () => r()));
      proc.kill(signal);
      await exited;
    },
  };
}

/** A DriverOutput that records what a driver wrote and lets a test wait for a condition. */
export class RecordingOutput implements DriverOutput {
  frames: Array<{ track: string; frame: Frame }> = [];
  mimes: Record<string, string> = {};
  private ev = new EventEmitter();

  setMime(track: string, mime: string): void {
    this.mimes[track] = mime;
    this.ev.emit('change');
  }

  write(track: string, frame: Frame): void {
    this.frames.push({ track, frame });
    this.ev.emit('change');
  }

  records(): unknown[] {
    return this.frames.map((f) => JSON.parse(f.frame.data.toString('utf8')) as unknown);
  }

  /** Resolve when pred() holds, checked after every write and every `pollMs` (for stats-only conditions). */
  waitFor(pred: () => boolean, what: string, timeoutMs = 5000, pollMs = 20): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (pred()) {
          cleanup();
          resolve();
        }
      };
      const iv = setInterval(check, pollMs);
      const t = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearInterval(iv);
        clearTimeout(t);
        this.ev.off('change', check);
      };
      this.ev.on('change', check);
    });
  }
}
