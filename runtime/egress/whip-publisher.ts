// WHIP publisher (RFC 9725) with werift: POST the offer (application/sdp, Bearer token), take
// 201 + Location + answer, trickle late candidates by PATCH (application/trickle-ice-sdpfrag)
// unless the server has no trickle (405/501: the complete offer already carried them), DELETE
// the resource on stop. H.264 goes out as the camera made it. Any failure — HTTP 4xx/5xx,
// invalid answer, no answer, ICE failure, a dropped session — tears down cleanly and
// reconnects with the shared backoff.
import type { RTCPeerConnection, RTCDataChannel, RTCIceTransport } from 'werift';
import { EdgeError, mimeKind, trackPath, type BackoffOptions, type TrackRef, type TrackSource } from '../engine/api.js';
import { ReconnectingLink, type LinkStats } from './link.js';
import { redactPangUrl, type EgressLog } from './pang-link.js';
import { answerH264Profile, answerRejectsVideo, parseSdp, trickleFragment } from './sdp.js';
import { closePeer, connected, createPeer, loadWerift, gatheringComplete, RtpFeed, type PeerOptions, type RtpFeedStats } from './webrtc.js';
import { mimeProfile } from '../whep/server.js';

export interface WhipPublisherOptions {
  name: string;
  url: string;
  token?: string | undefined;
  tracks: TrackRef[];
  source: TrackSource;
  log: EgressLog;
  backoff: BackoffOptions;
  /** Deadline for the HTTP answer and for ICE to connect. */
  timeoutMs?: number;
  peer?: PeerOptions;
  /** How long to gather before POSTing (complete offer); later candidates are trickled. */
  gatherMs?: number;
  /**
   * A receiver that sends no RTCP (RR, PLI…) for this long is gone: RTP receivers report about
   * once a second, and waiting for ICE consent expiry would take 30 s.
   */
  rtcpTimeoutMs?: number;
}

export interface WhipPublisherStats extends LinkStats {
  tracks: string[];
  resource: string | null;
  negotiatedProfile: string | null;
  trickle: 'unknown' | 'supported' | 'unsupported';
  sessions: number;
  deletes: { ok: number; failed: number };
  feeds: RtpFeedStats[];
}

const CONSTRAINED_BASELINE = '42e01f';

export class WhipPublisher extends ReconnectingLink {
  private pc: RTCPeerConnection | null = null;
  private transports: RTCIceTransport[] = [];
  private feeds: RtpFeed[] = [];
  private resource: string | null = null;
  private etag: string | null = null;
  private abort: AbortController | null = null;
  private negotiated: string | null = null;
  private trickle: 'unknown' | 'supported' | 'unsupported' = 'unknown';
  private sessions = 0;
  private deletes = { ok: 0, failed: 0 };
  private gen = 0;
  private watchdog: NodeJS.Timeout | null = null;

  constructor(private readonly o: WhipPublisherOptions) {
    super(o.name, 'whip', redactPangUrl(o.url), o.log, o.backoff);
  }

  private headers(extra: Record<string, string>): Record<string, string> {
    return this.o.token ? { ...extra, authorization: `Bearer ${this.o.token}` } : extra;
  }

  protected attempt(): void {
    const gen = ++this.gen;
    this.run(gen).catch((err: unknown) => {
      if (gen !== this.gen) return;
      const e = err as { code?: unknown; message?: unknown; name?: unknown };
      let code = typeof e.code === 'string' && e.code.startsWith('WHIP_') ? e.code : 'WHIP_FAILED';
      let msg = String(e.message ?? err);
      if (e.name === 'TimeoutError' || e.name === 'AbortError') {
        code = 'WHIP_TIMEOUT';
        msg = 'the endpoint did not answer in time';
      }
      this.failed(code, msg);
    });
  }

  private async run(gen: number): Promise<void> {
    const timeoutMs = this.o.timeoutMs ?? 15_000;
    const tracks = this.o.source.listTracks();
    let videoRef: TrackRef | undefined;
    let videoProfile: string | undefined;
    const dataRefs: TrackRef[] = [];
    for (const ref of this.o.tracks) {
      const t = tracks.find((x) => trackPath(x) === trackPath(ref));
      if (!t || !t.mime) throw new EdgeError('WHIP_TRACK_NOT_READY', `local track ${trackPath(ref)} has no MIME yet`);
      if (mimeKind(t.mime) === 'video') {
        if (videoRef) throw new EdgeError('WHIP_CONFIG', 'one video track per WHIP session');
        videoRef = ref;
        videoProfile = mimeProfile(t.mime);
      } else dataRefs.push(ref);
    }
    // Offer the track's own profile first and constrained baseline as a fallback line
    // (Chromium answers only a few profile-level-ids; a High stream still decodes under 42e01f).
    const profiles = [...new Set([videoProfile ?? CONSTRAINED_BASELINE, CONSTRAINED_BASELINE])];
    await loadWerift();
    const pc = createPeer({ ...this.o.peer, h264Profiles: profiles });
    this.pc = pc;
    const transceiver = videoRef ? pc.addTransceiver('video', { direction: 'sendonly' }) : null;
    const channels: Array<{ ref: TrackRef; ch: RTCDataChannel }> = dataRefs.map((ref) => ({ ref, ch: pc.createDataChannel(trackPath(ref), { ordered: true }) }));
    const lateCandidates: string[] = [];
    let posted = false;
    pc.onIceCandidate.subscribe((c) => {
      if (posted && c?.candidate) lateCandidates.push(c.candidate);
    });
    await pc.setLocalDescription(await pc.createOffer());
    this.transports = [...pc.iceTransports]; // before BUNDLE drops one (see closePeer)
    await gatheringComplete(pc, this.o.gatherMs ?? 1500);
    const offer = pc.localDescription?.sdp;
    if (!offer) throw new EdgeError('WHIP_FAILED', 'no local offer');

    this.abort = new AbortController();
    const signal = AbortSignal.any([this.abort.signal, AbortSignal.timeout(timeoutMs)]);
    posted = true;
    const res = await fetch(this.o.url, { method: 'POST', headers: this.headers({ 'content-type': 'application/sdp', accept: 'application/sdp' }), body: offer, signal, redirect: 'follow' });
    const body = await readLimited(res, 64 * 1024);
    if (gen !== this.gen) return;
    if (res.status !== 201) {
      const hint = res.status === 401 || res.status === 403 ? ' (token refused)' : res.status === 404 ? ' (no such endpoint)' : '';
      throw new EdgeError(`WHIP_HTTP_${res.status}`, `endpoint answered ${res.status}${hint}`);
    }
    const location = res.headers.get('location');
    if (!location) throw new EdgeError('WHIP_NO_LOCATION', '201 without a Location header');
    this.resource = new URL(location, this.o.url).toString();
    this.etag = res.headers.get('etag');
    try {
      parseSdp(body);
    } catch (err) {
      throw new EdgeError('WHIP_BAD_ANSWER', `answer is not valid SDP: ${(err as Error).message}`);
    }
    if (videoRef && answerRejectsVideo(body)) throw new EdgeError('WHIP_VIDEO_REJECTED', 'the answer rejected the H.264 video (m=video 0): no profile-level-id it accepts');
    this.negotiated = answerH264Profile(body) ?? null;
    try {
      await pc.setRemoteDescription({ type: 'answer', sdp: body });
    } catch (err) {
      throw new EdgeError('WHIP_BAD_ANSWER', `answer rejected by WebRTC: ${(err as Error).message}`);
    }
    void this.trickleLate(gen, pc, lateCandidates);
    await connected(pc, timeoutMs, 'WHIP');
    if (gen !== this.gen) return;
    this.sessions++;
    pc.connectionStateChange.subscribe((s) => {
      if (gen !== this.gen) return;
      if (s === 'failed' || s === 'closed' || s === 'disconnected') this.failed('WHIP_SESSION_LOST', `peer connection ${s}`);
    });
    if (transceiver && videoRef) this.feeds.push(new RtpFeed(this.o.source, videoRef, { sender: transceiver.sender }, `whip ${this.name}`));
    for (const { ref, ch } of channels) this.feeds.push(new RtpFeed(this.o.source, ref, { channel: ch }, `whip-data ${this.name}`));
    for (const f of this.feeds) f.start();
    const video = transceiver ? this.feeds[0] : undefined;
    if (video) {
      const since = Date.now();
      const limit = this.o.rtcpTimeoutMs ?? 15_000;
      this.watchdog = setInterval(() => {
        if (gen !== this.gen) return;
        const last = Math.max(since, video.lastRtcpAt);
        if (Date.now() - last > limit) this.failed('WHIP_SESSION_LOST', `receiver silent: no RTCP for ${Math.round((Date.now() - last) / 1000)} s`);
      }, Math.min(2000, limit / 2));
      this.watchdog.unref?.();
    }
    this.up();
  }

  /** PATCH candidates found after the POST; a server without trickle answers 405/501. */
  private async trickleLate(gen: number, pc: RTCPeerConnection, pending: string[]): Promise<void> {
    await gatheringComplete(pc, 5000);
    if (gen !== this.gen || pending.length === 0 || !this.resource || this.trickle === 'unsupported') return;
    const sdp = pc.localDescription?.sdp ?? '';
    const ufrag = /a=ice-ufrag:(.*)/.exec(sdp)?.[1]?.trim() ?? '';
    const pwd = /a=ice-pwd:(.*)/.exec(sdp)?.[1]?.trim() ?? '';
    const mid = /a=mid:(.*)/.exec(sdp)?.[1]?.trim() ?? '0';
    try {
      const res = await fetch(this.resource, {
        method: 'PATCH',
        headers: this.headers({ 'content-type': 'application/trickle-ice-sdpfrag', ...(this.etag ? { 'if-match': this.etag } : {}) }),
        body: trickleFragment(ufrag, pwd, mid, pending.splice(0), true),
        signal: AbortSignal.timeout(5000),
      });
      await res.arrayBuffer().catch(() => undefined);
      this.trickle = res.status === 204 || res.status === 200 ? 'supported' : res.status === 405 || res.status === 501 ? 'unsupported' : this.trickle;
    } catch {
      // trickle is an optimisation: the offer carried the candidates gathered before the POST
    }
  }

  protected teardown(): void {
    this.gen++;
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = null;
    this.abort?.abort();
    this.abort = null;
    for (const f of this.feeds.splice(0)) f.close();
    closePeer(this.pc, this.transports);
    this.pc = null;
    this.transports = [];
    const resource = this.resource;
    this.resource = null;
    this.etag = null;
    if (resource) {
      // RFC 9725: DELETE ends the session on the server; bounded, never awaited by close().
      fetch(resource, { method: 'DELETE', headers: this.headers({}), signal: AbortSignal.timeout(5000) })
        .then(async (r) => {
          await r.arrayBuffer().catch(() => undefined);
          if (r.ok) this.deletes.ok++;
          else this.deletes.failed++;
        })
        .catch(() => this.deletes.failed++);
    }
  }

  stats(): WhipPublisherStats {
    return {
      ...this.baseStats(),
      tracks: this.o.tracks.map(trackPath),
      resource: this.resource ? redactPangUrl(this.resource) : null,
      negotiatedProfile: this.negotiated,
      trickle: this.trickle,
      sessions: this.sessions,
      deletes: { ...this.deletes },
      feeds: this.feeds.map((f) => f.stats()),
    };
  }
}

async function readLimited(res: Response, limit: number): Promise<string> {
  // A hostile or broken endpoint must not make us buffer an unbounded body.
  if (Number(res.headers.get('content-length') ?? 0) > limit) {
    await res.body?.cancel().catch(() => undefined);
    throw new EdgeError('WHIP_BAD_ANSWER', `answer over ${limit} bytes`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  if (res.body) {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      size += chunk.length;
      if (size > limit) {
        await res.body.cancel().catch(() => undefined);
        throw new EdgeError('WHIP_BAD_ANSWER', `answer over ${limit} bytes`);
      }
      chunks.push(Buffer.from(chunk));
    }
  }
  return Buffer.concat(chunks).toString('utf8');
}
