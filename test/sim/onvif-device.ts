// An ONVIF PTZ camera simulator: SOAP 1.2 over HTTP, spoken well enough for the real `onvif` package.
// - Device service: GetSystemDateAndTime (unauthenticated, per ONVIF core spec), GetCapabilities.
// - Media service: GetProfiles (one profile with a PTZ configuration, one without).
// - PTZ service: ContinuousMove, Stop, GetPresets, SetPreset, GotoPreset, GetStatus.
// - WS-UsernameToken PasswordDigest checked on everything else: Base64(SHA1(nonce + created +
//   password)), Created within ±5 s of the *device* clock (which may be skewed), nonces not reusable.
//   A refusal is the spec's SOAP fault ter:NotAuthorized ("Sender not Authorized").
// - Position integrates velocity over time.
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface OnvifSimOptions {
  username: string;
  password: string;
  /** Device clock = real clock + skewMs. */
  skewMs?: number;
}

export interface OnvifLogEntry {
  at: number;
  op: string;
  pan?: number;
  tilt?: number;
  zoom?: number;
  token?: string;
}

const NS =
  'xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope" xmlns:tt="http://www.onvif.org/ver10/schema" ' +
  'xmlns:tds="http://www.onvif.org/ver10/device/wsdl" xmlns:trt="http://www.onvif.org/ver10/media/wsdl" ' +
  'xmlns:tptz="http://www.onvif.org/ver20/ptz/wsdl" xmlns:ter="http://www.onvif.org/ver10/error"';

function envelope(body: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?><SOAP-ENV:Envelope ${NS}><SOAP-ENV:Body>${body}</SOAP-ENV:Body></SOAP-ENV:Envelope>`;
}

function fault(sub: string, reason: string): string {
  return envelope(
    `<SOAP-ENV:Fault><SOAP-ENV:Code><SOAP-ENV:Value>SOAP-ENV:Sender</SOAP-ENV:Value><SOAP-ENV:Subcode><SOAP-ENV:Value>${sub}</SOAP-ENV:Value></SOAP-ENV:Subcode></SOAP-ENV:Code>` +
      `<SOAP-ENV:Reason><SOAP-ENV:Text xml:lang="en">${reason}</SOAP-ENV:Text></SOAP-ENV:Reason></SOAP-ENV:Fault>`,
  );
}

export class OnvifDeviceSim {
  private server: http.Server | null = null;
  port = 0;
  readonly log: OnvifLogEntry[] = [];
  authFailures = 0;
  requests = 0;
  pos = { pan: 0, tilt: 0, zoom: 0 };
  vel = { pan: 0, tilt: 0, zoom: 0 };
  presets = new Map<string, { name: string; pos: { pan: number; tilt: number; zoom: number } }>([['1', { name: 'home', pos: { pan: 0, tilt: 0, zoom: 0 } }]]);
  private lastT = Date.now();
  private nonces = new Set<string>();
  private nextPreset = 2;
  /** When false, every request (but GetSystemDateAndTime) gets no answer: a dead network. */
  reachable = true;

  constructor(readonly o: OnvifSimOptions) {}

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }

  deviceNow(): number {
    return Date.now() + (this.o.skewMs ?? 0);
  }

  private integrate(): void {
    const now = Date.now();
    const dt = (now - this.lastT) / 1000;
    this.lastT = now;
    const c = (x: number, lo: number) => Math.max(lo, Math.min(1, x));
    this.pos = {
      pan: c(this.pos.pan + this.vel.pan * 0.5 * dt, -1),
      tilt: c(this.pos.tilt + this.vel.tilt * 0.5 * dt, -1),
      zoom: c(this.pos.zoom + this.vel.zoom * 0.5 * dt, 0),
    };
  }

  private checkAuth(xml: string): boolean {
    const user = /<(?:\w+:)?Username>([^<]*)</.exec(xml)?.[1];
    const pass = /<(?:\w+:)?Password[^>]*>([^<]*)</.exec(xml)?.[1];
    const nonce = /<(?:\w+:)?Nonce[^>]*>([^<]*)</.exec(xml)?.[1];
    const created = /<(?:\w+:)?Created[^>]*>([^<]*)</.exec(xml)?.[1];
    if (!user || !pass || !nonce || !created) return false;
    if (user !== this.o.username) return false;
    const t = Date.parse(created);
    if (!Number.isFinite(t) || Math.abs(t - this.deviceNow()) > 5000) return false;
    if (this.nonces.has(nonce)) return false;
    const digest = createHash('sha1')
      .update(Buffer.concat([Buffer.from(nonce, 'base64'), Buffer.from(created, 'ascii'), Buffer.from(this.o.password, 'ascii')]))
      .digest('base64');
    if (digest !== pass) return false;
    this.nonces.add(nonce);
    if (this.nonces.size > 10_000) this.nonces.clear();
    return true;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      this.requests++;
      const xml = Buffer.concat(chunks).toString('utf8');
      const op = /<(?:\w+:)?Body[^>]*>\s*<(?:\w+:)?(\w+)/.exec(xml)?.[1] ?? '';
      const send = (status: number, body: string) => {
        res.writeHead(status, { 'Content-Type': 'application/soap+xml; charset=utf-8' });
        res.end(body);
      };
      if (op === 'GetSystemDateAndTime') {
        const d = new Date(this.deviceNow());
        send(
          200,
          envelope(
            `<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime><tt:DateTimeType>Manual</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings>` +
              `<tt:TimeZone><tt:TZ>UTC0</tt:TZ></tt:TimeZone><tt:UTCDateTime><tt:Time><tt:Hour>${d.getUTCHours()}</tt:Hour><tt:Minute>${d.getUTCMinutes()}</tt:Minute><tt:Second>${d.getUTCSeconds()}</tt:Second></tt:Time>` +
              `<tt:Date><tt:Year>${d.getUTCFullYear()}</tt:Year><tt:Month>${d.getUTCMonth() + 1}</tt:Month><tt:Day>${d.getUTCDate()}</tt:Day></tt:Date></tt:UTCDateTime>` +
              `</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>`,
          ),
        );
        return;
      }
      if (!this.reachable) {
        req.socket.destroy();
        return;
      }
      if (!this.checkAuth(xml)) {
        this.authFailures++;
        send(400, fault('ter:NotAuthorized', 'Sender not Authorized'));
        return;
      }
      const base = `http://127.0.0.1:${this.port}`;
      this.integrate();
      const at = Date.now();
      switch (op) {
        case 'GetCapabilities':
          send(
            200,
            envelope(
              `<tds:GetCapabilitiesResponse><tds:Capabilities><tt:Device><tt:XAddr>${base}/onvif/device_service</tt:XAddr></tt:Device>` +
                `<tt:Media><tt:XAddr>${base}/onvif/media_service</tt:XAddr></tt:Media><tt:PTZ><tt:XAddr>${base}/onvif/ptz_service</tt:XAddr></tt:PTZ>` +
                `</tds:Capabilities></tds:GetCapabilitiesResponse>`,
            ),
          );
          return;
        case 'GetProfiles':
          send(
            200,
            envelope(
              `<trt:GetProfilesResponse>` +
                `<trt:Profiles token="sub" fixed="true"><tt:Name>sub</tt:Name></trt:Profiles>` +
                `<trt:Profiles token="main" fixed="true"><tt:Name>main</tt:Name>` +
                `<tt:PTZConfiguration token="ptz0"><tt:Name>ptz</tt:Name><tt:UseCount>1</tt:UseCount><tt:NodeToken>node0</tt:NodeToken></tt:PTZConfiguration>` +
                `</trt:Profiles></trt:GetProfilesResponse>`,
            ),
          );
          return;
        case 'ContinuousMove': {
          if (!/<(?:\w+:)?ProfileToken>main</.test(xml)) {
            send(400, fault('ter:NoProfile', 'No such profile'));
            return;
          }
          const pt = /<(?:\w+:)?PanTilt[^>]*\bx="([^"]+)"[^>]*\by="([^"]+)"/.exec(xml);
          const z = /<(?:\w+:)?Zoom[^>]*\bx="([^"]+)"/.exec(xml);
          const v = { pan: pt ? Number(pt[1]) : 0, tilt: pt ? Number(pt[2]) : 0, zoom: z ? Number(z[1]) : 0 };
          if (![v.pan, v.tilt, v.zoom].every((x) => Number.isFinite(x) && x >= -1 && x <= 1)) {
            send(400, fault('ter:InvalidArgVal', 'Velocity out of range'));
            return;
          }
          this.vel = v;
          this.log.push({ at, op: 'ContinuousMove', ...v });
          send(200, envelope('<tptz:ContinuousMoveResponse/>'));
          return;
        }
        case 'Stop':
          this.vel = { pan: 0, tilt: 0, zoom: 0 };
          this.log.push({ at, op: 'Stop' });
          send(200, envelope('<tptz:StopResponse/>'));
          return;
        case 'GetPresets':
          send(
            200,
            envelope(
              `<tptz:GetPresetsResponse>` +
                [...this.presets].map(([t, p]) => `<tptz:Preset token="${t}"><tt:Name>${p.name}</tt:Name></tptz:Preset>`).join('') +
                `</tptz:GetPresetsResponse>`,
            ),
          );
          return;
        case 'SetPreset': {
          const name = /<(?:\w+:)?PresetName>([^<]*)</.exec(xml)?.[1] ?? '';
          const token = /<(?:\w+:)?PresetToken>([^<]*)</.exec(xml)?.[1] ?? String(this.nextPreset++);
          this.presets.set(token, { name, pos: { ...this.pos } });
          this.log.push({ at, op: 'SetPreset', token });
          send(200, envelope(`<tptz:SetPresetResponse><tptz:PresetToken>${token}</tptz:PresetToken></tptz:SetPresetResponse>`));
          return;
        }
        case 'GotoPreset': {
          const token = /<(?:\w+:)?PresetToken>([^<]*)</.exec(xml)?.[1] ?? '';
          const p = this.presets.get(token);
          if (!p) {
            send(400, fault('ter:NoToken', 'No such preset'));
            return;
          }
          this.vel = { pan: 0, tilt: 0, zoom: 0 };
          this.pos = { ...p.pos };
          this.log.push({ at, op: 'GotoPreset', token });
          send(200, envelope('<tptz:GotoPresetResponse/>'));
          return;
        }
        case 'GetStatus': {
          const moving = this.vel.pan !== 0 || this.vel.tilt !== 0;
          send(
            200,
            envelope(
              `<tptz:GetStatusResponse><tptz:PTZStatus><tt:Position><tt:PanTilt x="${this.pos.pan.toFixed(4)}" y="${this.pos.tilt.toFixed(4)}"/>` +
                `<tt:Zoom x="${this.pos.zoom.toFixed(4)}"/></tt:Position><tt:MoveStatus><tt:PanTilt>${moving ? 'MOVING' : 'IDLE'}</tt:PanTilt>` +
                `<tt:Zoom>${this.vel.zoom !== 0 ? 'MOVING' : 'IDLE'}</tt:Zoom></tt:MoveStatus><tt:UtcTime>${new Date(this.deviceNow()).toISOString().replace(/\.\d+Z$/, 'Z')}</tt:UtcTime>` +
                `</tptz:PTZStatus></tptz:GetStatusResponse>`,
            ),
          );
          return;
        }
        default:
          send(400, fault('ter:ActionNotSupported', `Action ${op} not supported`));
      }
    });
  }

  get moving(): boolean {
    return this.vel.pan !== 0 || this.vel.tilt !== 0 || this.vel.zoom !== 0;
  }
}
