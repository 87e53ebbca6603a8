// Issue 17, control safety with real peers:
// - socat pty pairs pulled and re-created while an operator keeps refreshing a move (the dashboard
//   pad re-sends every 250 ms): once the loss is known every command gets 503 LINK_DOWN, the loss is
//   logged once, the dashboard's list shows it, and after the replug Stop comes first;
// - a digest-auth ISAPI device that locks after 5 failures, hit by concurrent move/status/presets
//   with a wrong password: at most 2 failed logins, never locked; the operator's reset allows 2 more;
// - the ONVIF simulator with a wrong password, concurrently;
// - bad bodies (null, arrays, fast-check JSON) never move anything; stale commands (by send time)
//   never move anything; a local pang ctl client whose link goes silent (black hole) mid-move stops
//   its head within ~1 s.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import fc from 'fast-check';
import { WebSocket } from 'ws';
import { silentLogger, type Logger } from '../../runtime/log.js';
import { capturingLogger } from '../support/log.js';
import { Engine } from '../../runtime/engine/engine.js';
import { HttpServer } from '../../runtime/http/server.js';
import { AccessGate } from '../../runtime/http/access.js';
import { PangServer } from '../../runtime/pang/server.js';
import { registerControlRoutes } from '../../runtime/control/http.js';
import { createControlService, type ControlService } from '../../runtime/control/service.js';
import { controlConfigSchema } from '../../runtime/control/config.js';
import { parseReply } from '../../runtime/control/command.js';
import { IsapiDeviceSim } from '../sim/isapi-device.js';
import { OnvifDeviceSim } from '../sim/onvif-device.js';
import { LineMotorSim } from '../sim/motor-controller.js';
import { PelcoDHeadSim } from '../sim/pelco-d-head.js';
import { PtyCable, waitUntil } from '../sim/serial-pty.js';
import { BlackholeProxy } from '../sim/blackhole-proxy.js';
import { req } from './harness.js';
import { DeviceAuthRegistry } from '../../drivers/auth/device-auth.js';
import { IsapiDriver } from '../../drivers/ptz/isapi.js';
import { createRtspDriver } from '../../drivers/camera/rtsp.js';
import { EdgeError } from '../../runtime/engine/api.js';
import { rtspServerUnavailable, startRtspCamera } from '../sim/rtsp-camera.js';
import { skipUnlessCi } from '../support/peer.js';

interface Rig {
  base: string;
  ws: string;
  control: ControlService;
  close(): Promise<void>;
}

/** A ControlService from config behind the real HttpServer + PangServer (loopback, open doors). */
async function rig(t: TestContext, control: Record<string, unknown>, log: Logger = silentLogger()): Promise<Rig> {
  const svc = createControlService(control, log);
  const engine = new Engine({ memoryCeilingBytes: 16 << 20, consumerQueueBytes: 1 << 20, gopCacheBytes: 1 << 20, trackLingerMs: 1000, instantChannelTtlMs: 60_000, maxInstantChannels: 8 });
  const access = new AccessGate({ bindIsLoopback: true, tokens: {} });
  const http = new HttpServer({ host: '127.0.0.1', port: 0, maxConnections: 64, access });
  const pang = new PangServer(engine, { maxMessageBytes: 1 << 20, log, commands: svc.pang, access, silenceMs: svc.config.silenceStopMs });
  pang.registerRoutes(http.router);
  http.onUpgrade('/pang/ws', (r, s, h) => pang.handleUpgrade(r, s, h));
  registerControlRoutes(http.router, svc);
  const addr = await http.listen();
  const r: Rig = {
    base: `http://127.0.0.1:${addr.port}`,
    ws: `ws://127.0.0.1:${addr.port}`,
    control: svc,
    async close() {
      await svc.close();
      await pang.close();
      await http.close();
      engine.close();
    },
  };
  t.after(() => r.close());
  return r;
}

async function tmp(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'safety-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const linkOf = async (base: string, cam: string) =>
  ((await req(base, 'GET', '/ptz/cameras')).json['cameras'] as Array<{ id: string; link: { up: boolean; reason: string | null } }>).find((c) => c.id === cam)!.link;

describe('serial cable pulled while an operator keeps moving (socat ptys)', () => {
  it('Pelco-D: every refresh gets 503 LINK_DOWN once the loss is known, one log line per loss, Stop first after replug — twice', async (t) => {
    const dir = await tmp(t);
    const cable = new PtyCable(path.join(dir, 'ptz'), path.join(dir, 'ptz-peer'));
    await cable.start();
    let head = new PelcoDHeadSim(cable.peer, 1);
    await head.open();
    const cap = capturingLogger();
    const r = await rig(t, { leaseMs: 600, ptz: [{ kind: 'pelco-d', name: 'front', path: cable.dev, baudRate: 9600, address: 1 }] }, cap.log);
    t.after(async () => {
      await head.close();
      await cable.kill();
    });
    await waitUntil(() => r.control.cameras()[0]!.link.up, 'port open', 5000);
    // The operator's pad: the same velocity every 250 ms, with its send time.
    const answers: Array<{ at: number; status: number; code?: string; result?: string }> = [];
    let pumping = true;
    const pad = (async () => {
      while (pumping) {
        const a = await req(r.base, 'POST', '/ptz/front/move', { pan: 0.5, tilt: 0, zoom: 0, lease_ms: 600, ts: Date.now() });
        answers.push({ at: Date.now(), status: a.status, code: (a.json['error'] as { code?: string } | undefined)?.code, result: a.json['result'] as string | undefined });
        await new Promise((res) => setTimeout(res, 250));
      }
    })();
    t.after(async () => {
      pumping = false;
      await pad;
    });
    for (let round = 1; round <= 2; round++) {
      await waitUntil(() => head.vel.pan > 0, `head panning (round ${round})`, 5000);
      // Pull the cable mid-move.
      const pulledAt = Date.now();
      await head.close();
      await cable.kill();
      await waitUntil(() => answers.some((a) => a.at > pulledAt && a.status === 503), 'a refresh answered 503', 5000);
      const firstDown = answers.find((a) => a.at > pulledAt && a.status === 503)!;
      assert.equal(firstDown.code, 'LINK_DOWN');
      assert.ok(firstDown.at - pulledAt < 2500, `503 ${firstDown.at - pulledAt} ms after the pull (presence check 1 s)`);
      t.diagnostic(`round ${round}: first 503 LINK_DOWN ${firstDown.at - pulledAt} ms after the pull`);
      // From then on, while unplugged, no refresh is "ok": not even "unchanged".
      const n = answers.length;
      await waitUntil(() => answers.length >= n + 4, 'four more refreshes while unplugged', 5000);
      assert.deepEqual(
        answers.slice(n).map((a) => [a.status, a.code]),
        answers.slice(n).map(() => [503, 'LINK_DOWN']),
      );
      const link = await linkOf(r.base, 'front');
      assert.equal(link.up, false);
      assert.match(String(link.reason), /serial port/);
      // Stop and status while down: Stop is 503 too (nothing can reach the head); status says so with 200.
      assert.equal((await req(r.base, 'POST', '/ptz/front/stop')).status, 503);
      const st = await req(r.base, 'GET', '/ptz/front/status');
      assert.equal(st.status, 200);
      assert.equal(st.json['online'], false);
      // Plug it back in: Stop is the first thing the head hears, then the operator's fresh refresh moves it.
      await cable.start();
      head = new PelcoDHeadSim(cable.peer, 1);
      await head.open();
      await waitUntil(() => head.log.length > 0, 'first frame after replug', 8000);
      assert.equal(head.log[0]!.type, 'stop');
      await waitUntil(() => head.vel.pan > 0 && answers.at(-1)!.status === 200, 'moving again after replug', 5000);
      const lost = cap.lines.filter((l) => l.includes('ptz/front link lost'));
      assert.equal(lost.length, round, `one "link lost" line per loss (${lost.length} after ${round})`);
    }
    assert.equal(cap.lines.filter((l) => l.includes('ptz/front link back')).length, 2);
    const st = (r.control.stats()['router'] as Record<string, Record<string, number>>)['ptz/front']!;
    assert.equal(st['linkLosses'], 2);
    assert.ok(st['linkDownRefused']! >= 8);
  });

  it('line motor: drive refreshes get 503 LINK_DOWN while unplugged; the driver stops first after replug', async (t) => {
    const dir = await tmp(t);
    const cable = new PtyCable(path.join(dir, 'm'), path.join(dir, 'm-peer'));
    await cable.start();
    let motor = new LineMotorSim(cable.peer, 115200, 1000);
    await motor.open();
    const r = await rig(t, { leaseMs: 600, motors: [{ kind: 'line', name: 'base', path: cable.dev, baudRate: 115200, keepaliveMs: 100 }] });
    t.after(async () => {
      await motor.close();
      await cable.kill();
    });
    await waitUntil(() => r.control.motorList()[0]!.link.up, 'port open', 5000);
    assert.equal((await req(r.base, 'POST', '/motors/base/drive', { left: 0.4, right: 0.4, lease_ms: 2000 })).status, 200);
    await waitUntil(() => motor.moving, 'driving');
    await motor.close();
    await cable.kill();
    // the keepalive write (every 100 ms) or the presence check notices
    await waitUntil(() => !r.control.motorList()[0]!.link.up, 'link down', 3000);
    const d = await req(r.base, 'POST', '/motors/base/drive', { left: 0.4, right: 0.4, lease_ms: 2000 });
    assert.equal(d.status, 503);
    assert.equal((d.json['error'] as Record<string, string>)['code'], 'LINK_DOWN');
    await cable.start();
    motor = new LineMotorSim(cable.peer, 115200, 1000);
    await motor.open();
    await waitUntil(() => r.control.motorList()[0]!.link.up, 'link back', 8000);
    await waitUntil(() => motor.log.length > 0, 'first line after replug', 3000);
    assert.equal(motor.moving, false, 'stopped after replug; the old drive is not replayed');
    assert.equal((await req(r.base, 'POST', '/motors/base/drive', { left: -0.2, right: -0.2 })).status, 200);
    await waitUntil(() => motor.moving, 'driving again');
  });
});

describe('credentials: one auth state per device, never the reason a camera locks', () => {
  it('ISAPI (locks after 5): concurrent move + status + presets with a wrong password → ≤ 2 failed logins, then fast fails; reset → 2 more; fixed → works', async (t) => {
    const dome = new IsapiDeviceSim({ username: 'admin', password: 'right-pass', lockAfter: 5 });
    await dome.start();
    t.after(() => dome.stop());
    const cap = capturingLogger();
    const r = await rig(t, { ptz: [{ kind: 'isapi', name: 'dome', url: dome.url, username: 'admin', password: 'wrong-pass' }] }, cap.log);
    // three rounds of the dashboard's three calls at once
    for (let round = 0; round < 3; round++) {
      const res = await Promise.all([
        req(r.base, 'POST', '/ptz/dome/move', { pan: 0.5 }),
        req(r.base, 'GET', '/ptz/dome/status'),
        req(r.base, 'GET', '/ptz/dome/presets'),
      ]);
      for (const x of res) {
        assert.equal(x.status, 502);
        assert.match((x.json['error'] as Record<string, string>)['code']!, /^PTZ_AUTH_(FAILED|LOCKED)$/);
      }
    }
    assert.equal(dome.failedLogins, 2, 'two failed logins over all requests together');
    assert.equal(dome.locked, false, 'the camera never locked the account');
    const d = r.control.stats()['drivers'] as Record<string, Record<string, unknown>>;
    assert.equal(d['ptz/dome']!['locked'], true);
    assert.ok(Number(d['ptz/dome']!['authWaits']) >= 1, 'concurrent calls waited for the one login');
    // /ptz/cameras shows it for the dashboard
    const cams = (await req(r.base, 'GET', '/ptz/cameras')).json['cameras'] as Array<{ link: { auth?: string } }>;
    assert.equal(cams[0]!.link.auth, 'locked');
    // The operator resets: two fresh attempts, then locked again (4 < 5: still never locked on the device).
    assert.equal((await req(r.base, 'POST', '/ptz/dome/auth/reset')).status, 200);
    await Promise.all([req(r.base, 'POST', '/ptz/dome/move', { pan: 0.5 }), req(r.base, 'GET', '/ptz/dome/presets')]);
    assert.equal(dome.failedLogins, 4);
    assert.equal(dome.locked, false);
    assert.equal((await req(r.base, 'POST', '/ptz/dome/move', { pan: 0.5 })).status, 502);
    assert.equal(dome.failedLogins, 4, 'locked out again: nothing reached the device');
    // The device's password is changed to what the robot has; the operator resets once more.
    dome.o.password = 'wrong-pass';
    dome.failedLogins = 0;
    assert.equal((await req(r.base, 'POST', '/ptz/dome/auth/reset')).status, 200);
    const ok = await Promise.all([req(r.base, 'POST', '/ptz/dome/move', { pan: 0.5, ts: Date.now() }), req(r.base, 'GET', '/ptz/dome/status')]);
    assert.deepEqual(ok.map((x) => x.status), [200, 200]);
    assert.equal(dome.moving, true);
    assert.ok(cap.lines.some((l) => l.includes('reset by the operator')));
    assert.ok(!cap.lines.join('\n').includes('wrong-pass') && !cap.lines.join('\n').includes('right-pass'), 'no password in the logs');
    await req(r.base, 'POST', '/ptz/dome/stop');
  });

  it('ONVIF simulator with a wrong password, concurrent calls: 2 refusals at the device, then fast fails', async (t) => {
    const cam = new OnvifDeviceSim({ username: 'admin', password: 'right' });
    await cam.start();
    t.after(() => cam.stop());
    const r = await rig(t, { ptz: [{ kind: 'onvif', name: 'cam', host: '127.0.0.1', port: cam.port, username: 'admin', password: 'wrong' }] });
    for (let round = 0; round < 3; round++) {
      await Promise.all([req(r.base, 'POST', '/ptz/cam/move', { pan: 0.5 }), req(r.base, 'GET', '/ptz/cam/status'), req(r.base, 'GET', '/ptz/cam/presets')]);
    }
    assert.equal(cam.authFailures, 2);
    assert.equal(cam.moving, false);
    const before = cam.requests;
    assert.equal((await req(r.base, 'POST', '/ptz/cam/move', { pan: 0.5 })).status, 502);
    assert.equal(cam.requests, before, 'locked out here: nothing reached the camera');
  });
});

describe('one account per camera: its RTSP stream and its PTZ service share the lock-out', () => {
  it('a wrong password on the GStreamer RTSP camera: 2 refused pulls, then RTSP_AUTH_LOCKED without connecting; the ISAPI PTZ on the same host+user is locked too', async (t) => {
    const why = rtspServerUnavailable();
    if (why) return skipUnlessCi(t, why);
    const cam = await startRtspCamera({ user: 'admin', password: 'right-pw' });
    t.after(() => cam.stop());
    const proxy = new BlackholeProxy(cam.port); // counts connections reaching the camera
    await proxy.listen();
    t.after(() => proxy.close());
    const dome = new IsapiDeviceSim({ username: 'admin', password: 'right-pw' });
    await dome.start();
    t.after(() => dome.stop());
    const accounts = new DeviceAuthRegistry();
    const drv = createRtspDriver({ kind: 'rtsp', url: `rtsp://127.0.0.1:${proxy.port}/cam`, username: 'admin', password: 'wrong-pw' }, { accounts });
    const out = { setMime: () => {}, write: () => {} };
    const codes: string[] = [];
    for (let i = 0; i < 4; i++) {
      const ac = new AbortController();
      await drv.run(out, ac.signal).then(
        () => codes.push('ok'),
        (e: unknown) => codes.push(e instanceof EdgeError ? e.code : String(e)),
      );
    }
    assert.deepEqual(codes, ['RTSP_AUTH_FAILED', 'RTSP_AUTH_FAILED', 'RTSP_AUTH_LOCKED', 'RTSP_AUTH_LOCKED']);
    assert.equal(proxy.accepted, 2, 'locked-out pulls never reach the camera');
    // The camera's PTZ service logs into the same account (same host, same user): locked as well.
    const ptz = new IsapiDriver({ name: 'dome', url: dome.url, username: 'admin', password: 'wrong-pw', auth: accounts.get('127.0.0.1', 'admin', { label: 'ptz/dome' }) });
    t.after(() => ptz.close());
    await assert.rejects(ptz.move({ pan: 1, tilt: 0, zoom: 0 }), (e: unknown) => e instanceof EdgeError && e.code === 'PTZ_AUTH_LOCKED');
    assert.equal(dome.requests, 0);
    // The operator resets the account: the right password (fixed in config → a new driver) streams.
    accounts.get('127.0.0.1', 'admin', { label: 'x' }).reset();
    const good = createRtspDriver({ kind: 'rtsp', url: `rtsp://127.0.0.1:${proxy.port}/cam`, username: 'admin', password: 'right-pw' }, { accounts });
    const ac = new AbortController();
    let frames = 0;
    const running = good.run({ setMime: () => {}, write: () => void (++frames >= 5 && ac.abort()) }, ac.signal);
    await running;
    assert.ok(frames >= 5);
    assert.equal(accounts.get('127.0.0.1', 'admin', { label: 'x' }).stats().state, 'ok');
  });
});

describe('bad and stale commands never move anything', () => {
  it('null / array / scalar JSON bodies are 400 (a null is not an empty body → Stop); fast-check over bodies', async (t) => {
    const dome = new IsapiDeviceSim({ username: 'admin', password: 'pw' });
    await dome.start();
    t.after(() => dome.stop());
    const r = await rig(t, { ptz: [{ kind: 'isapi', name: 'dome', url: dome.url, username: 'admin', password: 'pw' }] });
    assert.equal((await req(r.base, 'POST', '/ptz/dome/move', { pan: 0.4, lease_ms: 5000 })).status, 200);
    assert.equal(dome.moving, true);
    for (const body of ['null', '[]', '1', '"x"', 'true']) {
      const x = await req(r.base, 'POST', '/ptz/dome/move', body, { 'content-type': 'application/json' });
      assert.equal(x.status, 400, body);
      assert.match((x.json['error'] as Record<string, string>)['message']!, /JSON object/);
    }
    assert.equal(dome.moving, true, 'a null body did not stop (nor move) the camera');
    await req(r.base, 'POST', '/ptz/dome/stop');
    const n = dome.log.length;
    let moved = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.jsonValue(),
          fc.record({ pan: fc.oneof(fc.double(), fc.string(), fc.constant(null)), tilt: fc.double(), zoom: fc.integer(), lease_ms: fc.oneof(fc.integer(), fc.double()), ts: fc.oneof(fc.integer(), fc.double(), fc.string()), ttl_ms: fc.integer(), extra: fc.string() }, { requiredKeys: [] }),
        ),
        async (v) => {
          const x = await req(r.base, 'POST', '/ptz/dome/move', JSON.stringify(v) ?? 'null', { 'content-type': 'application/json' });
          assert.ok([200, 400, 409].includes(x.status), `status ${x.status} for ${JSON.stringify(v)?.slice(0, 100)}`);
          const err = x.json['error'] as Record<string, string> | undefined;
          if (err) assert.ok(!err['message']!.startsWith(err['code']!), 'the message does not repeat the code');
          if (x.status === 200) moved++;
        },
      ),
      { numRuns: 150 },
    );
    // only valid bodies reached the camera, one PUT each
    assert.ok(dome.log.length - n <= moved, `${dome.log.length - n} device calls for ${moved} accepted moves`);
    await req(r.base, 'POST', '/ptz/dome/stop');
  });

  it('HTTP: a move whose send time is older than its ttl (per client clock) is 409 and never executed', async (t) => {
    const dome = new IsapiDeviceSim({ username: 'admin', password: 'pw' });
    await dome.start();
    t.after(() => dome.stop());
    const r = await rig(t, { ptz: [{ kind: 'isapi', name: 'dome', url: dome.url, username: 'admin', password: 'pw' }] });
    const skew = 5 * 60_000; // the client's clock is 5 min ahead: only differences count
    for (let i = 0; i < 3; i++) assert.equal((await req(r.base, 'POST', '/ptz/dome/move', { pan: 0.1, ts: Date.now() + skew })).status, 200);
    await req(r.base, 'POST', '/ptz/dome/stop');
    const n = dome.log.length;
    const old = await req(r.base, 'POST', '/ptz/dome/move', { pan: 1, ts: Date.now() + skew - 2500 });
    assert.equal(old.status, 409);
    assert.equal((old.json['error'] as Record<string, string>)['code'], 'CONTROL_STALE_COMMAND');
    assert.equal(dome.log.length, n);
    // a longer ttl of its own lets a slow client through
    assert.equal((await req(r.base, 'POST', '/ptz/dome/move', { pan: 0.2, ts: Date.now() + skew - 2500, ttl_ms: 5000 })).status, 200);
    assert.equal((r.control.stats()['http'] as Record<string, number>)['staleDropped'], 1);
    await req(r.base, 'POST', '/ptz/dome/stop');
  });

  it('pang ctl: a client whose link goes silent (black hole, no FIN) mid-move is dropped and its head stops within ~1 s', async (t) => {
    const dir = await tmp(t);
    const cable = new PtyCable(path.join(dir, 'ptz'), path.join(dir, 'ptz-peer'));
    await cable.start();
    const head = new PelcoDHeadSim(cable.peer, 1);
    await head.open();
    t.after(async () => {
      await head.close();
      await cable.kill();
    });
    const r = await rig(t, { ptz: [{ kind: 'pelco-d', name: 'front', path: cable.dev, baudRate: 9600, address: 1 }] });
    await waitUntil(() => r.control.cameras()[0]!.link.up, 'port open', 5000);
    const proxy = new BlackholeProxy(Number(new URL(r.base).port));
    await proxy.listen();
    t.after(() => proxy.close());
    const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/pang/ws/ctl?channel=instant&name=robot`);
    const texts: string[] = [];
    ws.on('message', (d) => texts.push(d.toString()));
    ws.on('error', () => {});
    await new Promise<void>((res) => ws.once('open', () => res()));
    t.after(() => ws.terminate());
    // a long lease: only the liveness rule can stop it in time
    ws.send(JSON.stringify({ type: 'control', req_id: 'm1', seq: 1, ts: Date.now(), target: 'ptz/front', action: 'move', tilt: 1, lease_ms: 5000 }));
    await waitUntil(() => texts.some((x) => x.includes('"m1"')), 'ack', 3000);
    assert.equal(parseReply(texts.find((x) => x.includes('"m1"'))!)!.ok, true);
    await waitUntil(() => head.vel.tilt > 0, 'tilting');
    // pings flow and are answered while the link is fine
    await new Promise((res) => setTimeout(res, 800));
    assert.ok(head.moving, 'a live, answering client is not dropped');
    const holeAt = Date.now();
    proxy.blackhole();
    await waitUntil(() => !head.moving, 'head stopped after the client went silent', 3000);
    const ms = Date.now() - holeAt;
    assert.ok(ms < 1300, `stopped ${ms} ms after the link went silent (lease was 5 s)`);
    t.diagnostic(`black-holed pang ctl client: head stopped ${ms} ms after the link went silent`);
    assert.ok(Number((r.control.stats()['router'] as Record<string, Record<string, number>>)['ptz/front']!['linkDropStops']) >= 1);
  });
});

describe('config traps', () => {
  it('a Sabertooth keepaliveMs above half of deviceTimeoutMs is refused', () => {
    const bad = controlConfigSchema.safeParse({ motors: [{ kind: 'sabertooth', name: 'base', path: '/dev/ttyS0', deviceTimeoutMs: 300, keepaliveMs: 400 }] });
    assert.equal(bad.success, false);
    assert.match(JSON.stringify(bad.error?.issues), /keepaliveMs/);
    assert.equal(controlConfigSchema.safeParse({ motors: [{ kind: 'sabertooth', name: 'base', path: '/dev/ttyS0', deviceTimeoutMs: 500, keepaliveMs: 150 }] }).success, true);
  });
});
