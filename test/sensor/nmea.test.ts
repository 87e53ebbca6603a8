import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MAX_SENTENCE_CHARS, NmeaError, formatNmea, nmeaChecksum, parseNmea } from '../../drivers/sensor/nmea.js';
import { UBLOX_M8N_LINES } from './fixtures/ublox-m8n.js';

const capture = UBLOX_M8N_LINES;

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof NmeaError, `expected NmeaError, got ${String(err)}`);
    return err.code;
  }
  return 'OK';
}

test('textbook sentences verify with their published checksums', () => {
  const gga = parseNmea('$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n');
  assert.deepEqual(gga, {
    type: 'GGA',
    talker: 'GP',
    time: '12:35:19',
    lat: 48.1173,
    lon: 11.5166667,
    fixQuality: 1,
    satellites: 8,
    hdop: 0.9,
    altitudeM: 545.4,
    geoidSeparationM: 46.9,
    dgpsAgeS: null,
    dgpsStation: null,
  });
  const rmc = parseNmea('$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A');
  assert.equal(rmc.type, 'RMC');
  if (rmc.type !== 'RMC') return;
  assert.equal(rmc.datetime, '1994-03-23T12:35:19Z');
  assert.equal(rmc.valid, true);
  assert.equal(rmc.magneticVariationDeg, -3.1);
  assert.equal(rmc.speedMps, 11.524);
  const vtg = parseNmea('$GPVTG,054.7,T,034.4,M,005.5,N,010.2,K*48');
  assert.deepEqual(vtg, { type: 'VTG', talker: 'GP', courseTrueDeg: 54.7, courseMagneticDeg: 34.4, speedKnots: 5.5, speedKmh: 10.2, mode: null });
});

test('u-blox capture: 23 GGA/RMC/VTG records, the rest unsupported, none malformed', () => {
  const types: Record<string, number> = {};
  for (const line of capture) {
    const c = code(() => parseNmea(line));
    const k = c === 'OK' ? parseNmea(line).type : c;
    types[k] = (types[k] ?? 0) + 1;
  }
  assert.deepEqual(types, { GGA: 8, RMC: 8, VTG: 7, NMEA_UNSUPPORTED: 19 });
});

test('no-fix sentences give nulls, not errors', () => {
  const rmc = parseNmea(formatNmea('GNRMC,,V,,,,,,,,,,N'));
  assert.equal(rmc.type, 'RMC');
  if (rmc.type === 'RMC') {
    assert.equal(rmc.valid, false);
    assert.equal(rmc.lat, null);
    assert.equal(rmc.datetime, null);
    assert.equal(rmc.mode, 'N');
  }
  const gga = parseNmea(formatNmea('GNGGA,,,,,,0,00,99.99,,,,,,'));
  assert.equal(gga.type === 'GGA' && gga.fixQuality, 0);
});

test('southern/western hemispheres are negative; old 4-field VTG parses', () => {
  const gga = parseNmea(formatNmea('GPGGA,010203.5,3352.128,S,15112.558,W,2,10,0.8,21.0,M,22.1,M,3.2,0120'));
  assert.ok(gga.type === 'GGA');
  if (gga.type === 'GGA') {
    assert.equal(gga.lat, -33.8688);
    assert.equal(gga.lon, -151.2093);
    assert.equal(gga.dgpsAgeS, 3.2);
    assert.equal(gga.dgpsStation, '0120');
  }
  const vtg = parseNmea(formatNmea('GPVTG,054.7,034.4,005.5,010.2'));
  assert.ok(vtg.type === 'VTG' && vtg.speedKmh === 10.2);
});

test('sentences over 82 chars are tolerated up to the limit, refused above', () => {
  // High-precision GGA (u-blox HPG): 7 decimal minutes, mm altitude, DGPS age and station.
  const long = formatNmea('GNGGA,092725.000,4717.1139912,N,00833.9159012,E,4,12,0.51,499.6123,M,48.0123,M,1.0,0000');
  assert.ok(long.length + 2 > 82 && long.length + 2 <= MAX_SENTENCE_CHARS, `fixture length ${long.length}`);
  assert.equal(parseNmea(long + '\r\n').type, 'GGA');
  const tooLong = formatNmea('GNGGA,092725.000,4717.1139912,N,00833.9159012,E,4,12,0.51,499.6123,M,48.0123,M,1.0,0000' + ',0'.repeat(10));
  assert.equal(code(() => parseNmea(tooLong)), 'NMEA_TOO_LONG');
});

test('corrupt input gets the right typed error', () => {
  const good = '$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47';
  assert.equal(code(() => parseNmea(good.replace('4807', '4808'))), 'NMEA_BAD_CHECKSUM');
  assert.equal(code(() => parseNmea(good.replace('*47', '*4G'))), 'NMEA_NO_CHECKSUM');
  assert.equal(code(() => parseNmea(good.slice(0, -3))), 'NMEA_NO_CHECKSUM');
  assert.equal(parseNmea(good.slice(0, -3), { allowMissingChecksum: true }).type, 'GGA');
  assert.equal(code(() => parseNmea(good.slice(1))), 'NMEA_BAD_START');
  assert.equal(code(() => parseNmea('$GPGGA,12\x0035*00')), 'NMEA_BAD_CHAR');
  assert.equal(code(() => parseNmea(formatNmea('GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4'))), 'NMEA_BAD_FIELD');
  assert.equal(code(() => parseNmea(formatNmea('GPGGA,123519,4860.000,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,'))), 'NMEA_BAD_FIELD');
  assert.equal(code(() => parseNmea(formatNmea('GPGGA,123519,4807.038,X,01131.000,E,1,08,0.9,545.4,M,46.9,M,,'))), 'NMEA_BAD_FIELD');
  assert.equal(code(() => parseNmea(formatNmea('GPRMC,123519,Q,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W'))), 'NMEA_BAD_FIELD');
  assert.equal(code(() => parseNmea(formatNmea('GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,320394,003.1,W'))), 'NMEA_BAD_FIELD');
  assert.equal(code(() => parseNmea(formatNmea('GPGGA,256119,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,'))), 'NMEA_BAD_FIELD');
  assert.equal(code(() => parseNmea(formatNmea('PUBX,00,081350.00'))), 'NMEA_UNSUPPORTED');
  assert.equal(code(() => parseNmea(formatNmea('gpgga,1'))), 'NMEA_BAD_ADDRESS');
  assert.equal(code(() => parseNmea('')), 'NMEA_BAD_START');
});

test('checksum is the XOR between $ and *', () => {
  assert.equal(nmeaChecksum('GPVTG,054.7,T,034.4,M,005.5,N,010.2,K'), 0x48);
  fc.assert(
    fc.property(fc.stringMatching(/^[A-Z]{5}(,[0-9A-Z.]{0,8}){0,10}$/), (body) => {
      const s = formatNmea(body);
      assert.equal(parseInt(s.slice(-2), 16), nmeaChecksum(body));
    }),
  );
});

test('fuzz: arbitrary bytes never throw anything but NmeaError', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      const s = Buffer.from(bytes).toString('latin1');
      code(() => parseNmea(s));
      code(() => parseNmea('$' + s));
      code(() => parseNmea(formatNmea('GPGGA,' + s.replace(/[$!*\r\n]/g, ''))));
    }),
    { numRuns: 3000 },
  );
});

test('fuzz: mutated real sentences never throw anything but NmeaError', () => {
  fc.assert(
    fc.property(
      fc.constantFrom(...capture),
      fc.nat(),
      fc.integer({ min: 0, max: 255 }),
      fc.boolean(),
      (line, pos, byte, recompute) => {
        const i = pos % line.length;
        let mutated = line.slice(0, i) + String.fromCharCode(byte) + line.slice(i + 1);
        if (recompute && mutated.startsWith('$') && mutated.includes('*')) {
          const body = mutated.slice(1, mutated.lastIndexOf('*'));
          if (!/[$!*]/.test(body)) mutated = formatNmea(body);
        }
        code(() => parseNmea(mutated));
      },
    ),
    { numRuns: 5000 },
  );
});

test('fuzz: structured field soup with valid checksums never throws anything but NmeaError', () => {
  const field = fc.oneof(fc.constant(''), fc.stringMatching(/^[0-9.+-]{1,12}$/), fc.constantFrom('N', 'S', 'E', 'W', 'A', 'V', 'M', 'T', 'K'));
  fc.assert(
    fc.property(fc.constantFrom('GPGGA', 'GNRMC', 'GPVTG'), fc.array(field, { maxLength: 16 }), (addr, fields) => {
      const s = formatNmea([addr, ...fields].join(','));
      const c = code(() => parseNmea(s));
      assert.ok(c === 'OK' || c === 'NMEA_BAD_FIELD' || c === 'NMEA_TOO_LONG', c);
    }),
    { numRuns: 3000 },
  );
});
