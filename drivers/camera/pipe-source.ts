// The shared body of the process-backed cameras (RTSP via ffmpeg, V4L2 via ffmpeg, rpicam-vid):
// run one supervised child, split its stdout into whole access units (H.264 Annex-B) or images
// (MJPEG), stamp them on the capture clock, start each run at a keyframe, count everything.
// Timestamps come from the child's own clock where the stream has one (FLV tag times = ffmpeg's
// dts), mapped onto the capture clock by SourceClock; raw Annex-B and MJPEG carry none and are
// stamped on arrival. Either way a track's times strictly increase, across child restarts too.

import { captureClockUs, EdgeError, MsUnwrapper, SourceClock, type DriverOutput, type DriverStats } from '../../runtime/engine/api.js';
import { runChild, type RunChildOptions, type SupervisedChild } from '../exec/child.js';
import { AnnexBSplitter, h264Mime, parseSps, type SpsInfo } from '../../runtime/engine/h264.js';
import { AvcDepacketizer, FlvStreamReader } from '../ingest/rtmp/flv.js';
import { JpegSplitter } from './jpeg.js';

/**
 * What the child writes on stdout: raw H.264 Annex-B (rpicam-vid), H.264 in FLV (ffmpeg `-f flv`:
 * tag sizes mark where a frame ends, so it leaves at once instead of waiting for the next frame's
 * start code — one frame interval less latency), or concatenated JPEGs.
 */
export type PipeCodec = 'h264' | 'h264-flv' | 'jpeg';

/** Remove `user:pass@` from every URL in a text (RTSP URLs reach ffmpeg's stderr and argv). */
export function redactUserinfo(s: string): string {
  return s.replace(/(\b[a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/gi, '$1***@');
}

export interface PipeRunOptions {
  child: RunChildOptions;
  codec: PipeCodec;
  track: string;
  /** For the MIME when the stream does not say (H.264 SPS has no reliable frame rate). */
  fps?: number;
  /** JPEG has no SPS: the MIME size comes from config. */
  jpegSize?: { width: number; height: number };
  /**
   * The child makes exactly this many frames per second of its own clock (a lavfi generator):
   * frame n's source time is n/fps. For streams that carry no timestamps (MJPEG).
   */
  frameRateClock?: number;
  /** Map a failure (stderr tail in the message) to a more specific error code. */
  classify?: (err: EdgeError) => string | undefined;
}

/** Counters and the per-run loop of one process-backed camera; the driver owns one. */
export class PipeSource {
  frames = 0;
  bytes = 0;
  keyframes = 0;
  starts = 0;
  droppedBeforeKeyframe = 0;
  firstFrameMs: number | null = null;
  lastError: string | null = null;
  lastErrorCode: string | null = null;
  private splitterStats: Record<string, number> = {};
  private child: SupervisedChild | undefined;
  private running = false;
  /** The last frame time written: the next run's clock starts above it. */
  private lastTs = -Infinity;
  private clockReanchors = 0;
  private clockBumped = 0;
  private maxLagUs = 0;

  get isRunning(): boolean {
    return this.running;
  }

  /** The live child (for keyframe requests by signal), when one runs. */
  get current(): SupervisedChild | undefined {
    return this.running ? this.child : undefined;
  }

  async run(o: PipeRunOptions, out: DriverOutput, signal: AbortSignal): Promise<void> {
    this.starts++;
    const startedUs = captureClockUs();
    let first = true;
    let mime = '';
    const clock = new SourceClock({ notBeforeUs: this.lastTs });
    const prior = { reanchors: this.clockReanchors, bumped: this.clockBumped };
    /** `srcUs`: the frame's time on the child's clock, when the stream carries one. */
    const emit = (data: Buffer, key: boolean, srcUs?: number): void => {
      const now = captureClockUs();
      const ts = clock.map(srcUs ?? now, now);
      this.lastTs = ts;
      const c = clock.stats();
      this.clockReanchors = prior.reanchors + c.reanchors;
      this.clockBumped = prior.bumped + c.bumped;
      this.maxLagUs = Math.max(this.maxLagUs, c.maxLagSeenUs);
      if (first) {
        first = false;
        this.firstFrameMs = Math.round((now - startedUs) / 1000);
      }
      this.frames++;
      this.bytes += data.length;
      if (key) this.keyframes++;
      out.write(o.track, { ts, wallclock: Date.now() - (now - ts) / 1000, key, data });
    };
    let onData: (chunk: Buffer) => void;
    if (o.codec === 'jpeg') {
      const split = new JpegSplitter();
      let n = 0;
      mime = o.jpegSize ? `image/jpeg;width=${o.jpegSize.width};height=${o.jpegSize.height}` : 'image/jpeg';
      out.setMime(o.track, mime);
      onData = (chunk) => {
        for (const img of split.push(chunk)) emit(img, true, o.frameRateClock ? (n++ * 1e6) / o.frameRateClock : undefined);
        this.splitterStats = split.stats();
      };
    } else if (o.codec === 'h264-flv') {
      const reader = new FlvStreamReader();
      // ffmpeg's FLV muxer writes 4-byte NAL lengths; with no extradata (a camera that sends SPS/PPS
      // only in-band) the parameter sets are taken from the stream.
      const depack = new AvcDepacketizer(4);
      const unwrap = new MsUnwrapper();
      let seenKey = false;
      let sps: SpsInfo | undefined;
      onData = (chunk) => {
        for (const tag of reader.push(chunk)) {
          if (tag.type !== 9) continue;
          const unit = depack.push(tag.body);
          if (unit === 'config' || (unit && depack.config && !sps)) {
            try {
              sps = parseSps(depack.config!.sps[0]!);
            } catch {
              sps = undefined;
            }
          }
          if (!unit || unit === 'config') continue;
          if (!seenKey && !unit.key) {
            this.droppedBeforeKeyframe++;
            continue;
          }
          seenKey = true;
          const m = h264Mime(sps, o.fps);
          if (m !== mime) {
            mime = m;
            out.setMime(o.track, m);
          }
          emit(unit.data, unit.key, unwrap.push(tag.timestamp) * 1000);
        }
        const c = depack.counters;
        this.splitterStats = { flvTags: reader.tags, accessUnits: c.units, keyframes: c.keyframes, droppedNoConfig: c.droppedNoConfig, droppedInvalid: c.droppedInvalid, droppedOtherCodec: c.droppedOtherCodec };
      };
    } else {
      const split = new AnnexBSplitter();
      let seenKey = false;
      onData = (chunk) => {
        for (const au of split.push(chunk)) {
          // A run joins the camera mid-GOP: a decoder (and a pang subscriber) can start only at an IDR.
          if (!seenKey && !au.key) {
            this.droppedBeforeKeyframe++;
            continue;
          }
          seenKey = true;
          const m = h264Mime(split.sps, o.fps);
          if (m !== mime) {
            mime = m;
            out.setMime(o.track, m);
          }
          emit(au.data, au.key);
        }
        this.splitterStats = split.stats();
      };
    }
    this.running = true;
    try {
      await runChild(o.child, (chunk) => {
        try {
          onData(chunk);
        } catch (err) {
          // a broken container is the process's fault: end this run with a typed error
          if (err instanceof Error && 'code' in err && typeof err.code === 'string') throw new EdgeError(err.code, err.message.replace(/^[A-Z_]+: /, ''));
          throw err;
        }
      }, signal, (c) => {
        this.child = c;
      });
    } catch (err) {
      let e = err instanceof EdgeError ? err : new EdgeError('PROCESS_FAILED', String((err as Error)?.message ?? err));
      const code = o.classify?.(e);
      if (code && code !== e.code) e = new EdgeError(code, e.message.replace(/^[A-Z_]+: /, ''), e.context, { cause: err });
      this.lastError = redactUserinfo(e.message);
      this.lastErrorCode = e.code;
      if (e.message !== this.lastError) e = new EdgeError(e.code, this.lastError.replace(/^[A-Z_]+: /, ''), e.context);
      throw e;
    } finally {
      this.running = false;
      this.child = undefined;
    }
  }

  stats(): DriverStats {
    return {
      frames: this.frames,
      bytes: this.bytes,
      keyframes: this.keyframes,
      starts: this.starts,
      restarts: Math.max(0, this.starts - 1),
      droppedBeforeKeyframe: this.droppedBeforeKeyframe,
      firstFrameMs: this.firstFrameMs,
      clockReanchors: this.clockReanchors,
      clockBumped: this.clockBumped,
      clockMaxLagMs: Math.round(this.maxLagUs / 1000),
      running: this.running,
      lastError: this.lastError,
      lastErrorCode: this.lastErrorCode,
      ...this.splitterStats,
    };
  }
}

/** Common stderr patterns of ffmpeg and the camera tools → stable error codes. */
export function classifyCommon(prefix: string, message: string): string | undefined {
  const m = message.toLowerCase();
  if (/401 unauthorized|authorization failed|403 forbidden/.test(m)) return `${prefix}_AUTH_FAILED`;
  if (/404 not found|no such file or directory|no cameras available|no such device/.test(m)) return `${prefix}_NOT_FOUND`;
  if (/connection refused|no route to host|network is unreachable|connection timed out|host is unreachable/.test(m)) return `${prefix}_CONNECT_FAILED`;
  if (/device or resource busy|pipeline handler in use/.test(m)) return `${prefix}_BUSY`;
  if (/permission denied/.test(m)) return `${prefix}_PERMISSION_DENIED`;
  return undefined;
}
