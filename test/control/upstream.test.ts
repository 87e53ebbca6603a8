// The upstream Moth meb client against a small Moth-like meb server (ws): it joins
// /pang/ws/meb?channel=…, executes REXTXCMD, answers REXTXACK/REXTXERR with the req_id, keeps alive
// with empty binary messages (the server never answers pings), stops what it moved when the link
// drops (close without a close frame, as Moth does), and reconnects with backoff, not in a loop.
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { WebSocketServer, type WebSocket } from 'ws';
import { silentLogger } from '../../runtime/log.js';
import { controlConfigSchema } from '../../runtime/control/config.js';
import { parseReply } from '../../runtime/control/command.js';
import { ControlService } from '../../runtime/control/service.js';
import { IsapiDriver } from '../../drivers/ptz/isapi.js';
import { IsapiDeviceSim } from '../sim/isapi-device.js';
import { waitUntil } from '../sim/serial-pty.js';

class MebServer {
  readonly wss: WebSocketServer;
  port = 0;
  conns: WebSocket[] = [];
  upgrades: string[] = [];
  texts: string[] = [];
  emptyBinaries = 0;
  pings = 0;
  refuse = false;
  constructor() {
    // Moth never answers pings: no auto-pong here either.
    this.wss = new WebSocketServer({ host: '127.0.0.1', port: 0, autoPong: false, verifyClient: (info: { req: IncomingMessage }) => {
      this.upgrades.push(info.req.url ?? '');
      return true;
    } });
    this.wss.on('connection', (ws, req) => {
      const u = new URL(req.url ?? '/', 'http://x');
      if (this.refuse || u.pathname !== '/pang/ws/meb' || u.searchParams.get('channel') !== 'instant' || u.searchParams.get('name') !== 'robot1' || u.searchParams.get('key') !== 'k3y-secret') {
        // Moth refuses by dropping TCP without a close frame.
        ws.terminate();
        return;
      }
      this.conns.push(ws);
      ws.on('ping', () => this.pings++);
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

async function setup(t: TestContext, opts: { refuse?: boolean; keepaliveMs?: number } = {}) {
  const meb = new MebServer();
  meb.refuse = opts.refuse ?? false;
  await meb.listening();
  const dome = new IsapiDeviceSim({ username: 'admin', password: 'pw-dome' });
  await dome.start();
  const svc = new ControlService({ ptz: [new IsapiDriver({ name: 'dome', url: dome.url, username: 'admin', password: 'pw-dome' })], log: silentLogger(), config: { leaseMs: 400 } });
  const cfg = controlConfigSchema.parse({
    upstream: { url: `ws://127.0.0.1:${meb.port}`, channel: 'instant', name: 'robot1', key: 'k3y-secret', reconnectInitialMs: 100, reconnectMaxMs: 800, keepaliveMs: opts.keepaliveMs ?? 20_000 },
  }).upstream!;
  svc.attachUpstream(cfg);
  t.after(async () => {
    await svc.close();
    await meb.close();
    await dome.stop();
  });
  return { meb, dome, svc };
}

describe('upstream meb control client', () => {
  it('joins the meb, executes REXTXCMD and answers REXTXACK/REXTXERR with the req_id', async (t) => {
    const { meb, dome, svc } = await setup(t);
    await waitUntil(() => meb.live !== undefined, 'joined');
    const url = new URL(meb.upgrades.at(-1)!, 'http://x');
    assert.equal(url.pathname, '/pang/ws/meb');
    assert.equal(url.searchParams.get('track'), 'control');
    meb.live!.send('REXTXCMD' + JSON.stringify({ req_id: 'u1', seq: 1, target: 'ptz/dome', action: 'move', pan: 0.3, lease_ms: 3000 }));
    const ack = await meb.reply('u1');
    assert.equal(ack!.ok, true);
    assert.equal(dome.log.at(-1)!.pan, 30);
    meb.live!.send('REXTXCMD' + JSON.stringify({ req_id: 'u2', seq: 2, target: 'ptz/nope', action: 'stop' }));
    const err = await meb.reply('u2');
    assert.equal(err!.ok, false);
    assert.equal(err!.error!.code, 'PTZ_UNKNOWN_CAMERA');
    // other meb traffic (other participants' acks, plain texts) is ignored
    meb.live!.send('REXTXACK{"req_id":"zz"}');
    meb.live!.send('hello');
    meb.live!.send('REXTXCMD' + JSON.stringify({ req_id: 'u3', seq: 3, target: 'ptz/dome', action: 'stop' }));
    await meb.reply('u3');
    assert.equal(meb.texts.filter((x) => x.includes('"zz"')).length, 0);
    const s = svc.stats()['upstream'] as Record<string, unknown>;
    assert.equal(s['connected'], true);
    assert.ok(!JSON.stringify(svc.stats()).includes('k3y-secret'), 'key never in stats');
  });

  it('link dropped without a close frame mid-move → the camera stops within 1 s; then it rejoins', async (t) => {
    const { meb, dome } = await setup(t);
    await waitUntil(() => meb.live !== undefined, 'joined');
    meb.live!.send('REXTXCMD' + JSON.stringify({ req_id: 'd1', seq: 1, target: 'ptz/dome', action: 'move', tilt: 1, lease_ms: 5000 }));
    await meb.reply('d1');
    assert.equal(dome.moving, true);
    const cutAt = Date.now();
    meb.live!.terminate();
    await waitUntil(() => !dome.moving, 'stopped after link loss', 1500);
    assert.ok(Date.now() - cutAt < 1000);
    await waitUntil(() => meb.conns.length >= 2 && meb.live !== undefined, 'rejoined', 3000);
    // a new session: sequence numbers start over
    meb.live!.send('REXTXCMD' + JSON.stringify({ req_id: 'd2', seq: 1, target: 'ptz/dome', action: 'status' }));
    assert.equal((await meb.reply('d2'))!.ok, true);
  });

  it('keeps alive with empty binary messages and never relies on pongs', async (t) => {
    const { meb, svc } = await setup(t, { keepaliveMs: 1000 });
    await waitUntil(() => meb.live !== undefined, 'joined');
    await waitUntil(() => meb.emptyBinaries >= 2, 'two keepalives', 4000);
    assert.equal((svc.stats()['upstream'] as Record<string, unknown>)['connected'], true, 'still connected without any pong');
    assert.equal((svc.stats()['upstream'] as Record<string, unknown>)['closes'], 0);
  });

  it('a refusing server is retried with backoff, not in a loop', async (t) => {
    const { meb, svc } = await setup(t, { refuse: true });
    await new Promise((r) => setTimeout(r, 1500));
    // 100, 200, 400, 800, 800… ms (jittered down to half) → between 3 and 12 attempts in 1.5 s
    assert.ok(meb.upgrades.length >= 2 && meb.upgrades.length <= 12, `${meb.upgrades.length} attempts`);
    const s = svc.stats()['upstream'] as Record<string, unknown>;
    assert.equal(s['connected'], false);
    assert.ok(!String(s['lastError']).includes('k3y-secret'));
  });
});
