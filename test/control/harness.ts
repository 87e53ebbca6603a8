// Test harness for the control surfaces: the real HttpServer + Router, the real local PangServer on
// an Engine, and a ControlService with a Pelco-D head and a line-protocol motor controller on socat
// ptys (bytes on a serial line, parsed by the simulators) plus an ISAPI camera simulator.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { WebSocket } from 'ws';
import { Engine } from '../../runtime/engine/engine.js';
import { HttpServer } from '../../runtime/http/server.js';
import { AccessGate } from '../../runtime/http/access.js';
import { PangServer } from '../../runtime/pang/server.js';
import { silentLogger } from '../../runtime/log.js';
import { registerControlRoutes } from '../../runtime/control/http.js';
import { createControlService, type ControlService } from '../../runtime/control/service.js';
import { IsapiDeviceSim } from '../sim/isapi-device.js';
import { LineMotorSim } from '../sim/motor-controller.js';
import { PelcoDHeadSim } from '../sim/pelco-d-head.js';
import { PtyCable, waitUntil } from '../sim/serial-pty.js';

export interface Harness {
  base: string;
  ws: string;
  control: ControlService;
  head: PelcoDHeadSim;
  motor: LineMotorSim;
  dome: IsapiDeviceSim;
  close(): Promise<void>;
}

export async function startHarness(opts: { leaseMs?: number; maxRatePerSec?: number; token?: string; bindIsLoopback?: boolean; extra?: Record<string, unknown> } = {}): Promise<Harness> {
  const dir = await mkdtemp(path.join(tmpdir(), 'control-'));
  const headCable = new PtyCable(path.join(dir, 'ptz'), path.join(dir, 'ptz-peer'));
  const motorCable = new PtyCable(path.join(dir, 'motor'), path.join(dir, 'motor-peer'));
  await headCable.start();
  await motorCable.start();
  const head = new PelcoDHeadSim(headCable.peer, 1);
  await head.open();
  const motor = new LineMotorSim(motorCable.peer, 115200, 1000);
  await motor.open();
  const dome = new IsapiDeviceSim({ username: 'admin', password: 'dome-Pa55' });
  await dome.start();
  const log = silentLogger();
  const control = createControlService(
    {
      leaseMs: opts.leaseMs ?? 500,
      maxRatePerSec: opts.maxRatePerSec ?? 50,
      ptz: [
        { kind: 'pelco-d', name: 'front', path: headCable.dev, baudRate: 9600, address: 1, presets: [{ id: '1', name: 'home' }] },
        { kind: 'isapi', name: 'dome', url: dome.url, username: 'admin', password: 'dome-Pa55' },
      ],
      motors: [{ kind: 'line', name: 'base', path: motorCable.dev, baudRate: 115200, keepaliveMs: 100 }],
      ...opts.extra,
    },
    log,
  );
  const engine = new Engine({
    memoryCeilingBytes: 16 * 1024 * 1024,
    consumerQueueBytes: 1024 * 1024,
    gopCacheBytes: 1024 * 1024,
    trackLingerMs: 1000,
    instantChannelTtlMs: 60_000,
    maxInstantChannels: 8,
  });
  const tokens = opts.token ? { control: opts.token, pang: opts.token, api: opts.token } : {};
  const access = new AccessGate({ bindIsLoopback: opts.bindIsLoopback ?? true, tokens });
  const http = new HttpServer({ host: '127.0.0.1', port: 0, maxConnections: 64, access });
  const pang = new PangServer(engine, { maxMessageBytes: 1024 * 1024, log, commands: control.pang, access });
  pang.registerRoutes(http.router);
  http.onUpgrade('/pang/ws', (req, socket, head) => pang.handleUpgrade(req, socket, head));
  registerControlRoutes(http.router, control);
  const addr = await http.listen();
  await waitUntil(() => (control.stats().drivers as Record<string, Record<string, unknown>>)['ptz/front']!['serialOpen'] === true, 'pelco-d open');
  await waitUntil(() => (control.stats().drivers as Record<string, Record<string, unknown>>)['motor/base']!['serialOpen'] === true, 'motor open');
  return {
    base: `http://127.0.0.1:${addr.port}`,
    ws: `ws://127.0.0.1:${addr.port}`,
    control,
    head,
    motor,
    dome,
    async close() {
      await control.close();
      await pang.close();
      await http.close();
      engine.close();
      await head.close();
      await motor.close();
      await dome.stop();
      await headCable.kill();
      await motorCable.kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export async function req(base: string, method: string, p: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(base + p, {
    method,
    headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

/** A WebSocket client that collects texts and can wait for a reply with a given req_id. */
export class WsClient {
  readonly texts: string[] = [];
  readonly ws: WebSocket;
  readonly opened: Promise<void>;
  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.on('message', (d, isBinary) => {
      if (!isBinary) this.texts.push(d.toString());
    });
    this.ws.on('error', () => {});
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
  }
  send(t: string): void {
    this.ws.send(t);
  }
  async reply(reqId: string, timeoutMs = 3000): Promise<string> {
    let found: string | undefined;
    await waitUntil(() => (found = this.texts.find((t) => t.includes(`"req_id":"${reqId}"`))) !== undefined, `reply to ${reqId}`, timeoutMs);
    return found!;
  }
  close(): void {
    this.ws.terminate();
  }
}
