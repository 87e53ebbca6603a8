// WHIP ingest (publish INTO the runtime, like MediaMTX): a browser or encoder on the LAN POSTs
// an offer with sendonly H.264; werift answers, reassembles access units from RTP (RFC 6184) and
// writes them into a local engine track. PLI asks the sender for a keyframe at start, after
// loss, and whenever a local consumer asks (PublisherOwner.requestKeyframe).
import { randomBytes } from 'node:crypto';
import { bearerMatches } from '../http/auth.js';
import type { RTCPeerConnection, RTCRtpTransceiver, RtcpSrPacket } from 'werift';
import { captureClockUs, EdgeError, trackPath, type TrackRef } from '../engine/api.js';
import { h264Mime, parseSps } from '../engine/h264.js';
import { H264Depacketizer, NAL, nalType, splitAnnexB, type DepacketizerStats } from './h264-rtp.js';
import type { EgressLog } from './pang-link.js';
import type { TrackPublishing, TrackWriter } from './pang-puller.js';
import { validateOffer } from './sdp.js';
import { SessionTable, type SessionCounters } from './session-table.js';
import { RtpClock, type RtpClockStats } from './rtp-clock.js';
import { closePeer, createPeer, loadedWerift, loadWerift, gatheringComplete, type PeerOptions } from './webrtc.js';

export interface WhipIngestOptions {
  engine: TrackPublishing;
  log: EgressLog;
  token?: string | undefined;
  maxSessions: number;
  peer?: PeerOptions;
  connectTimeoutMs?: number;
}

interface IngestSession {
  id: string;
  ref: TrackRef;
  pc: RTCPeerConnection;
  writer: TrackWriter | null;
  depack: H264Depacketizer;
  /** RTP (and RTCP SR) time → capture clock: frames carry the sender's timing, not arrival. */
  clock: RtpClock;
  state: string;
  createdAt: number;
  framesIn: number;
  bytesIn: number;
  plis: number;
  timer: NodeJS.Timeout | null;
}

export interface WhipIngestStats extends SessionCounters {
  sessions: Array<{ id: string; track: string; state: string; since: number; framesIn: number; bytesIn: number; plis: number; depacketizer: DepacketizerStats; clock: RtpClockStats }>;
}

/**
 * Constant-time bearer check of the ingest's own token. In the runtime the server's AccessGate
 * (runtime/http/access.ts, the "whip" door) has already checked the door's token — its own,
 * egress.whipIngest.token or server.token — before any body is read; this is a second layer for
 * an ingest mounted on its own.
 */
export function bearerOk(header: string | undefined, token: string | undefined): boolean {
  return !token || bearerMatches(header, token);
}

export class WhipIngest {
  private readonly sessions: SessionTable<IngestSession>;

  constructor(private readonly o: WhipIngestOptions) {
    this.sessions = new SessionTable('WHIP', o.maxSessions);
  }

  private reject(code: string, status: number, message: string): never {
    return this.sessions.reject(code, status, message);
  }

  checkAuth(authorization: string | undefined): void {
    if (!bearerOk(authorization, this.o.token)) this.reject('WHIP_UNAUTHORIZED', 401, 'missing or wrong bearer token');
  }

  async offer(ref: TrackRef, offerSdp: string): Promise<{ id: string; answer: string }> {
    this.sessions.admit('ingest sessions');
    if (this.sessions.values().some((s) => trackPath(s.ref) === trackPath(ref))) this.reject('WHIP_TRACK_BUSY', 409, `${trackPath(ref)} is already being published`);
    try {
      validateOffer(offerSdp, { video: 'h264', direction: 'send' });
    } catch (err) {
      const e = err as EdgeError;
      this.reject(e.code ?? 'SDP_MALFORMED', e.code === 'SDP_NO_H264' ? 406 : 400, e.message);
    }
    const id = randomBytes(12).toString('hex');
    await loadWerift();
    const pc = createPeer(this.o.peer);
    const s: IngestSession = { id, ref, pc, writer: null, depack: new H264Depacketizer(), clock: new RtpClock(), state: 'new', createdAt: Date.now(), framesIn: 0, bytesIn: 0, plis: 0, timer: null };
    try {
      const tr = pc.addTransceiver('video', { direction: 'recvonly' });
      // werift fires onTrack inside setRemoteDescription: subscribe before it.
      this.wire(s, tr);
      await pc.setRemoteDescription({ type: 'offer', sdp: offerSdp });
      await pc.setLocalDescription(await pc.createAnswer());
      await gatheringComplete(pc, 2000);
      const answer = pc.localDescription?.sdp;
      if (!answer) throw new EdgeError('WHIP_NO_ANSWER', 'no local description');
      // The local track is taken only after negotiation succeeded (TRACK_BUSY/UNKNOWN_CHANNEL → 409/404).
      try {
        s.writer = this.o.engine.publisher(ref, { label: `whip-ingest ${id.slice(0, 8)}`, requestKeyframe: () => this.pli(s, tr) });
      } catch (err) {
        const e = err as EdgeError;
        this.reject(e.code ?? 'WHIP_TRACK_UNAVAILABLE', e.code === 'UNKNOWN_CHANNEL' ? 404 : 409, e.message);
      }
      this.sessions.add(id, s);
      this.o.log.info({ whipIngest: id.slice(0, 8), track: trackPath(ref) }, 'WHIP ingest session started');
      return { id, answer };
    } catch (err) {
      if (s.timer) clearTimeout(s.timer);
      try {
        s.writer?.close();
      } catch {
        // writer close is idempotent
      }
      closePeer(pc);
      if (err instanceof EdgeError) throw err;
      this.reject('WHIP_NEGOTIATION_FAILED', 400, `cannot negotiate: ${(err as Error).message}`);
    }
  }

  private pli(s: IngestSession, tr: RTCRtpTransceiver): boolean {
    const ssrc = tr.receiver.tracks[0]?.ssrc;
    if (ssrc === undefined || s.state !== 'connected') return false;
    s.plis++;
    void tr.receiver.sendRtcpPLI(ssrc).catch(() => {
      // the transport may be closing; the next PLI or natural IDR will do
    });
    return true;
  }

  private wire(s: IngestSession, tr: RTCRtpTransceiver): void {
    let lastLoss = 0;
    let sawSps = false;
    let mimeSet = false;
    s.timer = setTimeout(() => {
      if (s.state !== 'connected') this.end(s.id, 'ICE connect timeout');
    }, this.o.connectTimeoutMs ?? 30_000);
    s.timer.unref?.();
    s.pc.connectionStateChange.subscribe((st) => {
      s.state = st;
      if (st === 'connected') this.pli(s, tr);
      else if (st === 'failed' || st === 'closed') this.end(s.id, `peer ${st}`);
    });
    tr.receiver.onRtcp.subscribe((p) => {
      if (p.type === loadedWerift().RtcpSrPacket.type) {
        const sr = p as RtcpSrPacket;
        s.clock.senderReport(sr.senderInfo.ntpTimestamp, sr.senderInfo.rtpTimestamp);
      }
    });
    tr.onTrack.subscribe((track) => {
      track.onReceiveRtp.subscribe((rtp) => {
        const before = s.depack.counters.lossDiscards;
        const aus = s.depack.push(rtp.payload, rtp.header.sequenceNumber, rtp.header.timestamp, rtp.header.marker);
        if (s.depack.counters.lossDiscards > before && Date.now() - lastLoss > 500) {
          lastLoss = Date.now();
          this.pli(s, tr); // lost a packet: ask for a fresh IDR rather than waiting a whole GOP
        }
        for (const au of aus) {
          if (!s.writer) return;
          if (au.key && !sawSps) {
            const sps = splitAnnexB(au.au).find((n) => nalType(n) === NAL.SPS);
            if (sps) {
              sawSps = true;
              try {
                s.writer.setMime(h264Mime(parseSps(sps)));
              } catch {
                s.writer.setMime('video/h264'); // an SPS we cannot parse still plays
              }
              mimeSet = true;
            }
          }
          if (!mimeSet) {
            s.writer.setMime('video/h264');
            mimeSet = true;
          }
          s.framesIn++;
          s.bytesIn += au.au.length;
          const at = s.clock.map(au.timestamp, captureClockUs(), Date.now());
          s.writer.write({ ts: at.ts, wallclock: at.wallclock, key: au.key, data: au.au });
        }
      });
    });
  }

  has(id: string): boolean {
    return this.sessions.has(id);
  }

  end(id: string, reason = 'deleted'): boolean {
    const s = this.sessions.take(id, reason);
    if (!s) return false;
    if (s.timer) clearTimeout(s.timer);
    try {
      s.writer?.close();
    } catch {
      // idempotent engine publisher
    }
    closePeer(s.pc);
    this.o.log.info({ whipIngest: id.slice(0, 8), reason }, 'WHIP ingest session ended');
    return true;
  }

  stats(): WhipIngestStats {
    return {
      ...this.sessions.counters(),
      sessions: this.sessions.values().map((s) => ({
        id: s.id.slice(0, 8),
        track: trackPath(s.ref),
        state: s.state,
        since: s.createdAt,
        framesIn: s.framesIn,
        bytesIn: s.bytesIn,
        plis: s.plis,
        depacketizer: { ...s.depack.counters },
        clock: s.clock.stats(),
      })),
    };
  }

  close(): void {
    if (this.sessions.isClosed) return;
    for (const id of this.sessions.close()) this.end(id, 'shutdown');
  }
}
