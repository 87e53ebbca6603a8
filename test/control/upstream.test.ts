// The upstream Moth meb control client, with the shipped defaults (no test-only timings):
// - against a Moth-like server (no pongs, refusals by dropping TCP, ctl ping → pong): commands,
//   replies, keepalive, refusal classification (long ladder, never logged as "joined"), network
//   failures (short ladder);
// - against the runtime's own pang server used as the relay, through a TCP proxy that black-holes
//   the path (no FIN, no RST): the devices stop within 1 s, the dead path is noticed within ~10 s,
//   and the client is back within 2 s of the path's return; stale commands released by a frozen
//   link never move anything.
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { silentLogger, type Logger } from '../../runtime/log.js';
import { capturingLogger } from '../support/log.js';
import { controlConfigSchema } from '../../runtime/control/config.js';
import { parseReply } from '../../runtime/control/command.js';
import { ControlService } from '../../runtime/control/service.js';
import { Engine } from '../../runtime/engine/engine.js';
import { HttpServer } from '../../runtime/http/server.js';
import { PangServer } from '../../runtime/pang/server.js';
import { IsapiDriver } from '../../drivers/ptz/isapi.js';
import { IsapiDeviceSim } from '../sim/isapi-device.js';
import { BlackholeProxy } from '../sim/blackhole-proxy.js';
import { waitUntil } from '../sim/serial-pty.js';

/** A Moth-like server: meb without pongs, refusal = TCP dropped right after the upgrade, ctl ping → pong. */
class MothLike {
  readonly wss: WebSocketServer;
  port = 0;
  conns: WebSocket[] = [];
  upgrades: string[] = [];
  texts: string[] = [];
  emptyBinaries = 0;
  ctlPings = 0;
  refuse: false | 'drop' | 'http403' = false;
  refuseCtl = false;
  constructor() {
    this.wss = new WebSocketServer({
      host: '127.0.0.1',
      port: 0,
      autoPong: false,
      verifyClient: (info: { req: IncomingMessage }, cb: (ok: boolean, code?: number) => void) => {
        this.upgrades.push(info.req.url ?? '');
        if (this.refuse === 'http403') cb(false, 403);
        else cb(true);
      },
    });
    this.wss.on('connection', (ws, req) => {
      const u = new URL(req.url ?? '/', 'http://x');
      const ok = u.searchParams.get('channel') === 'instant' && u.searchParams.get('name') === 'robot1' && u.searchParams.get('key') === 'k3y-secret';
      if (this.refuse || !ok || (u.pathname === '/pang/ws/ctl' && this.refuseCtl)) {
        ws.terminate(); // Moth refuses by dropping TCP without a close frame
        return;
      }
      if (u.pathname === '/pang/ws/ctl') {
        ws.on('message', (d) => {
          const m = JSON.parse(d.toString()) as { type: string; req_id?: string };
          if (m.type === 'ping') {
            this.ctlPings++;
            ws.send(JSON.stringify({ type: 'pong', req_id: m.req_id, data: '{}' }));
          }
        });
        return;
      }
      this.conns.push(ws);
      ws.on('message', (d, isBinary) => {
        if (isBinary) {
          if ((d as Buffer).length === 0) this.emptyBinaries++;
        } else this.texts.push(d.toString());
      });
    });
  }
  async listening(): Promise<void> {
    if (!this.wss.address()) await new Promise<void>((r) => this.wss.once('listening', () => r()));
    this.port = (this.wss.address() as AddressInfo).port;
  }
  get live(): WebSocket | undefined {
    return this.conns.filter((c) => c.readyState === 1).at(-1);
  }
  async reply(reqId: string): Promise<ReturnType<typeof parseReply>> {
    let t: string | undefined;
    await waitUntil(() => (t = this.texts.find((x) => x.includes(`"req_id":"${reqId}"`))) !== undefined, `reply ${reqId}`, 3000);
    return parseReply(t!);
  }
  close(): Promise<void> {
    for (const c of this.wss.clients) c.terminate();
    return new Promise((r) => this.wss.close(() => r()));
  }
}

function upstreamStats(svc: ControlService): Record<string, unknown> {
  return svc.stats()['upstream'] as Record<string, unknown>;
}

const cmd = (o: Record<string, unknown>) => 'REXTXCMD' + JSON.stringify({ ts: Date.now(), ...o });

async function mothSetup(t: TestContext, opts: { refuse?: MothLike['refuse']; refuseCtl?: boolean; log?: Logger; upstream?: Record<string, unknown> } = {}) {
  const moth = new MothLike();
  moth.refuse = opts.refuse ?? false;
  moth.refuseCtl = opts.refuseCtl ?? false;
  await moth.listening();
  const dome = new IsapiDeviceSim({ username: 'admin', password: 'pw-dome' });
  await dome.start();
  const svc = new ControlService({ ptz: [new IsapiDriver({ name: 'dome', url: dome.url, username: 'admin', password: 'pw-dome' })], log: opts.log ?? silentLogger(), config: { leaseMs: 400 } });
  const cfg = controlConfigSchema.parse({ upstream: { url: `ws://127.0.0.1:${moth.port}`, channel: 'instant', name: 'robot1', key: 'k3y-secret', ...opts.upstream } }).upstream!;
  svc.attachUpstream(cfg);
  t.after(async () => {
    await svc.close();
    await moth.close();
    await dome.stop();
  });
  return { moth, dome, svc };
}

describe('upstream meb control client (Moth-like server, shipped defaults)', () => {
  it('joins, executes REXTXCMD and answers with the req_id; keepalive never depends on pongs; the ctl probe is answered', async (t) => {
    const { moth, dome, svc } = await mothSetup(t);
    await waitUntil(() => moth.live !== undefined, 'joined');
    const url = new URL(moth.upgrades.find((u) => u.startsWith('/pang/ws/meb'))!, 'http://x');
    assert.equal(url.searchParams.get('track'), 'control');
    moth.live!.send(cmd({ req_id: 'u1', seq: 1, target: 'ptz/dome', action: 'move', pan: 0.3, lease_ms: 3000 }));
    assert.equal((await moth.reply('u1'))!.ok, true);
    assert.equal(dome.log.at(-1)!.pan, 30);
    moth.live!.send(cmd({ req_id: 'u2', seq: 2, target: 'ptz/nope', action: 'stop' }));
    assert.equal((await moth.reply('u2'))!.error!.code, 'PTZ_UNKNOWN_CAMERA');
    // other meb traffic (other participants' acks, plain texts) is ignored
    moth.live!.send('REXTXACK{"req_id":"zz"}');
    moth.live!.send('hello');
    moth.live!.send(cmd({ req_id: 'u3', seq: 3, target: 'ptz/dome', action: 'stop' }));
    await moth.reply('u3');
    assert.equal(moth.texts.filter((x) => x.includes('"zz"')).length, 0);
    // joined once the refusal window (1.5 s) passed without Moth dropping us; the probe is answered
    await waitUntil(() => upstreamStats(svc)['connected'] === true, 'joined state', 5000);
    await waitUntil(() => moth.ctlPings >= 1 && Number(upstreamStats(svc)['probeAnswers']) >= 1, 'ctl probe answered', 5000);
    assert.equal(upstreamStats(svc)['closes'], 0);
    assert.ok(!JSON.stringify(svc.stats()).includes('k3y-secret'), 'key never in stats');
  });

  it('link dropped without a close frame mid-move → the camera stops within 1 s; rejoined on the network ladder', async (t) => {
    const { moth, dome, svc } = await mothSetup(t);
    await waitUntil(() => moth.live !== undefined, 'joined');
    moth.live!.send(cmd({ req_id: 'd1', seq: 1, target: 'ptz/dome', action: 'move', tilt: 1, lease_ms: 5000 }));
    await moth.reply('d1');
    assert.equal(dome.moving, true);
    const cutAt = Date.now();
    moth.live!.terminate();
    await waitUntil(() => !dome.moving, 'stopped after link loss', 1500);
    assert.ok(Date.now() - cutAt < 1000);
    await waitUntil(() => moth.conns.length >= 2 && moth.live !== undefined, 'rejoined', 3000);
    const s = upstreamStats(svc);
    // closed within the refusal window, but it had relayed a command: Moth accepted it, so this is the network
    assert.equal(s['networkFailures'], 1);
    assert.equal(s['refusals'], 0);
    moth.live!.send(cmd({ req_id: 'd2', seq: 1, target: 'ptz/dome', action: 'status' }));
    assert.equal((await moth.reply('d2'))!.ok, true);
  });

  it('Moth refusing (TCP dropped right after the upgrade) is a refusal: long ladder, logged as refused, never as joined', async (t) => {
    const cap = capturingLogger();
    const { moth, svc } = await mothSetup(t, { refuse: 'drop', log: cap.log });
    const t0 = Date.now();
    await waitUntil(() => Number(upstreamStats(svc)['refusals']) >= 2, 'two refusals', 5000);
    // Let the ladder run for a while: 1 s, 2 s, 4 s (jittered to half) → at most 4 attempts in 5 s.
    await waitUntil(() => Date.now() - t0 >= 5000, '5 s', 6000);
    const s = upstreamStats(svc);
    const attempts = moth.upgrades.filter((u) => u.startsWith('/pang/ws/meb')).length;
    assert.ok(attempts >= 2 && attempts <= 4, `${attempts} attempts in 5 s on the refusal ladder`);
    assert.equal(s['connected'], false);
    assert.equal(s['lastClass'], 'refused');
    assert.equal(s['joins'], 0);
    assert.equal(s['networkFailures'], 0);
    assert.ok(!cap.lines.some((l) => l.includes('control upstream joined')), 'a refused session is never logged as joined');
    assert.ok(cap.lines.some((l) => l.includes('control upstream refused by the server')));
    assert.ok(!cap.lines.join('\n').includes('k3y-secret'), 'the key is not in the logs');
    assert.ok(!String(s['lastError']).includes('k3y-secret'));
  });

  it('an HTTP 403 to the upgrade is a refusal too', async (t) => {
    const { svc } = await mothSetup(t, { refuse: 'http403' });
    await waitUntil(() => Number(upstreamStats(svc)['refusals']) >= 1, 'refusal', 5000);
    assert.equal(upstreamStats(svc)['lastClass'], 'refused');
    assert.match(String(upstreamStats(svc)['lastError']), /HTTP 403/);
  });

  it('a server that is down (ECONNREFUSED) is the network: retried on the short ladder, joined soon after it is up', async (t) => {
    const moth = new MothLike();
    await moth.listening();
    const port = moth.port;
    await moth.close();
    const svc = new ControlService({ log: silentLogger(), config: { leaseMs: 400 } });
    svc.attachUpstream(controlConfigSchema.parse({ upstream: { url: `ws://127.0.0.1:${port}`, channel: 'instant', name: 'robot1', key: 'k3y-secret' } }).upstream!);
    t.after(() => svc.close());
    const t0 = Date.now();
    await waitUntil(() => Number(upstreamStats(svc)['networkFailures']) >= 4, 'four network failures', 5000);
    // 250, 500, 1000 ms (jittered to half): four failures take at most ~1.75 s plus connect time
    assert.ok(Date.now() - t0 < 4000, `${Date.now() - t0} ms for four attempts`);
    assert.equal(upstreamStats(svc)['refusals'], 0);
    // the server comes back on the same port
    const back = new WebSocketServer({ host: '127.0.0.1', port, autoPong: false });
    t.after(() => new Promise<void>((r) => back.close(() => r())));
    let joined = 0;
    back.on('connection', () => (joined = Date.now()));
    const upAt = Date.now();
    await waitUntil(() => joined > 0, 'joined after the server came back', 3000);
    assert.ok(joined - upAt <= 2000, `joined ${joined - upAt} ms after the server was up`);
  });

  it('a server that refuses the ctl probe: the meb stays joined, the probe is marked refused (logged once)', async (t) => {
    const cap = capturingLogger();
    const { svc } = await mothSetup(t, { refuseCtl: true, log: cap.log });
    await waitUntil(() => upstreamStats(svc)['probe'] === 'refused', 'probe refused', 5000);
    await waitUntil(() => upstreamStats(svc)['connected'] === true, 'meb joined', 5000);
    assert.equal(cap.lines.filter((l) => l.includes('refused the ctl liveness probe')).length, 1);
  });

  it('an operator who goes silent mid-move (the path still answers) stops the device within 1 s; a fresh command moves it again', async (t) => {
    const { moth, dome, svc } = await mothSetup(t);
    await waitUntil(() => moth.live !== undefined, 'joined');
    moth.live!.send(cmd({ req_id: 's1', seq: 1, target: 'ptz/dome', action: 'move', pan: 0.5, lease_ms: 5000 }));
    await moth.reply('s1');
    const lastCmdAt = Date.now();
    assert.equal(dome.moving, true);
    await waitUntil(() => !dome.moving, 'stopped by the silence rule', 3000);
    const stoppedAfter = Date.now() - lastCmdAt;
    assert.ok(stoppedAfter < 1200, `stopped ${stoppedAfter} ms after the operator's last message (lease was 5 s)`);
    assert.equal(upstreamStats(svc)['silenceStops'], 1);
    moth.live!.send(cmd({ req_id: 's2', seq: 2, target: 'ptz/dome', action: 'move', pan: 0.5, lease_ms: 5000 }));
    await moth.reply('s2');
    assert.equal(dome.moving, true, 'the same session moves again with a fresh command');
  });

  it('stale and untimed motion commands never move anything', async (t) => {
    const { moth, dome, svc } = await mothSetup(t);
    await waitUntil(() => moth.live !== undefined, 'joined');
    // fresh commands teach the session's clock offset (the operator's clock is 1 h off: it does not matter)
    const skew = -3_600_000;
    for (let i = 1; i <= 3; i++) {
      moth.live!.send('REXTXCMD' + JSON.stringify({ req_id: `f${i}`, seq: i, ts: Date.now() + skew, target: 'ptz/dome', action: 'move', pan: 0.1 * i, lease_ms: 2000 }));
      assert.equal((await moth.reply(`f${i}`))!.ok, true);
    }
    moth.live!.send(cmd({ req_id: 'f4', seq: 4, target: 'ptz/dome', action: 'stop' }));
    await moth.reply('f4');
    const n = dome.log.length;
    // a burst released by a frozen link: sent 3 s ago
    moth.live!.send('REXTXCMD' + JSON.stringify({ req_id: 'old', seq: 5, ts: Date.now() + skew - 3000, target: 'ptz/dome', action: 'move', tilt: 1 }));
    const stale = (await moth.reply('old'))!;
    assert.equal(stale.error!.code, 'CONTROL_STALE_COMMAND');
    assert.doesNotMatch(stale.error!.message, /^CONTROL_STALE_COMMAND/, 'the message does not repeat the code');
    moth.live!.send('REXTXCMD' + JSON.stringify({ req_id: 'nots', seq: 6, target: 'ptz/dome', action: 'move', tilt: 1 }));
    assert.equal((await moth.reply('nots'))!.error!.code, 'CONTROL_NO_TIMESTAMP');
    assert.equal(dome.log.length, n, 'neither reached the camera');
    const p = svc.stats()['pang'] as Record<string, number>;
    assert.equal(p['staleDropped'], 1);
    assert.equal(p['untimedRefused'], 1);
  });
});

describe('upstream control through a black-holed path (the runtime\'s pang server as the relay)', () => {
  it('silent drop: devices stop < 1 s, dead path noticed ≤ 10 s, rejoined ≤ 2 s after the path returns, old commands dropped', async (t) => {
    // The relay: the runtime's own pang server (meb + ctl ping), on its own HTTP server.
    const engine = new Engine({ memoryCeilingBytes: 16 << 20, consumerQueueBytes: 1 << 20, gopCacheBytes: 1 << 20, trackLingerMs: 1000, instantChannelTtlMs: 60_000, maxInstantChannels: 8 });
    const http = new HttpServer({ host: '127.0.0.1', port: 0, maxConnections: 64 });
    const relay = new PangServer(engine, { maxMessageBytes: 1 << 20, log: silentLogger() });
    http.onUpgrade('/pang/ws', (req, socket, head) => relay.handleUpgrade(req, socket, head));
    const addr = await http.listen();
    const proxy = new BlackholeProxy(addr.port);
    await proxy.listen();
    const dome = new IsapiDeviceSim({ username: 'admin', password: 'pw' });
    await dome.start();
    const svc = new ControlService({ ptz: [new IsapiDriver({ name: 'dome', url: dome.url, username: 'admin', password: 'pw' })], log: silentLogger(), config: { leaseMs: 500 } });
    // shipped defaults: probe 2 s, dead after 8 s, network ladder 250 ms → 1 s, connect timeout 4 s
    svc.attachUpstream(controlConfigSchema.parse({ upstream: { url: `ws://127.0.0.1:${proxy.port}`, channel: 'instant', name: 'robot1' } }).upstream!);
    // The operator is on the relay directly (their own path is fine).
    const op = new WebSocket(`ws://127.0.0.1:${addr.port}/pang/ws/meb?channel=instant&name=robot1&track=control`);
    const replies: string[] = [];
    op.on('message', (d, bin) => !bin && replies.push(d.toString()));
    await new Promise<void>((r) => op.once('open', () => r()));
    t.after(async () => {
      op.terminate();
      await svc.close();
      await proxy.close();
      await relay.close();
      await http.close();
      engine.close();
      await dome.stop();
    });
    let seq = 0;
    const send = (o: Record<string, unknown>, ts = Date.now()) => {
      const id = `c${++seq}`;
      op.send('REXTXCMD' + JSON.stringify({ req_id: id, seq, ts, ...o }));
      return id;
    };
    const acked = (id: string) => replies.some((r) => r.includes(`"req_id":"${id}"`) && r.startsWith('REXTXACK'));
    await waitUntil(() => upstreamStats(svc)['connected'] === true, 'robot joined the relay', 5000);
    const first = send({ target: 'ptz/dome', action: 'move', pan: 0.5, lease_ms: 5000 });
    await waitUntil(() => acked(first), 'first move acked', 3000);
    assert.equal(dome.moving, true);

    // The robot's path goes silent; the operator keeps commanding (their moves pile up in the hole).
    const holeAt = Date.now();
    proxy.blackhole();
    const pump = setInterval(() => send({ target: 'ptz/dome', action: 'move', pan: 0.5, lease_ms: 5000 }), 250);
    t.after(() => clearInterval(pump));
    await waitUntil(() => !dome.moving, 'camera stopped while the path is silent', 3000);
    const stopMs = Date.now() - holeAt;
    assert.ok(stopMs < 1000, `stopped ${stopMs} ms after the path went silent`);
    await waitUntil(() => Number(upstreamStats(svc)['deadPaths']) >= 1, 'dead path noticed', 15_000);
    const deadMs = Date.now() - holeAt;
    assert.ok(deadMs <= 10_500, `dead path noticed after ${deadMs} ms`);
    assert.equal(upstreamStats(svc)['connected'], false);
    // stay down long enough for a reconnect attempt to time out in the hole
    await waitUntil(() => Number(upstreamStats(svc)['networkFailures']) >= 2, 'a reconnect attempt failed in the hole', 15_000);
    assert.equal(upstreamStats(svc)['refusals'], 0, 'a dead path is never a refusal');
    const sentBeforeRestore = seq;
    const moveCountBefore = dome.log.length;

    // The path returns.
    proxy.restore();
    const backAt = Date.now();
    const opensBefore = Number(upstreamStats(svc)['opens']);
    await waitUntil(() => Number(upstreamStats(svc)['opens']) > opensBefore, 'rejoined', 5000);
    const rejoinMs = Date.now() - backAt;
    assert.ok(rejoinMs <= 2000, `rejoined ${rejoinMs} ms after the path returned`);
    // The operator's next fresh command works again.
    await waitUntil(() => replies.some((r) => r.startsWith('REXTXACK') && Number(/"req_id":"c(\d+)"/.exec(r)?.[1]) > sentBeforeRestore), 'a fresh command acked after the return', 3000);
    clearInterval(pump);
    // Nothing sent into the hole moved the camera late: only fresh commands after the return did.
    const late = dome.log.slice(moveCountBefore).filter((e) => e.at < backAt);
    assert.equal(late.length, 0);
    process.stdout.write(`# black hole: stop ${stopMs} ms, dead path ${deadMs} ms, rejoin ${rejoinMs} ms after return\n`);
  });
});
