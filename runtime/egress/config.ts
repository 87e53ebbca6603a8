// Egress configuration: upstream pang targets (publish and pull-down), WHIP targets,
// WHIP ingest and WHEP. Validated at start; errors name the key path (zod does).
import { z } from 'zod';
import type { TrackRef } from '../engine/api.js';

/** A label inside the engine or on a Moth server: safe in a URL path and in logs. */
const label = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, _ . - (1..64)');

/** `channel/source/track` written as one string in config files. */
export const trackRefSchema = z
  .string()
  .regex(/^[A-Za-z0-9_.-]{1,64}\/[A-Za-z0-9_.-]{1,64}\/[A-Za-z0-9_.-]{1,64}$/, 'channel/source/track')
  .transform((s): TrackRef => {
    const [channel, source, track] = s.split('/') as [string, string, string];
    return { channel, source, track };
  });

const wsUrl = z
  .string()
  .url()
  .refine((u) => /^wss?:\/\//i.test(u), 'must be ws:// or wss://');

const httpUrl = z
  .string()
  .url()
  .refine((u) => /^https?:\/\//i.test(u), 'must be http:// or https://');

/** Where on a Moth(-compatible) server: a static channel id or an instant channel by name. */
const upstreamEndpoint = {
  url: wsUrl.describe('server base, e.g. wss://moth.example:8277 (the /pang/ws/... path is added)'),
  caFile: z.string().min(1).optional().describe('PEM file of the CA that issued the server certificate (not the leaf)'),
  insecure: z.boolean().default(false).describe('skip TLS verification (test benches only)'),
  /** A static channel's id on the server, or `instant` together with `name` (control.upstream's spelling). */
  channel: z
    .string()
    .regex(/^(?:[0-9a-v]{20}|instant)$/, 'a static channel id (rs/xid: 20 chars of 0-9a-v), or "instant" with name:')
    .optional()
    .describe('static channel id'),
  instant: label.optional().describe('instant channel name (used when channel is not set)'),
  /** With `channel: instant`: the instant channel's name (the same as `instant: <name>`). */
  name: label.optional(),
  key: z.string().min(1).max(256).optional().describe('stream key (never logged)'),
  /** The remote source and track; default: the local track's (from / to) source and track name. */
  source: label.optional(),
  track: label.optional(),
  /** Moth closes idle sessions after `timeout` s (1..3600); the keepalive runs at half of it (20 s at most). */
  timeoutSec: z.number().int().min(1).max(3600).optional(),
};

/**
 * Keepalive of a pang link: 20 s (Moth's idle timeout is 30 s), and at most half of a shorter
 * `timeoutSec`, so a quiet track is never closed as idle by the server it asked for that timeout.
 */
export function keepaliveMsFor(timeoutSec: number | undefined): number {
  return timeoutSec === undefined ? 20_000 : Math.max(500, Math.min(20_000, timeoutSec * 500));
}

type EndpointIn = { channel?: string; instant?: string; name?: string; source?: string; track?: string };

/** Both spellings of an instant channel are accepted: `instant: X` and `channel: instant, name: X`. */
function checkEndpoint(v: EndpointIn, ctx: z.RefinementCtx): void {
  const instant = v.channel === 'instant' ? v.name : v.instant;
  if (v.channel === 'instant' && !v.name) {
    ctx.addIssue({ code: 'custom', path: ['name'], message: 'channel: instant needs name: <instant channel name> (or write instant: <name>)' });
  } else if (v.name !== undefined && v.channel !== 'instant') {
    ctx.addIssue({ code: 'custom', path: ['name'], message: 'name: belongs to channel: instant; for a static channel give only channel: <id>' });
  } else if (v.channel === 'instant' && v.instant !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['instant'], message: 'give the instant channel once: instant: <name> or channel: instant + name: <name>' });
  } else if ((v.channel !== undefined && v.channel !== 'instant') === (instant !== undefined)) {
    ctx.addIssue({ code: 'custom', path: ['channel'], message: 'set exactly one of channel: <static channel id> or instant: <name>' });
  }
}

/** One spelling inside the runtime: a static id in `channel`, an instant name in `instant`. */
function normalizeEndpoint<T extends EndpointIn>(v: T, local: TrackRef): Omit<T, 'name' | 'source' | 'track'> & { source: string; track: string } {
  const { name, ...rest } = v;
  const out = { ...rest, source: v.source ?? local.source, track: v.track ?? local.track };
  return (v.channel === 'instant' ? { ...out, channel: undefined, instant: name } : out) as Omit<T, 'name' | 'source' | 'track'> & { source: string; track: string };
}

export const pangUpstreamSchema = z
  .object({
    ...upstreamEndpoint,
    /** The local track to publish (channel by id or configured name). */
    from: trackRefSchema,
    /**
     * Byte ceiling of what may wait in the socket (ws.bufferedAmount). 512 KB ≈ 2 s of a
     * 2 Mbit/s camera: deep enough to ride out a hiccup, shallow enough that a thin uplink
     * drops GOP tails instead of drifting seconds behind live.
     */
    maxBufferedBytes: z.number().int().min(16 * 1024).max(64 * 1024 * 1024).default(512 * 1024),
    /**
     * Uplink priority (issue 8), higher wins; unset tracks default to data 100, audio 75, video 50.
     * Setting it on any upstream turns the uplink scheduler on: when the measured budget is below
     * demand, lower-priority video steps down to keyframes only, then pauses; data is never reduced.
     */
    priority: z.number().int().min(0).max(1000).optional(),
    /**
     * Store-and-forward backfill (issue 8): what the live path did not deliver is sent later from
     * the recordings on `<track><egress.backfill.suffix>` (MIME ts+…). Unset/true: data tracks are
     * backfilled on their own, H.264 video on a range request (XCMD / ctl backfill_range) only;
     * false: off, and range requests for this track are refused.
     */
    backfill: z.boolean().optional(),
  })
  .strict()
  .superRefine(checkEndpoint)
  // The remote track defaults to the local one's name: two upstreams (video, imu) without track:
  // must not both land on Moth's "video" (the second is refused as busy forever).
  .transform((u) => normalizeEndpoint(u, u.from));

export const pangPullSchema = z
  .object({
    ...upstreamEndpoint,
    /** The local track the pulled messages are written to (channel by id or configured name). */
    to: trackRefSchema,
    /**
     * A control track: `REXTXCMD{"op":"range","id","track","from","to"}` texts from upstream queue
     * a backfill range and are answered REXTXACK/REXTXERR with the id on this session (issue 8).
     */
    commands: z.boolean().default(false),
  })
  .strict()
  .superRefine(checkEndpoint)
  .transform((p) => normalizeEndpoint(p, p.to));

export const whipTargetSchema = z.object({
  url: httpUrl.describe('WHIP endpoint URL'),
  token: z.string().min(1).max(4096).optional().describe('bearer token (never logged)'),
  /** Local tracks to publish: at most one video (H.264) and any number of data tracks. */
  tracks: z.array(trackRefSchema).min(1).max(8),
  /** Seconds to wait for the endpoint's answer and for ICE to connect. */
  timeoutSec: z.number().int().min(1).max(120).default(15),
  /** Trickle ICE by PATCH (RFC 9725 §4.3): auto falls back to complete offers after a 405/501. */
  trickle: z.enum(['auto', 'on', 'off']).default('auto'),
  /**
   * Uplink priority of this target's video (issue 8), like upstream[].priority: set, the uplink
   * scheduler steps it to keyframes-only then paused when RTCP reports show the link saturated.
   */
  priority: z.number().int().min(0).max(1000).optional(),
}).strict();

export const egressConfigSchema = z.object({
  upstream: z.array(pangUpstreamSchema).max(64).default([]),
  pull: z.array(pangPullSchema).max(64).default([]),
  whip: z.array(whipTargetSchema).max(16).default([]),
  whipIngest: z
    .object({
      enabled: z.boolean().default(false),
      /** Bearer token required from publishers; without it server.token is asked for. */
      token: z.string().min(16, 'at least 16 characters').max(4096).optional().describe('bearer token required from publishers'),
      /**
       * Local channel ingested tracks land in (a configured channel's name or id, else a channel of
       * this name is made, its id derived from the name): POST /whip/<channel>/<source>/<track>.
       */
      channel: label.default('ingest'),
      maxSessions: z.number().int().min(1).max(64).default(4),
    })
    .strict()
    .prefault({}),
  whep: z
    .object({
      enabled: z.boolean().default(true),
      /** Concurrent viewers; each holds a DTLS/SRTP session (CPU on a Pi). */
      maxSessions: z.number().int().min(1).max(64).default(8),
      /** Sessions one client address may hold: one client cannot take every slot. */
      maxSessionsPerClient: z.number().int().min(1).max(64).default(4),
      /** An offer that has not connected (ICE) by then is dropped and its slot freed. */
      connectTimeoutMs: z.number().int().min(2000).max(60_000).default(10_000),
    })
    .strict()
    .prefault({}),
  /** Store-and-forward backfill of upstream tracks (issue 8). */
  backfill: z
    .object({
      /** Appended to the upstream track label for the backfill session: imu → imu.backfill. */
      suffix: z.string().regex(/^[A-Za-z0-9_.-]{1,16}$/).default('.backfill'),
      /** How far back the automatic backfill looks for undelivered records. */
      lookbackMinutes: z.number().int().min(1).max(7 * 24 * 60).default(360),
      /** Records younger than this are left to the live path. */
      settleMs: z.number().int().min(500).max(600_000).default(3000),
      /** Ceiling of the backfill rate per track (it also yields to live and to the leftover budget). */
      maxBytesPerSec: z.number().int().min(1024).max(100 * 1024 * 1024).default(1024 * 1024),
      /**
       * At most one backfilled message per this many ms on each backfill track (issue 14): a Moth
       * relay's reader that falls a couple of ring slots behind skips to the newest message, so a
       * back-to-back burst reaches its subscribers as a handful of records. 20 ms delivered 600 of
       * 600 there; 0 = unpaced.
       */
      minIntervalMs: z.number().int().min(0).max(10_000).default(20),
      /**
       * At most this many backfilled messages unacknowledged per track: a network releases what it
       * held back together (a retransmission, a draining queue), and Moth's reader skips ahead when
       * more than a couple arrive at once however the sender spaced them. 0 = no limit.
       */
      maxInFlight: z.number().int().min(0).max(10_000).default(2),
      /** A backfill session with nothing to carry is closed after this (reopened when something is owed). */
      idleCloseMs: z.number().int().min(500).max(600_000).default(5000),
      /**
       * Extra hold after the upstream acknowledged a record before it counts delivered (ms). The
       * acknowledgement is the delivery (issue 14); keep 0 unless the upstream acks before storing.
       */
      confirmMs: z.number().int().min(0).max(60_000).default(0),
    })
    .strict()
    .prefault({}),
  /**
   * Retries of every reconnecting link (pang, WHIP), two ladders (issue 14). After a refusal by the
   * peer (a close right after the upgrade, 44xx, HTTP 4xx): initialMs → maxMs, reset after
   * resetAfterMs healthy. While the network is down (refused/reset/unreachable/timeout, a dead
   * path): network.initialMs → network.maxMs, from the first step again after any healthy run.
   */
  backoff: z
    .object({
      initialMs: z.number().int().min(10).max(60_000).default(1000),
      maxMs: z.number().int().min(100).max(600_000).default(60_000),
      resetAfterMs: z.number().int().min(100).max(600_000).default(10_000),
      network: z
        .object({
          initialMs: z.number().int().min(10).max(60_000).default(250),
          maxMs: z.number().int().min(100).max(600_000).default(1000),
        })
        .strict()
        .prefault({}),
    })
    .strict()
    .refine((b) => b.maxMs >= b.initialMs && b.network.maxMs >= b.network.initialMs, 'maxMs must not be below initialMs')
    .prefault({}),
  /** The TCP side of every pang link to an upstream (issue 14). */
  link: z
    .object({
      /** Bytes outstanding and nothing acknowledged for this long: the path is dead, reconnect. */
      deadAfterMs: z.number().int().min(1000).max(120_000).default(5000),
      /** TCP connect phase of an attempt (SYN → established); 3× the last connect time when longer. */
      connectTimeoutMs: z.number().int().min(500).max(60_000).default(2000),
      /** TCP_NOTSENT_LOWAT: unsent bytes the kernel may hold (the rest waits where the sender sees it). */
      notsentLowatBytes: z.number().int().min(4096).max(4 * 1024 * 1024).default(16 * 1024),
      /** SO_SNDBUF = measured rate × this (what may be in flight unacknowledged), 32 KiB..4 MiB. */
      sndbufTargetMs: z.number().int().min(50).max(10_000).default(500),
      /** A new session's replay of the cached GOP: at most one message per this many ms (Moth's ring). */
      replayIntervalMs: z.number().int().min(0).max(1000).default(20),
      /** Ask upstreams for delivery acks (`ack=1`; moth-edge relays answer XACK, Moth ignores it). */
      upstreamAcks: z.boolean().default(true),
    })
    .strict()
    .prefault({}),
  /**
   * The uplink scheduler (issue 8): on when any pang upstream exists (auto), stepping video down
   * when the measured link is below demand; data is never reduced. off: never.
   */
  scheduler: z.enum(['auto', 'off']).default('auto'),
}).strict();

export type EgressConfig = z.infer<typeof egressConfigSchema>;
export type PangUpstreamConfig = z.infer<typeof pangUpstreamSchema>;
export type PangPullConfig = z.infer<typeof pangPullSchema>;
export type WhipTargetConfig = z.infer<typeof whipTargetSchema>;
