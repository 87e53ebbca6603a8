// A small in-memory TrackSource for egress tests until/independently of the engine: bounded
// per-consumer queues that drop whole GOP tails, a GOP cache so video consumers start at the
// latest keyframe, and a publisher() like the engine's. It carries REAL H.264 access units
// made by the real ffmpeg (see h264Fixture).
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  captureClockUs,
  mimeKind,
  trackPath,
  type ConsumerHandle,
  type ConsumerStats,
  type EncodingCap,
  type DropReason,
  type Frame,
  type QueueItem,
  type SubscribeOptions,
  type TrackKind,
  type TrackRef,
  type TrackSource,
} from '../../runtime/engine/api.js';
import { NAL, nalType, splitAnnexB } from '../../runtime/egress/h264-rtp.js';

const run = promisify(execFile);

class FakeConsumer implements ConsumerHandle {
  private q: QueueItem[] = [];
  private bytes = 0;
  private readableCbs: Array<() => void> = [];
  private closeCbs: Array<(r: string) => void> = [];
  private waiters: Array<() => void> = [];
  private skipping = false;
  closed = false;
  readonly s: ConsumerStats;
  constructor(
    readonly id: number,
    readonly ref: TrackRef,
    private readonly track: FakeTrack,
    readonly opts: SubscribeOptions,
  ) {
    this.s = {
      id,
      label: opts.label,
      queuedItems: 0,
      queuedBytes: 0,
      ceilingBytes: opts.ceilingBytes ?? 8 * 1024 * 1024,
      peakBytes: 0,
      itemsOut: 0,
      bytesOut: 0,
      dropped: { 'queue-full': 0, 'gop-tail': 0, 'stale-gop': 0, memory: 0, 'text-overflow': 0 },
      droppedBytes: 0,
      waitingForKeyframe: false,
    };
  }
  mime(): string | undefined {
    return this.track.mime;
  }
  push(item: QueueItem): void {
    if (this.closed) return;
    if (item.type === 'frame') {
      const size = item.frame.data.length;
      const video = this.track.kind === 'video';
      if (video && this.skipping && !item.frame.key) return this.drop('gop-tail', size);
      if (this.bytes + size > this.s.ceilingBytes) {
        if (video) this.skipping = true;
        return this.drop(video ? 'gop-tail' : 'queue-full', size);
      }
      if (item.frame.key) this.skipping = false;
      this.bytes += size;
    }
    const wasEmpty = this.q.length === 0;
    this.q.push(item);
    if (this.bytes > this.s.peakBytes) this.s.peakBytes = this.bytes;
    if (wasEmpty) {
      for (const cb of this.readableCbs) cb();
      for (const w of this.waiters.splice(0)) w();
    }
  }
  private drop(reason: DropReason, size: number): void {
    this.s.dropped[reason]++;
    this.s.droppedBytes += size;
  }
  next(): QueueItem | undefined {
    const item = this.q.shift();
    if (item) {
      this.s.itemsOut++;
      if (item.type === 'frame') {
        this.bytes -= item.frame.data.length;
        this.s.bytesOut += item.frame.data.length;
      }
    }
    return item;
  }
  onReadable(cb: () => void): void {
    this.readableCbs.push(cb);
  }
  onClose(cb: (reason: string) => void): void {
    this.closeCbs.push(cb);
  }
  wait(signal?: AbortSignal): Promise<void> {
    if (this.q.length > 0 || this.closed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiters.push(resolve);
      signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
  }
  stats(): ConsumerStats {
    return { ...this.s, queuedItems: this.q.length, queuedBytes: this.bytes, waitingForKeyframe: this.skipping, dropped: { ...this.s.dropped } };
  }
  end(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.track.consumers.delete(this);
    for (const cb of this.closeCbs) cb(reason);
    for (const w of this.waiters.splice(0)) w();
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.track.consumers.delete(this);
    for (const w of this.waiters.splice(0)) w();
  }
}

class FakeTrack {
  mime: string | undefined;
  gop: Frame[] = [];
  consumers = new Set<FakeConsumer>();
  constructor(readonly ref: TrackRef) {}
  get kind(): TrackKind {
    return mimeKind(this.mime);
  }
}

export interface FakeWriter {
  setMime(mime: string): void;
  write(frame: Frame): void;
  text(text: string): void;
  close(): void;
}

export class FakeSource implements TrackSource {
  private tracks = new Map<string, FakeTrack>();
  private nextId = 1;
  keyframeRequests = 0;
  /** When false, requestKeyframe answers false (a driver that cannot). */
  canKeyframe = true;

  private track(ref: TrackRef): FakeTrack {
    const k = trackPath(ref);
    let t = this.tracks.get(k);
    if (!t) this.tracks.set(k, (t = new FakeTrack({ ...ref })));
    return t;
  }
  setMime(ref: TrackRef, mime: string): void {
    this.track(ref).mime = mime;
  }
  mimeOf(ref: TrackRef): string | undefined {
    return this.tracks.get(trackPath(ref))?.mime;
  }
  publish(ref: TrackRef, frame: Frame): void {
    const t = this.track(ref);
    if (t.kind === 'video') {
      if (frame.key) t.gop = [];
      if (frame.key || t.gop.length > 0) t.gop.push(frame);
    } else t.gop = [frame];
    for (const c of [...t.consumers]) c.push({ type: 'frame', frame, mime: t.mime, origin: 0 });
  }
  text(ref: TrackRef, text: string): void {
    for (const c of [...this.track(ref).consumers]) c.push({ type: 'text', text, origin: 0 });
  }
  /** Remove a track: its consumers get onClose. */
  remove(ref: TrackRef): void {
    const t = this.tracks.get(trackPath(ref));
    if (!t) return;
    for (const c of [...t.consumers]) c.end('track removed');
    this.tracks.delete(trackPath(ref));
  }
  consumerCount(ref: TrackRef): number {
    return this.tracks.get(trackPath(ref))?.consumers.size ?? 0;
  }
  subscribe(ref: TrackRef, opts: SubscribeOptions): ConsumerHandle {
    const t = this.track(ref);
    const c = new FakeConsumer(this.nextId++, { ...ref }, t, opts);
    t.consumers.add(c);
    if (opts.fromCache !== false) for (const f of t.gop) c.push({ type: 'frame', frame: f, mime: t.mime, origin: 0 });
    return c;
  }
  requestKeyframe(_ref: TrackRef): boolean {
    this.keyframeRequests++;
    return this.canKeyframe;
  }
  /** Every encoding cap asked for, in order (the uplink steps and thermal tests read it). */
  readonly encodingCaps: Array<{ ref: TrackRef; by: string; cap: EncodingCap | null }> = [];
  requestEncodingCap(ref: TrackRef, by: string, cap: EncodingCap | null): boolean {
    this.encodingCaps.push({ ref: { ...ref }, by, cap });
    return this.canKeyframe;
  }
  listTracks(): Array<TrackRef & { mime: string | undefined; kind: TrackKind }> {
    return [...this.tracks.values()].map((t) => ({ ...t.ref, mime: t.mime, kind: t.kind }));
  }
  publisher(ref: TrackRef, _owner: { label: string }): FakeWriter {
    let open = true;
    return {
      setMime: (m) => open && this.setMime(ref, m),
      write: (f) => open && this.publish(ref, f),
      text: (s) => open && this.text(ref, s),
      close: () => {
        open = false;
      },
    };
  }
}

export interface H264Fixture {
  aus: Array<{ data: Buffer; key: boolean }>;
  mime: string;
  fps: number;
}

/**
 * Encode a test pattern with the real ffmpeg (the brief's command line, AUDs inserted so the
 * fixture splits exactly into access units) and return its access units.
 */
export async function h264Fixture(dir: string, opts: { seconds?: number; size?: string; fps?: number; gop?: number; bitrate?: string; vf?: string } = {}): Promise<H264Fixture> {
  const fps = opts.fps ?? 30;
  const size = opts.size ?? '1280x720';
  const file = join(dir, `fixture-${size}-${fps}${opts.vf ? '-vf' : ''}.h264`);
  const args = ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', `testsrc2=size=${size}:rate=${fps}`, '-t', String(opts.seconds ?? 3)];
  if (opts.vf) args.push('-vf', opts.vf); // e.g. a frame-number barcode (test/hls/chromium.test.ts)
  args.push('-c:v', 'libx264', '-preset', 'ultrafast', '-profile:v', 'baseline', '-g', String(opts.gop ?? 30), '-x264-params', 'repeat-headers=1');
  if (opts.bitrate) args.push('-b:v', opts.bitrate);
  args.push('-bsf:v', 'h264_metadata=aud=insert', '-f', 'h264', '-y', file);
  await run('ffmpeg', args, { timeout: 60_000 });
  const buf = await readFile(file);
  const aus: Array<{ data: Buffer; key: boolean }> = [];
  // Split at each AUD start code.
  const starts: number[] = [];
  for (let i = 0; i + 4 < buf.length; i++) {
    if (buf[i] === 0 && buf[i + 1] === 0 && buf[i + 2] === 0 && buf[i + 3] === 1 && (buf[i + 4]! & 0x1f) === NAL.AUD) starts.push(i);
  }
  for (let k = 0; k < starts.length; k++) {
    const data = buf.subarray(starts[k], k + 1 < starts.length ? starts[k + 1] : buf.length);
    const key = splitAnnexB(data).some((n) => nalType(n) === NAL.IDR);
    aus.push({ data: Buffer.from(data), key });
  }
  const [w, h] = size.split('x');
  return { aus, fps, mime: `video/h264;width=${w};height=${h};framerate=${fps};codecs=avc1.42C01F` };
}

/** Play fixture AUs into a track at the fixture's frame rate (looping), until stop(). */
export function playFixture(src: FakeSource, ref: TrackRef, fx: H264Fixture, opts: { loop?: boolean; tag?: boolean; onFrame?: (f: Frame, i: number) => void } = {}): { stop(): void; done: Promise<void>; sent(): number } {
  src.setMime(ref, fx.mime);
  let i = 0;
  let stopped = false;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  const t0 = performance.now();
  const period = 1000 / fx.fps;
  let timer: NodeJS.Timeout | null = null;
  const tick = (): void => {
    if (stopped) return;
    const due = Math.floor((performance.now() - t0) / period) + 1;
    while (i < due) {
      const idx = i % fx.aus.length;
      if (!opts.loop && i >= fx.aus.length) {
        stopped = true;
        resolveDone();
        return;
      }
      const au = fx.aus[idx]!;
      const data = opts.tag ? tagAu(au.data, i) : au.data;
      const frame: Frame = { ts: captureClockUs(), wallclock: Date.now(), key: au.key, data };
      opts.onFrame?.(frame, i);
      src.publish(ref, frame);
      i++;
    }
    timer = setTimeout(tick, period / 2);
  };
  tick();
  return {
    stop: () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      resolveDone();
    },
    done,
    sent: () => i,
  };
}

const TAG_UUID = Buffer.from('6d6f74682d656467652d746167000001', 'hex');

/**
 * Put a user-data-unregistered SEI carrying `seq` right after the AUD (SEI must come before the
 * first slice), so a test can tell which published frame a peer received. Decoders ignore it.
 */
export function tagAu(au: Buffer, seq: number): Buffer {
  const payload = Buffer.alloc(20);
  TAG_UUID.copy(payload, 0);
  payload.writeUInt32BE(seq >>> 0, 16);
  // 7-bit groups with the top bit set: no 00 00 0x byte pattern, so no emulation prevention needed.
  payload.writeUInt32BE(((((seq >>> 21) & 0x7f) << 24) | (((seq >>> 14) & 0x7f) << 16) | (((seq >>> 7) & 0x7f) << 8) | (seq & 0x7f) | 0x80808080) >>> 0, 16);
  const sei = Buffer.concat([Buffer.from([0, 0, 0, 1, 0x06, 0x05, 20]), payload, Buffer.from([0x80])]);
  const nals = splitAnnexB(au);
  const first = nals[0];
  if (first && nalType(first) === NAL.AUD) {
    const audEnd = au.indexOf(first) + first.length;
    return Buffer.concat([au.subarray(0, audEnd), sei, au.subarray(audEnd)]);
  }
  return Buffer.concat([sei, au]);
}

/** The seq put by tagAu, or undefined. */
export function readTag(au: Buffer): number | undefined {
  const i = au.indexOf(TAG_UUID);
  if (i < 0 || i + 20 > au.length) return undefined;
  const v = au.readUInt32BE(i + 16) & 0x7f7f7f7f;
  return ((v >>> 24) << 21) | (((v >>> 16) & 0x7f) << 14) | (((v >>> 8) & 0x7f) << 7) | (v & 0x7f);
}
