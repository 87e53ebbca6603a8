// Egress wiring: builds every configured link (pang upstream publishers, pang pull-downs, WHIP
// publishers), the local WHEP server, WHIP ingest and the transcode service from the egress
// config. One owner: close() closes each child once; stats() has link state and no secrets.
import { trackPath, type TrackSource } from '../engine/api.js';
import { TranscodeService } from '../transcode/service.js';
import { WhepServer } from '../whep/server.js';
import { keepaliveMsFor, type EgressConfig } from './config.js';
import { PangPublisher } from './pang-publisher.js';
import { combineEstimates, CounterMeter, UplinkEstimator } from '../uplink/estimator.js';
import { UplinkController } from '../uplink/controller.js';
import { rekey, SpanLog, teeSinks } from '../uplink/spans.js';
import { BackfillService, type RecordingsAccess } from '../uplink/backfill.js';
import { DeliverySpanWriter } from '../../recordings/delivery-spans.js';
import type { IndexDb } from '../../recordings/index-db.js';
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
  /**
   * Where the recordings sync takes its share of the uplink budget (issue 16): the uplink
   * scheduler's leftover after every live track, halved when a backfill shares it. Only with a
   * scheduler (some upstream sets `priority`); read lazily (the recordings start later).
   */
  syncUplinkCap?: ((bytesPerSec: number | null) => void) | undefined;
  /**
   * The recordings (issue 8 backfill reads undelivered records from them; read lazily: the
   * recording service starts after egress). RecordingService fits: `() => recordings ?? null`.
   */
  recordings?: (() => RecordingsAccess | null) | undefined;
  /** The recordings index WRITER, where delivery spans are persisted (`() => recordings?.index`). */
  deliveryIndex?: (() => IndexDb | null) | undefined;
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
  /** What the backfill delivered (in memory; persisted too when deliveryIndex is given). */
  readonly backfilled: SpanLog;
  /** Store-and-forward backfill; null when no upstream has it. */
  readonly backfill: BackfillService | null;
  readonly delivery: DeliverySpanWriter;
  stats(): ReturnType<typeof egressStats>;
  /** Closes every link; resolves once WHIP servers heard their DELETE (bounded, ~1 s). */
  close(): Promise<void>;
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
      backfilledSpans: s.backfilled.stats(),
      backfill: s.backfill ? s.backfill.stats() : null,
      delivery: s.delivery.stats(),
    },
  };
}

export function createEgressService({ config, engine, log, ffmpegPath, peer, syncUploadedBytes, syncUplinkCap, recordings, deliveryIndex }: EgressServiceDeps): EgressService {
  const backoff = config.backoff;
  const lk = config.link;
  const tcp = { deadAfterMs: lk.deadAfterMs, connectTimeoutMs: lk.connectTimeoutMs, notsentLowatBytes: lk.notsentLowatBytes, sndbufTargetMs: lk.sndbufTargetMs };
  // A publisher the server still holds after a dead path ("track busy" to our next session) lives
  // until the server's idle timeout: ask for one just past our own dead-path time, so the server
  // lets go of a session we gave up on about when we reconnect (issue 14). Configured values win.
  const pubTimeoutSec = (t: number | undefined): number => t ?? Math.ceil(lk.deadAfterMs / 1000) + 1;
  const spans = new SpanLog();
  const backfilled = new SpanLog();
  // What each upstream got, keyed by upstream name: the backfill owes each upstream its own gaps.
  const liveByUpstream = new SpanLog();
  const delivery = new DeliverySpanWriter({ index: deliveryIndex ?? (() => null) });
  const upstream = config.upstream.map(
    (u, i) =>
      new PangPublisher({
        name: `up${i}:${trackPath(u.from)}`,
        endpoint: { url: u.url, channel: u.channel, instant: u.instant, key: u.key, source: u.source, track: u.track, timeoutSec: pubTimeoutSec(u.timeoutSec) },
        caFile: u.caFile,
        insecure: u.insecure,
        from: u.from,
        maxBufferedBytes: u.maxBufferedBytes,
        keepaliveMs: keepaliveMsFor(pubTimeoutSec(u.timeoutSec)),
        source: engine,
        log,
        backoff,
        priority: u.priority,
        spans: teeSinks(spans, rekey(liveByUpstream, `up${i}:${trackPath(u.from)}`), {
          add: (track, wall, bytes) => delivery.add('live', track, `up${i}:${trackPath(u.from)}`, wall, bytes),
          break: (track) => delivery.break('live', track, `up${i}:${trackPath(u.from)}`),
        }),
        confirmMs: config.backfill.confirmMs,
        backfilled: u.backfill !== false && recordings !== undefined,
        tcp,
        replayIntervalMs: lk.replayIntervalMs,
        requestAcks: lk.upstreamAcks,
      }),
  );
  const bf = config.backfill;
  const backfillTracks = config.upstream.flatMap((u, i) =>
    u.backfill === false
      ? []
      : [
          {
            upstream: `up${i}:${trackPath(u.from)}`,
            from: u.from,
            endpoint: { url: u.url, channel: u.channel, instant: u.instant, key: u.key, source: u.source, track: `${u.track}${bf.suffix}`.slice(0, 64), timeoutSec: pubTimeoutSec(u.timeoutSec) },
            caFile: u.caFile,
            insecure: u.insecure,
            auto: true,
            live: upstream[i]!,
          },
        ],
  );
  const backfill =
    backfillTracks.length > 0 && recordings
      ? new BackfillService({
          tracks: backfillTracks,
          recordings,
          liveSpans: liveByUpstream,
          backfilled,
          persist: delivery,
          log,
          backoff,
          liveLinks: () => upstream,
          lookbackMs: bf.lookbackMinutes * 60_000,
          settleMs: bf.settleMs,
          maxRateBytesPerSec: bf.maxBytesPerSec,
          minIntervalMs: bf.minIntervalMs,
          maxInFlight: bf.maxInFlight,
          idleCloseMs: bf.idleCloseMs,
          tcp,
        })
      : null;
  const pull = config.pull.map(
    (p, i) =>
      new PangPuller({
        name: `down${i}:${trackPath(p.to)}`,
        endpoint: { url: p.url, channel: p.channel, instant: p.instant, key: p.key, source: p.source, track: p.track, timeoutSec: p.timeoutSec },
        caFile: p.caFile,
        insecure: p.insecure,
        to: p.to,
        keepaliveMs: keepaliveMsFor(p.timeoutSec),
        engine,
        log,
        backoff,
        tcp,
        onCommand: p.commands ? (text: string) => backfill?.handleXcmd(text) ?? `REXTXERR${JSON.stringify({ error: 'backfill needs recordings and a backfill upstream' })}` : undefined,
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
        trickle: w.trickle,
        ...(w.priority !== undefined ? { priority: w.priority } : {}),
        ...(peer ? { peer } : {}),
      }),
  );
  // WHIP targets with a priority join the pang links under one scheduler (their estimate comes
  // from RTCP reports).
  const prioritizedWhip = whip.filter((_, k) => config.whip[k]!.priority !== undefined);
  // On by default with any pang upstream (issue 14: the scheduler acts within seconds of a link
  // thinning; data is never reduced), or any WHIP target with a priority.
  const uplinkController =
    config.scheduler !== 'off' && (upstream.length > 0 || prioritizedWhip.length > 0)
      ? new UplinkController({ links: [...upstream, ...prioritizedWhip], log, backfill: leftoverSinks(backfill, syncUplinkCap) })
      : null;
  const whep = config.whep.enabled
    ? new WhepServer({
        source: engine,
        log,
        maxSessions: config.whep.maxSessions,
        maxSessionsPerClient: config.whep.maxSessionsPerClient,
        connectTimeoutMs: config.whep.connectTimeoutMs,
        ...(peer ? { peer } : {}),
      })
    : null;
  const ingest = config.whipIngest.enabled
    ? new WhipIngest({ engine, log, token: config.whipIngest.token, maxSessions: config.whipIngest.maxSessions, ...(peer ? { peer } : {}) })
    : null;
  const transcode = new TranscodeService({ engine, log, ...(ffmpegPath ? { ffmpegPath } : {}) });
  for (const l of [...upstream, ...pull, ...whip]) l.start();
  uplinkController?.start();
  backfill?.start();
  // Delivery spans reach the index writer's queue each second (its own flush lands them) and are
  // pruned every 10 min.
  const deliveryTimer = setInterval(() => delivery.flush(), 1000);
  deliveryTimer.unref?.();
  const pruneTimer = setInterval(() => delivery.prune(), 600_000);
  pruneTimer.unref?.();
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
  const parts = { whep, ingest, transcode, upstream, pull, whip, uplinkController, spans, syncUplink, backfilled, backfill, delivery };
  return {
    ...parts,
    stats: () => egressStats(parts),
    close: async () => {
      if (closed) return;
      closed = true;
      uplinkController?.close();
      backfill?.close();
      clearInterval(deliveryTimer);
      clearInterval(pruneTimer);
      if (syncTimer) clearInterval(syncTimer);
      for (const l of [...upstream, ...pull]) l.close();
      const leaving = whip.map((w) => w.leave(1000));
      whep?.close();
      ingest?.close();
      transcode.close();
      delivery.close();
      await Promise.allSettled(leaving);
    },
  };
}

/**
 * Who gets the uplink budget left after every live track: the backfill and the recordings sync.
 * With both, each gets half (neither starves the other; the backfill also yields to live by itself).
 */
function leftoverSinks(backfill: BackfillService | null, sync: ((b: number | null) => void) | undefined): { setLeftover(b: number | null): void } | undefined {
  if (!backfill && !sync) return undefined;
  return {
    setLeftover: (b) => {
      const share = b === null ? null : backfill && sync ? b / 2 : b;
      backfill?.setLeftover(share);
      sync?.(share);
    },
  };
}
