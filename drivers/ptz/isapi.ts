// Hikvision ISAPI PTZ driver: the HTTP/XML "CGI" translation of the seed's PTZ API.
//   PUT  /ISAPI/PTZCtrl/channels/<ch>/continuous      <PTZData><pan/><tilt/><zoom/></PTZData>, -100..100
//   GET  /ISAPI/PTZCtrl/channels/<ch>/presets         PTZPresetList
//   PUT  /ISAPI/PTZCtrl/channels/<ch>/presets/<id>/goto
//   PUT  /ISAPI/PTZCtrl/channels/<ch>/presets/<id>    PTZPreset (set)
//   GET  /ISAPI/PTZCtrl/channels/<ch>/status          PTZStatus
// Auth is HTTP Digest only (digest.ts). Hikvision locks an account after a few failed logins, so
// every request goes through the device's one DeviceAuth (drivers/auth): single-flight login, at
// most 2 refusals over all requests together, then a long lock-out one operator action resets.
// Basic is never sent, even when the device offers only Basic. The link is down after a network
// failure and probed (no credentials) until the device answers again.

import http from 'node:http';
import { EdgeError, type DriverStats } from '../../runtime/engine/api.js';
import { DeviceAuth, authStats, type AuthOutcome } from '../auth/device-auth.js';
import { HttpLinkProbe, LinkMonitor, type LinkEvent, type LinkSnapshot } from '../link/link-state.js';
import { buildAuthorization, parseChallenge, type DigestChallenge } from './digest.js';
import { buildPreset, buildPtzData, parsePresetList, parsePtzStatus, parseResponseStatus } from './isapi-xml.js';
import { isZeroVelocity, type PtzCapabilities, type PtzDriver, type PtzPreset, type PtzStatus, type PtzVelocity } from './types.js';

const CODES = { failed: 'PTZ_AUTH_FAILED', locked: 'PTZ_AUTH_LOCKED' };

export interface IsapiOptions {
  name: string;
  /** http://host[:port] of the camera/NVR. */
  url: string;
  username: string;
  password: string;
  channel?: number;
  timeoutMs?: number;
  /** First lock-out after failed credentials; doubles per repeat up to 1 h. Default 10 min. */
  authLockoutMs?: number;
  /** The account's shared auth state (one per host+user: RTSP and ONVIF on the same camera share it). */
  auth?: DeviceAuth;
}

const MAX_BODY = 256 * 1024;

export class IsapiDriver implements PtzDriver {
  readonly kind = 'isapi' as const;
  readonly name: string;
  private readonly base: URL;
  private readonly channel: number;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  private challenge: DigestChallenge | null = null;
  private nc = 0;
  readonly auth: DeviceAuth;
  private readonly linkState = new LinkMonitor({ up: true });
  private readonly probe: HttpLinkProbe;
  private moving = false;
  private closed = false;
  private readonly c = { requests: 0, ok: 0, httpErrors: 0, authChallenges: 0, authFailures: 0, netErrors: 0 };
  private lastError: string | null = null;

  constructor(private readonly o: IsapiOptions) {
    this.name = o.name;
    this.base = new URL(o.url);
    if (this.base.protocol !== 'http:') throw new EdgeError('PTZ_BAD_CONFIG', 'ISAPI url must be http://host[:port]', { camera: o.name });
    this.channel = o.channel ?? 1;
    this.auth =
      o.auth ?? new DeviceAuth({ label: `ptz/${o.name}`, lockoutMs: o.authLockoutMs ?? 600_000, context: { camera: o.name, host: this.base.host, user: o.username } });
    this.probe = new HttpLinkProbe(this.linkState, {
      hostname: this.base.hostname,
      port: Number(this.base.port || 80),
      timeoutMs: o.timeoutMs ?? 3000,
    });
    this.probe.start();
  }

  capabilities(): PtzCapabilities {
    return { continuous: true, absolute: false, relative: false, zoom: true, presets: true, status: true };
  }

  linkStatus(): LinkSnapshot {
    return this.linkState.snapshot();
  }

  onLinkChange(cb: (e: LinkEvent) => void): void {
    this.linkState.on(cb);
  }

  private path(suffix: string): string {
    return `/ISAPI/PTZCtrl/channels/${this.channel}${suffix}`;
  }

  async move(v: PtzVelocity): Promise<void> {
    await this.expectOk('PUT', this.path('/continuous'), buildPtzData(v));
    this.moving = !isZeroVelocity(v);
  }

  async stop(): Promise<void> {
    await this.expectOk('PUT', this.path('/continuous'), buildPtzData({ pan: 0, tilt: 0, zoom: 0 }));
    this.moving = false;
  }

  private presetNumber(id: string): number {
    if (!/^\d{1,4}$/.test(id) || Number(id) < 1 || Number(id) > 1024) {
      throw new EdgeError('PTZ_BAD_PRESET', `ISAPI presets are 1..1024, got ${id.slice(0, 20)}`, { camera: this.name });
    }
    return Number(id);
  }

  async gotoPreset(id: string): Promise<void> {
    await this.expectOk('PUT', this.path(`/presets/${this.presetNumber(id)}/goto`), '');
    this.moving = false;
  }

  async setPreset(id: string, name?: string): Promise<void> {
    const n = this.presetNumber(id);
    await this.expectOk('PUT', this.path(`/presets/${n}`), buildPreset(n, name ?? `preset ${n}`));
  }

  async presets(): Promise<PtzPreset[]> {
    const r = await this.request('GET', this.path('/presets'));
    this.check(r);
    return parsePresetList(r.body);
  }

  async status(): Promise<PtzStatus> {
    try {
      const r = await this.request('GET', this.path('/status'));
      this.check(r);
      const s = parsePtzStatus(r.body);
      return {
        online: true,
        moving: this.moving,
        position: { pan: s.azimuth / 1800 - 1, tilt: s.elevation / 900, zoom: s.absoluteZoom },
        detail: { azimuth: s.azimuth, elevation: s.elevation, absoluteZoom: s.absoluteZoom },
      };
    } catch (e) {
      if (e instanceof EdgeError && e.code === 'PTZ_LINK_DOWN') return { online: false, moving: this.moving };
      throw e;
    }
  }

  stats(): DriverStats {
    return {
      kind: this.kind,
      ...this.c,
      online: this.linkState.up,
      linkLosses: this.linkState.snapshot().losses,
      linkProbes: this.probe.probes,
      ...authStats(this.auth),
      lastError: this.lastError,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.probe.close();
    if (this.moving && this.linkState.up) {
      await this.stop().catch(() => {});
    }
    this.closed = true;
    this.agent.destroy();
  }

  // ------------------------------------------------------------------------------------------

  private check(r: { status: number; body: string }): void {
    if (r.status >= 200 && r.status < 300) return;
    this.c.httpErrors++;
    let sub = '';
    try {
      sub = parseResponseStatus(r.body).subStatusCode;
    } catch {
      // not a ResponseStatus body
    }
    const code = r.status === 404 ? 'PTZ_NOT_SUPPORTED' : 'PTZ_DEVICE_ERROR';
    const err = new EdgeError(code, `ISAPI answered ${r.status}${sub ? ` (${sub})` : ''}`, { camera: this.name, status: r.status, sub });
    this.lastError = err.message;
    throw err;
  }

  private async expectOk(method: string, path: string, body: string): Promise<void> {
    const r = await this.request(method, path, body);
    this.check(r);
    if (r.body.trim()) {
      const s = parseResponseStatus(r.body);
      if (!s.ok) {
        throw new EdgeError('PTZ_DEVICE_ERROR', `ISAPI refused: ${s.statusString} (${s.subStatusCode})`, { camera: this.name, sub: s.subStatusCode });
      }
    }
  }

  /**
   * One ISAPI call with Digest auth, through the account's DeviceAuth. A refused login is tried
   * once more with the fresh challenge (some firmware answer an expired nonce without stale=true),
   * as long as the account has tries left; the second refusal locks it out here.
   */
  private async request(method: string, path: string, body?: string): Promise<{ status: number; body: string }> {
    if (this.closed) throw new EdgeError('PTZ_CLOSED', 'driver closed', { camera: this.name });
    let retried = false;
    for (;;) {
      try {
        return await this.auth.run(() => this.exchange(method, path, body), CODES);
      } catch (e) {
        if (e instanceof EdgeError && e.code === CODES.failed) {
          this.lastError = e.detail;
          if (!retried && this.auth.triesLeft() > 0) {
            retried = true;
            continue;
          }
        }
        throw e;
      }
    }
  }

  /** Challenge (not an attempt), credentials, a stale-nonce retry (not a failure): the device's verdict. */
  private async exchange(method: string, path: string, body?: string): Promise<AuthOutcome<{ status: number; body: string }>> {
    let staleRetries = 0;
    for (let round = 0; round < 4; round++) {
      const auth = this.challenge
        ? buildAuthorization(this.challenge, { username: this.o.username, password: this.o.password }, method, path, ++this.nc)
        : undefined;
      const r = await this.raw(method, path, body, auth);
      if (r.status !== 401) return { ok: true, value: r };
      this.c.authChallenges++;
      const ch = parseChallenge(r.wwwAuthenticate);
      this.challenge = ch;
      this.nc = 0;
      if (!auth) continue;
      if (ch.stale && staleRetries++ < 1) continue;
      this.c.authFailures++;
      return { ok: false, refused: true };
    }
    throw new EdgeError('PTZ_DEVICE_ERROR', 'ISAPI answered 401 to every round', { camera: this.name });
  }

  private raw(method: string, path: string, body: string | undefined, auth: string | undefined): Promise<{ status: number; body: string; wwwAuthenticate: string[] }> {
    this.c.requests++;
    return new Promise((resolve, reject) => {
      const headers: Record<string, string | number> = {};
      if (auth) headers['Authorization'] = auth;
      if (body !== undefined) {
        headers['Content-Type'] = 'application/xml';
        headers['Content-Length'] = Buffer.byteLength(body);
      }
      const req = http.request(
        { protocol: 'http:', hostname: this.base.hostname, port: this.base.port || 80, method, path, headers, agent: this.agent, timeout: this.o.timeoutMs ?? 3000 },
        (res) => {
          const chunks: Buffer[] = [];
          let len = 0;
          res.on('data', (c: Buffer) => {
            len += c.length;
            if (len > MAX_BODY) {
              res.destroy(new EdgeError('PTZ_DEVICE_ERROR', `response larger than ${MAX_BODY} bytes`));
              return;
            }
            chunks.push(c);
          });
          res.on('error', (e) => fail(e));
          res.on('end', () => {
            this.linkState.markUp(false);
            this.c.ok++;
            const raw = res.headers['www-authenticate'];
            const www: string[] = [];
            for (let i = 0; i < res.rawHeaders.length; i += 2) {
              if (res.rawHeaders[i]!.toLowerCase() === 'www-authenticate') www.push(res.rawHeaders[i + 1]!);
            }
            if (www.length === 0 && raw) www.push(String(raw));
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), wwwAuthenticate: www });
          });
        },
      );
      const fail = (e: Error) => {
        this.c.netErrors++;
        this.lastError = e.message.slice(0, 200);
        if (!(e instanceof EdgeError)) this.linkState.markDown(`ISAPI request failed: ${e.message.slice(0, 120)}`);
        reject(e instanceof EdgeError ? e : new EdgeError('PTZ_LINK_DOWN', `ISAPI request failed: ${e.message.slice(0, 120)}`, { camera: this.name, host: this.base.host }, { cause: e }));
      };
      req.on('timeout', () => req.destroy(new Error(`timeout after ${this.o.timeoutMs ?? 3000} ms`)));
      req.on('error', fail);
      req.end(body);
    });
  }
}
