// RTMP ingest: a TCP listener taking `rtmp://<robot>:1935/<app>/<stream-key>` publishes from an
// onboard encoder and writing each into an engine track. Thin shell around the pure
// RtmpServerSession; one track per configured stream key, keys compared in constant time.

import { createServer, type Server, type Socket } from 'node:net';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { captureClockUs, EdgeError, MsUnwrapper, SourceClock, type Frame, type TrackRef } from '../../../runtime/engine/api.js';
import { h264Mime, parseSps, type SpsInfo } from '../../../runtime/engine/h264.js';
import { AvcDepacketizer } from './flv.js';
import { RtmpServerSession, type PublishDecision, type PublishRequest } from './session.js';
import type { Amf0Object } from './amf0.js';

const label = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/);

export const rtmpStreamSchema = z
  .object({
    /** The application part of the URL: rtmp://robot:1935/<app>/<key>. */
    app: label.default('live'),
    /** The stream key (a secret). 8+ characters: a key is the only thing guarding the track. */
    key: z.string().min(8).max(256).regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces').refine((k) => !k.includes('?') && !k.includes('/'), 'no "?" or "/"'),
    channel: z.string().min(1).max(64),
    source: label.default('base'),
    track: label.default('video'),
  })
  .strict();

export const rtmpIngestSchema = z
  .object({
    kind: z.literal('rtmp').default('rtmp'),
    /** Loopback unless configured: an onboard encoder runs on the robot itself. */
    host: z.string().default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(1935),
    streams: z.array(rtmpStreamSchema).min(1).max(64),
    /** Onboard encoders are few; a port scan or a reconnect storm must not exhaust memory. */
    maxConnections: z.number().int().min(1).max(64).default(8),
    /** Connect + handshake + publish must finish within this. */
    handshakeTimeoutMs: z.number().int().min(500).max(60_000).default(10_000),
    /** A publisher silent this long is cut (a dead encoder must free the track). */
    idleTimeoutMs: z.number().int().min(1000).max(300_000).default(10_000),
    /**
     * Largest RTMP message (one video frame) once a publish is accepted. A 1080p IDR at 8 Mbit/s is
     * ~0.3–0.6 MB; 4 MB leaves headroom while 8 connections cannot pin more than ~40 MB on a Pi Zero.
     */
    maxMessageBytes: z.number().int().min(64 * 1024).max(64 * 1024 * 1024).default(4 * 1024 * 1024),
  })
  .strict();
export type RtmpIngestConfig = z.infer<typeof rtmpIngestSchema>;
export type RtmpIngestConfigInput = z.input<typeof rtmpIngestSchema>;

/** The writing end of a track: what `engine.publisher(ref, owner)` returns (structurally). */
export interface IngestTrackWriter {
  setMime(mime: string): void;
  write(frame: Frame): void;
  close(): void;
}

export interface IngestLog {
  info(ctx: Record<string, unknown>, msg: string): void;
  warn(ctx: Record<string, unknown>, msg: string): void;
}

export interface RtmpIngestDeps {
  /** `(ref, owner) => engine.publisher(ref, owner)`. May throw (TRACK_BUSY): the publish is refused. */
  openPublisher: (ref: TrackRef, owner: { label: string; requestKeyframe?: () => boolean }) => IngestTrackWriter;
  log?: IngestLog;
}

export interface RtmpIngestStats {
  [k: string]: number | string | boolean | null;
  listening: boolean;
  port: number;
  connectionsTotal: number;
  connectionsActive: number;
  publishing: number;
  publishes: number;
  refusedKey: number;
  refusedBusy: number;
  refusedConnections: number;
  protocolErrors: number;
  timeouts: number;
  frames: number;
  keyframes: number;
  bytes: number;
  droppedNoConfig: number;
  droppedInvalid: number;
  droppedOtherCodec: number;
  droppedBadSps: number;
  audioMessagesIgnored: number;
  clockResyncs: number;
  lastError: string | null;
}

const noLog: IngestLog = { info() {}, warn() {} };

/**
 * Maps RTMP millisecond timestamps (uint32, wrapping) onto the capture clock: the publisher's own
 * clock through the shared SourceClock (strictly increasing, never in the future, re-anchored on
 * an encoder restart).
 */
export class RtmpClock {
  private readonly unwrap = new MsUnwrapper();
  private readonly clock = new SourceClock();
  private reported = 0;

  /** Re-anchors since the last call (the ingest adds them to its counters). */
  takeResyncs(): number {
    const n = this.clock.stats().reanchors;
    const d = n - this.reported;
    this.reported = n;
    return d;
  }

  /** `nowUs` is captureClockUs() when the message arrived. */
  map(rawMs: number, nowUs: number): number {
    return this.clock.map(this.unwrap.push(rawMs) * 1000, nowUs);
  }
}

function keyEquals(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  if (x.length !== y.length) {
    timingSafeEqual(x, x); // same work either way
    return false;
  }
  return timingSafeEqual(x, y);
}

export class RtmpIngest {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly active = new Set<string>(); // track paths being published through us
  private closed = false;
  private boundPort = 0;
  readonly ready: Promise<{ port: number }>;
  private readonly counters: RtmpIngestStats;
  private readonly log: IngestLog;

  constructor(private readonly cfg: RtmpIngestConfig, private readonly deps: RtmpIngestDeps) {
    this.log = deps.log ?? noLog;
    this.counters = {
      listening: false,
      port: 0,
      connectionsTotal: 0,
      connectionsActive: 0,
      publishing: 0,
      publishes: 0,
      refusedKey: 0,
      refusedBusy: 0,
      refusedConnections: 0,
      protocolErrors: 0,
      timeouts: 0,
      frames: 0,
      keyframes: 0,
      bytes: 0,
      droppedNoConfig: 0,
      droppedInvalid: 0,
      droppedOtherCodec: 0,
      droppedBadSps: 0,
      audioMessagesIgnored: 0,
      clockResyncs: 0,
      lastError: null,
    };
    this.server = createServer((s) => this.onConnection(s));
    this.ready = new Promise((resolve, reject) => {
      this.server.once('error', (err) =>
        reject(new EdgeError('RTMP_LISTEN_FAILED', `cannot listen on ${cfg.host}:${cfg.port}: ${err.message}`, { host: cfg.host, port: cfg.port }, { cause: err })),
      );
      this.server.listen(cfg.port, cfg.host, () => {
        const addr = this.server.address();
        this.boundPort = typeof addr === 'object' && addr ? addr.port : cfg.port;
        this.counters.listening = true;
        this.counters.port = this.boundPort;
        this.log.info({ host: cfg.host, port: this.boundPort, streams: cfg.streams.length }, 'rtmp ingest listening');
        resolve({ port: this.boundPort });
      });
    });
    this.ready.catch(() => {}); // the caller awaits it; do not crash on an unobserved rejection
  }

  get port(): number {
    return this.boundPort;
  }

  stats(): RtmpIngestStats {
    return { ...this.counters, connectionsActive: this.sockets.size, publishing: this.active.size };
  }

  /** Stops listening and cuts every publisher. Idempotent, never throws. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.counters.listening = false;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private onConnection(socket: Socket): void {
    if (this.closed || this.sockets.size >= this.cfg.maxConnections) {
      this.counters.refusedConnections++;
      socket.destroy();
      return;
    }
    this.counters.connectionsTotal++;
    this.sockets.add(socket);
    socket.setNoDelay(true);
    const remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
    const depack = new AvcDepacketizer();
    const clock = new RtmpClock();
    let writer: IngestTrackWriter | null = null;
    let trackPathStr = '';
    let fps: number | undefined;
    let sps: SpsInfo | undefined;
    let mime = '';
    // depacketizer counters are per connection; add what is new to the ingest-wide ones
    const reported = { droppedInvalid: 0, droppedOtherCodec: 0, droppedNoConfig: 0 };
    const syncDrops = (): void => {
      const c = depack.counters;
      this.counters.droppedInvalid += c.droppedInvalid - reported.droppedInvalid;
      this.counters.droppedOtherCodec += c.droppedOtherCodec - reported.droppedOtherCodec;
      this.counters.droppedNoConfig += c.droppedNoConfig - reported.droppedNoConfig;
      reported.droppedInvalid = c.droppedInvalid;
      reported.droppedOtherCodec = c.droppedOtherCodec;
      reported.droppedNoConfig = c.droppedNoConfig;
    };

    const endPublish = (): void => {
      if (!writer) return;
      try {
        writer.close();
      } catch {
        // a writer's close must not break our cleanup
      }
      writer = null;
      this.active.delete(trackPathStr);
      this.counters.clockResyncs += clock.takeResyncs();
      this.log.info({ remote, track: trackPathStr }, 'rtmp publish ended');
    };

    const handshakeTimer = setTimeout(() => {
      if (!session.isPublishing) {
        this.counters.timeouts++;
        session.close('handshake-timeout');
      }
    }, this.cfg.handshakeTimeoutMs);

    const session = new RtmpServerSession(
      {
        send: (b) => {
          if (!socket.destroyed) socket.write(b);
        },
        onPublish: (req) => {
          const d = this.authorize(req, remote);
          if (!d.decision.ok) return d.decision;
          writer = d.writer!;
          trackPathStr = d.path!;
          clearTimeout(handshakeTimer);
          return d.decision;
        },
        onVideo: (rtmpTs, body) => {
          if (!writer) return;
          const unit = depack.push(body);
          if (unit === null) {
            syncDrops();
            return;
          }
          if (unit === 'config') {
            try {
              sps = parseSps(depack.config!.sps[0]!);
            } catch {
              this.counters.droppedBadSps++; // keep the MIME without size rather than refuse the stream
              sps = undefined;
            }
            const m = h264Mime(sps, fps);
            if (m !== mime) {
              mime = m;
              writer.setMime(m);
            }
            return;
          }
          if (!mime) {
            mime = h264Mime(sps, fps);
            writer.setMime(mime);
          }
          const now = captureClockUs();
          const ts = clock.map(rtmpTs, now);
          this.counters.frames++;
          this.counters.bytes += unit.data.length;
          if (unit.key) this.counters.keyframes++;
          writer.write({ ts, wallclock: Date.now() - (now - ts) / 1000, key: unit.key, data: unit.data });
        },
        onAudio: () => {
          this.counters.audioMessagesIgnored++; // video tracks only; audio is not carried (yet)
        },
        onMetadata: (meta: Amf0Object) => {
          const f = meta['framerate'] ?? meta['fps'];
          if (typeof f === 'number' && f > 0 && f <= 240) fps = Math.round(f * 100) / 100;
        },
        onUnpublish: endPublish,
        onClose: (reason, error) => {
          if (error) {
            this.counters.protocolErrors++;
            this.counters.lastError = `${error.code} from ${remote}`;
            this.log.warn({ remote, code: error.code, reason }, 'rtmp session error');
          }
          socket.destroy();
        },
      },
      { maxMessageBytes: this.cfg.maxMessageBytes, random: randomBytes },
    );

    socket.setTimeout(this.cfg.idleTimeoutMs, () => {
      this.counters.timeouts++;
      session.close('idle-timeout');
    });
    socket.on('data', (b: Buffer) => session.push(b));
    socket.on('error', () => {}); // ECONNRESET from a dying encoder: 'close' follows
    socket.on('close', () => {
      clearTimeout(handshakeTimer);
      this.sockets.delete(socket);
      session.close('socket-closed');
      endPublish();
      syncDrops();
    });
  }

  private authorize(req: PublishRequest, remote: string): { decision: PublishDecision; writer?: IngestTrackWriter; path?: string } {
    const match = this.cfg.streams.find((s) => s.app === req.app && keyEquals(s.key, req.name));
    if (!match) {
      this.counters.refusedKey++;
      // Neither the key nor the app the client sent goes to the log: a typo'd key is still a key.
      this.log.warn({ remote }, 'rtmp publish refused: unknown app or stream key');
      return { decision: { ok: false, code: 'NetStream.Publish.BadName', description: 'unknown stream key' } };
    }
    const ref: TrackRef = { channel: match.channel, source: match.source, track: match.track };
    const path = `${ref.channel}/${ref.source}/${ref.track}`;
    if (this.active.has(path)) {
      this.counters.refusedBusy++;
      return { decision: { ok: false, code: 'NetStream.Publish.BadName', description: 'stream already publishing' } };
    }
    let writer: IngestTrackWriter;
    try {
      writer = this.deps.openPublisher(ref, { label: `rtmp ${remote}`, requestKeyframe: () => false });
    } catch (err) {
      this.counters.refusedBusy++;
      this.counters.lastError = err instanceof EdgeError ? err.code : 'PUBLISHER_FAILED';
      return { decision: { ok: false, code: 'NetStream.Publish.BadName', description: 'track unavailable' } };
    }
    this.active.add(path);
    this.counters.publishes++;
    this.log.info({ remote, track: path }, 'rtmp publish started');
    return { decision: { ok: true }, writer, path };
  }
}

/** Starts listening at once; `await ingest.ready` for the bound port (or the listen error). */
export function createRtmpIngest(cfg: RtmpIngestConfigInput, deps: RtmpIngestDeps): RtmpIngest {
  return new RtmpIngest(rtmpIngestSchema.parse(cfg), deps);
}
