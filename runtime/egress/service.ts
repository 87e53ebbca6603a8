// Egress wiring: builds every configured link (pang upstream publishers, pang pull-downs, WHIP
// publishers), the local WHEP server, WHIP ingest and the transcode service from the egress
// config. One owner: close() closes each child once; stats() has link state and no secrets.
import { trackPath, type TrackSource } from '../engine/api.js';
import { TranscodeService } from '../transcode/service.js';
import { WhepServer } from '../whep/server.js';
import type { EgressConfig } from './config.js';
import { PangPublisher } from './pang-publisher.js';
import { combineEstimates, CounterMeter, UplinkEstimator } from '../uplink/estimator.js';
import { UplinkController } from '../uplink/controller.js';
import { SpanLog } from '../uplink/spans.js';
import { PangPuller, type TrackPublishing } from './pang-puller.js';
import type { EgressLog } from './pang-link.js';
import type { PeerOptions } from './webrtc.js';
import { WhipIngest } from './whip-ingest.js';
import { WhipPublisher } from './whip-publisher.js';

export interface EgressServiceDeps {
  config: EgressConfig;
  engine: TrackSource & TrackPublishing;
  log: EgressLog;
  /** ffmpeg binary for transcoding/stills (drivers/exec/ffmpeg.ts resolves the default). */
  ffmpegPath?: string;
  peer?: PeerOptions;
  /**
   * Cumulative bytes uploaded by the recordings sync (recordings/sync.ts UploaderStats.uploadedBytes
   * summed): its throughput joins the uplink estimate as a lower bound (issue 8).
   */
  syncUploadedBytes?: (() => number) | undefined;
}

export interface EgressService {
  readonly whep: WhepServer | null;
  readonly ingest: WhipIngest | null;
  readonly transcode: TranscodeService;
  readonly upstream: PangPublisher[];
  readonly pull: PangPuller[];
  readonly whip: WhipPublisher[];
  /** Uplink priority scheduler; null unless some upstream sets `priority` (issue 8). */
  readonly uplinkController: UplinkController | null;
  /** Sync uploader throughput as uplink samples; null unless syncUploadedBytes is given. */
  readonly syncUplink: UplinkEstimator | null;
  /** What each pang upstream delivered live, as time spans per local track (GET /api/gaps). */
  readonly spans: SpanLog;
  stats(): ReturnType<typeof egressStats>;
  close(): void;
}

function egressStats(s: Omit<EgressService, 'stats' | 'close'>) {
  return {
    upstream: s.upstream.map((p) => p.stats()),
    pull: s.pull.map((p) => p.stats()),
    whip: s.whip.map((p) => p.stats()),
    whep: s.whep ? s.whep.stats() : null,
    whipIngest: s.ingest ? s.ingest.stats() : null,
    transcode: s.transcode.stats(),
    /** Usable upstream estimate over every pang publisher (issue 8). */
    uplink: {
      ...combineEstimates([...s.upstream.map((p) => p.uplink.estimate(Date.now())), ...(s.syncUplink ? [s.syncUplink.estimate(Date.now())] : [])]),
      sync: s.syncUplink ? s.syncUplink.estimate(Date.now()) : null,
      scheduler: s.uplinkController ? s.uplinkController.stats() : null,
      spans: s.spans.stats(),
    },
  };
}

export function createEgressService({ config, engine, log, ffmpegPath, peer, syncUploadedBytes }: EgressServiceDeps): EgressService {
  const backoff = config.backoff;
  const spans = new SpanLog();
  const upstream = config.upstream.map(
    (u, i) =>
      new PangPublisher({
        name: `up${i}:${trackPath(u.from)}`,
        endpoint: { url: u.url, channel: u.channel, instant: u.instant, key: u.key, source: u.source, track: u.track, timeoutSec: u.timeoutSec },
        caFile: u.caFile,
        insecure: u.insecure,
        from: u.from,
        maxBufferedBytes: u.maxBufferedBytes,
        source: engine,
        log,
        backoff,
        priority: u.priority,
        spans,
      }),
  );
  // Default behaviour is unchanged unless a priority is configured somewhere.
  const uplinkController = config.upstream.some((u) => u.priority !== undefined) ? new UplinkController({ links: upstream, log }) : null;
  const pull = config.pull.map(
    (p, i) =>
      new PangPuller({
        name: `down${i}:${trackPath(p.to)}`,
        endpoint: { url: p.url, channel: p.channel, instant: p.instant, key: p.key, source: p.source, track: p.track, timeoutSec: p.timeoutSec },
        caFile: p.caFile,
        insecure: p.insecure,
        to: p.to,
        engine,
        log,
        backoff,
      }),
  );
  const whip = config.whip.map(
    (w, i) =>
      new WhipPublisher({
        name: `whip${i}`,
        url: w.url,
        token: w.token,
        tracks: w.tracks,
        source: engine,
        log,
        backoff,
        timeoutMs: w.timeoutSec * 1000,
        ...(peer ? { peer } : {}),
      }),
  );
  const whep = config.whep.enabled ? new WhepServer({ source: engine, log, maxSessions: config.whep.maxSessions, ...(peer ? { peer } : {}) }) : null;
  const ingest = config.whipIngest.enabled
    ? new WhipIngest({ engine, log, token: config.whipIngest.token, maxSessions: config.whipIngest.maxSessions, ...(peer ? { peer } : {}) })
    : null;
  const transcode = new TranscodeService({ engine, log, ...(ffmpegPath ? { ffmpegPath } : {}) });
  for (const l of [...upstream, ...pull, ...whip]) l.start();
  uplinkController?.start();
  const syncUplink = syncUploadedBytes ? new UplinkEstimator() : null;
  let syncTimer: NodeJS.Timeout | null = null;
  if (syncUploadedBytes && syncUplink) {
    const meter = new CounterMeter('sync');
    // 1 s: uploadedBytes moves per file, a finer period only adds zero samples.
    syncTimer = setInterval(() => {
      try {
        const sample = meter.observe(Date.now(), syncUploadedBytes());
        if (sample) syncUplink.add(sample);
      } catch {
        // a recordings service mid-restart: skip this sample
      }
    }, 1000);
    syncTimer.unref?.();
  }
  let closed = false;
  const parts = { whep, ingest, transcode, upstream, pull, whip, uplinkController, spans, syncUplink };
  return {
    ...parts,
    stats: () => egressStats(parts),
    close: () => {
      if (closed) return;
      closed = true;
      uplinkController?.close();
      if (syncTimer) clearInterval(syncTimer);
      for (const l of [...upstream, ...pull, ...whip]) l.close();
      whep?.close();
      ingest?.close();
      transcode.close();
    },
  };
}
