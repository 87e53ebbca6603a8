// Serial NMEA 0183 GPS: each GGA/RMC/VTG sentence becomes one JSON record on a data track, stamped
// on the shared capture clock when its bytes arrived. Bad checksums, binary noise and over-long
// sentences are counted by reason and skipped; other sentence types (GSV, GSA, …) are counted as
// ignored.

import { z } from 'zod';
import { MAX_SENTENCE_CHARS, NMEA_SENTENCE_TYPES, NmeaError, parseNmea, type NmeaSentenceType } from './nmea.js';
import type { LevelLog } from '../../runtime/engine/api.js';
import { SerialRecordDriver, decodeTextLine, serialPortSchema, type LineParser } from './line.js';

const REASON: Record<string, string> = {
  NMEA_TOO_LONG: 'overlong',
  NMEA_BAD_START: 'bad-start',
  NMEA_BAD_CHAR: 'binary',
  NMEA_NO_CHECKSUM: 'no-checksum',
  NMEA_BAD_CHECKSUM: 'checksum',
  NMEA_BAD_ADDRESS: 'bad-address',
  NMEA_BAD_FIELD: 'bad-field',
  NMEA_UNSUPPORTED: 'unsupported',
};

export const gpsDriverSchema = serialPortSchema.extend({
  kind: z.literal('gps'),
  // Most GPS modules (u-blox NEO-6/7/8 default, MTK) talk 9600 baud out of the box.
  baudRate: serialPortSchema.shape.baudRate.default(9600),
  track: z.string().min(1).max(64).regex(/^[A-Za-z0-9_.-]+$/).default('gps'),
  /** Which sentence types become records. */
  sentences: z.array(z.enum(NMEA_SENTENCE_TYPES as [NmeaSentenceType, ...NmeaSentenceType[]])).min(1).default(['GGA', 'RMC', 'VTG']),
  allowMissingChecksum: z.boolean().default(false),
  // A GPS sends every second: 10 s of silence means a wedged adapter, reopen it.
  idleReopenMs: z.number().int().min(0).max(3_600_000).default(10_000),
}).strict(); // unknown keys are errors, like the rest of the config
export type GpsDriverConfig = z.infer<typeof gpsDriverSchema>;
export type GpsDriverInput = z.input<typeof gpsDriverSchema>;

export const GPS_MIME = 'application/json;schema=nmea0183';

/** Pure line → record function for the GPS track. */
export function nmeaLineParser(opts: { sentences: readonly NmeaSentenceType[]; allowMissingChecksum: boolean }): LineParser {
  const wanted = new Set<string>(opts.sentences);
  return (line) => {
    if (line.length > MAX_SENTENCE_CHARS) return { ok: false, reason: 'overlong' };
    const text = decodeTextLine(line);
    if (text === null) return { ok: false, reason: 'binary' };
    if (text.trim() === '') return { ok: false, reason: 'empty', ignored: true };
    try {
      const rec = parseNmea(text, { allowMissingChecksum: opts.allowMissingChecksum });
      if (!wanted.has(rec.type)) return { ok: false, reason: 'unwanted', ignored: true };
      return { ok: true, data: Buffer.from(JSON.stringify(rec)) };
    } catch (err) {
      if (err instanceof NmeaError) {
        const reason = REASON[err.code] ?? 'malformed';
        return { ok: false, reason, ignored: err.code === 'NMEA_UNSUPPORTED' };
      }
      throw err;
    }
  };
}

/** Factory for the runtime's driver switch: `case 'gps': return createGpsDriver(cfg)`. */
export function createGpsDriver(input: GpsDriverInput | GpsDriverConfig, deps: { log?: LevelLog } = {}): SerialRecordDriver {
  const cfg = gpsDriverSchema.parse(input);
  return new SerialRecordDriver({
    ...deps,
    kind: 'gps',
    path: cfg.path,
    baudRate: cfg.baudRate,
    track: cfg.track,
    mime: GPS_MIME,
    // The framer drops anything a bit longer than the longest tolerated sentence without buffering it.
    maxLineBytes: MAX_SENTENCE_CHARS,
    idleReopenMs: cfg.idleReopenMs,
    reopen: cfg.reopen,
    parse: nmeaLineParser({ sentences: cfg.sentences, allowMissingChecksum: cfg.allowMissingChecksum }),
  });
}
