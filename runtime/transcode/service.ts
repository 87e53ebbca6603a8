// Per-consumer codec (the pang `codec` option: jpeg | vp8 | h264) and stills.
// Pass-through when the track already has the codec; otherwise ONE shared supervised ffmpeg per
// (track, codec), started on first use and stopped when its last consumer leaves. Its output is
// an engine track `<track>.<codec>`, so every consumer gets the engine's bounded queue and
// GOP-start for free. Stills decode the cached GOP once (concurrent requests share it).
import {
  Backoff,
  captureClockUs,
  EdgeError,
  mimeBase,
  trackPath,
  type ConsumerHandle,
  type QueueItem,
  type SubscribeOptions,
  type TrackRef,
  type TrackSource,
} from '../engine/api.js';
import { AnnexBSplitter, h264Mime } from '../engine/h264.js';
import { JpegSplitter } from '../../drivers/camera/jpeg.js';
import { SupervisedChild } from '../../drivers/exec/child.js';
import { resolveFfmpeg } from '../../drivers/exec/ffmpeg.js';
import type { EgressLog } from '../egress/pang-link.js';
import type { TrackPublishing, TrackWriter } from '../egress/pang-puller.js';
import { IvfDemuxer } from './ivf.js';

export const CODECS = ['jpeg', 'vp8', 'h264'] as const;
export type Codec = (typeof CODECS)[number];

const CODEC_MIME: Record<Codec, string> = { jpeg: 'image/jpeg', vp8: 'video/vp8', h264: 'video/h264' };

/** Validate a user-given codec value (query string, JSON): a clear typed error otherwise. */
export function parseCodec(v: unknown): Codec {
  if (typeof v === 'string' && (CODECS as readonly string[]).includes(v.toLowerCase())) return v.toLowerCase() as Codec;
  throw new EdgeError('TRANSCODE_BAD_CODEC', `codec must be one of ${CODECS.join(', ')}, got ${JSON.stringify(String(v).slice(0, 32))}`);
}

/** ffmpeg's input demuxer for a track MIME; only what we can decode. */
function inputFormat(mime: string | undefined): string {
  const b = mime ? mimeBase(mime) : '';
  if (b === 'video/h264') return 'h264';
  if (b === 'image/jpeg' || b === 'video/mjpeg') return 'mjpeg';
  throw new EdgeError('TRANSCODE_UNSUPPORTED_INPUT', `cannot transcode a track of type ${b || 'unknown'}`);
}

/** Arguments built only from validated values (codec from the enum, numbers from config). */
export function transcodeArgs(inFmt: string, codec: Codec, o: { jpegFps: number; bitrateKbps: number; gop: number }): string[] {
  // Small probe: ffmpeg's default 5 MB probe holds every output back for seconds on a live pipe.
  // Wall-clock timestamps: a raw elementary stream has none, and fps= needs real time.
  const a = ['-hide_banner', '-loglevel', 'error', '-probesize', '32768', '-analyzeduration', '0', '-use_wallclock_as_timestamps', '1', '-fflags', 'nobuffer', '-flags', 'low_delay', '-f', inFmt, '-i', 'pipe:0', '-an'];
  switch (codec) {
    case 'jpeg':
      return [...a, '-vf', `fps=${o.jpegFps}`, '-c:v', 'mjpeg', '-q:v', '5', '-f', 'image2pipe', 'pipe:1'];
    case 'vp8':
      return [...a, '-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8', '-b:v', `${o.bitrateKbps}k`, '-g', String(o.gop), '-f', 'ivf', 'pipe:1'];
    case 'h264':
      return [...a, '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-b:v', `${o.bitrateKbps}k`, '-g', String(o.gop), '-bsf:v', 'dump_extra=freq=keyframe', '-f', 'h264', 'pipe:1'];
  }
}

export interface TranscodeServiceOptions {
  engine: TrackSource & TrackPublishing;
  log: EgressLog;
  ffmpegPath?: string;
  /** Shared transcoders at once: each is a full decode+encode (a Pi 4 manages ~2 at 720p). */
  maxTranscoders?: number;
  jpegFps?: number;
  bitrateKbps?: number;
  gop?: number;
  /** Input bytes waiting for ffmpeg's stdin beyond the pipe buffer: 2 MB, then GOP tails drop. */
  inputCeilingBytes?: number;
}

interface TranscoderStats {
  track: string;
  codec: Codec;
  output: string;
  consumers: number;
  running: boolean;
  restarts: number;
  framesIn: number;
  framesOut: number;
  bytesOut: number;
  stdinStalls: number;
  lastError: string | null;
}

class Transcoder {
  refs = 0;
  private child: SupervisedChild | null = null;
  private input: ConsumerHandle | null = null;
  private writer: TrackWriter | null = null;
  private stopped = false;
  private lastTs = 0;
  private restartTimer: NodeJS.Timeout | null = null;
  private readonly backoff = new Backoff({ initialMs: 500, maxMs: 30_000 });
  private draining = false;
  readonly outRef: TrackRef;
  private s = { restarts: 0, framesIn: 0, framesOut: 0, bytesOut: 0, stdinStalls: 0, lastError: null as string | null };

  constructor(
    private readonly svc: TranscodeService,
    readonly ref: TrackRef,
    readonly codec: Codec,
    private readonly o: Required<Omit<TranscodeServiceOptions, 'engine' | 'log' | 'ffmpegPath'>> & Pick<TranscodeServiceOptions, 'engine' | 'log' | 'ffmpegPath'>,
  ) {
    this.outRef = { ...ref, track: `${ref.track}.${codec}` };
  }

  start(): void {
    const inFmt = inputFormat(this.o.engine.listTracks().find((t) => trackPath(t) === trackPath(this.ref))?.mime);
    this.writer = this.o.engine.publisher(this.outRef, { label: `transcode ${this.codec}`, requestKeyframe: () => false });
    this.writer.setMime(CODEC_MIME[this.codec]);
    this.input = this.o.engine.subscribe(this.ref, { label: `transcode ${this.codec}`, ceilingBytes: this.o.inputCeilingBytes, fromCache: true, texts: false });
    this.input.onReadable(() => this.pump());
    this.spawn(inFmt);
  }

  private spawn(inFmt: string): void {
    if (this.stopped) return;
    const child = new SupervisedChild({
      cmd: resolveFfmpeg(this.o.ffmpegPath).path,
      args: transcodeArgs(inFmt, this.codec, { jpegFps: this.o.jpegFps, bitrateKbps: this.o.bitrateKbps, gop: this.o.gop }),
      label: `ffmpeg transcode ${this.codec}`,
      stdin: 'pipe',
    });
    this.child = child;
    child.stdin?.on('error', () => {
      // EPIPE when ffmpeg exits; the exit handler restarts it
    });
    const emit = (data: Buffer, key: boolean): void => {
      this.s.framesOut++;
      this.s.bytesOut += data.length;
      this.backoff.healthy(Date.now());
      this.writer?.write({ ts: this.lastTs || captureClockUs(), wallclock: Date.now(), key, data });
    };
    if (this.codec === 'jpeg') {
      const sp = new JpegSplitter();
      child.stdout.on('data', (c: Buffer) => {
        for (const img of sp.push(c)) emit(img, true);
      });
    } else if (this.codec === 'vp8') {
      const ivf = new IvfDemuxer();
      child.stdout.on('data', (c: Buffer) => {
        try {
          for (const f of ivf.push(c)) emit(f.data, f.key);
        } catch (err) {
          this.s.lastError = (err as Error).message;
          void child.stop();
        }
      });
    } else {
      const sp = new AnnexBSplitter({ repeatParamSets: true });
      let mimeSet = false;
      child.stdout.on('data', (c: Buffer) => {
        for (const au of sp.push(c)) {
          if (!mimeSet && sp.sps) {
            this.writer?.setMime(h264Mime(sp.sps));
            mimeSet = true;
          }
          emit(au.data, au.key);
        }
      });
    }
    void child.exited.then(() => {
      if (this.stopped || child !== this.child) return;
      this.s.lastError = child.failure('TRANSCODE_EXITED', 'exited').message.slice(0, 300);
      this.s.restarts++;
      const delay = this.backoff.next(Date.now());
      this.o.log.warn({ track: trackPath(this.ref), codec: this.codec, err: this.s.lastError, retryInMs: delay }, 'transcoder exited; restarting');
      this.restartTimer = setTimeout(() => this.spawn(inFmt), delay);
      this.restartTimer.unref?.();
    });
    this.pump();
  }

  private pump(): void {
    const stdin = this.child?.stdin;
    if (!stdin || this.draining || this.stopped) return;
    for (let item: QueueItem | undefined = this.input?.next(); item; item = this.input?.next()) {
      if (item.type !== 'frame') continue;
      this.s.framesIn++;
      this.lastTs = item.frame.ts;
      if (!stdin.write(item.frame.data)) {
        // ffmpeg is behind: let the engine queue absorb (and drop GOP tails past its ceiling).
        this.s.stdinStalls++;
        this.draining = true;
        stdin.once('drain', () => {
          this.draining = false;
          this.pump();
        });
        return;
      }
    }
  }

  stats(): TranscoderStats {
    return {
      track: trackPath(this.ref),
      codec: this.codec,
      output: trackPath(this.outRef),
      consumers: this.refs,
      running: this.child?.running ?? false,
      ...this.s,
    };
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    try {
      this.input?.close();
    } catch {
      // idempotent consumer close
    }
    void this.child?.stop();
    try {
      this.writer?.close();
    } catch {
      // idempotent publisher close
    }
    this.svc.forget(this);
  }
}

/** A consumer of a transcoder's output that releases the transcoder when closed. */
class SharedConsumer implements ConsumerHandle {
  private released = false;
  constructor(
    private readonly inner: ConsumerHandle,
    private readonly release: () => void,
  ) {
    inner.onClose(() => this.releaseOnce());
  }
  get id(): number {
    return this.inner.id;
  }
  get ref(): TrackRef {
    return this.inner.ref;
  }
  get closed(): boolean {
    return this.inner.closed;
  }
  mime(): string | undefined {
    return this.inner.mime();
  }
  next(): QueueItem | undefined {
    return this.inner.next();
  }
  onReadable(cb: () => void): void {
    this.inner.onReadable(cb);
  }
  onClose(cb: (reason: string) => void): void {
    this.inner.onClose(cb);
  }
  wait(signal?: AbortSignal): Promise<void> {
    return this.inner.wait(signal);
  }
  stats(): ReturnType<ConsumerHandle['stats']> {
    return this.inner.stats();
  }
  private releaseOnce(): void {
    if (this.released) return;
    this.released = true;
    this.release();
  }
  close(): void {
    this.inner.close();
    this.releaseOnce();
  }
}

export class TranscodeService {
  private readonly transcoders = new Map<string, Transcoder>();
  private readonly stills = new Map<string, Promise<Buffer>>();
  private readonly o: Required<Omit<TranscodeServiceOptions, 'engine' | 'log' | 'ffmpegPath'>> & Pick<TranscodeServiceOptions, 'engine' | 'log' | 'ffmpegPath'>;
  private closed = false;
  private c = { passThrough: 0, shared: 0, started: 0, refusedBusy: 0, stills: 0, stillErrors: 0 };

  constructor(opts: TranscodeServiceOptions) {
    this.o = { maxTranscoders: 2, jpegFps: 10, bitrateKbps: 1500, gop: 30, inputCeilingBytes: 2 * 1024 * 1024, ...opts };
  }

  /** A consumer of `ref` in `codec`: the track itself when it already has it, else a shared transcoder's output. */
  subscribe(ref: TrackRef, codec: Codec | string, opts: SubscribeOptions): ConsumerHandle {
    if (this.closed) throw new EdgeError('TRANSCODE_CLOSED', 'transcode service is stopping');
    const c = parseCodec(codec);
    const track = this.o.engine.listTracks().find((t) => trackPath(t) === trackPath(ref));
    if (!track) throw new EdgeError('TRANSCODE_UNKNOWN_TRACK', `no track ${trackPath(ref)}`);
    if (track.mime && mimeBase(track.mime) === CODEC_MIME[c]) {
      this.c.passThrough++;
      return this.o.engine.subscribe(ref, opts);
    }
    const key = `${trackPath(ref)}|${c}`;
    let t = this.transcoders.get(key);
    if (!t) {
      if (this.transcoders.size >= this.o.maxTranscoders) {
        this.c.refusedBusy++;
        throw new EdgeError('TRANSCODE_BUSY', `at most ${this.o.maxTranscoders} transcoders run at once`);
      }
      t = new Transcoder(this, ref, c, this.o);
      this.transcoders.set(key, t);
      try {
        t.start();
      } catch (err) {
        t.stop();
        throw err;
      }
      this.c.started++;
    } else this.c.shared++;
    t.refs++;
    const tr = t;
    const inner = this.o.engine.subscribe(tr.outRef, opts);
    return new SharedConsumer(inner, () => {
      tr.refs--;
      if (tr.refs <= 0) tr.stop();
    });
  }

  /** @internal */
  forget(t: Transcoder): void {
    const key = `${trackPath(t.ref)}|${t.codec}`;
    if (this.transcoders.get(key) === t) this.transcoders.delete(key);
  }

  /**
   * A JPEG still of a video (or JPEG) track: the latest picture, decoded from the cached GOP.
   * Concurrent requests for one track share one decode.
   */
  still(ref: TrackRef, timeoutMs = 5000): Promise<Buffer> {
    if (this.closed) return Promise.reject(new EdgeError('TRANSCODE_CLOSED', 'transcode service is stopping'));
    const key = trackPath(ref);
    let p = this.stills.get(key);
    if (!p) {
      p = this.makeStill(ref, timeoutMs).finally(() => this.stills.delete(key));
      this.stills.set(key, p);
    }
    return p;
  }

  private async makeStill(ref: TrackRef, timeoutMs: number): Promise<Buffer> {
    this.c.stills++;
    try {
      const track = this.o.engine.listTracks().find((t) => trackPath(t) === trackPath(ref));
      if (!track) throw new EdgeError('SHOT_UNKNOWN_TRACK', `no track ${trackPath(ref)}`);
      const inFmt = inputFormat(track.mime);
      const consumer = this.o.engine.subscribe(ref, { label: 'still', fromCache: true, texts: false, ceilingBytes: 16 * 1024 * 1024 });
      const frames: Buffer[] = [];
      try {
        const signal = AbortSignal.timeout(timeoutMs);
        // The GOP cache from its keyframe; if empty, wait (bounded) for the first keyframe.
        while (frames.length === 0) {
          for (let it = consumer.next(); it; it = consumer.next()) if (it.type === 'frame') frames.push(it.frame.data);
          if (frames.length > 0) break;
          if (consumer.closed) throw new EdgeError('SHOT_NO_FRAME', 'track closed before a frame arrived');
          await consumer.wait(signal).catch(() => {
            throw new EdgeError('SHOT_TIMEOUT', `no frame on ${trackPath(ref)} within ${timeoutMs} ms`);
          });
        }
      } finally {
        consumer.close();
      }
      if (inFmt === 'mjpeg') return frames[frames.length - 1]!;
      return await this.decodeLast(inFmt, frames, timeoutMs);
    } catch (err) {
      this.c.stillErrors++;
      throw err;
    }
  }

  private async decodeLast(inFmt: string, frames: Buffer[], timeoutMs: number): Promise<Buffer> {
    const n = frames.length;
    const child = new SupervisedChild({
      cmd: resolveFfmpeg(this.o.ffmpegPath).path,
      // select the last picture of the GOP: n is a count we made, not user input
      args: ['-hide_banner', '-loglevel', 'error', '-f', inFmt, '-i', 'pipe:0', '-vf', `select=eq(n\\,${n - 1})`, '-frames:v', '1', '-c:v', 'mjpeg', '-q:v', '4', '-f', 'image2pipe', 'pipe:1'],
      label: 'ffmpeg still',
      stdin: 'pipe',
    });
    const chunks: Buffer[] = [];
    let size = 0;
    child.stdout.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= 16 * 1024 * 1024) chunks.push(c); // a still beyond 16 MB is not a still
    });
    child.stdin?.on('error', () => {
      // EPIPE if ffmpeg fails early; its exit status tells why
    });
    child.stdin?.end(Buffer.concat(frames));
    const timer = setTimeout(() => void child.stop(), timeoutMs);
    const exit = await child.exited;
    clearTimeout(timer);
    const jpeg = Buffer.concat(chunks);
    if (exit.code !== 0 || jpeg.length < 4 || jpeg[0] !== 0xff || jpeg[1] !== 0xd8) throw child.failure('SHOT_DECODE_FAILED', 'could not decode a still');
    return jpeg;
  }

  stats(): { transcoders: TranscoderStats[]; counters: Record<string, number> } {
    return { transcoders: [...this.transcoders.values()].map((t) => t.stats()), counters: { ...this.c } };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const t of [...this.transcoders.values()]) t.stop();
    this.transcoders.clear();
  }
}
