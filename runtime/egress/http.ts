// HTTP surface of egress: WHEP (POST/PATCH/DELETE), WHIP ingest (POST/PATCH/DELETE), stills
// (GET /api/shot/<channel>/<source>/<track>.jpg and the /shot/ws WebSocket), egress stats for
// the dashboard, and the dashboard's static files at /.
import { readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { extname, join, normalize, dirname } from 'node:path';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { WebSocketServer, type WebSocket } from 'ws';
import { EdgeError, trackPath, type ConsumerHandle, type Frame, type TrackRef, type TrackSource } from '../engine/api.js';
import { HttpError, type RouteContext, type Router } from '../http/router.js';
import { clientAddress } from '../http/access.js';
import type { TranscodeService } from '../transcode/service.js';
import type { WhepServer } from '../whep/server.js';
import type { WhipIngest } from './whip-ingest.js';
import type { EgressLog } from './pang-link.js';

export interface EgressRouteDeps {
  whep?: WhepServer | null;
  /**
   * WHIP ingest and the engine channel (id) it writes into. `aliases` are other names accepted in
   * the URL for that channel (its configured name), so /whip/<name>/<source>/<track> works too.
   */
  ingest?: { server: WhipIngest; channel: string; aliases?: string[] } | null;
  transcode?: TranscodeService | null;
  /** Everything the dashboard shows (engine tracks, egress links, recorder, PTZ…), no secrets. */
  overview?: () => unknown;
  /** Serve the dashboard at / (default true). */
  dashboard?: boolean;
  /** Engine, for GET /api/sensors/latest (the last record of each data track). */
  source?: TrackSource | null;
  /** A channel named by id or by name in a URL → the ref by id (names and ids are interchangeable). */
  resolve?: (ref: TrackRef) => TrackRef;
}

/** The last record of every data track (JSON parsed when the MIME says so), for the dashboard. */
export function sensorSnapshot(source: TrackSource, maxTracks = 32): Array<{ path: string; mime: string | null; value: unknown; ageMs: number | null }> {
  const out: Array<{ path: string; mime: string | null; value: unknown; ageMs: number | null }> = [];
  for (const t of source.listTracks()) {
    if (t.kind !== 'data' || out.length >= maxTracks) continue;
    const mime = t.mime ?? '';
    if (/^image\//i.test(mime)) continue;
    let c: ConsumerHandle | null = null;
    try {
      c = source.subscribe(t, { label: 'dashboard-sensors', fromCache: true, texts: false, ceilingBytes: 64 * 1024 });
      let last: Frame | undefined;
      for (let it = c.next(); it; it = c.next()) if (it.type === 'frame') last = it.frame;
      if (!last) continue;
      const text = last.data.subarray(0, 4096).toString('utf8');
      let value: unknown = text;
      if (/json/i.test(mime)) {
        try {
          value = JSON.parse(text);
        } catch {
          value = text; // a record cut at 4 KB or not JSON: show it raw
        }
      }
      out.push({ path: trackPath(t), mime: t.mime ?? null, value, ageMs: Math.max(0, Date.now() - last.wallclock) });
    } catch {
      // a track that vanished between list and subscribe
    } finally {
      c?.close();
    }
  }
  return out;
}

const LABEL = /^[A-Za-z0-9_.-]{1,64}$/;

function refFrom(p: Record<string, string>): TrackRef {
  for (const k of ['channel', 'source', 'track'] as const) {
    if (!LABEL.test(p[k] ?? '')) throw new HttpError(400, 'BAD_TRACK_REF', `${k} must be 1..64 of A-Z a-z 0-9 _ . -`);
  }
  return { channel: p.channel!, source: p.source!, track: p.track! };
}

/** EdgeErrors carrying an HTTP status (WHEP/WHIP refusals) become that status. */
function httpError(err: unknown): never {
  if (err instanceof HttpError) throw err;
  if (err instanceof EdgeError) {
    const status = (err as EdgeError & { status?: number }).status ?? statusFor(err.code);
    throw new HttpError(status, err.code, err.detail);
  }
  throw err;
}

function statusFor(code: string): number {
  if (/UNKNOWN|NOT_FOUND/.test(code)) return 404;
  if (/BAD_CODEC|MALFORMED|BAD_/.test(code)) return 400;
  if (/UNSUPPORTED/.test(code)) return 415;
  if (/TIMEOUT|NO_FRAME/.test(code)) return 504;
  if (/BUSY/.test(code)) return 503;
  return 500;
}

async function readSdp(ctx: RouteContext): Promise<string> {
  const ct = (ctx.req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (ct !== 'application/sdp') throw new HttpError(415, 'WANT_SDP', 'Content-Type must be application/sdp');
  return (await ctx.readBody(64 * 1024)).toString('utf8');
}

function sendSdp(ctx: RouteContext, location: string, answer: string): void {
  ctx.res.writeHead(201, {
    'content-type': 'application/sdp',
    location,
    etag: `"${location.split('/').pop()}"`,
    'access-control-expose-headers': 'Location, ETag',
    'cache-control': 'no-store',
  });
  ctx.res.end(answer);
}

const DASHBOARD_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'dashboard');
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.json': 'application/json',
  '.webmanifest': 'application/manifest+json',
};

/** The dashboard folder: next to this module in the source tree; dist/ builds look in the source too. */
export function dashboardDir(): string {
  return DASHBOARD_DIR.includes(`${join('dist', 'runtime')}`) ? DASHBOARD_DIR.replace(`${join('dist', 'runtime')}`, 'runtime') : DASHBOARD_DIR;
}

export function registerEgressRoutes(router: Router, deps: EgressRouteDeps): void {
  const { whep, ingest, transcode } = deps;
  const resolve = deps.resolve ?? ((r: TrackRef) => r);

  router.route('POST', '/whep/:channel/:source/:track', async (ctx) => {
    if (!whep) throw new HttpError(404, 'WHEP_DISABLED', 'WHEP is disabled in the config');
    const ref = resolve(refFrom(ctx.params));
    const sdp = await readSdp(ctx);
    try {
      const { id, answer } = await whep.offer(ref, sdp, clientAddress(ctx.req));
      sendSdp(ctx, `/whep/session/${id}`, answer);
    } catch (err) {
      httpError(err);
    }
  });
  router.route('PATCH', '/whep/session/:id', async (ctx) => {
    if (!whep || !whep.has(ctx.params.id!)) throw new HttpError(404, 'WHEP_NO_SESSION', 'no such WHEP session');
    const ct = (ctx.req.headers['content-type'] ?? '').split(';')[0]!.trim();
    if (ct !== 'application/trickle-ice-sdpfrag') throw new HttpError(415, 'WANT_SDPFRAG', 'Content-Type must be application/trickle-ice-sdpfrag');
    try {
      await whep.patch(ctx.params.id!, (await ctx.readBody(16 * 1024)).toString('utf8'));
    } catch (err) {
      httpError(err);
    }
    ctx.res.writeHead(204).end();
  });
  router.route('DELETE', '/whep/session/:id', (ctx) => {
    if (!whep || !whep.end(ctx.params.id!)) throw new HttpError(404, 'WHEP_NO_SESSION', 'no such WHEP session');
    ctx.res.writeHead(200).end();
  });

  router.route('POST', '/whip/:channel/:source/:track', async (ctx) => {
    if (!ingest) throw new HttpError(404, 'WHIP_INGEST_DISABLED', 'WHIP ingest is disabled in the config');
    const ref = refFrom(ctx.params);
    try {
      ingest.server.checkAuth(ctx.req.headers.authorization);
    } catch (err) {
      ctx.res.setHeader('www-authenticate', 'Bearer');
      httpError(err);
    }
    if (ref.channel !== ingest.channel && !(ingest.aliases ?? []).includes(ref.channel)) {
      throw new HttpError(403, 'WHIP_CHANNEL_FORBIDDEN', `WHIP ingest writes only into channel ${[...(ingest.aliases ?? []), ingest.channel].join(' / ')}`);
    }
    ref.channel = ingest.channel;
    const sdp = await readSdp(ctx);
    try {
      const { id, answer } = await ingest.server.offer(ref, sdp);
      sendSdp(ctx, `/whip/session/${id}`, answer);
    } catch (err) {
      httpError(err);
    }
  });
  router.route('PATCH', '/whip/session/:id', (ctx) => {
    if (!ingest) throw new HttpError(404, 'WHIP_INGEST_DISABLED', 'WHIP ingest is disabled');
    ingest.server.checkAuth(ctx.req.headers.authorization);
    if (!ingest.server.has(ctx.params.id!)) throw new HttpError(404, 'WHIP_NO_SESSION', 'no such WHIP session');
    // Our answer carried every candidate (non-trickle server side); RFC 9725 allows 405 here.
    throw new HttpError(405, 'WHIP_NO_TRICKLE', 'this endpoint takes complete offers; trickle is not supported');
  });
  router.route('DELETE', '/whip/session/:id', (ctx) => {
    if (!ingest) throw new HttpError(404, 'WHIP_INGEST_DISABLED', 'WHIP ingest is disabled');
    try {
      ingest.server.checkAuth(ctx.req.headers.authorization);
    } catch (err) {
      httpError(err);
    }
    if (!ingest.server.end(ctx.params.id!)) throw new HttpError(404, 'WHIP_NO_SESSION', 'no such WHIP session');
    ctx.res.writeHead(200).end();
  });

  router.route('GET', '/api/shot/:channel/:source/:file', async (ctx) => {
    if (!transcode) throw new HttpError(404, 'SHOT_DISABLED', 'stills are not available');
    const m = /^(.+)\.jpe?g$/i.exec(ctx.params.file ?? '');
    if (!m) throw new HttpError(404, 'SHOT_NOT_FOUND', 'use /api/shot/<channel>/<source>/<track>.jpg');
    const ref = resolve(refFrom({ channel: ctx.params.channel!, source: ctx.params.source!, track: m[1]! }));
    let jpeg: Buffer;
    try {
      jpeg = await transcode.still(ref);
    } catch (err) {
      httpError(err);
    }
    ctx.res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': jpeg.length, 'cache-control': 'no-store' });
    ctx.res.end(ctx.req.method === 'HEAD' ? undefined : jpeg);
  });

  if (deps.source) {
    const src = deps.source;
    router.route('GET', '/api/sensors/latest', (ctx) => ctx.json(200, { tracks: sensorSnapshot(src) }));
  }

  if (deps.overview) {
    const overview = deps.overview;
    router.route('GET', '/api/egress/overview', (ctx) => ctx.json(200, overview()));
  }

  if (deps.dashboard !== false) {
    const root = dashboardDir();
    const serve = async (ctx: RouteContext, rel: string): Promise<void> => {
      const clean = normalize(rel).replace(/^(\.\.(\/|\\|$))+/, '');
      if (clean.includes('..') || !/^[A-Za-z0-9_.\-/]+$/.test(clean)) throw new HttpError(404, 'NOT_FOUND', 'no such file');
      let body: Buffer;
      try {
        body = await readFile(join(root, clean));
      } catch {
        throw new HttpError(404, 'NOT_FOUND', 'no such file');
      }
      ctx.res.writeHead(200, { 'content-type': TYPES[extname(clean)] ?? 'application/octet-stream', 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' });
      ctx.res.end(ctx.req.method === 'HEAD' ? undefined : body);
    };
    router.route('GET', '/', (ctx) => serve(ctx, 'index.html'));
    router.route('GET', '/dashboard/*', (ctx) => serve(ctx, ctx.params['*'] ?? ''));
  }
}

export interface ShotWsOptions {
  transcode: TranscodeService;
  log: EgressLog;
  /** Concurrent /shot/ws clients: each may hold a decode; a Pi has two cores. */
  maxClients?: number;
  /** A channel named by id or by name → the ref by id. */
  resolve?: (ref: TrackRef) => TrackRef;
}

/**
 * /shot/ws: each text message asks for one still — "" or "shot" for the track in the query
 * (?channel=&source=&track=), or JSON {"channel","source","track"}. The reply is one binary
 * JPEG, or a text {"error":{"code","message"}}. One request in flight per client.
 */
export function createShotWs(o: ShotWsOptions): { upgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void; close: () => void; stats: () => Record<string, number> } {
  const wss = new WebSocketServer({ noServer: true, maxPayload: 4096, perMessageDeflate: false });
  const c = { clients: 0, requests: 0, stills: 0, errors: 0, refused: 0 };
  const max = o.maxClients ?? 8;
  const reply = (ws: WebSocket, code: string, message: string): void => {
    c.errors++;
    ws.send(JSON.stringify({ error: { code, message } }));
  };
  const onClient = (ws: WebSocket, q: URLSearchParams): void => {
    c.clients++;
    let busy = false;
    ws.on('close', () => c.clients--);
    ws.on('error', () => {});
    ws.on('message', (raw, binary) => {
      c.requests++;
      if (busy) return reply(ws, 'SHOT_BUSY', 'one still at a time per client');
      const text = binary ? '' : raw.toString();
      let p: Record<string, string> = { channel: q.get('channel') ?? '', source: q.get('source') ?? 'base', track: q.get('track') ?? 'video' };
      if (text.trim().startsWith('{')) {
        try {
          const j = JSON.parse(text) as Record<string, unknown>;
          p = { channel: String(j.channel ?? p.channel), source: String(j.source ?? p.source), track: String(j.track ?? p.track) };
        } catch {
          return reply(ws, 'BAD_JSON', 'request is not valid JSON');
        }
      }
      let ref: TrackRef;
      try {
        ref = (o.resolve ?? ((r: TrackRef) => r))(refFrom(p));
      } catch (e) {
        return reply(ws, (e as HttpError).code, (e as Error).message);
      }
      busy = true;
      o.transcode.still(ref).then(
        (jpeg) => {
          busy = false;
          c.stills++;
          if (ws.readyState === ws.OPEN) ws.send(jpeg, { binary: true });
        },
        (err: unknown) => {
          busy = false;
          const e = err as EdgeError;
          if (ws.readyState === ws.OPEN) reply(ws, e.code ?? 'SHOT_FAILED', String(e.message ?? err).replace(/^[A-Z0-9_]+: /, ''));
        },
      );
    });
  };
  return {
    upgrade: (req, socket, head) => {
      if (c.clients >= max) {
        c.refused++;
        socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n');
        return;
      }
      const q = new URL(req.url ?? '/', 'http://x').searchParams;
      wss.handleUpgrade(req, socket, head, (ws) => onClient(ws, q));
    },
    close: () => {
      for (const ws of wss.clients) ws.terminate();
      wss.close();
    },
    stats: () => ({ ...c }),
  };
}
