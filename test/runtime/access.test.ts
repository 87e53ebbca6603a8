// Issue 17, access: one model for every door of the real runtime (App), TLS on the same port,
// failed-authentication rate limit, and --check-config refusing a config that leaves a door open.
// Real peers: the runtime itself, werift (WHIP publisher, WHEP offer), ws, the CLI as a child.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import https from 'node:https';
import { WebSocket } from 'ws';
import { WhipPublisher } from '../../runtime/egress/whip-publisher.js';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { createPeer, gatheringComplete, loadWerift } from '../../runtime/egress/webrtc.js';
import { cliCommand, closeCodeOf, startApp, tempDir, waitFor, writeFile } from '../support/app.js';

const run = promisify(execFile);
const TOKEN = 'door-token-0123456789abcdef';
const CH = 'c0ffee00000000000000';

async function whepOffer(): Promise<string> {
  await loadWerift();
  const pc = createPeer();
  pc.addTransceiver('video', { direction: 'recvonly' });
  await pc.setLocalDescription(await pc.createOffer());
  await gatheringComplete(pc, 1000);
  const sdp = pc.localDescription!.sdp;
  await pc.close();
  return sdp;
}

/** GET over https trusting only `ca` (no global agent, no env). */
function httpsGet(url: string, ca: Buffer | undefined, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, headers, agent: false, timeout: 3000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

const post = (url: string, body: string, headers: Record<string, string> = {}) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/sdp', ...headers }, body });

describe('access: every door needs the token once one is set (the runtime on loopback with server.token)', () => {
  it('WHIP publish and WHEP view without / with a wrong token → 401 and nothing created; with it they work', async (t) => {
    const app = await startApp({
      server: { token: TOKEN },
      channels: [{ id: CH, name: 'robot', sources: [{ name: 'base', driver: { kind: 'testpattern', width: 320, height: 240, fps: 15 } }] }],
      egress: { whipIngest: { enabled: true } },
    });
    t.after(() => app.close());
    const base = `http://127.0.0.1:${app.port}`;
    await waitFor(() => app.supervisors[0]!.stats().ready, 15_000, 'camera ready');
    const cam = { channel: CH, source: 'base', track: 'video' };

    // WHIP: a real werift publisher of the camera into the ingest, without and with a wrong token.
    for (const token of [undefined, 'wrong-token-0000000000']) {
      const pub = new WhipPublisher({ name: `no-${token ?? 'token'}`, url: `${base}/whip/ingest/cam/video`, token, tracks: [cam], source: app.engine, log: silentLog, backoff: { initialMs: 60_000, maxMs: 60_000 }, timeoutMs: 5000 });
      pub.start();
      await waitFor(() => pub.stats().lastError !== null, 10_000, 'WHIP refusal');
      assert.match(JSON.stringify(pub.stats().lastError), /401/);
      pub.close();
    }
    const ingestStats = () => app.egress.stats().whipIngest!;
    assert.equal(ingestStats().created, 0, 'no ingest session was created');
    assert.ok(!app.engine.listTracks().some((x) => x.source === 'cam'), 'no ingest track was created');

    // WHEP: a real offer, refused before anything is built.
    const offer = await whepOffer();
    const whepStats = () => app.egress.stats().whep!;
    const none = await post(`${base}/whep/${CH}/base/video`, offer);
    assert.equal(none.status, 401);
    assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);
    const wrong = await post(`${base}/whep/${CH}/base/video`, offer, { authorization: 'Bearer wrong-token-0000000000' });
    assert.equal(wrong.status, 401);
    assert.equal(((await wrong.json()) as { error: { code: string } }).error.code, 'AUTH_FAILED');
    assert.equal(whepStats().created, 0, 'no WHEP session was created');

    // With the token both work.
    const ok = await post(`${base}/whep/${CH}/base/video`, offer, { authorization: `Bearer ${TOKEN}` });
    assert.equal(ok.status, 201);
    assert.equal(whepStats().sessions, 1);
    const loc = ok.headers.get('location')!;
    assert.equal((await fetch(base + loc, { method: 'DELETE' })).status, 401, 'DELETE needs the token too');
    assert.equal((await fetch(base + loc, { method: 'DELETE', headers: { authorization: `Bearer ${TOKEN}` } })).status, 200);
    const pub = new WhipPublisher({ name: 'ok', url: `${base}/whip/ingest/cam/video`, token: TOKEN, tracks: [cam], source: app.engine, log: silentLog, backoff: { initialMs: 500, maxMs: 2000 }, timeoutMs: 10_000 });
    t.after(() => pub.close());
    pub.start();
    await waitFor(() => app.engine.listTracks().some((x) => x.source === 'cam' && (x.mime ?? '').startsWith('video/h264')), 20_000, 'ingested track');
    const s = app.stats().http.access!;
    assert.ok(s.doors.whip.wrong >= 1 && s.doors.whep.wrong >= 1 && s.doors.whep.missing >= 1);
    const m = await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    assert.match(m, /moth_edge_auth_failures_total\{door="whep"\} [1-9]/);
    assert.match(m, new RegExp(`moth_edge_component_up\\{component="driver:robot/base/video"\\} 1`));
  });

  it('API, metrics, control and pang need it; the dashboard page and /healthz stay open; healthz details only with it', async (t) => {
    const app = await startApp({ server: { token: TOKEN }, channels: [{ id: CH, sources: [{ name: 'base', driver: { kind: 'simulated', track: 'imu', sensor: 'imu', rateHz: 20 } }] }] });
    t.after(() => app.close());
    const base = `http://127.0.0.1:${app.port}`;
    const auth = { authorization: `Bearer ${TOKEN}` };
    for (const p of ['/api/stats', '/metrics', '/ptz/cameras', '/motors', '/api/sensors/latest', '/api/egress/overview']) {
      assert.equal((await fetch(base + p)).status, 401, p);
      assert.equal((await fetch(base + p, { headers: auth })).status, 200, p);
    }
    assert.equal((await fetch(`${base}/api/stats?token=${TOKEN}`)).status, 200, '?token= works where headers cannot be set');
    assert.equal((await fetch(`${base}/`)).status, 200, 'the dashboard loads to ask for the token');
    assert.equal((await fetch(`${base}/dashboard/app.js`)).status, 200);
    const h = await fetch(`${base}/healthz`);
    assert.equal(h.status, 200);
    const hb = (await h.json()) as { components: Array<Record<string, unknown>> };
    assert.ok(hb.components.every((c) => !('reason' in c)), 'no reasons without the token');
    const hd = (await (await fetch(`${base}/healthz`, { headers: auth })).json()) as { components: Array<Record<string, unknown>> };
    assert.ok(hd.components.every((c) => 'reason' in c));
    // pang: a keyless channel needs the token (key=, token= or Bearer); without → 4401
    const sub = `ws://127.0.0.1:${app.port}/pang/ws/sub?channel=${CH}&track=imu`;
    assert.equal((await closeCodeOf(sub)).code, 4401);
    for (const url of [`${sub}&key=${TOKEN}`, `${sub}&token=${TOKEN}`]) {
      const ws = new WebSocket(url);
      const first = await new Promise<string>((res, rej) => {
        ws.once('message', (d) => res(d.toString()));
        ws.once('close', (c) => rej(new Error(`closed ${c}`)));
      });
      assert.match(first, /json/);
      ws.terminate();
    }
    const wsH = new WebSocket(sub, { headers: auth });
    await new Promise<void>((res, rej) => (wsH.once('message', () => res()), wsH.once('close', (c) => rej(new Error(`closed ${c}`)))));
    wsH.terminate();
    // creating an instant channel is the door's too
    assert.equal((await closeCodeOf(`ws://127.0.0.1:${app.port}/pang/ws/pub?channel=instant&name=x&track=t`)).code, 4401);
  });

  it('wrong tokens from one address: 429 on every door after 10 within a minute (Retry-After), counted', async (t) => {
    const app = await startApp({ server: { token: TOKEN, access: { rateLimit: { maxFailures: 10, windowMs: 60_000, blockMs: 60_000 } } } });
    t.after(() => app.close());
    const base = `http://127.0.0.1:${app.port}`;
    for (let i = 0; i < 10; i++) assert.equal((await fetch(`${base}/api/stats`, { headers: { authorization: `Bearer guess-${i}-xxxxxxxxxxxxxx` } })).status, 401);
    const r = await fetch(`${base}/ptz/cameras`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(r.status, 429, 'blocked on every door, even with the right token');
    assert.ok(Number(r.headers.get('retry-after')) > 0);
    assert.equal((await closeCodeOf(`ws://127.0.0.1:${app.port}/pang/ws/sub?channel=${CH}&key=${TOKEN}`)).code, 4429);
    const s = app.stats().http.access!;
    assert.equal(s.blocks, 1);
    assert.equal(s.blockedAddresses, 1);
    assert.equal(s.doors.api.wrong, 10);
    assert.ok(s.doors.control.limited >= 1);
  });

  it('wrong pang channel keys count as failed authentications too', async (t) => {
    const app = await startApp({
      server: { access: { rateLimit: { maxFailures: 3, windowMs: 60_000, blockMs: 60_000 } } },
      channels: [{ id: CH, key: 'chan-key-1', sources: [{ name: 'base', driver: { kind: 'simulated', track: 'imu', sensor: 'imu', rateHz: 20 } }] }],
    });
    t.after(() => app.close());
    const sub = `ws://127.0.0.1:${app.port}/pang/ws/sub?channel=${CH}&track=imu`;
    assert.equal((await closeCodeOf(sub)).code, 4401, 'a keyed channel needs its key even on an open loopback door');
    for (let i = 0; i < 3; i++) assert.equal((await closeCodeOf(`${sub}&key=nope${i}`)).code, 4401);
    assert.equal((await closeCodeOf(`${sub}&key=chan-key-1`).catch(() => ({ code: 0 }))).code, 4429);
  });
});

describe('TLS on the same port', () => {
  it('generate: a local CA and a certificate on first start; https and wss verify against the CA; a token never goes in clear', async (t) => {
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const tls = { cert: join(dir, 'tls', 'cert.pem'), key: join(dir, 'tls', 'key.pem'), generate: true, hosts: ['127.0.0.1', 'localhost'] };
    const app = await startApp({ server: { token: TOKEN, tls }, channels: [{ id: CH, sources: [{ name: 'base', driver: { kind: 'simulated', track: 'imu', sensor: 'imu', rateHz: 20 } }] }] });
    t.after(() => app.close());
    assert.ok(app.tls?.generated);
    const ca = readFileSync(join(dir, 'tls', 'ca.pem'));
    assert.equal(await httpsGet(`https://127.0.0.1:${app.port}/api/stats`, ca, { authorization: `Bearer ${TOKEN}` }), 200);
    assert.equal(await httpsGet(`https://localhost:${app.port}/api/stats`, ca), 401, 'the certificate names localhost too; no token → 401');
    assert.ok(app.urls()[0]!.startsWith('dashboard: https://'));
    // plain http on the TLS port is not answered as http
    await assert.rejects(fetch(`http://127.0.0.1:${app.port}/api/stats`, { signal: AbortSignal.timeout(3000) }));
    // without the CA the certificate is not trusted (it is not a public one)
    await assert.rejects(httpsGet(`https://127.0.0.1:${app.port}/healthz`, undefined), /self[- ]signed|unable to verify|certificate/i);
    const ws = new WebSocket(`wss://127.0.0.1:${app.port}/pang/ws/sub?channel=${CH}&track=imu`, { ca, headers: { authorization: `Bearer ${TOKEN}` } });
    const first = await new Promise<string>((res, rej) => (ws.once('message', (d) => res(d.toString())), ws.once('error', rej)));
    assert.match(first, /json/);
    ws.terminate();
    // a second start keeps the same certificate (nothing to re-issue)
    await app.close();
    const again = await startApp({ server: { token: TOKEN, tls } });
    t.after(() => again.close());
    assert.equal(again.tls?.generated, false);
    assert.equal(again.tls?.spkiSha256, app.tls?.spkiSha256);
  });
});

describe('--check-config refuses a config that leaves a door open', () => {
  const check = async (yaml: string): Promise<{ code: number; out: string }> => {
    const { dir, cleanup } = tempDir();
    try {
      const f = writeFile(dir, 'c.yaml', yaml);
      const cli = cliCommand();
      try {
        const r = await run(cli.cmd, [...cli.args, '--check-config', '--config', f]);
        return { code: 0, out: r.stdout + r.stderr };
      } catch (e) {
        const x = e as { code: number; stdout: string; stderr: string };
        return { code: x.code, out: x.stdout + x.stderr };
      }
    } finally {
      cleanup();
    }
  };

  it('beyond loopback: no token → every door named; one door without its own token and no server.token → that door named', async () => {
    const open = await check('server: { host: 0.0.0.0 }\n');
    assert.equal(open.code, 2);
    for (const d of ['control', 'pang', 'whep', 'api', 'metrics']) assert.match(open.out, new RegExp(`the ${d} door has no token`));
    const partial = await check(
      ['server:', '  host: 0.0.0.0', '  access:', ...['control', 'pang', 'whep', 'api'].map((d) => `    ${d}: { token: "${d}-token-0123456789" }`), 'egress: { whipIngest: { enabled: true, token: "ingest-token-123" } }'].join('\n'),
    );
    assert.equal(partial.code, 2);
    assert.match(partial.out, /metrics door has no token/);
    assert.doesNotMatch(partial.out, /control door|whip door/);
    const ok = await check(`server: { host: 0.0.0.0, token: "${TOKEN}" }\negress: { whipIngest: { enabled: true } }\n`);
    assert.equal(ok.code, 0, ok.out);
  });

  it('a Sabertooth keepalive slower than half its watchdog is refused', async () => {
    const r = await check('control:\n  motors:\n    - { kind: sabertooth, name: base, path: /dev/ttyUSB9, deviceTimeoutMs: 200, keepaliveMs: 150 }\n');
    assert.equal(r.code, 2);
    assert.match(r.out, /keepaliveMs/);
  });
});
