// The one config file, validated at start. Every section has defaults, so an empty file (or
// none) gives the embedded demo. Unknown keys are errors: a typo must not be silently ignored.

import { z } from 'zod';
import { onvifDriverSchema } from '../../drivers/camera/onvif.js';
import { rpicamDriverSchema } from '../../drivers/camera/rpicam.js';
import { rtspDriverSchema } from '../../drivers/camera/rtsp.js';
import { testPatternDriverSchema } from '../../drivers/camera/testpattern.js';
import { v4l2DriverSchema } from '../../drivers/camera/v4l2.js';
import { rtmpIngestSchema } from '../../drivers/ingest/rtmp/ingest.js';
import { gpsDriverSchema } from '../../drivers/sensor/gps.js';
import { lineSensorDriverSchema } from '../../drivers/sensor/line.js';
import { simulatedSensorSchema } from '../../drivers/sensor/simulated.js';
import { recordingsConfigSchema } from '../../recordings/config.js';
import { controlConfigSchema } from '../control/config.js';
import { egressConfigSchema } from '../egress/config.js';
import { hlsConfigSchema } from '../hls/config.js';
import { channelIdFor } from '../engine/xid.js';
import { byteSize } from './bytes.js';
import { accessConfigSchema, accessIssues, isLoopbackHost } from '../http/access.js';
import { tlsConfigSchema } from '../http/tls.js';

const MiB = 1024 * 1024;
const label = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, _ . - (1..64 chars)');

/** One visible list of the capture drivers a source may use (MediaMTX's source switch). */
export const driverSchema = z.discriminatedUnion('kind', [
  testPatternDriverSchema,
  rtspDriverSchema,
  v4l2DriverSchema,
  rpicamDriverSchema,
  onvifDriverSchema,
  simulatedSensorSchema,
  gpsDriverSchema,
  lineSensorDriverSchema,
]);
export type DriverConfig = z.infer<typeof driverSchema>;

const sourceSchema = z
  .object({
    name: label.default('base'),
    driver: driverSchema,
  })
  .strict();

const channelSchema = z
  .object({
    /**
     * rs/xid form, 20 chars of base32hex, as Moth channel ids. Optional when the channel has a name:
     * then derived from the name (the same name gives the same id after every restart).
     */
    id: z.string().regex(/^[0-9a-v]{20}$/, 'a 20-char xid (0-9, a-v)').optional(),
    name: label.optional(),
    key: z.string().min(1).max(256).optional(),
    sources: z.array(sourceSchema).max(64).default([]),
  })
  .strict()
  .refine((ch) => ch.id !== undefined || ch.name !== undefined, { message: 'give the channel a name (its id is then derived from it) or an id', path: ['name'] })
  .transform((ch) => ({ ...ch, id: ch.id ?? channelIdFor(ch.name!) }));

const serverSchema = z
  .object({
    host: z.string().min(1).default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(8276),
    /** Largest WebSocket message accepted: one 4K keyframe fits in 4 MiB. */
    maxMessageBytes: byteSize(1024, 64 * MiB).default(4 * MiB),
    maxConnections: z.number().int().min(1).max(10_000).default(256),
    /**
     * The token of every door (control API, pang, WHEP, WHIP ingest, API, metrics) that has none of
     * its own in `access`. With a token a door requires it from every client; beyond loopback every
     * door must have one (runtime/http/access.ts).
     */
    token: z.string().min(16).max(512).optional(),
    /** Per-door tokens and the failed-authentication rate limit. */
    access: accessConfigSchema,
    /** https + wss on the same port (runtime/http/tls.ts). */
    tls: tlsConfigSchema.optional(),
    /** Components whose failure makes /healthz answer 503 (glob on names: driver:*, ptz:*, motor:*, upstream:*, control-upstream, recordings). */
    healthRequired: z.array(z.string().regex(/^[A-Za-z0-9_.:/*-]{1,128}$/)).max(64).default(['driver:*', 'ptz:*', 'motor:*', 'recordings']),
  })
  .strict();

const engineSchema = z
  .object({
    /**
     * Every buffered frame in the process together. "auto" (default) takes the detected board
     * profile's engine budget (48 MiB on a Pi Zero 2 W … 384 MiB on a Jetson Orin), scaled to its RAM,
     * so the runtime's RSS stays under pm2's max_memory_restart for that board.
     */
    memoryCeiling: z.union([z.literal('auto'), byteSize(1 * MiB, 4096 * MiB)]).default('auto'),
    /** One consumer's queue: ~4 s of 8 Mbit/s — a slow viewer must not starve the recorder. */
    consumerQueue: byteSize(16 * 1024, 512 * MiB).default(4 * MiB),
    /** Cached GOP for late joiners: 1 s GOP at 8 Mbit/s is ~1 MiB; 4 MiB leaves room for 4K. */
    gopCache: byteSize(16 * 1024, 512 * MiB).default(4 * MiB),
    trackLingerSeconds: z.number().min(0).max(3600).default(5),
    instantChannelTtlSeconds: z.number().min(1).max(7 * 86400).default(3600),
    maxInstantChannels: z.number().int().min(0).max(10_000).default(64),
  })
  .strict();

const logSchema = z
  .object({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .strict();

const ffmpegSchema = z
  .object({
    /** Absolute path of the ffmpeg to use; default: the system's, else the packaged one. */
    path: z.string().startsWith('/').optional(),
  })
  .strict();

const supervisorSchema = z
  .object({
    /** After the device said no (auth, not found, bad config, missing binary): initial → max. */
    restartInitialMs: z.number().int().min(10).max(60_000).default(500),
    restartMaxMs: z.number().int().min(100).max(600_000).default(30_000),
    /** A driver that ran this long is healthy: its next refusal restarts from the initial delay. */
    healthyAfterMs: z.number().int().min(100).max(3_600_000).default(10_000),
    /** While the device is away (refused connects, resets, stalls, reboots): awayInitialMs → awayMaxMs. */
    awayInitialMs: z.number().int().min(10).max(60_000).default(250),
    awayMaxMs: z.number().int().min(100).max(600_000).default(1000),
  })
  .strict()
  .refine((s) => s.restartMaxMs >= s.restartInitialMs && s.awayMaxMs >= s.awayInitialMs, 'a max delay must not be below its initial delay');

export const configSchema = z
  .object({
    server: serverSchema.default(serverSchema.parse({})),
    engine: engineSchema.default(engineSchema.parse({})),
    log: logSchema.default(logSchema.parse({})),
    ffmpeg: ffmpegSchema.default(ffmpegSchema.parse({})),
    supervisor: supervisorSchema.default(supervisorSchema.parse({})),
    channels: z.array(channelSchema).max(256).optional(),
    /** PTZ heads, motors, joysticks, control router and upstream meb (runtime/control/config.ts). */
    control: controlConfigSchema.default(controlConfigSchema.parse({})),
    /** Recording to disk, the SQLite index, retention and sync (recordings/config.ts). */
    recordings: recordingsConfigSchema.default(recordingsConfigSchema.parse({})),
    /** Upstream pang/WHIP links, WHEP, WHIP ingest, transcoding (runtime/egress/config.ts). */
    egress: egressConfigSchema.default(egressConfigSchema.parse({})),
    /** LL-HLS of live H.264 tracks and VOD playlists over the recordings (runtime/hls/config.ts). */
    hls: hlsConfigSchema,
    /** RTMP ingest: onboard encoders publish rtmp://host:1935/<app>/<key> into a track. */
    rtmp: rtmpIngestSchema.optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    const ids = new Set<string>();
    const names = new Set<string>();
    (c.channels ?? []).forEach((ch, i) => {
      if (ids.has(ch.id)) ctx.addIssue({ code: 'custom', path: ['channels', i, 'id'], message: `duplicate channel id ${ch.id}` });
      ids.add(ch.id);
      if (ch.name) {
        if (names.has(ch.name)) ctx.addIssue({ code: 'custom', path: ['channels', i, 'name'], message: `duplicate channel name ${ch.name}` });
        names.add(ch.name);
      }
      const tracks = new Set<string>();
      ch.sources.forEach((s, j) => {
        const t = `${s.name}/${s.driver.track}`;
        if (tracks.has(t)) {
          ctx.addIssue({ code: 'custom', path: ['channels', i, 'sources', j, 'driver', 'track'], message: `track ${t} is written by two drivers` });
        }
        tracks.add(t);
      });
    });
    // Beyond loopback no door may be left without a token (runtime/http/access.ts).
    for (const i of accessIssues(c)) ctx.addIssue({ code: 'custom', path: i.path, message: i.message });
  });

export type Config = z.infer<typeof configSchema>;
export type ChannelConfig = z.infer<typeof channelSchema>;

export const isLoopback = isLoopbackHost;

/** The embedded demo: test-pattern camera + simulated IMU on one static channel. */
export const EMBEDDED_CHANNEL_ID = 'm0thedge000000000000';

export function embeddedChannels(): ChannelConfig[] {
  return [
    {
      id: EMBEDDED_CHANNEL_ID,
      name: 'robot',
      sources: [
        { name: 'base', driver: testPatternDriverSchema.parse({ kind: 'testpattern' }) },
        { name: 'base', driver: simulatedSensorSchema.parse({ kind: 'simulated', track: 'imu', sensor: 'imu', rateHz: 50 }) },
      ],
    },
  ];
}
