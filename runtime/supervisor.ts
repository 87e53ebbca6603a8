// Keeps one capture driver running: restarts it with jittered exponential backoff, resets the
// backoff after a stretch of healthy running, marks it ready on its first frame (MediaMTX:
// "ready means a frame arrived"). The driver's tracks stay attached across restarts, so
// subscribers stay connected while a camera comes back.

import { Backoff, type DriverOutput, type Frame, type SourceDriver } from './engine/api.js';
import type { Engine, TrackPublisher } from './engine/engine.js';
import { ThrottledLog, type Logger } from './log.js';

export interface SupervisorOptions {
  restartInitialMs: number;
  restartMaxMs: number;
  healthyAfterMs: number;
  log: Logger;
  random?: () => number;
}

type State = 'starting' | 'running' | 'backoff' | 'stopped';

export class DriverSupervisor {
  private readonly ac = new AbortController();
  private readonly backoff: Backoff;
  private readonly publishers = new Map<string, TrackPublisher>();
  private readonly throttled: ThrottledLog;
  private loop: Promise<void> | undefined;
  private state: State = 'starting';
  private ready = false;
  private readyAt: number | null = null;
  private firstFrameMs: number | null = null;
  private runs = 0;
  private lastError: string | null = null;
  private lastErrorCode: string | null = null;
  private framesIn = 0;
  private framesRejected = 0;
  private nextRetryAt: number | null = null;

  constructor(
    readonly name: string,
    readonly driver: SourceDriver,
    private readonly engine: Engine,
    private readonly channel: string,
    private readonly source: string,
    private readonly opts: SupervisorOptions,
  ) {
    this.backoff = new Backoff({
      initialMs: opts.restartInitialMs,
      maxMs: opts.restartMaxMs,
      resetAfterMs: opts.healthyAfterMs,
      random: opts.random,
    });
    this.throttled = new ThrottledLog(opts.log);
    for (const spec of driver.describe()) {
      const pub = engine.publisher(
        { channel, source, track: spec.track },
        {
          label: `driver ${name}`,
          requestKeyframe: () => driver.requestKeyframe?.() ?? false,
          setEncodingCap: (by, cap) => driver.setEncodingCap?.(by, cap) ?? false,
        },
      );
      pub.setMime(spec.mime);
      this.publishers.set(spec.track, pub);
    }
  }

  start(): void {
    if (!this.loop) this.loop = this.run();
  }

  private async run(): Promise<void> {
    const signal = this.ac.signal;
    while (!signal.aborted) {
      this.state = 'starting';
      this.runs++;
      const startedAt = Date.now();
      const out: DriverOutput = {
        setMime: (track, mime) => this.publishers.get(track)?.setMime(mime),
        write: (track, frame: Frame) => {
          const pub = this.publishers.get(track);
          if (!pub) {
            this.framesRejected++; // a track the driver did not describe
            return;
          }
          this.framesIn++;
          if (!this.ready || this.state !== 'running') {
            this.state = 'running';
            if (!this.ready) {
              this.ready = true;
              this.readyAt = Date.now();
              this.firstFrameMs = this.readyAt - startedAt;
              this.opts.log.info({ firstFrameMs: this.firstFrameMs }, 'driver ready (first frame)');
            }
            this.backoff.healthy(Date.now());
          }
          pub.write(frame);
        },
      };
      let err: unknown;
      try {
        await this.driver.run(out, signal);
        if (signal.aborted) break;
        err = new Error('driver ended');
      } catch (e) {
        err = e;
      }
      if (signal.aborted) break;
      const e = err as { code?: string; message?: string };
      this.lastError = e?.message ?? String(err);
      this.lastErrorCode = typeof e?.code === 'string' ? e.code : null;
      const delay = this.backoff.next(Date.now());
      this.state = 'backoff';
      this.nextRetryAt = Date.now() + delay;
      this.throttled.error(`driver:${this.name}`, `driver ${this.name} failed, restart in ${delay} ms: ${this.lastError}`, {
        code: this.lastErrorCode,
      });
      await sleep(delay, signal);
      this.nextRetryAt = null;
    }
    this.state = 'stopped';
  }

  stats() {
    return {
      name: this.name,
      kind: this.driver.kind,
      channel: this.channel,
      source: this.source,
      tracks: [...this.publishers.keys()],
      state: this.state,
      ready: this.ready,
      readyAt: this.readyAt,
      firstFrameMs: this.firstFrameMs,
      runs: this.runs,
      restarts: Math.max(0, this.runs - 1),
      failures: this.backoff.failures,
      lastDelayMs: this.backoff.lastDelayMs,
      nextRetryAt: this.nextRetryAt,
      lastError: this.lastError,
      lastErrorCode: this.lastErrorCode,
      framesIn: this.framesIn,
      framesRejected: this.framesRejected,
      driver: this.driver.stats(),
    };
  }

  /** Stop the driver (its child processes end with it) and release its tracks. Idempotent. */
  async close(): Promise<void> {
    this.ac.abort();
    await this.loop;
    for (const p of this.publishers.values()) p.close();
    this.state = 'stopped';
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
