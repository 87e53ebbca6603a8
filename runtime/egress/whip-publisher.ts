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
import { answerH264Profile, answerRejectsVideo, parseSdp, trickleContext, trickleFragment, withoutCandidates } from './sdp.js';
import { closePeer, connected, createPeer, loadWerift, gatheringComplete, RtpFeed, type PeerOptions, type RtpFeedStats } from './webrtc.js';
import { mimeProfile } from '../whep/server.js';
import { UplinkEstimator, type UplinkEstimate } from '../uplink/estimator.js';
import { DEFAULT_PRIORITY, DemandMeter, type TrackDemand, type TrackMode } from '../uplink/scheduler.js';
import { RtcpDrainMeter, VideoModeGate, type RtcpDrainStats } from './whip-uplink.js';
import { UplinkEncoderCap, type EncoderCapStats } from '../uplink/encoder-cap.js';

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
  /** Uplink scheduler priority of the video track (default: DEFAULT_PRIORITY.video). */
  priority?: number;
  /**
   * Trickle ICE (RFC 9725 §4.3): 'auto' (default) trickles until the endpoint answers 405/501 to a
   * PATCH, then sends complete offers; 'on' always trickles; 'off' always waits for gathering.
   */
  trickle?: 'auto' | 'on' | 'off';
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
  trickleMode: 'auto' | 'on' | 'off';
  offers: { trickle: number; complete: number };
  patches: { sent: number; ok: number; failed: number };
  sessions: number;
  /** Mode set by the uplink scheduler, and video access units it held back. */
  uplinkMode: TrackMode;
  encodingCap: EncoderCapStats;
  uplinkHeld: { keyframesOnly: number; paused: number; awaitingKey: number };
  uplink: UplinkEstimate;
  receiverReports: RtcpDrainStats;
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
  private sessionCount = 0;
  /** Uplink estimate from this session's RTCP receiver reports (issue 8: PrioritizedLink). */
  readonly uplink = new UplinkEstimator();
  private readonly drain = new RtcpDrainMeter();
  private readonly demand = new DemandMeter();
  private readonly gate = new VideoModeGate();
  private videoRef: TrackRef | null = null;
  /** The uplink scheduler's encoder cap on the video source (issue 8), like the pang publisher's. */
  private readonly cap: UplinkEncoderCap;
  /** setLocalDescription of the current session while werift may still be gathering. */
  private gathering: Promise<void> | null = null;
  private readonly trickleMode: 'auto' | 'on' | 'off';
  private offersSent = { trickle: 0, complete: 0 };
  private patches = { sent: 0, ok: 0, failed: 0 };
  private deletes = { ok: 0, failed: 0 };
  private readonly pendingDeletes = new Set<Promise<void>>();
  private gen = 0;
  private watchdog: NodeJS.Timeout | null = null;

  constructor(private readonly o: WhipPublisherOptions) {
    super(o.name, 'whip', redactPangUrl(o.url), o.log, o.backoff);
    this.trickleMode = o.trickle ?? 'auto';
    this.cap = new UplinkEncoderCap(o.source);
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
      this.failed(code, msg, whipFailureClass(code));
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
        this.videoRef = ref;
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
    // Trickle (RFC 9725 §4.3): POST the offer while ICE is still gathering, without candidates;
    // every candidate then goes by PATCH. Otherwise (off, or the endpoint answered 405/501 to a
    // PATCH before): wait for gathering (bounded) and POST the complete offer.
    const trickling = this.trickleMode === 'on' || (this.trickleMode === 'auto' && this.trickle !== 'unsupported');
    const pending: string[] = [];
    pc.onIceCandidate.subscribe((c) => {
      // Bounded: a host has a handful of candidates; a runaway gatherer must not grow this.
      if (c?.candidate && pending.length < 64) pending.push(c.candidate);
    });
    const created = await pc.createOffer();
    const setLocal = pc.setLocalDescription(created);
    this.transports = [...pc.iceTransports]; // before BUNDLE drops one (see closePeer)
    // werift binds its ICE sockets inside setLocalDescription: a teardown while a trickling
    // session still gathers must wait for it, or the sockets bound after close() leak.
    this.gathering = setLocal.then(
      () => undefined,
      () => undefined,
    );
    let offer: string;
    if (trickling) {
      offer = withoutCandidates(created.sdp);
      // werift gathers inside setLocalDescription; it is awaited after the POST is on its way.
      setLocal.catch(() => undefined);
    } else {
      await setLocal;
      await gatheringComplete(pc, this.o.gatherMs ?? 1500);
      const sdp = pc.localDescription?.sdp;
      if (!sdp) throw new EdgeError('WHIP_FAILED', 'no local offer');
      offer = sdp;
    }
    this.offersSent[trickling ? 'trickle' : 'complete']++;

    // One controller and a plain timer for the answer deadline: AbortSignal.any() holds its
    // sources weakly in Node 20, so an AbortSignal.timeout() nobody else references can be
    // garbage-collected and never fire (seen here: a silent endpoint hung a session for good).
    const abort = new AbortController();
    this.abort = abort;
    const deadline = setTimeout(() => abort.abort(new DOMException('the endpoint did not answer in time', 'TimeoutError')), timeoutMs);
    let res: Response;
    let body: string;
    try {
      res = await fetch(this.o.url, { method: 'POST', headers: this.headers({ 'content-type': 'application/sdp', accept: 'application/sdp' }), body: offer, signal: abort.signal, redirect: 'follow' });
      body = await readLimited(res, 64 * 1024);
    } finally {
      clearTimeout(deadline);
    }
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
      await setLocal;
      await pc.setRemoteDescription({ type: 'answer', sdp: body });
    } catch (err) {
      throw new EdgeError('WHIP_BAD_ANSWER', `answer rejected by WebRTC: ${(err as Error).message}`);
    }
    if (trickling) void this.trickleCandidates(gen, pc, pending);
    await connected(pc, timeoutMs, 'WHIP');
    if (gen !== this.gen) return;
    this.sessionCount++;
    pc.connectionStateChange.subscribe((s) => {
      if (gen !== this.gen) return;
      if (s === 'failed' || s === 'closed' || s === 'disconnected') this.failed('WHIP_SESSION_LOST', `peer connection ${s}`);
    });
    this.drain.reset();
    if (transceiver && videoRef) {
      this.feeds.push(
        new RtpFeed(this.o.source, videoRef, { sender: transceiver.sender }, `whip ${this.name}`, undefined, true, {
          onVideoFrame: (bytes, key) => this.demand.add(bytes, key),
          gate: (key) => this.gate.pass(key),
          onReceiverReport: (rr, sent, remb) => {
            this.demand.tick(Date.now()); // about once a second, with or without a controller
            const sample = this.drain.observe(Date.now(), sent, rr, remb);
            if (sample) this.uplink.add(sample);
          },
        }),
      );
    }
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

  /**
   * PATCH the candidates (application/trickle-ice-sdpfrag, If-Match with the resource's ETag) once
   * gathering is over, with a=end-of-candidates. 405/501: this endpoint has no trickle — the next
   * session sends a complete offer (auto); this one may still connect through peer-reflexive
   * candidates, and if it does not, ICE times out and the reconnect does the rest.
   */
  private async trickleCandidates(gen: number, pc: RTCPeerConnection, pending: string[]): Promise<void> {
    await gatheringComplete(pc, 5000);
    if (gen !== this.gen || !this.resource) return;
    const ctx = trickleContext(pc.localDescription?.sdp ?? '');
    this.patches.sent++;
    try {
      const res = await fetch(this.resource, {
        method: 'PATCH',
        headers: this.headers({ 'content-type': 'application/trickle-ice-sdpfrag', ...(this.etag ? { 'if-match': this.etag } : {}) }),
        body: trickleFragment(ctx.ufrag, ctx.pwd, ctx.mid, pending.splice(0), true, { mLine: ctx.mLine, bundle: ctx.bundle }),
        signal: AbortSignal.timeout(5000),
      });
      await res.arrayBuffer().catch(() => undefined);
      if (res.status === 204 || res.status === 200) {
        this.patches.ok++;
        this.trickle = 'supported';
      } else if (res.status === 405 || res.status === 501) {
        this.patches.failed++;
        this.trickle = 'unsupported';
        this.o.log.info({ whip: this.name, status: res.status }, 'WHIP endpoint has no trickle ICE: complete offers from the next session on');
      } else {
        this.patches.failed++;
        this.o.log.warn({ whip: this.name, status: res.status }, 'WHIP trickle PATCH refused');
      }
    } catch {
      this.patches.failed++; // a lost PATCH: ICE may still connect through peer-reflexive candidates
    }
  }

  protected teardown(): void {
    this.gen++;
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = null;
    this.abort?.abort();
    this.abort = null;
    for (const f of this.feeds.splice(0)) f.close();
    const pc = this.pc;
    const transports = this.transports;
    const gathering = this.gathering;
    this.gathering = null;
    if (pc && gathering) {
      // Close after gathering settled (bounded by werift's own gather), with every transport it made.
      void gathering.then(() => closePeer(pc, [...transports, ...pc.iceTransports]));
    } else closePeer(pc, transports);
    this.pc = null;
    this.transports = [];
    const resource = this.resource;
    this.resource = null;
    this.etag = null;
    if (resource) {
      // RFC 9725: DELETE ends the session on the server (bounded: 5 s). leave() awaits it at shutdown.
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), 5000);
      const done: Promise<void> = fetch(resource, { method: 'DELETE', headers: this.headers({}), signal: ac.signal })
        .then(async (r) => {
          await r.arrayBuffer().catch(() => undefined);
          if (r.ok) this.deletes.ok++;
          else this.deletes.failed++;
        })
        .catch(() => {
          this.deletes.failed++;
        })
        .finally(() => {
          clearTimeout(timer);
          this.pendingDeletes.delete(done);
        });
      this.pendingDeletes.add(done);
    }
  }

  /**
   * Close, and wait (at most `timeoutMs`) for the server to hear the session's DELETE: at SIGTERM
   * a session the server never hears about lingers there until its own timeout (issue 14).
   */
  async leave(timeoutMs = 1000): Promise<void> {
    this.close();
    if (this.pendingDeletes.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.pendingDeletes]), new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
  }

  /** Sessions opened so far (the uplink controller resets a link's mode when this changes). */
  get sessions(): number {
    return this.sessionCount;
  }

  /** What this link offers the uplink scheduler: its video track; null before its first frame. */
  uplinkDemand(): TrackDemand | null {
    if (!this.videoRef) return null;
    this.demand.tick(Date.now());
    return {
      id: this.name,
      kind: 'video',
      priority: this.o.priority ?? DEFAULT_PRIORITY.video,
      demandBytesPerSec: this.demand.bytesPerSec,
      keyframeBytesPerSec: this.demand.keyframeBytesPerSec,
      cappable: this.cap.cappable,
      uncappedBytesPerSec: this.cap.uncapped,
    };
  }

  /**
   * Ask the video source's encoder for at most this many bytes/s (null lifts this link's cap);
   * false when it cannot — it is then not offered as cappable again and steps to keyframes-only.
   */
  setEncodingCap(bytesPerSec: number | null): boolean {
    return this.cap.set(this.videoRef, bytesPerSec, this.demand.bytesPerSec);
  }


  /** Lifts this link's encoder cap (other callers' caps stay), then closes like any link. */
  override close(): void {
    if (this.cap.capped) this.setEncodingCap(null);
    super.close();
  }

  /** Set by the uplink scheduler: full, keyframes-only or paused video (data channels are never gated). */
  setMode(mode: TrackMode): void {
    if (!this.gate.set(mode) || !this.videoRef) return;
    try {
      this.o.source.requestKeyframe(this.videoRef); // stepping up starts at a keyframe
    } catch {
      // a source that cannot: the next natural keyframe will do
    }
  }

  stats(): WhipPublisherStats {
    return {
      ...this.baseStats(),
      tracks: this.o.tracks.map(trackPath),
      resource: this.resource ? redactPangUrl(this.resource) : null,
      negotiatedProfile: this.negotiated,
      trickle: this.trickle,
      trickleMode: this.trickleMode,
      offers: { ...this.offersSent },
      patches: { ...this.patches },
      sessions: this.sessionCount,
      uplinkMode: this.gate.current,
      encodingCap: this.cap.stats(),
      uplinkHeld: { ...this.gate.held },
      uplink: this.uplink.estimate(Date.now()),
      receiverReports: this.drain.stats(),
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

/** WHIP failures the endpoint meant (4xx, a broken answer, our own config) back off long; the rest retry fast. */
export function whipFailureClass(code: string): 'refused' | 'network' {
  if (/^WHIP_HTTP_4\d\d$/.test(code)) return code === 'WHIP_HTTP_408' ? 'network' : 'refused';
  if (code === 'WHIP_CONFIG' || code === 'WHIP_NO_LOCATION' || code === 'WHIP_BAD_ANSWER' || code === 'WHIP_NO_TRACKS') return 'refused';
  return 'network';
}
