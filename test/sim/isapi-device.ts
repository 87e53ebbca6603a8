// A Hikvision ISAPI PTZ simulator with real HTTP Digest auth (RFC 7616 qop=auth, MD5 by default):
// refuses Basic (and counts it), checks nc/cnonce/response, counts failed logins and locks the account
// after lockAfter failures (every request then gets 401 with lockStatus, even with the right password),
// parses the real PTZData XML, integrates position, keeps presets.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseAuthorization, verifyAuthorization, type DigestAlgorithm } from '../../drivers/ptz/digest.js';
import { buildPresetList, buildPtzStatus, buildResponseStatus, parsePresetXml, parsePtzData } from '../../drivers/ptz/isapi-xml.js';

export interface IsapiSimOptions {
  username: string;
  password: string;
  lockAfter?: number;
  algorithm?: DigestAlgorithm;
  /** Offer only Basic (a misconfigured or old device): the driver must refuse to send Basic. */
  basicOnly?: boolean;
}

export interface IsapiLogEntry {
  at: number;
  /** performance.now() at receipt, for latency measurements. */
  t: number;
  op: 'continuous' | 'goto' | 'set';
  pan?: number;
  tilt?: number;
  zoom?: number;
  id?: number;
}

const REALM = 'IP Camera(C1234)';

export class IsapiDeviceSim {
  private server: http.Server | null = null;
  port = 0;
  readonly log: IsapiLogEntry[] = [];
  failedLogins = 0;
  basicAttempts = 0;
  locked = false;
  requests = 0;
  /** azimuth 0..3600, elevation -900..900 (1/10°), zoom 10..320 (1/10×) */
  pos = { azimuth: 1800, elevation: 0, absoluteZoom: 10 };
  vel = { pan: 0, tilt: 0, zoom: 0 };
  presets = new Map<number, { name: string; pos: { azimuth: number; elevation: number; absoluteZoom: number } }>();
  private nonces = new Map<string, number>();
  private lastT = Date.now();

  constructor(readonly o: IsapiSimOptions) {}

  /** Listen on `port` (0 = ephemeral; pass the old port to bring a stopped device back). */
  async start(port = 0): Promise<void> {
    this.server = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((r) => this.server!.listen(port, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  private challenge(res: http.ServerResponse, stale = false): void {
    if (this.o.basicOnly) {
      res.writeHead(401, { 'WWW-Authenticate': `Basic realm="${REALM}"` });
      res.end();
      return;
    }
    const nonce = randomBytes(16).toString('hex');
    this.nonces.set(nonce, 0);
    if (this.nonces.size > 1000) this.nonces.delete(this.nonces.keys().next().value!);
    const alg = this.o.algorithm ?? 'MD5';
    res.writeHead(401, {
      'WWW-Authenticate': `Digest qop="auth", realm="${REALM}", nonce="${nonce}", algorithm=${alg}, stale="${stale ? 'TRUE' : 'FALSE'}"`,
      'Content-Type': 'application/xml',
    });
    res.end(
      this.locked
        ? `<?xml version="1.0" encoding="UTF-8"?><userCheck><statusValue>401</statusValue><statusString>Unauthorized</statusString><lockStatus>lock</lockStatus><unlockTime>1800</unlockTime></userCheck>`
        : buildResponseStatus(4, 'Invalid Operation', 'badAuthorization'),
    );
  }

  /** True when authorized; otherwise the 401 has been sent. */
  private authorize(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    const h = req.headers['authorization'];
    if (!h) {
      this.challenge(res);
      return false;
    }
    if (/^Basic\s/i.test(h)) {
      this.basicAttempts++;
      this.challenge(res);
      return false;
    }
    let a;
    try {
      a = parseAuthorization(h);
    } catch {
      this.challenge(res);
      return false;
    }
    const seen = this.nonces.get(a.nonce);
    if (seen === undefined) {
      // Unknown (expired) nonce: stale, not a failed login.
      this.challenge(res, true);
      return false;
    }
    const nc = parseInt(a.nc, 16);
    const ok =
      !this.locked &&
      a.username === this.o.username &&
      a.realm === REALM &&
      a.uri === req.url &&
      a.qop === 'auth' &&
      Number.isFinite(nc) &&
      nc > seen &&
      verifyAuthorization(a, this.o.password, req.method ?? 'GET');
    if (!ok) {
      this.failedLogins++;
      if (this.failedLogins >= (this.o.lockAfter ?? 5)) this.locked = true;
      this.challenge(res);
      return false;
    }
    this.nonces.set(a.nonce, nc);
    return true;
  }

  private integrate(): void {
    const now = Date.now();
    const dt = (now - this.lastT) / 1000;
    this.lastT = now;
    this.pos.azimuth = (((this.pos.azimuth + this.vel.pan * 6 * dt * 10) % 3600) + 3600) % 3600;
    this.pos.elevation = Math.max(-900, Math.min(900, this.pos.elevation + this.vel.tilt * 6 * dt * 10));
    this.pos.absoluteZoom = Math.max(10, Math.min(320, this.pos.absoluteZoom + this.vel.zoom * 0.2 * dt * 10));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size < 65536) chunks.push(c);
    });
    req.on('end', () => {
      this.requests++;
      if (!this.authorize(req, res)) return;
      this.integrate();
      const body = Buffer.concat(chunks).toString('utf8');
      const ok = () => {
        res.writeHead(200, { 'Content-Type': 'application/xml' });
        res.end(buildResponseStatus(1, 'OK', 'ok'));
      };
      const bad = (status: number, sub: string) => {
        res.writeHead(status, { 'Content-Type': 'application/xml' });
        res.end(buildResponseStatus(status === 404 ? 4 : 6, status === 404 ? 'Invalid Operation' : 'Invalid Content', sub));
      };
      const url = req.url ?? '';
      const m = /^\/ISAPI\/PTZCtrl\/channels\/(\d+)(\/.*)$/.exec(url);
      if (!m || m[1] !== '1') return bad(404, 'notSupport');
      const rest = m[2]!;
      const at = Date.now();
      const t = performance.now();
      try {
        if (req.method === 'PUT' && rest === '/continuous') {
          const d = parsePtzData(body);
          this.vel = { pan: d.pan / 100, tilt: d.tilt / 100, zoom: d.zoom / 100 };
          this.log.push({ at, t, op: 'continuous', pan: d.pan, tilt: d.tilt, zoom: d.zoom });
          return ok();
        }
        if (req.method === 'GET' && rest === '/presets') {
          res.writeHead(200, { 'Content-Type': 'application/xml' });
          res.end(buildPresetList([...this.presets].map(([id, p]) => ({ id, name: p.name }))));
          return;
        }
        const g = /^\/presets\/(\d+)\/goto$/.exec(rest);
        if (req.method === 'PUT' && g) {
          const p = this.presets.get(Number(g[1]));
          if (!p) return bad(400, 'presetNotExist');
          this.vel = { pan: 0, tilt: 0, zoom: 0 };
          this.pos = { ...p.pos };
          this.log.push({ at, t, op: 'goto', id: Number(g[1]) });
          return ok();
        }
        const s = /^\/presets\/(\d+)$/.exec(rest);
        if (req.method === 'PUT' && s) {
          const p = parsePresetXml(body);
          if (p.id !== Number(s[1])) return bad(400, 'badXmlContent');
          this.presets.set(p.id, { name: p.name, pos: { ...this.pos } });
          this.log.push({ at, t, op: 'set', id: p.id });
          return ok();
        }
        if (req.method === 'GET' && rest === '/status') {
          res.writeHead(200, { 'Content-Type': 'application/xml' });
          res.end(buildPtzStatus(this.pos));
          return;
        }
        return bad(404, 'notSupport');
      } catch {
        return bad(400, 'badXmlContent');
      }
    });
  }

  get moving(): boolean {
    return this.vel.pan !== 0 || this.vel.tilt !== 0 || this.vel.zoom !== 0;
  }
}
