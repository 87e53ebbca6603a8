// The control component: builds PTZ/motor drivers from config (one visible switch per family),
// puts them behind the ControlRouter, attaches joysticks, the pang adapter and the upstream meb
// client. Owned by the app: stats() and an idempotent close() that stops everything moving first.

import { EdgeError } from '../engine/api.js';
import { ThrottledLog, type Logger } from '../log.js';
import { DeviceAuthRegistry } from '../../drivers/auth/device-auth.js';
import { IsapiDriver } from '../../drivers/ptz/isapi.js';
import { OnvifDriver } from '../../drivers/ptz/onvif.js';
import { PelcoDDriver } from '../../drivers/ptz/pelco-d-driver.js';
import type { PtzDriver, PtzVelocity } from '../../drivers/ptz/types.js';
import { LineMotorDriver, SabertoothDriver } from '../../drivers/motor/serial-motor.js';
import type { MotorDriver, MotorSpeeds } from '../../drivers/motor/types.js';
import { JoystickInput, JoystickMapper } from '../../drivers/input/joystick.js';
import { controlConfigSchema, type ControlConfig, type JoystickConfig, type MotorDeviceConfig, type PtzDeviceConfig } from './config.js';
import { ControlRouter, type CommandSource, type MotionResult, type RouterEvent } from './router.js';
import type { ControlCommand } from './command.js';
import { PangControlAdapter } from './pang.js';
import { UpstreamControlClient } from './upstream.js';

/**
 * Build a PTZ driver. `accounts` shares one auth state per (host, user): a camera's ISAPI and ONVIF
 * services (and its RTSP stream) log into the same account, which locks as one.
 */
export function createPtzDriver(c: PtzDeviceConfig, accounts = new DeviceAuthRegistry()): PtzDriver {
  switch (c.kind) {
    case 'onvif':
      return new OnvifDriver({
        // One account per device (host + user), whatever the port: its RTSP and ISAPI use it too.
        auth: accounts.get(c.host, c.username, {
          label: `ptz/${c.name}`,
          lockoutMs: c.authLockoutMs,
          context: { camera: c.name, host: c.host, user: c.username },
        }),
        name: c.name,
        hostname: c.host,
        port: c.port,
        username: c.username,
        password: c.password,
        profileToken: c.profileToken,
        timeoutMs: c.timeoutMs,
        authLockoutMs: c.authLockoutMs,
      });
    case 'isapi':
      return new IsapiDriver({
        auth: accounts.get(new URL(c.url).hostname, c.username, {
          label: `ptz/${c.name}`,
          lockoutMs: c.authLockoutMs,
          context: { camera: c.name, host: new URL(c.url).host, user: c.username },
        }),
        name: c.name,
        url: c.url,
        username: c.username,
        password: c.password,
        channel: c.channel,
        timeoutMs: c.timeoutMs,
        authLockoutMs: c.authLockoutMs,
      });
    case 'pelco-d':
      return new PelcoDDriver({ name: c.name, path: c.path, baudRate: c.baudRate, address: c.address, queryPosition: c.queryPosition, presets: c.presets });
  }
}

export function createMotorDriver(c: MotorDeviceConfig): MotorDriver {
  switch (c.kind) {
    case 'sabertooth':
      return new SabertoothDriver({ name: c.name, path: c.path, baudRate: c.baudRate, address: c.address, deviceTimeoutMs: c.deviceTimeoutMs, keepaliveMs: c.keepaliveMs });
    case 'line':
      return new LineMotorDriver({
        name: c.name,
        path: c.path,
        baudRate: c.baudRate,
        template: c.template,
        scale: c.scale,
        statusCommand: c.statusCommand,
        ackTimeoutMs: c.ackTimeoutMs,
        keepaliveMs: c.keepaliveMs,
      });
  }
}

export interface ControlServiceParts {
  ptz?: PtzDriver[];
  motors?: MotorDriver[];
  config?: Partial<ControlConfig>;
  log: Logger;
}

export class ControlService {
  readonly router: ControlRouter;
  readonly pang: PangControlAdapter;
  readonly config: ControlConfig;
  private readonly ptzDrivers = new Map<string, PtzDriver>();
  private readonly motorDrivers = new Map<string, MotorDriver>();
  private readonly joysticks: JoystickControl[] = [];
  private upstream: UpstreamControlClient | null = null;
  private closing: Promise<void> | null = null;
  private readonly log: Logger;
  /** Counters of the surfaces built around the service (the HTTP routes), by name. */
  private readonly extraStats = new Map<string, () => Record<string, unknown>>();

  constructor(parts: ControlServiceParts) {
    this.config = controlConfigSchema.parse({ ...parts.config, ptz: [], motors: [], joysticks: [], upstream: undefined });
    this.log = parts.log;
    this.router = new ControlRouter({
      priorities: this.config.priorities,
      leaseMs: this.config.leaseMs,
      maxLeaseMs: this.config.maxLeaseMs,
      maxRatePerSec: this.config.maxRatePerSec,
    });
    for (const d of parts.ptz ?? []) this.addPtz(d);
    for (const m of parts.motors ?? []) this.addMotor(m);
    // Dead-man stops are routine (a click-to-nudge client lets every lease run out) and device errors
    // repeat while a link is down: both are logged at most once a minute per device, with a count.
    // A device's own link loss and return are logged every time, never throttled: one line per loss.
    const throttled = new ThrottledLog(this.log, 60_000);
    const lostAt = new Map<string, number>();
    this.router.on((e: RouterEvent) => {
      if (e.type === 'deadman' || e.type === 'link-drop') throttled.warn(`${e.type}:${e.device}`, `control: ${e.type} stop of ${e.device}`, { device: e.device });
      else if (e.type === 'error') throttled.error(`error:${e.device}`, `control: ${e.device} failed: ${e.detail ?? ''}`, { device: e.device });
      else if (e.type === 'link-lost') {
        lostAt.set(e.device, e.at);
        this.log.warn({ device: e.device, reason: e.detail }, `control: ${e.device} link lost: ${e.detail ?? ''}; commands get 503 LINK_DOWN until it is back`);
      } else if (e.type === 'link-back') {
        const since = lostAt.get(e.device);
        lostAt.delete(e.device);
        this.log.info({ device: e.device, downMs: since === undefined ? null : e.at - since }, `control: ${e.device} link ${since === undefined ? 'up' : 'back'}`);
      }
    });
    this.pang = new PangControlAdapter(this, {
      maxCommandBytes: this.config.maxBodyBytes,
      commandTtlMs: this.config.commandTtlMs,
      requireCommandTime: this.config.requireCommandTime,
    });
  }

  addPtz(d: PtzDriver): void {
    const id = `ptz/${d.name}`;
    this.ptzDrivers.set(d.name, d);
    this.router.add({
      id,
      sendMotion: (v) => d.move({ pan: v['pan'] ?? 0, tilt: v['tilt'] ?? 0, zoom: v['zoom'] ?? 0 }),
      sendStop: () => d.stop(),
      linkStatus: () => d.linkStatus(),
      onLinkChange: (cb) => d.onLinkChange(cb),
    });
  }

  addMotor(m: MotorDriver): void {
    const id = `motor/${m.name}`;
    this.motorDrivers.set(m.name, m);
    this.router.add({
      id,
      sendMotion: (v) => m.drive({ left: v['left'] ?? 0, right: v['right'] ?? 0 }),
      sendStop: () => m.stop(),
      linkStatus: () => m.linkStatus(),
      onLinkChange: (cb) => m.onLinkChange(cb),
    });
  }

  attachJoystick(c: JoystickConfig): void {
    const j = new JoystickControl(this, c, this.log);
    this.joysticks.push(j);
    j.start();
  }

  attachUpstream(c: NonNullable<ControlConfig['upstream']>): void {
    this.upstream = new UpstreamControlClient(c, this.pang, this.log, { silenceStopMs: this.config.silenceStopMs });
    this.upstream.start();
  }

  /** The control upstream's link (for /healthz and the dashboard); null when none is configured. */
  upstreamStatus(): { connected: boolean; reason: string | null } | null {
    return this.upstream ? this.upstream.status() : null;
  }

  // ---- the operations every surface uses -------------------------------------------------

  private ptzDriver(camera: string): PtzDriver {
    const d = this.ptzDrivers.get(camera);
    if (!d) throw new EdgeError('PTZ_UNKNOWN_CAMERA', `no camera ${camera.slice(0, 64)}`, { camera: camera.slice(0, 64) });
    return d;
  }

  private motorDriver(motor: string): MotorDriver {
    const d = this.motorDrivers.get(motor);
    if (!d) throw new EdgeError('MOTOR_UNKNOWN', `no motor ${motor.slice(0, 64)}`, { motor: motor.slice(0, 64) });
    return d;
  }

  cameras(): Array<{ id: string; kind: string; capabilities: ReturnType<PtzDriver['capabilities']>; holder: string | null; link: DeviceLink }> {
    return [...this.ptzDrivers.values()].map((d) => ({
      id: d.name,
      kind: d.kind,
      capabilities: d.capabilities(),
      holder: this.router.holder(`ptz/${d.name}`)?.kind ?? null,
      link: deviceLink(d),
    }));
  }

  motorList(): Array<{ id: string; kind: string; holder: string | null; link: DeviceLink }> {
    return [...this.motorDrivers.values()].map((m) => ({ id: m.name, kind: m.kind, holder: this.router.holder(`motor/${m.name}`)?.kind ?? null, link: deviceLink(m) }));
  }

  /** Every actuator's health for /healthz: link up and credentials not locked out. */
  health(): Array<{ name: string; up: boolean; reason: string | null }> {
    const all: Array<[string, PtzDriver | MotorDriver]> = [
      ...[...this.ptzDrivers.values()].map((d): [string, PtzDriver] => [`ptz/${d.name}`, d]),
      ...[...this.motorDrivers.values()].map((m): [string, MotorDriver] => [`motor/${m.name}`, m]),
    ];
    return all.map(([name, d]) => {
      const l = deviceLink(d);
      if (!l.up) return { name, up: false, reason: l.reason };
      if (l.auth === 'locked') return { name, up: false, reason: 'credentials refused: locked out (POST /ptz/<camera>/auth/reset)' };
      return { name, up: true, reason: null };
    });
  }

  /** The operator's reset of a camera's credential lock-out (POST /ptz/<camera>/auth/reset). */
  ptzAuthReset(camera: string): { auth: string } {
    const d = this.ptzDriver(camera);
    const auth = (d as { auth?: { reset(): void; stats(): { state: string } } }).auth;
    if (!auth) throw new EdgeError('PTZ_NOT_SUPPORTED', `${camera} (${d.kind}) has no credentials`, { camera });
    auth.reset();
    this.log.warn({ camera }, `control: credential lock-out of ptz/${camera} reset by the operator; 2 attempts allowed`);
    return { auth: auth.stats().state };
  }

  async ptzMove(camera: string, src: CommandSource, v: PtzVelocity, leaseMs?: number): Promise<MotionResult> {
    this.ptzDriver(camera);
    return this.router.move(`ptz/${camera}`, src, { pan: v.pan, tilt: v.tilt, zoom: v.zoom }, leaseMs);
  }

  async ptzStop(camera: string, src: CommandSource): Promise<void> {
    this.ptzDriver(camera);
    return this.router.stop(`ptz/${camera}`, src);
  }

  async ptzStatus(camera: string): Promise<Record<string, unknown>> {
    const d = this.ptzDriver(camera);
    const link = deviceLink(d);
    // While the link is down the status says so (200), without waiting on the device; "moving" is
    // what the router last knew (a head cut off mid-move may still be moving).
    const s = link.up ? await d.status() : { online: false, moving: this.router.stats()[`ptz/${camera}`]?.moving ?? true };
    const h = this.router.holder(`ptz/${camera}`);
    return { camera, kind: d.kind, ...s, link, holder: h ? { source: h.kind, remainingMs: h.remainingMs } : null };
  }

  async ptzPresets(camera: string): Promise<Array<{ id: string; name: string }>> {
    const d = this.ptzDriver(camera);
    const link = d.linkStatus();
    if (!link.up) throw new EdgeError('LINK_DOWN', `ptz/${camera}: link down${link.reason ? ` (${link.reason.slice(0, 160)})` : ''}`, { device: `ptz/${camera}` });
    return d.presets();
  }

  async ptzGotoPreset(camera: string, src: CommandSource, id: string): Promise<void> {
    const d = this.ptzDriver(camera);
    await this.router.operate(`ptz/${camera}`, src, true, () => d.gotoPreset(id));
  }

  async ptzSetPreset(camera: string, src: CommandSource, id: string, name?: string): Promise<void> {
    const d = this.ptzDriver(camera);
    await this.router.operate(`ptz/${camera}`, src, false, () => d.setPreset(id, name));
  }

  async motorDrive(motor: string, src: CommandSource, s: MotorSpeeds, leaseMs?: number): Promise<MotionResult> {
    this.motorDriver(motor);
    return this.router.move(`motor/${motor}`, src, { left: s.left, right: s.right }, leaseMs);
  }

  async motorStop(motor: string, src: CommandSource): Promise<void> {
    this.motorDriver(motor);
    return this.router.stop(`motor/${motor}`, src);
  }

  async motorStatus(motor: string): Promise<Record<string, unknown>> {
    const m = this.motorDriver(motor);
    const s = await m.status();
    const h = this.router.holder(`motor/${motor}`);
    return { motor, kind: m.kind, ...s, link: deviceLink(m), holder: h ? { source: h.kind, remainingMs: h.remainingMs } : null };
  }

  /** Run one parsed remote command (pang ctl/meb, upstream). */
  async execute(c: ControlCommand, src: CommandSource): Promise<unknown> {
    if (c.action === 'list') return { cameras: this.cameras(), motors: this.motorList() };
    const dev = c.device!;
    if (c.kind === 'ptz') {
      switch (c.action) {
        case 'move':
          return { result: await this.ptzMove(dev, src, { pan: c.pan ?? 0, tilt: c.tilt ?? 0, zoom: c.zoom ?? 0 }, c.lease_ms) };
        case 'stop':
          await this.ptzStop(dev, src);
          return { result: 'stopped' };
        case 'goto_preset':
          await this.ptzGotoPreset(dev, src, c.preset!);
          return { result: 'sent' };
        case 'set_preset':
          await this.ptzSetPreset(dev, src, c.preset!, c.name);
          return { result: 'sent' };
        case 'status':
          return this.ptzStatus(dev);
        case 'presets':
          return { presets: await this.ptzPresets(dev) };
      }
    } else {
      switch (c.action) {
        case 'move':
          return { result: await this.motorDrive(dev, src, { left: c.left ?? 0, right: c.right ?? 0 }, c.lease_ms) };
        case 'stop':
          await this.motorStop(dev, src);
          return { result: 'stopped' };
        case 'status':
          return this.motorStatus(dev);
      }
    }
    throw new EdgeError('CONTROL_BAD_COMMAND', `${c.action} is not supported for ${c.kind}`);
  }

  /** A surface's counters under stats()[name]. */
  addStats(name: string, fn: () => Record<string, unknown>): void {
    this.extraStats.set(name, fn);
  }

  /** Safe for the dashboard and /metrics: counters only, never credentials. */
  stats(): Record<string, unknown> {
    const drivers: Record<string, unknown> = {};
    for (const d of this.ptzDrivers.values()) drivers[`ptz/${d.name}`] = d.stats();
    for (const m of this.motorDrivers.values()) drivers[`motor/${m.name}`] = m.stats();
    return {
      router: this.router.stats(),
      drivers,
      joysticks: this.joysticks.map((j) => j.stats()),
      pang: this.pang.stats(),
      upstream: this.upstream?.stats() ?? null,
      ...Object.fromEntries([...this.extraStats].map(([k, f]) => [k, f()])),
    };
  }

  /** Stops everything moving, then closes joysticks, upstream and drivers. Idempotent, never throws. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const j of this.joysticks) j.close();
      this.upstream?.close();
      this.pang.close();
      await this.router.close().catch(() => {});
      const all: Array<PtzDriver | MotorDriver> = [...this.ptzDrivers.values(), ...this.motorDrivers.values()];
      await Promise.all(all.map((d) => d.close().catch(() => {})));
    })();
    return this.closing;
  }
}

/** Build the control component from its config section (already validated or raw). */
export function createControlService(config: unknown, log: Logger, accounts = new DeviceAuthRegistry()): ControlService {
  const c = controlConfigSchema.parse(config ?? {});
  const svc = new ControlService({
    config: {
      leaseMs: c.leaseMs,
      maxLeaseMs: c.maxLeaseMs,
      maxRatePerSec: c.maxRatePerSec,
      priorities: c.priorities,
      maxBodyBytes: c.maxBodyBytes,
      commandTtlMs: c.commandTtlMs,
      requireCommandTime: c.requireCommandTime,
      silenceStopMs: c.silenceStopMs,
    },
    log,
  });
  try {
    for (const p of c.ptz) svc.addPtz(createPtzDriver(p, accounts));
    for (const m of c.motors) svc.addMotor(createMotorDriver(m));
    for (const j of c.joysticks) svc.attachJoystick(j);
    if (c.upstream) svc.attachUpstream(c.upstream);
  } catch (e) {
    void svc.close();
    throw e;
  }
  const serialPaths = [...c.ptz.flatMap((p) => (p.kind === 'pelco-d' ? [p.path] : [])), ...c.motors.map((m) => m.path)];
  for (const p of serialPaths) {
    if (/^\/dev\/tty(USB|ACM)\d+$/.test(p)) {
      log.warn({ path: p }, 'serial device configured by its tty number, which can change on replug: prefer /dev/serial/by-id/…');
    }
  }
  log.info(
    { cameras: c.ptz.map((p) => `${p.name}(${p.kind})`), motors: c.motors.map((m) => `${m.name}(${m.kind})`), joysticks: c.joysticks.length, upstream: !!c.upstream },
    'control ready',
  );
  return svc;
}

export interface DeviceLink {
  up: boolean;
  reason: string | null;
  since: number;
  losses: number;
  /** Credential state of devices that log in (ISAPI, ONVIF); absent for serial ones. */
  auth?: string;
  authLockedForMs?: number;
}

function deviceLink(d: PtzDriver | MotorDriver): DeviceLink {
  const l = d.linkStatus();
  const auth = (d as { auth?: { stats(): { state: string; lockedForMs: number } } }).auth?.stats();
  return { ...l, ...(auth ? { auth: auth.state, authLockedForMs: auth.lockedForMs } : {}) };
}

/**
 * A joystick driving one camera and/or one motor, as source "joystick". While deflected it re-sends
 * the velocity every refreshMs (the js API only reports changes, and the lease must be refreshed);
 * back at centre it sends one Stop; losing the device releases its session (the router stops).
 */
class JoystickControl {
  private readonly input: JoystickInput;
  private readonly mapper: JoystickMapper;
  private readonly src: CommandSource;
  private refresh: NodeJS.Timeout | null = null;
  private ptzMoving = false;
  private motorMoving = false;
  /** After the stop button, motion waits until the stick is back at centre. */
  private stopLatched = false;
  private pushQueued = false;
  private readonly c = { commands: 0, refused: 0, errors: 0, buttonStops: 0, buttonPresets: 0 };

  constructor(
    private readonly svc: ControlService,
    private readonly cfg: JoystickConfig,
    private readonly log: Logger,
  ) {
    this.src = { kind: 'joystick', session: `joystick:${cfg.name}` };
    const ranges: Record<number, { min: number; max: number }> = {};
    for (const [k, v] of Object.entries(cfg.evdevRanges)) ranges[Number(k)] = v;
    this.input = new JoystickInput({ path: cfg.path, format: cfg.format, evdevEventSize: cfg.evdevEventSize, evdevRanges: ranges });
    this.mapper = new JoystickMapper({
      deadzone: cfg.deadzone,
      expo: cfg.expo,
      ptz: cfg.axes,
      motor: cfg.drive,
      buttons: { stop: cfg.buttons.stop, presets: cfg.buttons.presets },
    });
    this.input.onEvent((e) => {
      for (const a of this.mapper.apply(e)) this.action(a);
      // One command per read batch: a diagonal (two axis events) is one velocity, not two.
      if (!this.pushQueued) {
        this.pushQueued = true;
        setImmediate(() => {
          this.pushQueued = false;
          if (this.refresh) this.push();
        });
      }
    });
    this.input.onLost((why) => {
      this.mapper.reset();
      this.ptzMoving = this.motorMoving = false;
      this.svc.router.releaseSession(this.src.session);
      this.log.warn({ joystick: cfg.name, why }, 'joystick lost; its devices were stopped');
    });
  }

  start(): void {
    this.input.start();
    this.refresh = setInterval(() => this.push(true), this.cfg.refreshMs);
    this.refresh.unref();
  }

  private note(p: Promise<unknown>): void {
    p.catch((e: unknown) => {
      if (e instanceof EdgeError && e.code === 'CONTROL_BUSY') this.c.refused++;
      else this.c.errors++;
    });
  }

  private action(a: { type: 'stop' } | { type: 'preset'; id: string }): void {
    if (a.type === 'stop') {
      this.c.buttonStops++;
      this.stopLatched = true;
      this.ptzMoving = this.motorMoving = false;
      if (this.cfg.ptz) this.note(this.svc.ptzStop(this.cfg.ptz, this.src));
      if (this.cfg.motor) this.note(this.svc.motorStop(this.cfg.motor, this.src));
    } else if (this.cfg.ptz) {
      this.c.buttonPresets++;
      this.note(this.svc.ptzGotoPreset(this.cfg.ptz, this.src, a.id));
    }
  }

  /** Send the mapped state: moves while deflected; one Stop when it returns to centre. */
  private push(refreshOnly = false): void {
    const s = this.mapper.state();
    if (this.stopLatched) {
      const centred = s.ptz.pan === 0 && s.ptz.tilt === 0 && s.ptz.zoom === 0 && s.motor.left === 0 && s.motor.right === 0;
      if (!centred) return;
      this.stopLatched = false;
    }
    if (this.cfg.ptz) {
      const active = s.ptz.pan !== 0 || s.ptz.tilt !== 0 || s.ptz.zoom !== 0;
      if (active) {
        this.c.commands++;
        this.note(this.svc.ptzMove(this.cfg.ptz, this.src, s.ptz));
      } else if (this.ptzMoving && !refreshOnly) {
        this.note(this.svc.ptzStop(this.cfg.ptz, this.src));
      }
      if (!refreshOnly || active) this.ptzMoving = active;
    }
    if (this.cfg.motor && this.cfg.drive) {
      const active = s.motor.left !== 0 || s.motor.right !== 0;
      if (active) {
        this.c.commands++;
        this.note(this.svc.motorDrive(this.cfg.motor, this.src, s.motor));
      } else if (this.motorMoving && !refreshOnly) {
        this.note(this.svc.motorStop(this.cfg.motor, this.src));
      }
      if (!refreshOnly || active) this.motorMoving = active;
    }
  }

  stats(): Record<string, unknown> {
    return { name: this.cfg.name, ...this.input.stats(), ...this.c };
  }

  close(): void {
    if (this.refresh) clearInterval(this.refresh);
    this.refresh = null;
    this.input.close();
  }
}
