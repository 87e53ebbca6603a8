import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LineFramer, compileLineParser, lineParseSchema, type FramerEvent } from '../../drivers/sensor/line.js';
import { nmeaLineParser } from '../../drivers/sensor/gps.js';

function lines(evs: FramerEvent[]): string[] {
  return evs.map((e) => ('line' in e ? e.line.toString('latin1') : `<overlong ${e.overlong}>`));
}

test('framer: LF and CR LF, partial lines kept across chunks', () => {
  const f = new LineFramer(16);
  assert.deepEqual(lines(f.push(Buffer.from('ab\r\ncd'))), ['ab']);
  assert.equal(f.pendingBytes, 2);
  assert.deepEqual(lines(f.push(Buffer.from('ef\n\n'))), ['cdef', '']);
  assert.equal(f.pendingBytes, 0);
});

test('framer: an over-long line is dropped whole and bounded, the next line survives', () => {
  const f = new LineFramer(8);
  assert.deepEqual(lines(f.push(Buffer.from('0123456789'))), []);
  assert.equal(f.pendingBytes, 0);
  assert.deepEqual(lines(f.push(Buffer.from('abc'.repeat(1000)))), []);
  assert.deepEqual(lines(f.push(Buffer.from('x\nok\n'))), ['<overlong 3011>', 'ok']);
  // Exactly max bytes plus CR LF is fine.
  assert.deepEqual(lines(f.push(Buffer.from('12345678\r\n'))), ['12345678']);
  assert.deepEqual(lines(f.push(Buffer.from('123456789\n'))), ['<overlong 9>']);
});

test('fuzz: any chunking yields the same lines; pending never exceeds the bound', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 400 }), fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 20 }), (bytes, cuts) => {
      const buf = Buffer.from(bytes);
      const whole = lines(new LineFramer(32).push(buf));
      const f = new LineFramer(32);
      const got: string[] = [];
      let i = 0;
      let k = 0;
      while (i < buf.length) {
        const n = cuts[k++ % cuts.length]!;
        got.push(...lines(f.push(buf.subarray(i, i + n))));
        assert.ok(f.pendingBytes <= 33);
        i += n;
      }
      assert.deepEqual(got, whole);
    }),
    { numRuns: 1000 },
  );
});

test('parsers: none / json / regex verdicts', () => {
  const none = compileLineParser({ mode: 'none' });
  assert.deepEqual(none(Buffer.from('hi\tthere')), { ok: true, data: Buffer.from('hi\tthere') });
  assert.deepEqual(none(Buffer.from([0xc3, 0x28])), { ok: false, reason: 'binary' });
  assert.deepEqual(none(Buffer.from('a\x07b')), { ok: false, reason: 'binary' });
  assert.deepEqual(none(Buffer.from('  ')), { ok: false, reason: 'empty', ignored: true });
  const json = compileLineParser({ mode: 'json' });
  assert.equal(json(Buffer.from('{"a":1}')).ok, true);
  assert.deepEqual(json(Buffer.from('{"a":')), { ok: false, reason: 'json' });
  const re = compileLineParser(lineParseSchema.parse({ mode: 'regex', pattern: '^(\\w+)=(\\S+)$' }));
  const v = re(Buffer.from('volt=12.6'));
  assert.ok(v.ok);
  if (v.ok) assert.deepEqual(JSON.parse(v.data.toString()), { '1': 'volt', '2': 12.6 });
  const keep = compileLineParser(lineParseSchema.parse({ mode: 'regex', pattern: '^id=(?<id>\\d+)$', numbers: false }));
  const k = keep(Buffer.from('id=007'));
  assert.ok(k.ok && JSON.parse(k.data.toString()).id === '007');
});

test('fuzz: parsers never throw on arbitrary bytes', () => {
  const parsers = [
    compileLineParser({ mode: 'none' }),
    compileLineParser({ mode: 'json' }),
    compileLineParser(lineParseSchema.parse({ mode: 'regex', pattern: '^(?<k>[a-z]+)=(?<v>.*)$' })),
    nmeaLineParser({ sentences: ['GGA', 'RMC', 'VTG'], allowMissingChecksum: false }),
  ];
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      for (const p of parsers) {
        const v = p(Buffer.from(bytes));
        assert.equal(typeof v.ok, 'boolean');
      }
    }),
    { numRuns: 2000 },
  );
});
