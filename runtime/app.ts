// The process: builds every component from the config, owns them, closes them in order.

import type { AddressInfo } from 'node:net';
import { isLoopback, type Config } from './config/schema.js';
import { registerControlRoutes } from './control/http.js';
import { createControlService, type ControlService } from './control/service.js';
import { chooseEncoder, createBoardService, createThermalGovernor, governedTracks, probeFfmpegEncoders, type BoardService } from '../board/index.js';
import { resolveFfmpeg } from '../drivers/exec/ffmpeg.js';
import { createRecordingService, type RecordingService } from '../recordings/service.js';
import { registerUplinkRoutes } from './uplink/routes.js';
import { withBackfillCtl } from './uplink/ctl-commands.js';
import { createEgressService, type EgressService } from './egress/service.js';
import { createShotWs, registerEgressRoutes } from './egress/http.js';
import { registerRecordingRoutes } from './recordings/http.js';
import { createRtmpIngest } from '../drivers/ingest/rtmp/ingest.js';
import { createSourceDriver, type DriverContext } from './drivers.js';
import { EdgeError } from './engine/api.js';
import { Engine, newChannelId } from './engine/engine.js';
import { createMetrics } from './http/metrics.js';
import { HttpServer } from './http/server.js';
import type { Logger } from './log.js';
import { PangServer } from './pang/server.js';
import { DriverSupervisor } from './supervisor.js';

/** Anything the app owns: stats for /api/stats, an idempotent close. */
export interface Component {
  stats(): unknown;
  close(): Promise<void> | void;
}

export class App {
  readonly engine: Engine;
  readonly http: HttpServer;
  readonly pang: PangServer;
  readonly control: ControlService;
  readonly egress: EgressService;
  private recordings: RecordingService | undefined;
  readonly supervisors: DriverSupervisor[] = [];
  private address: AddressInfo | undefined;
  private closing: Promise<void> | undefined;
  readonly startedAt = Date.now();

  private constructor(
    readonly config: Config,
    readonly log: Logger,
    readonly board: BoardService,
    /** Feature components (board, control, egress, recordings…), closed before the engine; filled as they are built, so a constructor that throws half-way can close them. */
    readonly components: Map<string, Component>,
  ) {
    const e = config.engine;
    this.engine = new Engine({
      memoryCeilingBytes: engineCeilingBytes(e.memoryCeiling, board),
      consumerQueueBytes: e.consumerQueue,
      gopCacheBytes: e.gopCache,
      trackLingerMs: e.trackLingerSeconds * 1000,
      instantChannelTtlMs: e.instantChannelTtlSeconds * 1000,
      maxInstantChannels: e.maxInstantChannels,
    });
    this.http = new HttpServer({ host: config.server.host, port: config.server.port, maxConnections: config.server.maxConnections });
    // Control first: the pang server hands it ctl/meb commands.
    this.control = createControlService(config.control, log.child({ c: 'control' }));
    this.components.set('control', this.control);
    this.egress = createEgressService({
      config: config.egress,
      engine: this.engine,
      log: log.child({ c: 'egress' }),
      ffmpegPath: config.ffmpeg.path,
      // Read lazily: the recorder starts later, in init().
      syncUploadedBytes: () => this.recordings?.syncUploadedBytes() ?? 0,
      syncUplinkCap: (b) => this.recordings?.sync?.setUplinkCap(b),
      // Backfill reads undelivered records from the recordings; delivery spans go to their index.
      recordings: () => this.recordings ?? null,
      deliveryIndex: () => this.recordings?.index ?? null,
    });
    this.components.set('egress', this.egress);
    this.pang = new PangServer(this.engine, {
      maxMessageBytes: config.server.maxMessageBytes,
      log: log.child({ c: 'pang' }),
      // backfill_range on /pang/ws/ctl goes to the backfill; every other command to control.
      commands: withBackfillCtl(() => this.egress.backfill, this.control.pang),
      transcoder: this.egress.transcode,
    });
  }

  /** What drivers need from the board; ffmpeg's encoders are probed only when a camera asks for auto. */
  private async driverContext(): Promise<DriverContext> {
    const wantsAuto = (this.config.channels ?? []).some((ch) => ch.sources.some((s) => s.driver.kind === 'v4l2' && s.driver.encoder === 'auto'));
    if (!wantsAuto) return {};
    let ffmpeg: string;
    try {
      ffmpeg = resolveFfmpeg(this.config.ffmpeg.path).path;
    } catch {
      return {}; // the driver reports the missing ffmpeg itself, with its code
    }
    const boardEncoder = await boardEncoderFor(this.board, ffmpeg);
    return boardEncoder ? { boardEncoder } : {};
  }

  static async start(config: Config, log: Logger): Promise<App> {
    // The board first: its profile sizes the engine's memory ceiling.
    const board = await createBoardService();
    let app: App;
    const built = new Map<string, Component>([['board', board]]);
    try {
      app = new App(config, log, board, built);
    } catch (err) {
      // Whatever the constructor had built (control's serial links, timers…) closes with the board.
      await Promise.allSettled([...built.values()].reverse().map(async (c) => c.close()));
      throw err;
    }
    try {
      await app.init();
    } catch (err) {
      await app.close();
      throw err;
    }
    return app;
  }

  private async init(): Promise<void> {
    const { config, log } = this;
    const driverCtx = await this.driverContext();
    for (const ch of config.channels ?? []) {
      this.engine.addStaticChannel({ id: ch.id, name: ch.name, key: ch.key });
      for (const src of ch.sources) {
        const name = `${ch.name ?? ch.id}/${src.name}/${src.driver.track}`;
        const driver = createSourceDriver(src.driver, config, driverCtx);
        this.supervisors.push(
          new DriverSupervisor(name, driver, this.engine, ch.id, src.name, { ...config.supervisor, log: log.child({ c: 'driver', driver: name }) }),
        );
      }
    }

    const r = this.http.router;
    this.pang.registerRoutes(r);
    registerControlRoutes(r, this.control, { token: config.server.token, bindIsLoopback: isLoopback(config.server.host) });
    this.http.onUpgrade('/pang/ws', (req, socket, head) => this.pang.handleUpgrade(req, socket, head));
    const metrics = createMetrics({ engine: this.engine, supervisors: () => this.supervisors, pang: () => this.pang.stats() });
    r.route('GET', '/healthz', (ctx) => {
      const drivers = this.supervisors.map((s) => s.stats());
      const ok = drivers.every((d) => d.state === 'running' || d.state === 'starting');
      ctx.json(ok ? 200 : 503, {
        status: ok ? 'ok' : 'degraded',
        uptimeS: Math.round((Date.now() - this.startedAt) / 1000),
        drivers: drivers.map((d) => ({ name: d.name, state: d.state, ready: d.ready, lastError: d.lastError })),
      });
    });
    r.route('GET', '/api/stats', (ctx) => ctx.json(200, this.stats()));
    r.route('GET', '/metrics', async (ctx) => {
      const text = await metrics.metrics();
      ctx.res.writeHead(200, { 'content-type': metrics.contentType });
      ctx.res.end(text);
    });

    if (config.recordings.enabled) {
      const rec = createRecordingService({ config: config.recordings, source: this.engine, log: log.child({ c: 'recordings' }) });
      this.recordings = rec;
      this.components.set('recordings', rec);
      await rec.start(); // start-up recovery runs before the first segment is written
      registerRecordingRoutes(r, rec);
    }

    // WHIP ingest lands tracks in a channel: the configured one by name, else one made for it.
    const ingestName = config.egress.whipIngest.channel;
    const ingestChannel = this.egress.ingest
      ? (this.engine.findChannel(ingestName) ?? this.engine.addStaticChannel({ id: newChannelId(), name: ingestName })).id
      : '';
    registerEgressRoutes(r, {
      whep: this.egress.whep,
      ingest: this.egress.ingest ? { server: this.egress.ingest, channel: ingestChannel, aliases: [ingestName] } : null,
      transcode: this.egress.transcode,
      overview: () => this.stats(),
      source: this.engine,
    });
    // What reached the upstream live vs what the recorder holds (GET /api/gaps).
    registerUplinkRoutes(r, { spans: this.egress.spans, backfilled: this.egress.backfilled, recorded: () => this.recordings?.reader() ?? null });
    const shot = createShotWs({ transcode: this.egress.transcode, log: log.child({ c: 'shot' }) });
    this.components.set('shot', shot);
    this.http.onUpgrade('/shot/ws', shot.upgrade);

    if (config.rtmp) {
      // Streams name a channel by id or configured name; the ingest needs the id.
      const streams = config.rtmp.streams.map((st) => {
        const ch = this.engine.findChannel(st.channel);
        if (!ch) throw new EdgeError('CONFIG_INVALID', `rtmp.streams: unknown channel "${st.channel}"`);
        return { ...st, channel: ch.id };
      });
      const rtmp = createRtmpIngest({ ...config.rtmp, streams }, {
        openPublisher: (ref, owner) => this.engine.publisher(ref, owner),
        log: log.child({ c: 'rtmp' }),
      });
      this.components.set('rtmp', rtmp);
      await rtmp.ready;
    }

    this.address = await this.http.listen();
    for (const s of this.supervisors) s.start();
    // Thermal step-down reaches running cameras: on each level change every encoding video track
    // is capped through the engine (a robot that boots hot is capped right here).
    const sources = (config.channels ?? []).flatMap((ch) => ch.sources.map((src) => ({ channel: ch.id, source: src.name, driver: src.driver })));
    this.components.set('thermal', createThermalGovernor({ thermal: this.board.thermal, engine: this.engine, tracks: governedTracks(sources) }));
    log.info(
      {
        host: this.address.address,
        port: this.address.port,
        board: this.board.info.id,
        memoryCeilingMb: Math.round(engineCeilingBytes(config.engine.memoryCeiling, this.board) / 1048576),
        memoryCeilingFrom: config.engine.memoryCeiling === 'auto' ? 'board profile' : 'config',
      },
      'moth-edge listening',
    );
  }

  get port(): number {
    return this.address?.port ?? 0;
  }

  /** Base URLs for humans (printed at start, shown in the README). */
  urls(): string[] {
    const host = this.config.server.host.includes(':') ? `[${this.config.server.host}]` : this.config.server.host;
    const base = `${host}:${this.port}`;
    const out = [`dashboard: http://${base}/`, `stats:    http://${base}/api/stats`, `metrics:  http://${base}/metrics`];
    if (this.config.recordings.enabled) out.push(`records:  http://${base}/api/recordings   (files under ${this.config.recordings.root})`);
    for (const ch of this.config.channels ?? []) {
      for (const src of ch.sources) {
        out.push(`pang sub: ws://${base}/pang/ws/sub?channel=${ch.id}&source=${src.name}&track=${src.driver.track}   (${src.driver.kind})`);
      }
    }
    return out;
  }

  stats() {
    const components: Record<string, unknown> = {};
    for (const [name, c] of this.components) components[name] = c.stats();
    const mem = process.memoryUsage();
    return {
      uptimeS: Math.round((Date.now() - this.startedAt) / 1000),
      process: { rssBytes: mem.rss, heapUsedBytes: mem.heapUsed, pid: process.pid },
      engine: this.engine.stats(),
      drivers: this.supervisors.map((s) => s.stats()),
      pang: this.pang.stats(),
      http: this.http.stats(),
      ...components,
    };
  }

  /** Stop drivers, flush and close everything. Idempotent. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = (async () => {
      await Promise.allSettled(this.supervisors.map((s) => s.close()));
      // Egress first: its last delivery spans must reach the recordings index before that closes.
      await Promise.allSettled([(async () => this.egress.close())()]);
      await Promise.allSettled([...this.components.values()].reverse().map(async (c) => c.close()));
      await this.pang.close();
      await this.http.close();
      this.engine.close();
    })();
    return this.closing;
  }
}

/** The encoder a V4L2 camera with `encoder: auto` gets: the board profile's first that ffmpeg has. */
async function boardEncoderFor(board: BoardService, ffmpegPath: string): Promise<DriverContext['boardEncoder']> {
  const available = await probeFfmpegEncoders(ffmpegPath);
  const e = chooseEncoder(board.profile, new Set(available ?? []));
  return e === 'h264_v4l2m2m' || e === 'libx264' ? e : undefined;
}

/** The engine's memory ceiling: configured bytes, or the board profile's engine budget for "auto". */
export function engineCeilingBytes(configured: number | 'auto', board: Pick<BoardService, 'profile'>): number {
  return configured === 'auto' ? board.profile.memory.engineBudgetMb * 1024 * 1024 : configured;
}
