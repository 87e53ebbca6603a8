// The seed's PTZ HTTP API (and the motor endpoints) on the real HttpServer/Router, down to bytes on
// the serial pty (Pelco-D head simulator) and HTTP receipts at the ISAPI simulator.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startHarness, req, type Harness } from './harness.js';
import { waitUntil } from '../sim/serial-pty.js';

describe('PTZ HTTP API (seed shapes)', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ leaseMs: 400 });
  });
  after(() => h.close());

  it('GET /ptz/cameras lists every camera with its capabilities', async () => {
    const r = await req(h.base, 'GET', '/ptz/cameras');
    assert.equal(r.status, 200);
    const cams = r.json['cameras'] as Array<Record<string, unknown>>;
    assert.deepEqual(cams.map((c) => [c['id'], c['kind']]), [
      ['front', 'pelco-d'],
      ['dome', 'isapi'],
    ]);
    assert.equal((cams[0]!['capabilities'] as Record<string, boolean>)['continuous'], true);
  });

  it('POST /ptz/<camera>/move {"pan","tilt","zoom"} moves the Pelco-D head; stop stops it', async () => {
    const r = await req(h.base, 'POST', '/ptz/front/move', { pan: 1, tilt: 0, zoom: 0 });
    assert.equal(r.status, 200);
    assert.equal(r.json['ok'], true);
    assert.equal(r.json['result'], 'sent');
    await waitUntil(() => h.head.vel.pan > 0, 'head panning right');
    const s = await req(h.base, 'POST', '/ptz/front/stop');
    assert.deepEqual(s.json, { ok: true, camera: 'front', result: 'stopped' });
    await waitUntil(() => !h.head.moving, 'head stopped');
  });

  it('POST /ptz/dome/move reaches the ISAPI device as PTZData -100..100', async () => {
    const r = await req(h.base, 'POST', '/ptz/dome/move', { pan: -0.5, tilt: 0.25 });
    assert.equal(r.status, 200);
    const last = h.dome.log[h.dome.log.length - 1]!;
    assert.deepEqual([last.pan, last.tilt, last.zoom], [-50, 25, 0]);
    await req(h.base, 'POST', '/ptz/dome/stop');
    assert.equal(h.dome.moving, false);
  });

  it('a move is a dead-man command: without a refresh the camera stops after the lease', async () => {
    const t0 = Date.now();
    await req(h.base, 'POST', '/ptz/front/move', { tilt: -1 });
    await waitUntil(() => h.head.moving, 'moving');
    await waitUntil(() => !h.head.moving, 'dead-man stop', 2000);
    const stopAt = h.head.log[h.head.log.length - 1]!;
    assert.equal(stopAt.type, 'stop');
    assert.ok(stopAt.at - t0 >= 390 && stopAt.at - t0 < 1000, `stopped after ${stopAt.at - t0} ms`);
  });

  it('GET /ptz/<camera>/status and /presets; POST /ptz/<camera>/preset/<id>', async () => {
    const st = await req(h.base, 'GET', '/ptz/dome/status');
    assert.equal(st.status, 200);
    assert.equal(st.json['online'], true);
    assert.ok(st.json['position']);
    const set = await req(h.base, 'POST', '/ptz/dome/preset/4/set', { name: 'gate' });
    assert.equal(set.status, 200);
    const pr = await req(h.base, 'GET', '/ptz/dome/presets');
    assert.deepEqual(pr.json['presets'], [{ id: '4', name: 'gate' }]);
    const go = await req(h.base, 'POST', '/ptz/dome/preset/4');
    assert.deepEqual(go.json, { ok: true, camera: 'dome', preset: '4' });
    assert.equal(h.dome.log[h.dome.log.length - 1]!.op, 'goto');
    const front = await req(h.base, 'GET', '/ptz/front/presets');
    assert.deepEqual(front.json['presets'], [{ id: '1', name: 'home' }]);
    const goFront = await req(h.base, 'POST', '/ptz/front/preset/1');
    assert.equal(goFront.status, 200);
    await waitUntil(() => h.head.log.some((l) => l.type === 'preset' && l.op === 'goto' && l.id === 1), 'pelco goto preset 1');
  });

  it('errors are JSON with codes: unknown camera, bad values, bad JSON, big bodies, wrong method', async () => {
    const unknown = await req(h.base, 'POST', '/ptz/nope/move', { pan: 1 });
    assert.equal(unknown.status, 404);
    assert.equal((unknown.json['error'] as Record<string, string>)['code'], 'PTZ_UNKNOWN_CAMERA');
    const range = await req(h.base, 'POST', '/ptz/front/move', { pan: 2 });
    assert.equal(range.status, 400);
    assert.match((range.json['error'] as Record<string, string>)['message']!, /pan/);
    const extra = await req(h.base, 'POST', '/ptz/front/move', { pan: 0.1, speed: 3 });
    assert.equal(extra.status, 400);
    const badJson = await req(h.base, 'POST', '/ptz/front/move', '{"pan":');
    assert.equal(badJson.status, 400);
    assert.equal((badJson.json['error'] as Record<string, string>)['code'], 'BAD_JSON');
    const big = await req(h.base, 'POST', '/ptz/front/move', JSON.stringify({ pan: 0, pad: 'x'.repeat(10_000) }));
    assert.equal(big.status, 413);
    const method = await req(h.base, 'GET', '/ptz/front/move');
    assert.equal(method.status, 405);
    const badPreset = await req(h.base, 'POST', '/ptz/front/preset/300');
    assert.equal(badPreset.status, 400);
    assert.equal((badPreset.json['error'] as Record<string, string>)['code'], 'PTZ_BAD_PRESET');
    assert.equal(h.head.moving, false, 'no bad request moved anything');
    // still working
    assert.equal((await req(h.base, 'POST', '/ptz/front/stop')).status, 200);
  });

  it('motor endpoints: list, drive, status, stop', async () => {
    const list = await req(h.base, 'GET', '/motors');
    const motors = list.json['motors'] as Array<Record<string, unknown>>;
    assert.deepEqual(motors.map((m) => [m['id'], m['kind'], m['holder'], (m['link'] as Record<string, unknown>)['up']]), [['base', 'line', null, true]]);
    const d = await req(h.base, 'POST', '/motors/base/drive', { left: 0.5, right: 0.5, lease_ms: 2000 });
    assert.equal(d.status, 200);
    await waitUntil(() => h.motor.moving, 'motor driving');
    assert.deepEqual(h.motor.speeds, { left: 0.5, right: 0.5 });
    const st = await req(h.base, 'GET', '/motors/base/status');
    assert.equal(st.json['voltage'], 12.4);
    assert.deepEqual(st.json['speeds'], { left: 0.5, right: 0.5 });
    assert.equal((st.json['holder'] as Record<string, string>)['source'], 'api');
    await req(h.base, 'POST', '/motors/base/stop');
    await waitUntil(() => !h.motor.moving, 'motor stopped');
    const bad = await req(h.base, 'POST', '/motors/base/drive', { left: 'fast' });
    assert.equal(bad.status, 400);
  });

  it('a motor drive without refresh stops by the router’s dead-man, before the firmware watchdog', async () => {
    const t0 = Date.now();
    await req(h.base, 'POST', '/motors/base/drive', { left: -0.3, right: 0.3 });
    await waitUntil(() => h.motor.moving, 'driving');
    await waitUntil(() => !h.motor.moving, 'dead-man stop', 2000);
    const last = h.motor.log[h.motor.log.length - 1]!;
    assert.equal(last.type, 'stop', 'a Stop command, not the firmware watchdog');
    assert.ok(last.at - t0 >= 390 && last.at - t0 < 1000, `stopped after ${last.at - t0} ms`);
  });

  it('stats show every decision', () => {
    const s = h.control.stats()['router'] as Record<string, Record<string, number>>;
    assert.ok(s['ptz/front']!['commandsIn']! > 0);
    assert.ok(s['ptz/front']!['deadmanStops']! >= 1);
    assert.ok(s['ptz/front']!['stopsSent']! >= 1);
    assert.ok(!JSON.stringify(h.control.stats()).includes('dome-Pa55'), 'no password in stats');
  });
});

describe('PTZ HTTP API beyond loopback', () => {
  it('requires the bearer token on every route', async (t) => {
    const h = await startHarness({ token: 'a-long-control-token-1234', bindIsLoopback: false });
    t.after(() => h.close());
    const none = await req(h.base, 'GET', '/ptz/cameras');
    assert.equal(none.status, 401);
    assert.equal((none.json['error'] as Record<string, string>)['code'], 'AUTH_REQUIRED');
    const wrong = await req(h.base, 'POST', '/ptz/front/move', { pan: 1 }, { authorization: 'Bearer nope' });
    assert.equal(wrong.status, 401);
    assert.equal((wrong.json['error'] as Record<string, string>)['code'], 'AUTH_FAILED');
    assert.equal(h.head.moving, false);
    const ok = await req(h.base, 'POST', '/ptz/front/move', { pan: 1 }, { authorization: 'Bearer a-long-control-token-1234' });
    assert.equal(ok.status, 200);
    await waitUntil(() => h.head.moving, 'moving with the token');
  });

  it('refuses everything when bound beyond loopback without a token', async (t) => {
    const h = await startHarness({ bindIsLoopback: false });
    t.after(() => h.close());
    const r = await req(h.base, 'POST', '/ptz/front/move', { pan: 1 });
    assert.equal(r.status, 401);
    assert.equal((r.json['error'] as Record<string, string>)['code'], 'DOOR_CLOSED');
    assert.match((r.json['error'] as Record<string, string>)['message']!, /no token/);
    assert.doesNotMatch((r.json['error'] as Record<string, string>)['message']!, /^DOOR_CLOSED/);
  });
});
