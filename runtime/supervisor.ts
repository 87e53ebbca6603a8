// Keeps one capture driver running: restarts it on one of two jittered ladders (issue 14) — a
// device or camera that said no (bad credentials, unknown path, a config it refuses, a missing
// binary) is retried slowly; one that went away (a reboot, a cable, a stream that stalled) is
// retried every 250 ms → 1 s for as long as it stays away, so frames flow again within about a
// second of its return — and marks it ready on its first frame (MediaMTX: "ready means a frame
// arrived"). The driver's tracks stay attached across restarts, so subscribers stay connected
// while a camera comes back.

import { isNetworkErrno, RetryPolicy, type DriverOutput, type FailureClass, type Frame, type SourceDriver } from './engine/api.js';
import type { Engine, TrackPublisher } from './engine/engine.js';
import { ThrottledLog, type Logger } from './log.js';

export interface SupervisorOptions {
  /** Ladder after a refusal (auth, not found, bad config, missing binary). */
  restartInitialMs: number;
  restartMaxMs: number;
  healthyAfterMs: number;
  /** Ladder while the device is away (refused connects, resets, stalls): 250 ms → 1 s. */
  awayInitialMs?: number;
  awayMaxMs?: number;
  log: Logger;
  random?: () => number;
}

type State = 'starting' | 'running' | 'backoff' | 'stopped';

export class DriverSupervisor {
  private readonly ac = new AbortController();
  private readonly retry: RetryPolicy;
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
    this.retry = new RetryPolicy({
      refused: { initialMs: opts.restartInitialMs, maxMs: Math.max(opts.restartInitialMs, opts.restartMaxMs), resetAfterMs: opts.healthyAfterMs },
      network: { initialMs: opts.awayInitialMs ?? 250, maxMs: Math.max(opts.awayInitialMs ?? 250, opts.awayMaxMs ?? 1000) },
      ...(opts.random ? { random: opts.random } : {}),
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
            this.retry.healthy(Date.now());
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
      const cls = driverFailureClass(this.lastErrorCode, this.lastError);
      const delay = this.retry.next(Date.now(), cls);
      this.state = 'backoff';
      this.nextRetryAt = Date.now() + delay;
      this.throttled.error(`driver:${this.name}:${cls}`, `driver ${this.name} ${cls === 'refused' ? 'refused' : 'failed'}, restart in ${delay} ms: ${this.lastError}`, {
        code: this.lastErrorCode,
        class: cls,
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
      failures: this.retry.failures,
      retries: this.retry.stats(),
      lastDelayMs: this.retry.lastDelayMs,
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

/**
 * Codes that mean the device or its config said no: retrying fast cannot help. Anything else — a
 * refused or reset connection, a stall, a start timeout, a stream that ended, a vanished device —
 * is the device being away, retried fast.
 */
const REFUSAL = /(_AUTH_FAILED|_AUTH_LOCKED|_NOT_FOUND|_NO_H264|_NO_PROFILE|_TRANSPORT_UNSUPPORTED|_BAD_PATH|_BAD_BAUD|_BAD_CONFIG|_PATH_INVALID|^CONFIG_INVALID|^FFMPEG_NOT_FOUND|^EACCES|^EPERM|^ENOENT|_LISTEN_FAILED)$/;

export function driverFailureClass(code: string | null, message: string | null): FailureClass {
  if (code && isNetworkErrno(code)) return 'network';
  if (code && REFUSAL.test(code)) return 'refused';
  if (!code && message && /\b(401|403|404)\b/.test(message)) return 'refused';
  return 'network';
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
