// NMEA 0183 sentence parser: pure, no I/O. GGA / RMC / VTG become JSON-ready records; every other
// well-formed sentence is reported as unsupported so the driver can count it and move on.
//
// Sentence shape: `$TTSSS,f1,f2,…*HH` (TT talker, SSS type, HH = XOR of every byte between `$` and
// `*`, as two hex digits). The standard caps a sentence at 82 chars including `$` and CR LF, but
// real receivers (u-blox high-precision GGA, multi-constellation RMC with nav status) exceed it; we
// accept up to MAX_SENTENCE_CHARS and refuse longer lines as noise.

import { EdgeError } from '../../runtime/engine/api.js';

/** 82 is the standard; 102 (100 + CR LF) tolerates the long GGA/RMC that real receivers send. */
export const MAX_SENTENCE_CHARS = 102;

export type NmeaErrorCode =
  | 'NMEA_TOO_LONG'
  | 'NMEA_BAD_START'
  | 'NMEA_BAD_CHAR'
  | 'NMEA_NO_CHECKSUM'
  | 'NMEA_BAD_CHECKSUM'
  | 'NMEA_BAD_ADDRESS'
  | 'NMEA_BAD_FIELD'
  | 'NMEA_UNSUPPORTED';

/** The only error parseNmea throws. `code` says why; context has the sentence type when known. */
export class NmeaError extends EdgeError {
  declare readonly code: NmeaErrorCode;
  constructor(code: NmeaErrorCode, message: string, context: Record<string, unknown> = {}) {
    super(code, message, context);
    this.name = 'NmeaError';
  }
}

export interface NmeaBase {
  /** Two-letter talker: GP (GPS), GN (multi-GNSS), GL, GA, GB/BD… */
  talker: string;
}

export interface GgaRecord extends NmeaBase {
  type: 'GGA';
  /** UTC time of fix `hh:mm:ss[.sss]`, null when the receiver has none yet. */
  time: string | null;
  lat: number | null;
  lon: number | null;
  /** 0 invalid, 1 GPS, 2 DGPS, 4 RTK fixed, 5 RTK float, 6 dead reckoning… */
  fixQuality: number | null;
  satellites: number | null;
  hdop: number | null;
  altitudeM: number | null;
  geoidSeparationM: number | null;
  dgpsAgeS: number | null;
  dgpsStation: string | null;
}

export interface RmcRecord extends NmeaBase {
  type: 'RMC';
  time: string | null;
  /** `YYYY-MM-DD` (two-digit year: 80..99 → 19xx, else 20xx). */
  date: string | null;
  /** ISO 8601 UTC when both date and time are present. */
  datetime: string | null;
  /** Status A (valid) / V (void). */
  valid: boolean;
  lat: number | null;
  lon: number | null;
  speedKnots: number | null;
  speedMps: number | null;
  courseDeg: number | null;
  magneticVariationDeg: number | null;
  /** NMEA 2.3+ mode indicator: A autonomous, D differential, E estimated, N not valid… */
  mode: string | null;
}

export interface VtgRecord extends NmeaBase {
  type: 'VTG';
  courseTrueDeg: number | null;
  courseMagneticDeg: number | null;
  speedKnots: number | null;
  speedKmh: number | null;
  mode: string | null;
}

export type NmeaRecord = GgaRecord | RmcRecord | VtgRecord;
export type NmeaSentenceType = NmeaRecord['type'];
export const NMEA_SENTENCE_TYPES: readonly NmeaSentenceType[] = ['GGA', 'RMC', 'VTG'];

/** XOR of the characters between `$`/`!` and `*`. */
export function nmeaChecksum(body: string): number {
  let x = 0;
  for (let i = 0; i < body.length; i++) x ^= body.charCodeAt(i) & 0xff;
  return x;
}

/** Build a sentence with its checksum (for simulators and tests): `GPGGA,…` → `$GPGGA,…*HH`. */
export function formatNmea(body: string): string {
  return `$${body}*${nmeaChecksum(body).toString(16).toUpperCase().padStart(2, '0')}`;
}

export interface ParseOptions {
  /** Accept sentences without `*HH`. Default false: GGA/RMC/VTG carry one since NMEA 2.0. */
  allowMissingChecksum?: boolean;
  maxChars?: number;
}

/**
 * Parse one sentence (trailing CR/LF allowed). Returns a record for GGA/RMC/VTG; throws NmeaError
 * for everything else (NMEA_UNSUPPORTED for a valid sentence of another type).
 */
export function parseNmea(line: string, opts: ParseOptions = {}): NmeaRecord {
  const max = opts.maxChars ?? MAX_SENTENCE_CHARS;
  if (line.length > max) throw new NmeaError('NMEA_TOO_LONG', `sentence of ${line.length} chars > ${max}`, { length: line.length });
  let end = line.length;
  while (end > 0 && (line.charCodeAt(end - 1) === 13 || line.charCodeAt(end - 1) === 10)) end--;
  const s = end === line.length ? line : line.slice(0, end);
  const c0 = s.charCodeAt(0);
  if (c0 !== 0x24 /* $ */ && c0 !== 0x21 /* ! */) throw new NmeaError('NMEA_BAD_START', 'sentence does not start with $ or !');
  for (let i = 1; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // Printable ASCII only; `$` and `!` are reserved start delimiters.
    if (c < 0x20 || c > 0x7e || c === 0x24 || c === 0x21) throw new NmeaError('NMEA_BAD_CHAR', `byte 0x${c.toString(16)} at ${i}`, { offset: i });
  }
  const star = s.indexOf('*');
  let body: string;
  if (star === -1) {
    if (!opts.allowMissingChecksum) throw new NmeaError('NMEA_NO_CHECKSUM', 'sentence has no *HH checksum');
    body = s.slice(1);
  } else {
    body = s.slice(1, star);
    const hex = s.slice(star + 1);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) throw new NmeaError('NMEA_NO_CHECKSUM', 'checksum is not two hex digits');
    const want = parseInt(hex, 16);
    const got = nmeaChecksum(body);
    if (want !== got) {
      throw new NmeaError('NMEA_BAD_CHECKSUM', `checksum ${hex} != computed ${got.toString(16).padStart(2, '0')}`, {
        expected: want,
        computed: got,
      });
    }
  }
  const fields = body.split(',');
  const address = fields[0]!;
  if (!/^[A-Z0-9]{5}$/.test(address)) {
    if (/^P[A-Z0-9]+$/.test(address)) throw new NmeaError('NMEA_UNSUPPORTED', `proprietary sentence ${address}`, { type: address });
    throw new NmeaError('NMEA_BAD_ADDRESS', 'address field is not TTSSS');
  }
  const talker = address.slice(0, 2);
  const type = address.slice(2);
  switch (type) {
    case 'GGA':
      return parseGga(talker, fields);
    case 'RMC':
      return parseRmc(talker, fields);
    case 'VTG':
      return parseVtg(talker, fields);
    default:
      throw new NmeaError('NMEA_UNSUPPORTED', `sentence type ${type}`, { type });
  }
}

// --- fields --------------------------------------------------------------------------------------

function bad(type: string, field: string, value: string): never {
  throw new NmeaError('NMEA_BAD_FIELD', `${type} ${field}=${JSON.stringify(value.slice(0, 20))}`, { type, field });
}

function num(type: string, name: string, v: string | undefined): number | null {
  if (v === undefined || v === '') return null;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)$/.test(v)) bad(type, name, v);
  return Number(v);
}

function int(type: string, name: string, v: string | undefined): number | null {
  if (v === undefined || v === '') return null;
  if (!/^\d{1,6}$/.test(v)) bad(type, name, v);
  return Number(v);
}

function str(v: string | undefined): string | null {
  return v === undefined || v === '' ? null : v;
}

function time(type: string, v: string | undefined): string | null {
  if (v === undefined || v === '') return null;
  const m = /^(\d\d)(\d\d)(\d\d)(\.\d{1,6})?$/.exec(v);
  if (!m || Number(m[1]) > 23 || Number(m[2]) > 59 || Number(m[3]) > 60) bad(type, 'time', v);
  return `${m[1]}:${m[2]}:${m[3]}${m[4] ?? ''}`;
}

/** `ddmm.mmmm` + N/S (or `dddmm.mmmm` + E/W) → signed decimal degrees, rounded to 1e-7 (~1 cm). */
function coord(type: string, name: string, v: string | undefined, hemi: string | undefined, degDigits: 2 | 3): number | null {
  if ((v === undefined || v === '') && (hemi === undefined || hemi === '')) return null;
  if (v === undefined || v === '') bad(type, name, '');
  const re = degDigits === 2 ? /^(\d{2})(\d{2}(?:\.\d+)?)$/ : /^(\d{3})(\d{2}(?:\.\d+)?)$/;
  const m = re.exec(v);
  if (!m) bad(type, name, v);
  const deg = Number(m[1]);
  const min = Number(m[2]);
  if (min >= 60) bad(type, name, v);
  let d = deg + min / 60;
  const neg = degDigits === 2 ? 'S' : 'W';
  const pos = degDigits === 2 ? 'N' : 'E';
  if (hemi === neg) d = -d;
  else if (hemi !== pos) bad(type, `${name}Hemisphere`, hemi ?? '');
  if (Math.abs(d) > (degDigits === 2 ? 90 : 180)) bad(type, name, v);
  return Math.round(d * 1e7) / 1e7;
}

function parseGga(talker: string, f: string[]): GgaRecord {
  const t = 'GGA';
  if (f.length < 15) bad(t, 'fieldCount', String(f.length));
  if (f[10] !== '' && f[10] !== 'M') bad(t, 'altitudeUnit', f[10]!);
  return {
    type: t,
    talker,
    time: time(t, f[1]),
    lat: coord(t, 'lat', f[2], f[3], 2),
    lon: coord(t, 'lon', f[4], f[5], 3),
    fixQuality: int(t, 'fixQuality', f[6]),
    satellites: int(t, 'satellites', f[7]),
    hdop: num(t, 'hdop', f[8]),
    altitudeM: num(t, 'altitude', f[9]),
    geoidSeparationM: num(t, 'geoidSeparation', f[11]),
    dgpsAgeS: num(t, 'dgpsAge', f[13]),
    dgpsStation: str(f[14]),
  };
}

function date(t: string, v: string | undefined): string | null {
  if (v === undefined || v === '') return null;
  const m = /^(\d\d)(\d\d)(\d\d)$/.exec(v);
  if (!m) bad(t, 'date', v);
  const dd = Number(m[1]);
  const mm = Number(m[2]);
  if (dd < 1 || dd > 31 || mm < 1 || mm > 12) bad(t, 'date', v);
  const yy = Number(m[3]);
  const year = yy >= 80 ? 1900 + yy : 2000 + yy;
  return `${year}-${m[2]}-${m[1]}`;
}

const KNOT_MPS = 1852 / 3600;

function parseRmc(talker: string, f: string[]): RmcRecord {
  const t = 'RMC';
  if (f.length < 12) bad(t, 'fieldCount', String(f.length));
  if (f[2] !== 'A' && f[2] !== 'V') bad(t, 'status', f[2]!);
  const tm = time(t, f[1]);
  const dt = date(t, f[9]);
  const speedKnots = num(t, 'speed', f[7]);
  let magVar = num(t, 'magneticVariation', f[10]);
  if (magVar !== null) {
    if (f[11] === 'W') magVar = -magVar;
    else if (f[11] !== 'E') bad(t, 'magneticVariationDirection', f[11]!);
  }
  return {
    type: t,
    talker,
    time: tm,
    date: dt,
    datetime: tm !== null && dt !== null ? `${dt}T${tm}Z` : null,
    valid: f[2] === 'A',
    lat: coord(t, 'lat', f[3], f[4], 2),
    lon: coord(t, 'lon', f[5], f[6], 3),
    speedKnots,
    speedMps: speedKnots === null ? null : Math.round(speedKnots * KNOT_MPS * 1000) / 1000,
    courseDeg: num(t, 'course', f[8]),
    magneticVariationDeg: magVar,
    mode: str(f[12]),
  };
}

function parseVtg(talker: string, f: string[]): VtgRecord {
  const t = 'VTG';
  // NMEA 2.3+: course,T,course,M,knots,N,kmh,K[,mode]. Pre-2.0 receivers omit the unit letters:
  // course,course,knots,kmh.
  if (f.length >= 9 && (f[2] === 'T' || f[2] === '')) {
    return {
      type: t,
      talker,
      courseTrueDeg: num(t, 'courseTrue', f[1]),
      courseMagneticDeg: num(t, 'courseMagnetic', f[3]),
      speedKnots: num(t, 'speedKnots', f[5]),
      speedKmh: num(t, 'speedKmh', f[7]),
      mode: str(f[9]),
    };
  }
  if (f.length === 5) {
    return {
      type: t,
      talker,
      courseTrueDeg: num(t, 'courseTrue', f[1]),
      courseMagneticDeg: num(t, 'courseMagnetic', f[2]),
      speedKnots: num(t, 'speedKnots', f[3]),
      speedKmh: num(t, 'speedKmh', f[4]),
      mode: null,
    };
  }
  bad(t, 'fieldCount', String(f.length));
}
