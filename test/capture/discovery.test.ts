// WS-Discovery: the pure Probe/ProbeMatches code (tables + fuzz), then real UDP probes — unicast and
// multicast on the loopback interface — answered by the ONVIF camera simulator, and the CLI.

import test from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { buildProbe, buildProbeMatches, newMessageId, parseProbe, parseProbeMatches, WsDiscoveryError } from '../../drivers/discovery/ws-discovery.js';
import { discover, runDiscoverCli } from '../../drivers/discovery/probe.js';
import { startOnvifCameraSim } from '../sim/onvif-camera.js';

// As a Hikvision camera answers (prefixes, line breaks and all)
const HIK = `<?xml version="1.0" encoding="UTF-8"?>
<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:wsadis="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery" xmlns:dn="http://www.onvif.org/ver10/network/wsdl">
<env:Header><wsadis:MessageID>urn:uuid:5c2b8a48-0001-11b2-8c46-bcbac2e3e2e0</wsadis:MessageID>
<wsadis:RelatesTo>uuid:abc</wsadis:RelatesTo>
<wsadis:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsadis:To>
<wsadis:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</wsadis:Action></env:Header>
<env:Body><d:ProbeMatches><d:ProbeMatch>
<wsadis:EndpointReference><wsadis:Address>urn:uuid:3fa1fe68-b915-4053-a3e1-bcbac2e3e2e0</wsadis:Address></wsadis:EndpointReference>
<d:Types>dn:NetworkVideoTransmitter tds:Device</d:Types>
<d:Scopes>onvif://www.onvif.org/type/video_encoder onvif://www.onvif.org/Profile/Streaming onvif://www.onvif.org/name/HIKVISION%20DS-2DE2A404IW onvif://www.onvif.org/hardware/DS-2DE2A404IW-DE3 onvif://www.onvif.org/location/city/hangzhou</d:Scopes>
<d:XAddrs>http://192.168.1.64/onvif/device_service http://[fe80::bebc:c2ff:fee3:e2e0]/onvif/device_service</d:XAddrs>
<d:MetadataVersion>10</d:MetadataVersion>
</d:ProbeMatch></d:ProbeMatches></env:Body></env:Envelope>`;

test('WS-Discovery: probe carries MessageID and types; ProbeMatches parse (camera formats)', () => {
  const id = newMessageId();
  const probe = buildProbe(id);
  assert.deepEqual(parseProbe(probe), { messageId: id, types: ['dn:NetworkVideoTransmitter'] });
  assert.match(probe, /<a:Action s:mustUnderstand="1">http:\/\/schemas.xmlsoap.org\/ws\/2005\/04\/discovery\/Probe<\/a:Action>/);
  const [m] = parseProbeMatches(HIK);
  assert.ok(m);
  assert.equal(m.endpoint, 'urn:uuid:3fa1fe68-b915-4053-a3e1-bcbac2e3e2e0');
  assert.deepEqual(m.types, ['dn:NetworkVideoTransmitter', 'tds:Device']);
  assert.equal(m.name, 'HIKVISION DS-2DE2A404IW');
  assert.equal(m.hardware, 'DS-2DE2A404IW-DE3');
  assert.equal(m.location, 'city/hangzhou');
  assert.deepEqual(m.xaddrs, ['http://192.168.1.64/onvif/device_service', 'http://[fe80::bebc:c2ff:fee3:e2e0]/onvif/device_service']);
  assert.equal(m.metadataVersion, 10);
  assert.equal(m.relatesTo, 'uuid:abc');
  // ours round-trips; entities decode; another client's Probe is not a match
  const built = buildProbeMatches({ relatesTo: id, endpoint: 'urn:uuid:1', xaddrs: ['http://10.0.0.9/onvif/device_service'], scopes: ['onvif://www.onvif.org/name/A%26B'] });
  assert.equal(parseProbeMatches(built)[0]!.name, 'A&B');
  assert.deepEqual(parseProbeMatches(probe), []);
  assert.throws(() => parseProbeMatches('GET / HTTP/1.1'), WsDiscoveryError);
  assert.throws(() => parseProbeMatches('<Envelope>' + 'x'.repeat(70_000)), WsDiscoveryError);
});

test('WS-Discovery: arbitrary and mutated datagrams give WsDiscoveryError or matches, never a crash', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 400 }), (s) => {
      try {
        parseProbeMatches(s);
      } catch (err) {
        assert.ok(err instanceof WsDiscoveryError, String(err));
      }
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(fc.nat(HIK.length), fc.nat(HIK.length), fc.string({ maxLength: 20 }), (a, b, ins) => {
      const [lo, hi] = a < b ? [a, b] : [b, a];
      const mutated = HIK.slice(0, lo) + ins + HIK.slice(hi);
      try {
        for (const m of parseProbeMatches(mutated)) {
          assert.ok(m.xaddrs.every((u) => /^https?:\/\//i.test(u)));
          assert.ok(m.endpoint.length <= 256);
        }
      } catch (err) {
        assert.ok(err instanceof WsDiscoveryError, String(err));
      }
    }),
    { numRuns: 2000 },
  );
});

test('discover: a unicast probe finds the simulated camera; answers to other probes are ignored', async (t) => {
  const sim = await startOnvifCameraSim({ username: 'u', password: 'p', name: 'Mast Cam', hardware: 'SIM-9', profiles: [{ token: 'p1', name: 'main', width: 320, height: 240, fps: 25, streamUri: 'rtsp://127.0.0.1:1/x' }] });
  t.after(() => sim.close());
  const res = await discover({ targets: [{ host: '127.0.0.1', port: sim.discoveryPort }], timeoutMs: 500 });
  assert.equal(res.devices.length, 1, JSON.stringify(res.stats));
  const d = res.devices[0]!;
  assert.equal(d.endpoint, sim.endpoint);
  assert.equal(d.name, 'Mast Cam');
  assert.equal(d.hardware, 'SIM-9');
  assert.deepEqual(d.xaddrs, [`http://127.0.0.1:${sim.port}/onvif/device_service`]);
  assert.equal(d.from, '127.0.0.1');
  assert.equal(res.stats.duplicates, 1, 'the repeated probe (UDP) gets a second answer, counted once');
});

test('discover: multicast probe on the loopback interface reaches a camera in the WS-Discovery group', async (t) => {
  const mport = 20000 + Math.floor(Math.random() * 20000);
  const sim = await startOnvifCameraSim({ username: 'u', password: 'p', multicastPort: mport, profiles: [{ token: 'p1', name: 'main', width: 320, height: 240, fps: 25, streamUri: 'rtsp://127.0.0.1:1/x' }] });
  t.after(() => sim.close());
  const res = await discover({ targets: [{ host: '239.255.255.250', port: mport }], interfaceAddress: '127.0.0.1', timeoutMs: 700 });
  assert.deepEqual(res.devices.map((d) => d.endpoint), [sim.endpoint]);
});

test('moth-edge discover: table, JSON, and usage errors with exit codes', async (t) => {
  const sim = await startOnvifCameraSim({ username: 'u', password: 'p', name: 'Bow', profiles: [{ token: 'p1', name: 'main', width: 320, height: 240, fps: 25, streamUri: 'rtsp://127.0.0.1:1/x' }] });
  t.after(() => sim.close());
  const cap = () => {
    const o = { out: '', err: '' };
    return { o, io: { out: (s: string) => void (o.out += s), err: (s: string) => void (o.err += s) } };
  };
  const a = cap();
  assert.equal(await runDiscoverCli(['--target', `127.0.0.1:${sim.discoveryPort}`, '--timeout', '400'], a.io), 0);
  assert.match(a.o.out, /^Bow \[SIM-1\]  http:\/\/127\.0\.0\.1:\d+\/onvif\/device_service/m);
  assert.match(a.o.out, /1 device\(s\)/);
  const b = cap();
  assert.equal(await runDiscoverCli(['--json', '--target', `127.0.0.1:${sim.discoveryPort}`, '--timeout', '400'], b.io), 0);
  const parsed = JSON.parse(b.o.out) as { devices: Array<{ endpoint: string }> };
  assert.equal(parsed.devices[0]!.endpoint, sim.endpoint);
  const c = cap();
  assert.equal(await runDiscoverCli(['--timeout', 'soon'], c.io), 2);
  assert.match(c.o.err, /usage: moth-edge discover/);
  assert.equal(await runDiscoverCli(['--target', 'x;rm -rf /:1'], cap().io), 2);
  const none = cap();
  assert.equal(await runDiscoverCli(['--target', '127.0.0.1:9', '--timeout', '200'], none.io), 0);
  assert.match(none.o.out, /no devices answered/);
});
