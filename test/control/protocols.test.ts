// Pure protocol code: known vectors and fast-check fuzzing (arbitrary input never throws anything
// but the typed error, and no hostile length makes a parser hold unbounded memory).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { EdgeError } from '../../runtime/engine/api.js';
import {
  PelcoDDecoder,
  decodeCommand as decodePelco,
  encodeMove,
  encodePreset,
  encodeQuery,
  encodeStop,
  parseFrame,
} from '../../drivers/ptz/pelco-d.js';
import { SabertoothDecoder, decodeCommand as decodeSaber, encodeMotor, encodeSerialTimeout, parsePacket } from '../../drivers/motor/sabertooth.js';
import { checkTemplate, formatDrive, parseReply } from '../../drivers/motor/line-protocol.js';
import { buildAuthorization, computeResponse, parseAuthorization, parseChallenge, verifyAuthorization } from '../../drivers/ptz/digest.js';
import {
  buildPreset,
  buildPresetList,
  buildPtzData,
  buildPtzStatus,
  parsePresetList,
  parsePresetXml,
  parsePtzData,
  parsePtzStatus,
  parseResponseStatus,
  parseXml,
} from '../../drivers/ptz/isapi-xml.js';
import { JoystickMapper, encodeJsEvent, parseEvdevEvents, parseJsEvents, shapeAxis } from '../../drivers/input/joystick.js';

const typed = (codes: string[]) => (e: unknown) => e instanceof EdgeError && codes.includes(e.code);

function mustBeTyped(fn: () => unknown, codes: string[]): void {
  try {
    fn();
  } catch (e) {
    if (!typed(codes)(e)) throw new Error(`untyped throw: ${String(e)}`);
  }
}

describe('Pelco-D', () => {
  it('encodes the well-known frames', () => {
    assert.deepEqual([...encodeMove(1, { pan: -0x20 / 0x3f, tilt: 0, zoom: 0 })], [0xff, 0x01, 0x00, 0x04, 0x20, 0x00, 0x25]);
    assert.deepEqual([...encodeStop(1)], [0xff, 0x01, 0, 0, 0, 0, 0x01]);
    assert.deepEqual([...encodePreset(1, 'goto', 5)], [0xff, 0x01, 0x00, 0x07, 0x00, 0x05, 0x0d]);
    assert.deepEqual([...encodePreset(2, 'set', 1)], [0xff, 0x02, 0x00, 0x03, 0x00, 0x01, 0x06]);
    assert.deepEqual([...encodeQuery(1, 'pan')], [0xff, 0x01, 0x00, 0x51, 0x00, 0x00, 0x52]);
    // right + up + zoom tele, full speed
    assert.deepEqual([...encodeMove(1, { pan: 1, tilt: 1, zoom: 1 })], [0xff, 0x01, 0x00, 0x2a, 0x3f, 0x3f, 0xa9]);
  });

  it('round-trips move commands with sign and speed', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 255 }), fc.double({ min: -1, max: 1, noNaN: true }), fc.double({ min: -1, max: 1, noNaN: true }), (addr, pan, tilt) => {
        const f = parseFrame(encodeMove(addr, { pan, tilt, zoom: 0 }));
        assert.equal(f.address, addr);
        const c = decodePelco(f);
        if (pan === 0 && tilt === 0) assert.equal(c.type, 'stop');
        else {
          assert.equal(c.type, 'move');
          if (c.type === 'move') {
            assert.equal(Math.sign(c.pan) || 0, Math.sign(pan) || 0);
            assert.equal(Math.sign(c.tilt) || 0, Math.sign(tilt) || 0);
            assert.ok(Math.abs(c.pan) <= 0x3f && Math.abs(c.tilt) <= 0x3f);
          }
        }
      }),
    );
  });

  it('rejects a bad checksum with a typed error', () => {
    const f = encodeStop(1);
    f[6] = (f[6]! + 1) & 0xff;
    assert.throws(() => parseFrame(f), typed(['PELCO_BAD_CHECKSUM']));
    assert.throws(() => parseFrame(Buffer.from([1, 2, 3])), typed(['PELCO_BAD_FRAME']));
    assert.throws(() => encodeStop(0), typed(['PELCO_BAD_ADDRESS']));
    assert.throws(() => encodePreset(1, 'goto', 256), typed(['PELCO_BAD_PRESET']));
  });

  it('stream decoder: finds every valid frame in noise, holds < 7 bytes, never throws', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.uint8Array({ maxLength: 20 }), fc.constant(new Uint8Array(encodeStop(1))), fc.constant(new Uint8Array(encodeMove(1, { pan: 1, tilt: 0, zoom: 0 })))), { maxLength: 40 }), (chunks) => {
        const d = new PelcoDDecoder();
        for (const c of chunks) {
          for (const f of d.push(c)) {
            decodePelco(f);
          }
          assert.ok(d.pendingBytes < 7);
        }
      }),
    );
  });

  it('stream decoder: a clean stream split anywhere yields exactly its frames', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 255 }), { minLength: 1, maxLength: 20 }), fc.array(fc.integer({ min: 1, max: 6 }), { maxLength: 30 }), (addrs, cuts) => {
        const all = Buffer.concat(addrs.map((a) => encodeStop(a)));
        const d = new PelcoDDecoder();
        const got: number[] = [];
        let i = 0;
        let k = 0;
        while (i < all.length) {
          const n = cuts.length ? cuts[k++ % cuts.length]! : all.length;
          for (const f of d.push(all.subarray(i, i + n))) got.push(f.address);
          i += n;
        }
        assert.deepEqual(got, addrs);
        assert.equal(d.counters.badChecksum, 0);
      }),
    );
  });
});

describe('Sabertooth packetized serial', () => {
  it('encodes the manual’s examples', () => {
    // address 128, motor 1 forward at 64: 128, 0, 64, (128+0+64)&127 = 64
    assert.deepEqual([...encodeMotor(128, 1, 64 / 127)], [128, 0, 64, 64]);
    assert.deepEqual([...encodeMotor(128, 2, -1)], [128, 5, 127, 4]);
    assert.deepEqual([...encodeSerialTimeout(128, 500)], [128, 14, 5, 19]);
    assert.throws(() => encodeMotor(127, 1, 0), typed(['SABERTOOTH_BAD_ADDRESS']));
  });

  it('round-trips any speed on either motor', () => {
    fc.assert(
      fc.property(fc.integer({ min: 128, max: 135 }), fc.constantFrom(1 as const, 2 as const), fc.double({ min: -1, max: 1, noNaN: true }), (a, m, s) => {
        const c = decodeSaber(parsePacket(encodeMotor(a, m, s)));
        assert.equal(c.type, 'motor');
        if (c.type === 'motor') {
          assert.equal(c.motor, m);
          assert.ok(Math.abs(c.speed / 127 - s) <= 0.5 / 127 + 1e-9);
        }
      }),
    );
  });

  it('arbitrary bytes: only typed errors, bounded decoder state', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => mustBeTyped(() => parsePacket(b), ['SABERTOOTH_BAD_PACKET', 'SABERTOOTH_BAD_CHECKSUM'])),
    );
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 32 }), { maxLength: 30 }), (chunks) => {
        const d = new SabertoothDecoder();
        for (const c of chunks) for (const p of d.push(c)) decodeSaber(p);
      }),
    );
  });
});

describe('line motor protocol', () => {
  it('formats drive lines and parses replies', () => {
    assert.equal(formatDrive('M {left} {right}', 0.25, -1, 1000), 'M 250 -1000\n');
    assert.equal(formatDrive('D,{left},{right}', 2, Number.NaN, 100), 'D,100,0\n');
    assert.deepEqual(parseReply('OK 12'), { type: 'ack' });
    assert.deepEqual(parseReply('ERR range'), { type: 'err', message: 'range' });
    const s = parseReply('STATUS V=12.4 I=1.5 F=ocp,temp');
    assert.equal(s.type, 'status');
    if (s.type === 'status') {
      assert.equal(s.voltage, 12.4);
      assert.equal(s.current, 1.5);
      assert.deepEqual(s.faults, ['ocp', 'temp']);
    }
    assert.throws(() => checkTemplate('M {right} {left}'), typed(['MOTOR_BAD_TEMPLATE']));
    assert.throws(() => checkTemplate('M {left} {right}\nX'), typed(['MOTOR_BAD_TEMPLATE']));
  });

  it('parseReply never throws and bounds its output', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 2000 }), (s) => {
        const r = parseReply(s);
        if (r.type === 'status') assert.ok(Object.keys(r.fields).length <= 16 && r.faults.length <= 16);
        if (r.type === 'unknown') assert.ok(r.line.length <= 120);
      }),
    );
  });
});

describe('HTTP digest', () => {
  it('matches RFC 2617 §3.5 (MD5, qop=auth)', () => {
    assert.equal(
      computeResponse({
        algorithm: 'MD5',
        username: 'Mufasa',
        password: 'Circle Of Life',
        realm: 'testrealm@host.com',
        method: 'GET',
        uri: '/dir/index.html',
        nonce: 'dcd98b7102dd2f0e8b11d0f600bfb0c093',
        qop: 'auth',
        nc: '00000001',
        cnonce: '0a4f113b',
      }),
      '6629fae49393a05397450978507c4ef1',
    );
  });

  it('matches RFC 7616 §3.9.1 (SHA-256)', () => {
    assert.equal(
      computeResponse({
        algorithm: 'SHA-256',
        username: 'Mufasa',
        password: 'Circle of Life',
        realm: 'http-auth@example.org',
        method: 'GET',
        uri: '/dir/index.html',
        nonce: '7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v',
        qop: 'auth',
        nc: '00000001',
        cnonce: 'f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ',
      }),
      '753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1',
    );
  });

  it('prefers SHA-256, refuses Basic-only and auth-int-only challenges', () => {
    const ch = parseChallenge(['Digest realm="r", nonce="n1", qop="auth", algorithm=MD5', 'Digest realm="r", nonce="n2", qop="auth", algorithm=SHA-256']);
    assert.equal(ch.algorithm, 'SHA-256');
    assert.equal(ch.nonce, 'n2');
    assert.throws(() => parseChallenge('Basic realm="x"'), typed(['DIGEST_NOT_OFFERED']));
    assert.throws(() => parseChallenge(undefined), typed(['DIGEST_NOT_OFFERED']));
    assert.throws(() => parseChallenge('Digest realm="r", nonce="n", qop="auth-int"'), typed(['DIGEST_UNSUPPORTED']));
  });

  it('client header verifies on the server side; a wrong password does not', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 20 }), fc.string({ minLength: 1, maxLength: 20 }), fc.constantFrom('MD5', 'SHA-256', 'MD5-sess', 'SHA-256-sess'), (user, pass, alg) => {
        const ch = parseChallenge(`Digest realm="cam", nonce="abc123", qop="auth", algorithm=${alg}, opaque="o"`);
        const h = buildAuthorization(ch, { username: user, password: pass }, 'PUT', '/ISAPI/PTZCtrl/channels/1/continuous', 3);
        const a = parseAuthorization(h);
        assert.equal(a.username, user);
        assert.equal(a.nc, '00000003');
        assert.equal(verifyAuthorization(a, pass, 'PUT'), true);
        assert.equal(verifyAuthorization(a, pass + 'x', 'PUT'), false);
      }),
    );
  });

  it('arbitrary header text: only typed errors', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (s) => {
        mustBeTyped(() => parseChallenge('Digest ' + s), ['DIGEST_BAD_HEADER', 'DIGEST_UNSUPPORTED', 'DIGEST_NOT_OFFERED']);
        mustBeTyped(() => parseAuthorization('Digest ' + s), ['DIGEST_BAD_HEADER', 'DIGEST_UNSUPPORTED']);
      }),
    );
    assert.throws(() => parseChallenge('Digest realm="' + 'a'.repeat(5000) + '"'), typed(['DIGEST_BAD_HEADER']));
  });
});

describe('ISAPI XML', () => {
  it('builds and parses the documents the device exchanges', () => {
    assert.match(buildPtzData({ pan: 0.5, tilt: -1, zoom: 0 }), /<pan>50<\/pan><tilt>-100<\/tilt><zoom>0<\/zoom>/);
    assert.deepEqual(parsePtzData(buildPtzData({ pan: -0.333, tilt: 1, zoom: 0.004 })), { pan: -33, tilt: 100, zoom: 0 });
    assert.deepEqual(parsePresetXml(buildPreset(3, 'gate & "yard"')), { id: 3, name: 'gate & "yard"' });
    assert.deepEqual(parsePresetList(buildPresetList([{ id: 1, name: 'a' }, { id: 12, name: 'b<c' }])), [
      { id: '1', name: 'a' },
      { id: '12', name: 'b<c' },
    ]);
    assert.deepEqual(parsePtzStatus(buildPtzStatus({ azimuth: 1234, elevation: -50, absoluteZoom: 40 })), { azimuth: 1234, elevation: -50, absoluteZoom: 40 });
    assert.equal(parseResponseStatus('<ResponseStatus><statusCode>1</statusCode><subStatusCode>ok</subStatusCode></ResponseStatus>').ok, true);
    // real device documents carry namespaces, prefixes, comments and disabled slots
    const list = parsePresetList(
      `<?xml version="1.0"?><!-- c --><hik:PTZPresetList xmlns:hik="x"><hik:PTZPreset><enabled>false</enabled><id>1</id></hik:PTZPreset>` +
        `<hik:PTZPreset><enabled>true</enabled><id>2</id><presetName><![CDATA[dock]]></presetName></hik:PTZPreset></hik:PTZPresetList>`,
    );
    assert.deepEqual(list, [{ id: '2', name: 'dock' }]);
  });

  it('refuses DOCTYPEs, bad nesting and out-of-range speeds with ISAPI_BAD_XML', () => {
    for (const bad of [
      '<!DOCTYPE x [<!ENTITY a "b">]><PTZData/>',
      '<PTZData><pan>1</tilt></PTZData>',
      '<PTZData><pan>101</pan></PTZData>',
      '<PTZData>',
      '<a/><b/>',
      '<' + 'a>'.repeat(100) + '</a>'.repeat(100),
      'x'.repeat(300_000),
    ]) {
      assert.throws(() => parsePtzData(bad), typed(['ISAPI_BAD_XML']), bad.slice(0, 40));
    }
  });

  it('arbitrary text: parsers throw only ISAPI_BAD_XML', () => {
    const xmlish = fc.stringMatching(/^[<>/a-zA-Z0-9 ="'!?&;#\[\]-]{0,200}$/);
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 300 }), xmlish), (s) => {
        for (const p of [parseXml, parsePtzData, parsePresetList, parsePtzStatus, parseResponseStatus, parsePresetXml]) {
          mustBeTyped(() => p(s), ['ISAPI_BAD_XML']);
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('joystick events and mapping', () => {
  it('decodes js_event bytes and keeps a partial tail', () => {
    const b = Buffer.concat([encodeJsEvent(1000, 32767, 0x02, 0), encodeJsEvent(1001, 1, 0x81, 3), encodeJsEvent(1002, -32767, 0x02, 1).subarray(0, 5)]);
    const r = parseJsEvents(b);
    assert.deepEqual(r.events, [
      { kind: 'axis', number: 0, value: 1, init: false },
      { kind: 'button', number: 3, value: 1, init: true },
    ]);
    assert.equal(r.rest.length, 5);
  });

  it('decodes evdev input_event with configured axis ranges', () => {
    const ev = (type: number, code: number, value: number) => {
      const b = Buffer.alloc(24);
      b.writeUInt16LE(type, 16);
      b.writeUInt16LE(code, 18);
      b.writeInt32LE(value, 20);
      return b;
    };
    const r = parseEvdevEvents(Buffer.concat([ev(3, 0, 255), ev(1, 304, 1), ev(0, 0, 0)]), 24, { 0: { min: 0, max: 255 } });
    assert.deepEqual(r.events, [
      { kind: 'axis', number: 0, value: 1, init: false },
      { kind: 'button', number: 304, value: 1, init: false },
    ]);
  });

  it('dead zone and expo: zero inside, monotonic, ±1 at the ends', () => {
    assert.equal(shapeAxis(0.05, 0.1, 0.3), 0);
    assert.equal(shapeAxis(1, 0.1, 0.3), 1);
    assert.equal(shapeAxis(-1, 0.1, 0.3), -1);
    fc.assert(
      fc.property(fc.double({ min: -1, max: 1, noNaN: true }), fc.double({ min: -1, max: 1, noNaN: true }), fc.double({ min: 0, max: 0.5, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), (a, b, dz, e) => {
        const [lo, hi] = a <= b ? [a, b] : [b, a];
        assert.ok(shapeAxis(lo, dz, e) <= shapeAxis(hi, dz, e));
        assert.ok(Math.abs(shapeAxis(a, dz, e)) <= 1);
      }),
    );
  });

  it('arcade mixing and buttons', () => {
    const m = new JoystickMapper({ deadzone: 0, expo: 0, motor: { mode: 'arcade', throttle: { axis: 1, invert: true }, steer: { axis: 0 } }, buttons: { stop: 0, presets: { '2': 5 } } });
    m.apply({ kind: 'axis', number: 1, value: -1, init: false });
    m.apply({ kind: 'axis', number: 0, value: 0.5, init: false });
    assert.deepEqual(m.state().motor, { left: 1, right: 0.5 });
    assert.deepEqual(m.apply({ kind: 'button', number: 0, value: 1, init: false }), [{ type: 'stop' }]);
    assert.deepEqual(m.apply({ kind: 'button', number: 5, value: 1, init: false }), [{ type: 'preset', id: '2' }]);
    assert.deepEqual(m.apply({ kind: 'button', number: 5, value: 0, init: false }), []);
    assert.deepEqual(m.apply({ kind: 'button', number: 5, value: 1, init: true }), [], 'initial-state events never fire actions');
  });

  it('arbitrary bytes never throw and leave < 8 bytes pending', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
        const r = parseJsEvents(Buffer.from(b));
        assert.ok(r.rest.length < 8);
        for (const e of r.events) assert.ok(e.value >= -1 && e.value <= 1);
        const v = parseEvdevEvents(Buffer.from(b), 16);
        assert.ok(v.rest.length < 16);
      }),
    );
  });
});
