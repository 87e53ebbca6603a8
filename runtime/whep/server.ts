// Local WHEP (RFC 9725 egress twin): POST an SDP offer for channel/source/track, get a werift
// answer that plays the H.264 track as it came from the camera (no transcoding); DELETE ends it.
// Each session is bounded (max sessions in all and per client address, ICE connect deadline of
// 10 s: an offer that never connects frees its slot soon) and owns its consumer and peer.
import { randomBytes } from 'node:crypto';
import type { RTCPeerConnection } from 'werift';
import { EdgeError, mimeBase, mimeParams, trackPath, type TrackRef, type TrackSource } from '../engine/api.js';
import type { EgressLog } from '../egress/pang-link.js';
import { preferH264, validateOffer, parseTrickleFragment } from '../egress/sdp.js';
import { SessionTable, type SessionCounters } from '../egress/session-table.js';
import { closePeer, createPeer, loadWerift, gatheringComplete, RtpFeed, type PeerOptions, type RtpFeedStats } from '../egress/webrtc.js';

export interface WhepOptions {
  source: TrackSource;
  log: EgressLog;
  maxSessions: number;
  /** Sessions one client address may hold (connected or not); default 4. */
  maxSessionsPerClient?: number;
  peer?: PeerOptions;
  /** A session that has not connected by then is dropped (browsers give up sooner). Default 10 s. */
  connectTimeoutMs?: number;
  /** Wait for ICE gathering before answering (non-trickle answer), bounded. */
  gatherTimeoutMs?: number;
}

interface Session {
  id: string;
  ref: TrackRef;
  client: string;
  pc: RTCPeerConnection;
  feed: RtpFeed;
  createdAt: number;
  state: string;
  timer: NodeJS.Timeout | null;
}

export interface WhepStats extends SessionCounters {
  sessions: number;
  maxSessions: number;
  maxSessionsPerClient: number;
  viewers: Array<{ id: string; track: string; state: string; since: number; feed: RtpFeedStats }>;
}

/** The profile-level-id in a track's MIME (`codecs=avc1.42E01F`), lower-cased. */
export function mimeProfile(mime: string | undefined): string | undefined {
  if (!mime) return undefined;
  const c = mimeParams(mime).codecs;
  const m = c ? /^avc1\.([0-9a-f]{6})$/i.exec(c) : null;
  return m ? m[1]!.toLowerCase() : undefined;
}

export class WhepServer {
  private readonly sessions: SessionTable<Session>;

  constructor(private readonly o: WhepOptions) {
    this.sessions = new SessionTable('WHEP', o.maxSessions);
  }

  private reject(code: string, status: number, message: string): never {
    return this.sessions.reject(code, status, message);
  }

  /** Answer an offer; throws EdgeError with a `status` (400/404/406/415/429/503) on refusal. */
  async offer(ref: TrackRef, offerSdp: string, client = '?'): Promise<{ id: string; answer: string }> {
    this.sessions.admit('WHEP viewers');
    const perClient = this.o.maxSessionsPerClient ?? 4;
    if (this.sessions.values().filter((x) => x.client === client).length >= perClient) {
      this.reject('WHEP_CLIENT_LIMIT', 429, `at most ${perClient} WHEP sessions per client address; close one (DELETE) or wait for an unconnected one to expire`);
    }
    try {
      validateOffer(offerSdp, { video: 'h264', direction: 'recv' });
    } catch (err) {
      const e = err as EdgeError;
      this.reject(e.code ?? 'SDP_MALFORMED', e.code === 'SDP_NO_H264' ? 406 : 400, e.message);
    }
    const track = this.o.source.listTracks().find((t) => trackPath(t) === trackPath(ref));
    if (!track) this.reject('WHEP_UNKNOWN_TRACK', 404, `no track ${trackPath(ref)}`);
    if (!track.mime || mimeBase(track.mime) !== 'video/h264') {
      this.reject('WHEP_NOT_H264', 415, `track ${trackPath(ref)} is ${track.mime ? mimeBase(track.mime) : 'without MIME'}; WHEP plays H.264 tracks`);
    }
    const offer = preferH264(offerSdp, mimeProfile(track.mime));
    await loadWerift();
    const pc = createPeer(this.o.peer);
    const id = randomBytes(12).toString('hex');
    try {
      const transceiver = pc.addTransceiver('video', { direction: 'sendonly' });
      await pc.setRemoteDescription({ type: 'offer', sdp: offer });
      await pc.setLocalDescription(await pc.createAnswer());
      await gatheringComplete(pc, this.o.gatherTimeoutMs ?? 2000);
      const answer = pc.localDescription?.sdp;
      if (!answer) throw new EdgeError('WHEP_NO_ANSWER', 'no local description');
      const feed = new RtpFeed(this.o.source, ref, { sender: transceiver.sender }, `whep ${id.slice(0, 8)}`);
      const s: Session = { id, ref, client, pc, feed, createdAt: Date.now(), state: 'new', timer: null };
      s.timer = setTimeout(() => {
        if (s.state !== 'connected') this.end(id, 'ICE connect timeout');
      }, this.o.connectTimeoutMs ?? 10_000);
      s.timer.unref?.();
      pc.connectionStateChange.subscribe((st) => {
        s.state = st;
        if (st === 'connected') {
          try {
            feed.start();
          } catch {
            this.end(id, 'track unavailable'); // the track vanished between offer and connect
          }
        }
        else if (st === 'failed' || st === 'closed') this.end(id, `peer ${st}`);
      });
      this.sessions.add(id, s);
      this.o.log.info({ whep: id.slice(0, 8), track: trackPath(ref) }, 'WHEP viewer joined');
      return { id, answer };
    } catch (err) {
      closePeer(pc);
      if (err instanceof EdgeError) throw err;
      this.reject('WHEP_NEGOTIATION_FAILED', 400, `cannot negotiate: ${(err as Error).message}`);
    }
  }

  /** Trickle ICE from the viewer (RFC 8840 fragment). */
  async patch(id: string, fragment: string): Promise<boolean> {
    const s = this.sessions.get(id);
    if (!s) return false;
    const { candidates } = parseTrickleFragment(fragment);
    for (const c of candidates) {
      await s.pc.addIceCandidate({ candidate: c, sdpMid: '0', sdpMLineIndex: 0 }).catch(() => {
        // a candidate we cannot use (mDNS, other family) is not fatal
      });
    }
    return true;
  }

  has(id: string): boolean {
    return this.sessions.has(id);
  }

  end(id: string, reason = 'deleted'): boolean {
    const s = this.sessions.take(id, reason);
    if (!s) return false;
    if (s.timer) clearTimeout(s.timer);
    s.feed.close(); // releases the engine consumer
    closePeer(s.pc);
    this.o.log.info({ whep: id.slice(0, 8), reason }, 'WHEP viewer left');
    return true;
  }

  stats(): WhepStats {
    return {
      sessions: this.sessions.size,
      maxSessions: this.o.maxSessions,
      maxSessionsPerClient: this.o.maxSessionsPerClient ?? 4,
      ...this.sessions.counters(),
      viewers: this.sessions.values().map((s) => ({ id: s.id.slice(0, 8), track: trackPath(s.ref), state: s.state, since: s.createdAt, feed: s.feed.stats() })),
    };
  }

  close(): void {
    if (this.sessions.isClosed) return;
    for (const id of this.sessions.close()) this.end(id, 'shutdown');
  }
}
