// HTTP surface of HLS:
//   GET /hls/<channel>/<source>/<track>/index.m3u8[?_HLS_msn=M[&_HLS_part=P]]  live LL-HLS playlist
//   GET /hls/<channel>/<source>/<track>/init-<sid>-<n>.mp4 | part-<sid>-<id>.m4s | seg-<sid>-<msn>.m4s
// Channel by id or configured name. Same access rule as WHEP: the server's access gate puts /hls/ behind the whep door (runtime/http/access.ts). A request for
// the hinted next part, or a playlist with _HLS_msn/_HLS_part, blocks until it exists (at most
// three target durations, then 503: RFC 8216bis §6.2.5.2).
import type { ServerResponse } from 'node:http';
import { EdgeError, type TrackRef } from '../engine/api.js';
import { HttpError, type RouteContext, type Router } from '../http/router.js';
import type { LiveTrack } from './live.js';
import { buildLivePlaylist } from './playlist.js';
import type { HlsService } from './service.js';

export const PLAYLIST_TYPE = 'application/vnd.apple.mpegurl';
const LABEL = /^[A-Za-z0-9_.-]{1,64}$/;
/** The first playlist waits for the first complete segment: one GOP, up to 10 s for a slow camera. */
const FIRST_SEGMENT_WAIT_MS = 12_000;

export interface HlsRouteDeps {
  service: HlsService;
  /** Channel id for an id or a configured name (null: unknown). */
  resolveChannel: (idOrName: string) => string | null;
}

/** channel/source/track from route params, the channel resolved from a name; 400/404 on bad input. */
export function trackRefFrom(p: Record<string, string>, resolveChannel: (idOrName: string) => string | null): TrackRef {
  for (const k of ['channel', 'source', 'track'] as const) {
    if (!LABEL.test(p[k] ?? '')) throw new HttpError(400, 'BAD_TRACK_REF', `${k} must be 1..64 of A-Z a-z 0-9 _ . -`);
  }
  const channel = resolveChannel(p.channel!);
  if (!channel) throw new HttpError(404, 'HLS_UNKNOWN_CHANNEL', `no channel ${p.channel}`);
  return { channel, source: p.source!, track: p.track! };
}

/** EdgeErrors with a status (refusals) become that HTTP status. */
export function asHttp(err: unknown): never {
  if (err instanceof HttpError) throw err;
  if (err instanceof EdgeError) {
    const status = (err as EdgeError & { status?: number }).status ?? 500;
    throw new HttpError(status, err.code, err.message.replace(/^[A-Z0-9_]+: /, ''));
  }
  throw err;
}

function intParam(u: URL, name: string): number | null {
  const v = u.searchParams.get(name);
  if (v === null) return null;
  if (!/^\d{1,15}$/.test(v)) throw new HttpError(400, 'HLS_BAD_DIRECTIVE', `${name} must be a non-negative integer`);
  return Number(v);
}

/** Abort when the client goes away, so a blocked request does not hold a waiter slot. */
function clientGone(ctx: RouteContext): AbortSignal {
  const ac = new AbortController();
  ctx.res.once('close', () => ac.abort());
  return ac.signal;
}

export function sendMedia(ctx: RouteContext, type: string, chunks: Buffer[], cache: string): void {
  const len = chunks.reduce((a, c) => a + c.length, 0);
  // No CORS header: a page on another origin in an operator's browser must not read the robot's video.
  ctx.res.writeHead(200, { 'content-type': type, 'content-length': len, 'cache-control': cache });
  if (ctx.req.method === 'HEAD') {
    ctx.res.end();
    return;
  }
  for (const c of chunks) ctx.res.write(c);
  ctx.res.end();
}

export function sendPlaylist(res: ServerResponse, text: string, head: boolean): void {
  res.writeHead(200, { 'content-type': PLAYLIST_TYPE, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-cache' });
  res.end(head ? undefined : text);
}

const IMMUTABLE = 'public, max-age=300, immutable'; // URIs carry the session id: never reused

export function registerHlsRoutes(router: Router, deps: HlsRouteDeps): void {
  const { service } = deps;

  router.route('GET', '/hls/:channel/:source/:track/:file', async (ctx) => {
    const ref = trackRefFrom(ctx.params, deps.resolveChannel);
    const file = ctx.params.file!;
    if (file === 'index.m3u8') return playlist(ctx, ref);
    const m = /^(init|part|seg)-([0-9a-f]{8})-(\d{1,12})\.(mp4|m4s)$/.exec(file);
    if (!m) throw new HttpError(404, 'HLS_NOT_FOUND', `no ${file} here (index.m3u8, init-*, part-*, seg-*)`);
    const live = service.running(ref);
    // A URI of an earlier session (muxing stopped and restarted): the client reloads the playlist.
    if (!live || live.sid !== m[2]) throw new HttpError(404, 'HLS_GONE', 'that stream ended; reload the playlist');
    const n = Number(m[3]);
    if (m[1] === 'init') return init(ctx, live, n);
    if (m[1] === 'part') return part(ctx, live, n);
    return segment(ctx, live, n);
  });

  async function playlist(ctx: RouteContext, ref: TrackRef): Promise<void> {
    const msn = intParam(ctx.url, '_HLS_msn');
    const partIdx = intParam(ctx.url, '_HLS_part');
    if (partIdx !== null && msn === null) throw new HttpError(400, 'HLS_BAD_DIRECTIVE', '_HLS_part needs _HLS_msn');
    let live: LiveTrack;
    try {
      live = service.live(ref);
    } catch (err) {
      asHttp(err);
    }
    live.st.playlist++;
    const signal = clientGone(ctx);
    if (!(await live.waitUntil(() => live.window.ready, FIRST_SEGMENT_WAIT_MS, signal).catch(asHttp))) {
      throw new HttpError(503, 'HLS_NO_MEDIA', 'no complete segment yet: is the camera sending keyframes?');
    }
    if (msn !== null) {
      live.st.blockingPlaylist++;
      const w = live.window;
      const last = w.lastPosition()?.msn ?? -1;
      if (msn > last + 2) throw new HttpError(400, 'HLS_MSN_TOO_FAR', `_HLS_msn ${msn} is more than two segments past ${last}`);
      const timeout = 3 * (w.stats().targetDurationS ?? 1) * 1000;
      const ok = await live.waitUntil(() => w.reached(msn, partIdx), timeout, signal).catch(asHttp);
      if (!ok) {
        ctx.res.setHeader('retry-after', '1');
        throw new HttpError(503, 'HLS_BLOCK_TIMEOUT', `segment ${msn}${partIdx !== null ? ` part ${partIdx}` : ''} did not come within ${timeout} ms`);
      }
    }
    sendPlaylist(ctx.res, buildLivePlaylist(live.window.playlistState()), ctx.req.method === 'HEAD');
  }

  async function init(ctx: RouteContext, live: LiveTrack, id: number): Promise<void> {
    live.st.init++;
    const p = live.init(id);
    if (!p) throw new HttpError(404, 'HLS_NOT_FOUND', `no init ${id}`);
    let bytes: Buffer;
    try {
      bytes = (await p).bytes;
    } catch (err) {
      throw new HttpError(500, 'HLS_INIT_FAILED', (err as Error).message);
    }
    sendMedia(ctx, 'video/mp4', [bytes], IMMUTABLE);
  }

  async function part(ctx: RouteContext, live: LiveTrack, id: number): Promise<void> {
    live.st.part++;
    const w = live.window;
    if (!w.part(id) && id === w.nextPart) {
      // The preload hint: held until the part is complete.
      const timeout = 3 * (w.stats().targetDurationS ?? 1) * 1000;
      await live.waitUntil(() => w.part(id) !== undefined, timeout, clientGone(ctx)).catch(asHttp);
    }
    const p = w.part(id);
    if (!p) throw new HttpError(404, 'HLS_NOT_FOUND', id < w.nextPart ? `part ${id} left the window` : `part ${id} is not next (${w.nextPart} is)`);
    sendMedia(ctx, 'video/mp4', [p.bytes], IMMUTABLE);
  }

  async function segment(ctx: RouteContext, live: LiveTrack, msn: number): Promise<void> {
    live.st.segment++;
    const w = live.window;
    const s = w.segment(msn);
    if (s && !s.complete) {
      const timeout = 3 * (w.stats().targetDurationS ?? 1) * 1000;
      await live.waitUntil(() => w.segment(msn)?.complete === true, timeout, clientGone(ctx)).catch(asHttp);
    }
    const done = w.segment(msn);
    if (!done || !done.complete) throw new HttpError(404, 'HLS_NOT_FOUND', `segment ${msn} is not in the window`);
    sendMedia(ctx, 'video/mp4', done.parts.map((p) => p.bytes), IMMUTABLE);
  }
}
