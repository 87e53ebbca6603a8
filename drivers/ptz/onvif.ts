// ONVIF PTZ driver over the `onvif` package (SOAP, WS-UsernameToken PasswordDigest).
// Connect = unauthenticated GetSystemDateAndTime first (the package keeps the device's clock offset as
// `timeShift` and stamps every UsernameToken `Created` with device time, so a camera whose clock is
// hours off still accepts the token), then GetCapabilities (service addresses) and GetProfiles (the
// first profile with a PTZ configuration, or the configured token). Every authenticated call goes
// through the account's DeviceAuth (drivers/auth): single-flight login, at most 2 refusals over all
// calls together, then a long, growing lock-out (PTZ_AUTH_LOCKED) that one operator action resets —
// cameras lock accounts too. A network failure takes the link down; it is probed until the device
// answers again.

import type { Cam } from 'onvif';
import { EdgeError, type DriverStats } from '../../runtime/engine/api.js';
import { DeviceAuth, authStats, type AuthOutcome } from '../auth/device-auth.js';
import { HttpLinkProbe, LinkMonitor, type LinkEvent, type LinkSnapshot } from '../link/link-state.js';
import { PRESET_ID_RE, PRESET_NAME_RE, isZeroVelocity, type PtzCapabilities, type PtzDriver, type PtzPreset, type PtzStatus, type PtzVelocity } from './types.js';

export interface OnvifOptions {
  name: string;
  hostname: string;
  port?: number;
  username: string;
  password: string;
  /** Use this media profile; default: the first profile with a PTZ configuration. */
  profileToken?: string;
  timeoutMs?: number;
  /** First lock-out after failed credentials; doubles per repeat up to 1 h. Default 10 min. */
  authLockoutMs?: number;
  /** The account's shared auth state (one per host+user). */
  auth?: DeviceAuth;
}

const CODES = { failed: 'PTZ_AUTH_FAILED', locked: 'PTZ_AUTH_LOCKED' };
const AUTH_REFUSED = /not ?authori[sz]ed|authentication failed|sender not authorized/i;

interface ProfileLike {
  $?: { token?: string };
  PTZConfiguration?: unknown;
}

type Cb<T> = (err: Error | null, data?: T) => void;

export class OnvifDriver implements PtzDriver {
  readonly kind = 'onvif' as const;
  readonly name: string;
  private cam: Cam | null = null;
  private profileToken: string | null = null;
  private connecting: Promise<void> | null = null;
  readonly auth: DeviceAuth;
  private readonly linkState = new LinkMonitor({ up: true });
  private readonly probe: HttpLinkProbe;
  private moving = false;
  private closed = false;
  private readonly c = { connects: 0, connectFailures: 0, calls: 0, callFailures: 0, authFailures: 0 };
  private lastError: string | null = null;

  constructor(private readonly o: OnvifOptions) {
    this.name = o.name;
    this.auth =
      o.auth ?? new DeviceAuth({ label: `ptz/${o.name}`, lockoutMs: o.authLockoutMs ?? 600_000, context: { camera: o.name, host: o.hostname, user: o.username } });
    this.probe = new HttpLinkProbe(this.linkState, { hostname: o.hostname, port: o.port ?? 80, timeoutMs: o.timeoutMs ?? 5000 }, () => {
      // Back after a loss: reconnect (and re-measure the device clock) on the next call.
      this.cam = null;
      this.profileToken = null;
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

  /** The device's clock offset the package measured (ms), for stats and tests. */
  get timeShiftMs(): number | undefined {
    return this.cam?.timeShift;
  }

  /** One authenticated call (connecting first when needed) through the account's DeviceAuth. */
  private call<T>(what: string, fn: (cam: Cam, cb: Cb<T>) => void): Promise<T> {
    if (this.closed) return Promise.reject(new EdgeError('PTZ_CLOSED', 'driver closed', { camera: this.name }));
    return this.auth.run(async (): Promise<AuthOutcome<T>> => {
      try {
        await this.ensure();
        const value = await new Promise<T>((resolve, reject) => {
          this.c.calls++;
          fn(this.cam!, (err, data) => (err ? reject(err) : resolve(data as T)));
        });
        this.linkState.markUp(false);
        return { ok: true, value };
      } catch (e) {
        if (!(e instanceof EdgeError)) this.c.callFailures++;
        if (isRefusal(e)) {
          this.c.authFailures++;
          this.lastError = `${what}: device refused the credentials`;
          return { ok: false, refused: true };
        }
        throw e instanceof EdgeError ? e : this.mapError(e as Error, what);
      }
    }, CODES);
  }

  private mapError(err: Error, what: string): EdgeError {
    const msg = err.message ?? String(err);
    this.lastError = `${what}: ${msg.slice(0, 160)}`;
    if (/ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|timeout|socket hang up/i.test(msg)) {
      this.linkState.markDown(`${what}: ${msg.slice(0, 120)}`);
      // Reconnect (and re-measure the clock) on the next call.
      this.cam = null;
      this.profileToken = null;
      return new EdgeError('PTZ_LINK_DOWN', `${what}: ${msg.slice(0, 120)}`, { camera: this.name, host: this.o.hostname });
    }
    return new EdgeError('PTZ_DEVICE_ERROR', `${what}: ${msg.slice(0, 160)}`, { camera: this.name });
  }

  private ensure(): Promise<void> {
    if (this.cam && this.profileToken) return Promise.resolve();
    this.connecting ??= this.connect().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  /** Connect now (optional: every call connects on demand). */
  async connect(): Promise<void> {
    // Loaded on first use: ~11 MB of RSS that a robot without ONVIF heads never needs.
    const { Cam } = await import('onvif');
    const cam = new Cam({
      hostname: this.o.hostname,
      port: this.o.port ?? 80,
      username: this.o.username,
      password: this.o.password,
      timeout: this.o.timeoutMs ?? 5000,
      autoconnect: false,
      preserveAddress: true,
    } as ConstructorParameters<typeof Cam>[0]);
    cam.on('error', () => {});
    // Refusals stay raw (the caller's DeviceAuth counts them); network and device errors are typed.
    const step = <T>(what: string, fn: (cb: Cb<T>) => void) =>
      new Promise<T>((resolve, reject) => fn((err, data) => (err ? reject(isRefusal(err) ? err : this.mapError(err, what)) : resolve(data as T))));
    try {
      await step<Date>('GetSystemDateAndTime', (cb) => cam.getSystemDateAndTime(cb as never));
      await step('GetCapabilities', (cb) => cam.getCapabilities(cb as never));
      if (!cam.uri?.['ptz']) throw new EdgeError('PTZ_NOT_SUPPORTED', 'device has no PTZ service', { camera: this.name });
      const profiles = await step<ProfileLike[]>('GetProfiles', (cb) => cam.getProfiles(cb as never));
      const pick = this.o.profileToken
        ? profiles.find((p) => p.$?.token === this.o.profileToken)
        : profiles.find((p) => p.PTZConfiguration !== undefined);
      const token = pick?.$?.token;
      if (!token || !PRESET_ID_RE.test(token)) {
        throw new EdgeError('PTZ_NOT_SUPPORTED', this.o.profileToken ? `profile ${this.o.profileToken} not found` : 'no profile with a PTZ configuration', {
          camera: this.name,
        });
      }
      this.cam = cam;
      this.profileToken = token;
      this.linkState.markUp(false);
      this.c.connects++;
    } catch (e) {
      this.c.connectFailures++;
      if (e instanceof EdgeError) {
        this.lastError = e.message;
        throw e;
      }
      if (isRefusal(e)) throw e;
      throw this.mapError(e as Error, 'connect');
    }
  }

  async move(v: PtzVelocity): Promise<void> {
    if (isZeroVelocity(v)) return this.stop();
    await this.call('ContinuousMove', (cam, cb) =>
      cam.continuousMove({ profileToken: this.profileToken!, x: v.pan, y: v.tilt, zoom: v.zoom } as never, cb as never),
    );
    this.moving = true;
  }

  async stop(): Promise<void> {
    await this.call('Stop', (cam, cb) => cam.stop({ profileToken: this.profileToken!, panTilt: true, zoom: true } as never, cb as never));
    this.moving = false;
  }

  async gotoPreset(id: string): Promise<void> {
    if (!PRESET_ID_RE.test(id)) throw new EdgeError('PTZ_BAD_PRESET', 'bad preset token', { camera: this.name });
    await this.call('GotoPreset', (cam, cb) => cam.gotoPreset({ profileToken: this.profileToken!, preset: id } as never, cb as never));
    this.moving = false;
  }

  async setPreset(id: string, name?: string): Promise<void> {
    if (!PRESET_ID_RE.test(id)) throw new EdgeError('PTZ_BAD_PRESET', 'bad preset token', { camera: this.name });
    const presetName = name ?? `preset ${id}`;
    // The package puts the name into the SOAP body unescaped: only markup-free names pass.
    if (!PRESET_NAME_RE.test(presetName)) throw new EdgeError('PTZ_BAD_PRESET', 'bad preset name', { camera: this.name });
    await this.call('SetPreset', (cam, cb) =>
      cam.setPreset({ profileToken: this.profileToken!, presetName, presetToken: id } as never, cb as never),
    );
  }

  async presets(): Promise<PtzPreset[]> {
    const r = await this.call<Record<string, { $?: { token?: string }; name?: string }>>('GetPresets', (cam, cb) =>
      cam.getPresets({ profileToken: this.profileToken! }, cb as never),
    );
    return Object.values(r ?? {})
      .filter((p) => p.$?.token !== undefined)
      .map((p) => ({ id: String(p.$!.token), name: String(p.name ?? '') }));
  }

  async status(): Promise<PtzStatus> {
    try {
      const s = await this.call<{ position: { x: unknown; y: unknown; zoom: unknown }; moveStatus?: unknown }>('GetStatus', (cam, cb) =>
        cam.getStatus({ profileToken: this.profileToken! }, cb as never),
      );
      const n = (x: unknown) => (typeof x === 'number' ? x : Number(x ?? 0)) || 0;
      const ms = s.moveStatus as { panTilt?: unknown; zoom?: unknown } | string | undefined;
      const detail: Record<string, string | number | boolean> = {};
      if (ms && typeof ms === 'object') {
        if (typeof ms.panTilt === 'string') detail['panTiltStatus'] = ms.panTilt;
        if (typeof ms.zoom === 'string') detail['zoomStatus'] = ms.zoom;
      }
      if (this.cam?.timeShift !== undefined) detail['clockOffsetMs'] = Math.round(this.cam.timeShift - (Date.now() - process.uptime() * 1000));
      return { online: true, moving: this.moving, position: { pan: n(s.position.x), tilt: n(s.position.y), zoom: n(s.position.zoom) }, detail };
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
      profileToken: this.profileToken,
      ...authStats(this.auth),
      lastError: this.lastError,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.probe.close();
    if (this.moving && this.cam) await this.stop().catch(() => {});
    this.closed = true;
    this.cam?.removeAllListeners();
    this.cam = null;
  }
}

function isRefusal(e: unknown): boolean {
  return e instanceof Error && !(e instanceof EdgeError) && AUTH_REFUSED.test(e.message ?? '');
}
