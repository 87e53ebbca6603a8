// The shared body of the process-backed cameras (RTSP via ffmpeg, V4L2 via ffmpeg, rpicam-vid):
// run one supervised child, split its stdout into whole access units (H.264 Annex-B) or images
// (MJPEG), stamp them on the capture clock, start each run at a keyframe, count everything.

import { captureClockUs, EdgeError, type DriverOutput, type DriverStats } from '../../runtime/engine/api.js';
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
    const emit = (data: Buffer, key: boolean): void => {
      const ts = captureClockUs();
      if (first) {
        first = false;
        this.firstFrameMs = Math.round((ts - startedUs) / 1000);
      }
      this.frames++;
      this.bytes += data.length;
      if (key) this.keyframes++;
      out.write(o.track, { ts, wallclock: Date.now(), key, data });
    };
    let onData: (chunk: Buffer) => void;
    if (o.codec === 'jpeg') {
      const split = new JpegSplitter();
      mime = o.jpegSize ? `image/jpeg;width=${o.jpegSize.width};height=${o.jpegSize.height}` : 'image/jpeg';
      out.setMime(o.track, mime);
      onData = (chunk) => {
        for (const img of split.push(chunk)) emit(img, true);
        this.splitterStats = split.stats();
      };
    } else if (o.codec === 'h264-flv') {
      const reader = new FlvStreamReader();
      // ffmpeg's FLV muxer writes 4-byte NAL lengths; with no extradata (a camera that sends SPS/PPS
      // only in-band) the parameter sets are taken from the stream.
      const depack = new AvcDepacketizer(4);
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
          emit(unit.data, unit.key);
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
