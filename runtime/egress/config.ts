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
  caFile: z.string().min(1).optional().describe('PEM CA bundle for a self-signed server'),
  insecure: z.boolean().default(false).describe('skip TLS verification (test benches only)'),
  channel: z
    .string()
    .regex(/^[0-9a-v]{20}$/, 'rs/xid form: 20 chars of 0-9a-v')
    .optional()
    .describe('static channel id'),
  instant: label.optional().describe('instant channel name (used when channel is not set)'),
  key: z.string().min(1).max(256).optional().describe('stream key (never logged)'),
  source: label.default('base'),
  track: label.default('video'),
  /** Moth closes idle sessions after `timeout` s (1..3600); we keep alive every ~20 s anyway. */
  timeoutSec: z.number().int().min(1).max(3600).optional(),
};

function channelRequired<T extends { channel?: string; instant?: string }>(v: T): boolean {
  return Boolean(v.channel) !== Boolean(v.instant);
}

export const pangUpstreamSchema = z
  .object({
    ...upstreamEndpoint,
    /** The local track to publish. */
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
  .refine(channelRequired, 'set exactly one of channel or instant');

export const pangPullSchema = z
  .object({
    ...upstreamEndpoint,
    /** The local track the pulled messages are written to. */
    to: trackRefSchema,
    /**
     * A control track: `REXTXCMD{"op":"range","id","track","from","to"}` texts from upstream queue
     * a backfill range and are answered REXTXACK/REXTXERR with the id on this session (issue 8).
     */
    commands: z.boolean().default(false),
  })
  .strict()
  .refine(channelRequired, 'set exactly one of channel or instant');

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
      token: z.string().min(1).max(4096).optional().describe('bearer token required from publishers'),
      /** Local channel ingested tracks land in: POST /whip/<source> → <channel>/<source>/video. */
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
      /** A sent record counts delivered after it left the socket and the session stayed up this long. */
      confirmMs: z.number().int().min(0).max(60_000).default(1000),
    })
    .strict()
    .prefault({}),
  /** Backoff of every reconnecting link (pang, WHIP): 1 s → 60 s, reset after 10 s healthy. */
  backoff: z
    .object({
      initialMs: z.number().int().min(10).max(60_000).default(1000),
      maxMs: z.number().int().min(100).max(600_000).default(60_000),
      resetAfterMs: z.number().int().min(100).max(600_000).default(10_000),
    })
    .strict()
    .prefault({}),
}).strict();

export type EgressConfig = z.infer<typeof egressConfigSchema>;
export type PangUpstreamConfig = z.infer<typeof pangUpstreamSchema>;
export type PangPullConfig = z.infer<typeof pangPullSchema>;
export type WhipTargetConfig = z.infer<typeof whipTargetSchema>;
