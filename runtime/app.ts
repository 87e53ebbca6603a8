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
import { HlsService } from './hls/service.js';
import { registerHlsRoutes } from './hls/http.js';
import { registerRecordedHlsRoutes } from './hls/recorded.js';
import { registerHlsJsRoute, registerTimelineRoutes } from './hls/timeline.js';
import { createRtmpIngest } from '../drivers/ingest/rtmp/ingest.js';
import { createSourceDriver, type DriverContext } from './drivers.js';
import { EdgeError } from './engine/api.js';
import { Engine } from './engine/engine.js';
import { ingestChannelId } from './config/references.js';
import { createMetrics } from './http/metrics.js';
import { HttpServer } from './http/server.js';
import { clientAddress, createAccessGate, presentedToken, type AccessGate } from './http/access.js';
import { driverHealth, healthReport, type ComponentHealth } from './http/health.js';
import { loadTls, type TlsMaterial } from './http/tls.js';
import { DeviceAuthRegistry } from '../drivers/auth/device-auth.js';
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
  readonly access: AccessGate;
  /** The served certificate (server.tls), null for plain http. */
  readonly tls: TlsMaterial | null;
  /** Device accounts shared by every driver that logs into the same camera. */
  readonly accounts = new DeviceAuthRegistry();
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
    this.access = createAccessGate(config);
    this.tls = config.server.tls ? loadTls(config.server.tls) : null;
    if (this.tls?.generated) {
      log.warn({ cert: config.server.tls!.cert, ca: this.tls.caFile }, 'TLS: made a certificate signed by the local CA; install the CA file in browsers once (README: TLS)');
    }
    if (!isLoopback(config.server.host) && !this.tls) {
      log.warn({ host: config.server.host }, 'server bound beyond loopback without server.tls: tokens and video cross the network in clear');
    }
    this.http = new HttpServer({
      host: config.server.host,
      port: config.server.port,
      maxConnections: config.server.maxConnections,
      access: this.access,
      ...(this.tls ? { tls: { cert: this.tls.cert, key: this.tls.key } } : {}),
    });
    // Control first: the pang server hands it ctl/meb commands.
    this.control = createControlService(config.control, log.child({ c: 'control' }), this.accounts);
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
      access: this.access,
      silenceMs: config.control.silenceStopMs,
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
        const dlog = log.child({ c: 'driver', driver: name });
        const driver = createSourceDriver(src.driver, config, { ...driverCtx, log: dlog, accounts: this.accounts });
        this.supervisors.push(new DriverSupervisor(name, driver, this.engine, ch.id, src.name, { ...config.supervisor, log: dlog }));
      }
    }

    const r = this.http.router;
    this.pang.registerRoutes(r);
    registerControlRoutes(r, this.control);
    this.http.onUpgrade('/pang/ws', (req, socket, head) => this.pang.handleUpgrade(req, socket, head));
    const metrics = createMetrics({ engine: this.engine, supervisors: () => this.supervisors, pang: () => this.pang.stats(), health: () => this.health(), access: () => this.access.stats() });
    r.route('GET', '/healthz', (ctx) => {
      const h = healthReport(this.health(), config.server.healthRequired);
      // Open to monitors; the reasons (paths, hosts) only for clients the api door admits.
      // A presented token is judged (and a wrong one counted: no unlimited oracle); none → no details.
      const given = presentedToken(ctx.req);
      const detailed = this.access.isOpen('api') || (given !== undefined && this.access.check('api', clientAddress(ctx.req), given).ok);
      ctx.json(h.httpStatus, {
        status: h.status,
        uptimeS: Math.round((Date.now() - this.startedAt) / 1000),
        down: h.down,
        components: h.components.map((c) => (detailed ? c : { name: c.name, up: c.up, required: c.required })),
        // The capture drivers as before (pm2 checks and scripts read drivers[].ready).
        drivers: this.supervisors.map((s) => {
          const d = s.stats();
          return { name: d.name, state: d.state, ready: d.ready, ...(detailed ? { lastError: d.lastError } : {}) };
        }),
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
      // The dashboard timeline's sensor values at a moment and exports (before /api/recordings/:id).
      registerTimelineRoutes(r, { recordings: rec, resolveChannel: (x) => this.engine.findChannel(x)?.id ?? null });
      registerRecordingRoutes(r, rec, (c) => this.engine.resolveChannelId(c));
    }

    if (config.hls.enabled) {
      // LL-HLS of live tracks (muxed on demand) and VOD playlists over the recordings.
      const hls = new HlsService({ config: config.hls, source: this.engine, memory: this.engine.budget, log: log.child({ c: 'hls' }) });
      this.components.set('hls', hls);
      const resolveChannel = (idOrName: string) => this.engine.findChannel(idOrName)?.id ?? null;
      registerHlsRoutes(r, { service: hls, resolveChannel });
      const rec = this.recordings;
      if (rec) registerRecordedHlsRoutes(r, { recordings: rec, config: config.hls.recorded, resolveChannel });
    }
    // hls.js for the dashboard's timeline player (before /dashboard/*).
    registerHlsJsRoute(r);
    // WHIP ingest lands tracks in a channel: the configured one by name or id, else one made for it
    // with an id derived from its name (the same after a restart: its recordings stay in one folder).
    const ingestName = config.egress.whipIngest.channel;
    const ingestChannel = this.egress.ingest
      ? (this.engine.findChannel(ingestName) ?? this.engine.addStaticChannel({ id: ingestChannelId(config), name: ingestName })).id
      : '';
    registerEgressRoutes(r, {
      whep: this.egress.whep,
      ingest: this.egress.ingest ? { server: this.egress.ingest, channel: ingestChannel, aliases: [ingestName] } : null,
      transcode: this.egress.transcode,
      overview: () => this.stats(),
      source: this.engine,
      resolve: (ref) => this.engine.resolveRef(ref),
    });
    // What reached the upstream live vs what the recorder holds (GET /api/gaps).
    registerUplinkRoutes(r, {
      spans: this.egress.spans,
      backfilled: this.egress.backfilled,
      recorded: () => this.recordings?.reader() ?? null,
      resolveChannel: (c) => this.engine.resolveChannelId(c),
    });
    const shot = createShotWs({ transcode: this.egress.transcode, log: log.child({ c: 'shot' }), resolve: (ref) => this.engine.resolveRef(ref) });
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

  /** Every configured component, up or down (GET /healthz). */
  health(): ComponentHealth[] {
    const uptimeMs = Date.now() - this.startedAt;
    const out: ComponentHealth[] = this.supervisors.map((s) => driverHealth(s.stats(), s.driver.health?.(), uptimeMs));
    for (const d of this.control.health()) out.push({ name: d.name.replace('/', ':'), up: d.up, reason: d.reason });
    const cu = this.control.upstreamStatus();
    if (cu) out.push({ name: 'control-upstream', up: cu.connected, reason: cu.reason });
    const e = this.egress.stats();
    for (const [kind, links] of [['upstream', e.upstream], ['pull', e.pull], ['whip', e.whip]] as const) {
      for (const l of links as Array<{ name: string; state: string; lastError: { message: string } | null }>) {
        out.push({ name: `${kind}:${l.name}`, up: l.state === 'connected', reason: l.state === 'connected' ? null : (l.lastError?.message ?? l.state) });
      }
    }
    if (this.recordings) {
      const r = this.recordings.stats();
      const full = r.tracks.filter((t) => t.diskFull);
      out.push({
        name: 'recordings',
        up: r.running && full.length === 0,
        reason: !r.running ? 'not running' : full.length ? `disk full: recording paused on ${full.length} track(s)` : null,
      });
    }
    return out;
  }

  get port(): number {
    return this.address?.port ?? 0;
  }

  /** Base URLs for humans (printed at start, shown in the README). */
  urls(): string[] {
    const host = this.config.server.host.includes(':') ? `[${this.config.server.host}]` : this.config.server.host;
    const base = `${host}:${this.port}`;
    const [h, w] = this.tls ? ['https', 'wss'] : ['http', 'ws'];
    const out = [`dashboard: ${h}://${base}/`, `stats:    ${h}://${base}/api/stats`, `metrics:  ${h}://${base}/metrics`];
    if (this.tls?.caFile) out.push(`TLS CA:   ${this.tls.caFile}   (install it in browsers once; see README "TLS")`);
    if (this.config.recordings.enabled) out.push(`records:  ${h}://${base}/api/recordings   (files under ${this.config.recordings.root})`);
    for (const ch of this.config.channels ?? []) {
      for (const src of ch.sources) {
        out.push(`pang sub: ${w}://${base}/pang/ws/sub?channel=${ch.id}&source=${src.name}&track=${src.driver.track}   (${src.driver.kind})`);
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
      health: healthReport(this.health(), this.config.server.healthRequired).status,
      ...components,
    };
  }

  /** Stop drivers, flush and close everything. Idempotent. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = (async () => {
      // Drivers and egress together: WHIP servers hear their DELETE (bounded ~1 s) while ffmpeg
      // children stop. Egress before the components: its last delivery spans must reach the
      // recordings index before that closes.
      await Promise.allSettled([...this.supervisors.map((s) => s.close()), (async () => this.egress.close())()]);
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
