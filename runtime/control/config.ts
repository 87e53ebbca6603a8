// The `control` config section: PTZ heads, motor controllers, joysticks, router policy and the
// upstream Moth meb. Passwords and keys live here and nowhere else: they are never logged, never in
// stats and never in error messages. Example (YAML):
//
//   control:
//     leaseMs: 500                 # dead-man lease of a velocity command
//     maxRatePerSec: 20            # per device; in between only the latest velocity is kept
//     priorities: { joystick: 30, remote: 20, api: 10 }
//     ptz:
//       - { kind: onvif, name: front, host: 192.168.1.64, username: admin, password: "…" }
//       - { kind: isapi, name: dome, url: "http://192.168.1.65", username: admin, password: "…", channel: 1 }
//       - { kind: pelco-d, name: mast, path: /dev/serial/by-id/usb-FTDI_…-if00-port0, baudRate: 9600, address: 1 }
//     motors:
//       - { kind: sabertooth, name: base, path: /dev/serial/by-id/usb-…, address: 128, deviceTimeoutMs: 500 }
//       - { kind: line, name: arm, path: /dev/serial/by-id/usb-…, baudRate: 115200, template: "M {left} {right}" }
//     joysticks:
//       - { path: /dev/input/js0, ptz: front, motor: base, drive: { mode: arcade, throttle: { axis: 1, invert: true }, steer: { axis: 0 } },
//           buttons: { stop: 0, presets: { "1": 3 } } }
//     upstream: { url: "wss://moth.example.org:8277", channel: instant, name: robot1, key: "…" }
//     # or a static channel by its id: { url: …, channel: c0ffee00000000000000, key: "…" }
//     commandTtlMs: 1000           # a motion command older than this (per sender clock) is dropped
//     requireCommandTime: true     # pang motion commands must carry "ts"
//     silenceStopMs: 750           # a controlling link silent this long stops its devices

import { z } from 'zod';

const label = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, _ - (1..64 chars)');
/** Serial ports by stable path (/dev/serial/by-id/… encouraged; /dev/tty* and test ptys accepted). */
const serialPath = z.string().min(1).max(512).startsWith('/').refine((p) => !p.includes('\0'), 'no NUL in path');
const secret = z.string().min(1).max(256);

const onvifSchema = z
  .object({
    kind: z.literal('onvif'),
    name: label,
    host: z.string().min(1).max(253).regex(/^[A-Za-z0-9.:[\]-]+$/, 'a host name or IP address'),
    port: z.number().int().min(1).max(65535).default(80),
    username: z.string().min(1).max(64),
    password: secret,
    profileToken: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).optional(),
    timeoutMs: z.number().int().min(100).max(60_000).default(5000),
    /** First lock-out after refused credentials (2 attempts); doubles per repeat up to 1 h. */
    authLockoutMs: z.number().int().min(1000).max(3_600_000).default(600_000),
  })
  .strict();

const isapiSchema = z
  .object({
    kind: z.literal('isapi'),
    name: label,
    url: z.string().regex(/^http:\/\/[A-Za-z0-9.:[\]-]+\/?$/, 'http://host[:port] (credentials go in username/password)'),
    username: z.string().min(1).max(64),
    password: secret,
    channel: z.number().int().min(1).max(256).default(1),
    timeoutMs: z.number().int().min(100).max(60_000).default(3000),
    authLockoutMs: z.number().int().min(1000).max(3_600_000).default(600_000),
  })
  .strict();

const pelcoSchema = z
  .object({
    kind: z.literal('pelco-d'),
    name: label,
    path: serialPath,
    baudRate: z.union([z.literal(2400), z.literal(4800), z.literal(9600), z.literal(19200), z.literal(38400)]).default(9600),
    address: z.number().int().min(1).max(255).default(1),
    queryPosition: z.boolean().default(false),
    presets: z.array(z.object({ id: z.string().regex(/^\d{1,3}$/), name: z.string().regex(/^[^<>&"'\u0000-\u001f]{1,64}$/) }).strict()).max(255).default([]),
  })
  .strict();

export const ptzDeviceSchema = z.discriminatedUnion('kind', [onvifSchema, isapiSchema, pelcoSchema]);

const sabertoothSchema = z
  .object({
    kind: z.literal('sabertooth'),
    name: label,
    path: serialPath,
    baudRate: z.union([z.literal(2400), z.literal(9600), z.literal(19200), z.literal(38400), z.literal(115200)]).default(9600),
    address: z.number().int().min(128).max(135).default(128),
    /** The controller stops by itself after this long without a packet (its serial timeout). */
    deviceTimeoutMs: z.number().int().min(100).max(12_700).default(500),
    keepaliveMs: z.number().int().min(20).max(5000).default(150),
  })
  .strict();

const lineMotorSchema = z
  .object({
    kind: z.literal('line'),
    name: label,
    path: serialPath,
    baudRate: z.number().int().min(300).max(4_000_000).default(115200),
    template: z.string().max(64).default('M {left} {right}'),
    scale: z.number().int().min(1).max(1_000_000).default(1000),
    statusCommand: z.string().regex(/^[A-Za-z0-9?!#$ _-]{1,16}$/).default('?'),
    ackTimeoutMs: z.number().int().min(10).max(10_000).default(250),
    keepaliveMs: z.number().int().min(20).max(5000).default(150),
  })
  .strict();

export const motorDeviceSchema = z.discriminatedUnion('kind', [sabertoothSchema, lineMotorSchema]);

const axis = z.object({ axis: z.number().int().min(0).max(1023), invert: z.boolean().default(false) }).strict();

const joystickSchema = z
  .object({
    name: label.default('joystick'),
    path: serialPath,
    format: z.enum(['js', 'evdev']).default('js'),
    evdevEventSize: z.union([z.literal(16), z.literal(24)]).default(24),
    /** evdev axis ranges by axis code (the joystick API normalises by itself). */
    evdevRanges: z.record(z.string().regex(/^\d{1,4}$/), z.object({ min: z.number().int(), max: z.number().int() }).strict()).default({}),
    /** Which camera / motor this controller drives. */
    ptz: label.optional(),
    motor: label.optional(),
    deadzone: z.number().min(0).max(0.5).default(0.08),
    expo: z.number().min(0).max(1).default(0.3),
    axes: z
      .object({
        pan: axis.optional(),
        tilt: axis.optional(),
        zoom: axis.optional(),
      })
      .strict()
      .default({ pan: { axis: 0, invert: false }, tilt: { axis: 1, invert: true } }),
    drive: z
      .discriminatedUnion('mode', [
        z.object({ mode: z.literal('tank'), left: axis, right: axis }).strict(),
        z.object({ mode: z.literal('arcade'), throttle: axis, steer: axis }).strict(),
      ])
      .optional(),
    buttons: z
      .object({
        stop: z.number().int().min(0).max(1023).optional(),
        presets: z.record(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/), z.number().int().min(0).max(1023)).default({}),
      })
      .strict()
      .default({ presets: {} }),
    /** Re-send the held deflection this often (refreshes the dead-man lease; js only reports changes). */
    refreshMs: z.number().int().min(20).max(1000).default(100),
  })
  .strict();

/** Moth closes a session that sent nothing for its idle timeout (30 s unless the URL asks otherwise). */
export const MOTH_IDLE_TIMEOUT_MS = 30_000;

const ladder = (initialMs: number, maxMs: number) =>
  z
    .object({
      initialMs: z.number().int().min(50).max(60_000).default(initialMs),
      maxMs: z.number().int().min(100).max(600_000).default(maxMs),
    })
    .strict()
    .refine((l) => l.maxMs >= l.initialMs, 'maxMs must be >= initialMs')
    .prefault({});

const upstreamSchema = z
  .object({
    /** ws(s)://host[:port] of the Moth server (no path, no credentials). */
    url: z.string().regex(/^wss?:\/\/[A-Za-z0-9.:[\]-]+\/?$/, 'ws(s)://host[:port]'),
    /** A static channel id on the server (rs/xid), or `instant` with `name` (a real Moth refuses anything else). */
    channel: z.string().regex(/^(?:[0-9a-v]{20}|instant)$/, 'a static channel id (rs/xid: 20 chars of 0-9a-v), or "instant" with name:').optional(),
    /** For channel=instant. */
    name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).optional(),
    /** egress.upstream's spelling of an instant channel: `instant: X` is `channel: instant, name: X`. */
    instant: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).optional(),
    source: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).default('base'),
    track: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).default('control'),
    key: secret.optional(),
    /** PEM CA bundle for a server with its own CA (Moth's mkcert leaf); `insecure` skips checks (benches only). */
    caFile: z.string().min(1).max(4096).optional(),
    insecure: z.boolean().default(false),
    /**
     * Retry ladders (RetryPolicy): after a refusal by the server (closed right after joining, an
     * HTTP 4xx, a 44xx close) 1 s → 60 s; while the network is down 250 ms → 1 s, so a path that
     * comes back is rejoined within ~2 s (1 s between tries + the connect).
     */
    retry: z
      .object({ refused: ladder(1000, 60_000), network: ladder(250, 1000) })
      .strict()
      .prefault({}),
    /** A connect (TCP + TLS + upgrade) that takes longer is a network failure. */
    connectTimeoutMs: z.number().int().min(500).max(60_000).default(4000),
    /** Moth never answers pings: keep the session alive with an empty binary message this often. */
    keepaliveMs: z.number().int().min(1000).max(60_000).default(20_000),
    /**
     * Liveness of the path. Moth sends nothing on an idle meb and never pongs, so a second session on
     * /pang/ws/ctl sends {"type":"ping"} every probeIntervalMs (Moth answers "pong"); without any
     * answer for deadAfterMs the path is dead: both sessions are dropped, the devices they moved stop,
     * and the client rejoins. "off": TCP keepalive only (a silent drop is noticed much later).
     */
    probe: z.enum(['ctl', 'off']).default('ctl'),
    probeIntervalMs: z.number().int().min(250).max(60_000).default(2000),
    deadAfterMs: z.number().int().min(1000).max(120_000).default(8000),
    /** Right after joining, a close within this long is Moth refusing the session (it drops TCP). */
    refusalWindowMs: z.number().int().min(100).max(10_000).default(1500),
  })
  .strict()
  .superRefine((u, ctx) => {
    const name = u.channel === 'instant' ? u.name : u.instant;
    if (u.instant !== undefined && (u.channel !== undefined || u.name !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['instant'], message: 'give the channel once: instant: <name>, or channel: instant + name: <name>, or channel: <static id>' });
    } else if (u.channel === undefined && u.instant === undefined) {
      ctx.addIssue({ code: 'custom', path: ['channel'], message: 'set channel: <static channel id>, or channel: instant with name: <name> (or instant: <name>)' });
    } else if (u.channel === 'instant' && !name) {
      ctx.addIssue({ code: 'custom', path: ['name'], message: 'channel: instant needs name: <instant channel name>' });
    } else if (u.name !== undefined && u.channel !== 'instant') {
      ctx.addIssue({ code: 'custom', path: ['name'], message: 'name: belongs to channel: instant; a static channel is given by its id alone' });
    }
    if (u.keepaliveMs >= MOTH_IDLE_TIMEOUT_MS) {
      ctx.addIssue({
        code: 'custom',
        path: ['keepaliveMs'],
        message: `keepalive ${u.keepaliveMs} ms is not shorter than Moth's idle timeout (${MOTH_IDLE_TIMEOUT_MS} ms): the server closes the session between keepalives; use ${MOTH_IDLE_TIMEOUT_MS / 2} or less (default 20000)`,
      });
    }
    if (u.probe === 'ctl' && u.deadAfterMs < 2 * u.probeIntervalMs) {
      ctx.addIssue({ code: 'custom', path: ['deadAfterMs'], message: `must be at least 2 × probeIntervalMs (${2 * u.probeIntervalMs}): one lost probe is not a dead path` });
    }
  })
  // One spelling inside the runtime: channel + name.
  .transform(({ instant, ...u }) => (instant !== undefined ? { ...u, channel: 'instant', name: instant } : { ...u, channel: u.channel! }));

export const controlConfigSchema = z
  .object({
    /** Dead-man lease of a velocity command with no lease_ms of its own. */
    leaseMs: z.number().int().min(50).max(5000).default(500),
    /** The longest lease a command may ask for. */
    maxLeaseMs: z.number().int().min(50).max(60_000).default(5000),
    /** Motion commands per second per device, at most; in between only the latest is kept. */
    maxRatePerSec: z.number().min(1).max(200).default(20),
    priorities: z
      .object({ joystick: z.number().int().min(0).max(100).default(30), remote: z.number().int().min(0).max(100).default(20), api: z.number().int().min(0).max(100).default(10) })
      .strict()
      .default({ joystick: 30, remote: 20, api: 10 }),
    /** HTTP/pang request bodies: a command is < 1 kB. */
    maxBodyBytes: z.number().int().min(256).max(65_536).default(4096),
    /** A motion command whose `ts` is older than this (per sender clock, see command.ts) is dropped, not run. */
    commandTtlMs: z.number().int().min(50).max(10_000).default(1000),
    /** pang motion commands (move, goto_preset) without `ts` are refused (CONTROL_NO_TIMESTAMP). */
    requireCommandTime: z.boolean().default(true),
    /**
     * A link that controls a moving device and stays silent this long is a dropped link: its devices
     * stop. Local ctl/meb sessions are pinged meanwhile (clients pong); the upstream Moth meb, which
     * never pongs, counts any message from the operator.
     */
    silenceStopMs: z.number().int().min(200).max(10_000).default(750),
    ptz: z.array(ptzDeviceSchema).max(32).default([]),
    motors: z.array(motorDeviceSchema).max(16).default([]),
    joysticks: z.array(joystickSchema).max(8).default([]),
    upstream: upstreamSchema.optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    const seen = new Set<string>();
    c.ptz.forEach((p, i) => {
      if (seen.has(`ptz/${p.name}`)) ctx.addIssue({ code: 'custom', path: ['ptz', i, 'name'], message: `duplicate camera ${p.name}` });
      seen.add(`ptz/${p.name}`);
    });
    c.motors.forEach((m, i) => {
      if (seen.has(`motor/${m.name}`)) ctx.addIssue({ code: 'custom', path: ['motors', i, 'name'], message: `duplicate motor ${m.name}` });
      if (m.kind === 'sabertooth' && m.keepaliveMs * 2 > m.deviceTimeoutMs) {
        // one lost or late packet must not let the controller's own serial timeout stop the robot
        ctx.addIssue({
          code: 'custom',
          path: ['motors', i, 'keepaliveMs'],
          message: `keepalive ${m.keepaliveMs} ms is longer than half the controller's serial timeout (deviceTimeoutMs ${m.deviceTimeoutMs}): it stops between keepalives; use ${Math.floor(m.deviceTimeoutMs / 3)} or raise deviceTimeoutMs`,
        });
      }
      seen.add(`motor/${m.name}`);
      if (m.kind === 'line' && !/^[A-Za-z0-9 ,;:_#$!=+*-]*\{left\}[A-Za-z0-9 ,;:_#$!=+*-]*\{right\}[A-Za-z0-9 ,;:_#$!=+*-]*$/.test(m.template)) {
        ctx.addIssue({ code: 'custom', path: ['motors', i, 'template'], message: 'must contain {left} then {right}, printable' });
      }
    });
    c.joysticks.forEach((j, i) => {
      if (j.ptz && !seen.has(`ptz/${j.ptz}`)) ctx.addIssue({ code: 'custom', path: ['joysticks', i, 'ptz'], message: `no camera ${j.ptz}` });
      if (j.motor && !seen.has(`motor/${j.motor}`)) ctx.addIssue({ code: 'custom', path: ['joysticks', i, 'motor'], message: `no motor ${j.motor}` });
      if (j.motor && !j.drive) ctx.addIssue({ code: 'custom', path: ['joysticks', i, 'drive'], message: 'a joystick driving a motor needs a drive mapping' });
      if (j.refreshMs >= c.leaseMs) {
        ctx.addIssue({
          code: 'custom',
          path: ['joysticks', i, 'refreshMs'],
          message: `refresh ${j.refreshMs} ms is not shorter than the dead-man lease (control.leaseMs ${c.leaseMs}): a held stick stops between refreshes; use ${Math.floor(c.leaseMs / 3)} or less`,
        });
      }
    });
    if (c.leaseMs > c.maxLeaseMs) ctx.addIssue({ code: 'custom', path: ['leaseMs'], message: 'leaseMs must be <= maxLeaseMs' });
  });

export type ControlConfig = z.infer<typeof controlConfigSchema>;
export type PtzDeviceConfig = z.infer<typeof ptzDeviceSchema>;
export type MotorDeviceConfig = z.infer<typeof motorDeviceSchema>;
export type JoystickConfig = z.infer<typeof joystickSchema>;
export type UpstreamControlConfig = z.infer<typeof upstreamSchema>;
