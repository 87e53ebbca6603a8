// Config section `hls:` — LL-HLS of live H.264 tracks and VOD playlists over the recordings.
import { z } from 'zod';
import { byteSize } from '../config/bytes.js';

const MiB = 1024 * 1024;

export const hlsConfigSchema = z
  .object({
    /** Serve /hls/… (live and recorded). Same access rules as WHEP. */
    enabled: z.boolean().default(true),
    /** Partial segment target (LL-HLS parts): ~200 ms gives ~1 s glass-to-glass in hls.js. */
    partTargetMs: z.number().int().min(50).max(2000).default(200),
    /** A segment is cut at the first keyframe once it is this long (segments follow the camera's GOP). */
    segmentTargetMs: z.number().int().min(500).max(10_000).default(1000),
    /** Complete segments kept per track (≥ 3 target durations, what clients start from). */
    windowSegments: z.number().int().min(3).max(60).default(7),
    /**
     * Bytes of media kept per track, counted against the engine's memory ceiling: 7 s of a
     * 4 Mbit/s camera is ~3.5 MiB; the oldest segments go beyond it (counted as drops).
     */
    windowBytes: byteSize(256 * 1024, 256 * MiB).default(8 * MiB),
    /** Muxing of a track stops when no HLS request came for this long. */
    idleTimeoutSeconds: z.number().min(1).max(3600).default(30),
    /** Tracks muxed at once (each holds a window); a request for one more gets 503. */
    maxTracks: z.number().int().min(1).max(64).default(8),
    /** Blocking playlist/part requests waiting at once, per track (each holds a socket). */
    maxBlockedRequests: z.number().int().min(1).max(10_000).default(64),
    /** VOD playlists over recordings (/hls/recordings/…). */
    recorded: z
      .object({
        /** Longest range one playlist covers. */
        maxRangeHours: z.number().min(0.01).max(168).default(24),
        /** Recorded fragments (GOPs) are grouped into segments of about this length. */
        segmentTargetSeconds: z.number().min(1).max(30).default(4),
        /** A hole up to this long is listed as EXT-X-GAP segments (the timeline keeps wall-clock time); longer ones as a discontinuity. */
        gapFillMaxSeconds: z.number().min(0).max(3600).default(300),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .prefault({});

export type HlsConfig = z.infer<typeof hlsConfigSchema>;
