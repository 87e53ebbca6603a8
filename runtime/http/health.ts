// /healthz: every configured component, up or down with a reason, and one verdict. Pure: the app
// collects the components (drivers, PTZ heads, motors, upstream links, recordings) and asks here.
//   200 {"status":"ok"}        everything up
//   200 {"status":"degraded"}  only optional components down (by default: upstream links, whose
//                              network is expected to come and go)
//   503 {"status":"down"}      a required one is down (server.healthRequired, globs on names)

export interface ComponentHealth {
  /** "driver:robot/base/video", "ptz:front", "motor:base", "upstream:cam", "control-upstream", "recordings". */
  name: string;
  up: boolean;
  /** Why it is down (no secrets). */
  reason: string | null;
}

export interface HealthReport {
  status: 'ok' | 'degraded' | 'down';
  httpStatus: 200 | 503;
  down: string[];
  components: Array<ComponentHealth & { required: boolean }>;
}

/** `*` matches any run of characters; everything else literally. */
export function globMatch(glob: string, name: string): boolean {
  const re = new RegExp(`^${glob.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\/]/g, '\\$&')).join('.*')}$`);
  return re.test(name);
}

export function healthReport(components: ComponentHealth[], required: string[]): HealthReport {
  const out = components.map((c) => ({ ...c, required: required.some((g) => globMatch(g, c.name)) }));
  const down = out.filter((c) => !c.up);
  const status = down.some((c) => c.required) ? 'down' : down.length ? 'degraded' : 'ok';
  return { status, httpStatus: status === 'down' ? 503 : 200, down: down.map((c) => c.name), components: out };
}

/** How long a driver may be "starting" without a first frame before it counts as down. */
export const DRIVER_START_GRACE_MS = 20_000;

/** A supervised capture driver's health from its supervisor state and the driver's own health(). */
export function driverHealth(
  s: { name: string; state: string; ready: boolean; lastError: string | null },
  own: { up: boolean; reason?: string } | undefined,
  uptimeMs: number,
): ComponentHealth {
  const name = `driver:${s.name}`;
  if (own && !own.up) return { name, up: false, reason: own.reason ?? 'down' };
  if (s.state === 'running') return { name, up: true, reason: null };
  if (s.state === 'backoff') return { name, up: false, reason: s.lastError ?? 'restarting' };
  if (s.state === 'stopped') return { name, up: false, reason: 'stopped' };
  // starting: a driver that reports its own health is trusted; else a grace for the first frame.
  if (own?.up || s.ready || uptimeMs < DRIVER_START_GRACE_MS) return { name, up: true, reason: null };
  return { name, up: false, reason: s.lastError ?? `no frame ${Math.round(uptimeMs / 1000)} s after start` };
}
