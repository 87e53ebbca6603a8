// The seed's PTZ HTTP API, exactly, plus motor endpoints in the same style:
//   GET  /ptz/cameras                    {"cameras":[{"id","kind","capabilities","holder"}]}
//   POST /ptz/<camera>/move              {"pan","tilt","zoom"} in [-1,1] (missing = 0), optional "lease_ms"
//   POST /ptz/<camera>/stop
//   GET  /ptz/<camera>/status
//   GET  /ptz/<camera>/presets           {"presets":[{"id","name"}]}
//   POST /ptz/<camera>/preset/<id>       go to preset
//   POST /ptz/<camera>/preset/<id>/set   {"name"?}: store the current position as preset <id>
//   GET  /motors                         {"motors":[{"id","kind","holder"}]}
//   POST /motors/<motor>/drive           {"left","right"} in [-1,1], optional "lease_ms"
//   POST /motors/<motor>/stop
//   GET  /motors/<motor>/status
//   POST /ptz/<camera>/auth/reset        the operator's reset of a credential lock-out (ISAPI/ONVIF)
// A move is a dead-man command: it holds for lease_ms (default control.leaseMs), then the device
// stops unless the client repeats it. A move may carry "ts" (the client's clock, ms) and "ttl_ms":
// one that arrives later than its ttl (per client clock, see command.ts) is refused with 409
// CONTROL_STALE_COMMAND and never executed. A device whose link is down answers 503 LINK_DOWN to
// every command. Errors are {"error":{"code","message"}}. Access is the server's (access.ts: the
// "control" door): a token when one is configured, always beyond loopback.

import { z } from 'zod';
import { EdgeError } from '../engine/api.js';
import { HttpError, type RouteContext, type Router } from '../http/router.js';
import { clientAddress } from '../http/access.js';
import { FreshnessFilter } from './command.js';
import type { ControlService } from './service.js';
import type { CommandSource } from './router.js';

const unit = z.number().finite().min(-1).max(1);
const timing = {
  lease_ms: z.number().int().min(50).max(60_000).optional(),
  ts: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  ttl_ms: z.number().int().min(50).max(10_000).optional(),
};
const moveBody = z.object({ pan: unit.default(0), tilt: unit.default(0), zoom: unit.default(0), ...timing }).strict();
const driveBody = z.object({ left: unit.default(0), right: unit.default(0), ...timing }).strict();
const presetBody = z.object({ name: z.string().regex(/^[^<>&"'\u0000-\u001f]{1,64}$/).optional() }).strict();
const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const PRESET_RE = /^[A-Za-z0-9_.-]{1,64}$/;

/** EdgeError code → HTTP status. */
function statusOf(code: string): number {
  if (code === 'PTZ_UNKNOWN_CAMERA' || code === 'MOTOR_UNKNOWN' || code === 'CONTROL_UNKNOWN_DEVICE') return 404;
  if (code === 'CONTROL_BUSY') return 409;
  if (code === 'CONTROL_CANCELLED') return 409;
  if (code === 'CONTROL_STALE_COMMAND') return 409;
  if (code === 'PTZ_BAD_PRESET' || code === 'CONTROL_BAD_COMMAND') return 400;
  if (code === 'PTZ_NOT_SUPPORTED') return 501;
  if (code === 'PTZ_AUTH_FAILED' || code === 'PTZ_AUTH_LOCKED' || code.startsWith('DIGEST_')) return 502;
  if (code === 'LINK_DOWN' || code === 'PTZ_LINK_DOWN' || code === 'MOTOR_LINK_DOWN' || code === 'PTZ_TIMEOUT' || code === 'CONTROL_CLOSED') return 503;
  return 502;
}

function fail(e: unknown): never {
  if (e instanceof HttpError) throw e;
  if (e instanceof EdgeError) throw new HttpError(statusOf(e.code), e.code, e.detail);
  throw new HttpError(500, 'CONTROL_FAILED', String((e as Error)?.message ?? e).slice(0, 200));
}

/** A body that must be a JSON object: null, arrays and scalars are refused (a null is not "{}" → Stop). */
function parse<T>(schema: z.ZodType<T>, body: unknown): T {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new HttpError(400, 'BAD_REQUEST', `body must be a JSON object, got ${body === null ? 'null' : Array.isArray(body) ? 'an array' : typeof body}`);
  }
  const r = schema.safeParse(body);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new HttpError(400, 'BAD_REQUEST', `${i?.path.join('.') || 'body'}: ${i?.message ?? 'invalid'}`);
  }
  return r.data;
}

function param(ctx: RouteContext, name: string, re: RegExp): string {
  const v = ctx.params[name] ?? '';
  if (!re.test(v)) throw new HttpError(400, 'BAD_REQUEST', `bad ${name}`);
  return v;
}

/** Read a JSON body that may be empty (stop, preset goto). */
async function optionalJson(ctx: RouteContext, limit: number): Promise<unknown> {
  const buf = await ctx.readBody(limit);
  if (buf.length === 0 || buf.toString('utf8').trim() === '') return {};
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch {
    throw new HttpError(400, 'BAD_JSON', 'request body is not valid JSON');
  }
}

export function registerControlRoutes(router: Router, control: ControlService): void {
  const limit = control.config.maxBodyBytes;
  // One clock estimate per client address (a dashboard tab, a script).
  const fresh = new FreshnessFilter();
  const counters = { staleDropped: 0 };
  control.addStats('http', () => ({ ...counters, clients: fresh.size, clockRebases: fresh.rebases }));

  const source = (ctx: RouteContext): CommandSource => ({ kind: 'api', session: `http:${clientAddress(ctx.req)}` });

  /** A motion body with a send time older than its ttl is refused, never executed. */
  const checkFresh = (ctx: RouteContext, b: { ts?: number | undefined; ttl_ms?: number | undefined }): void => {
    if (b.ts === undefined) return;
    const ttl = b.ttl_ms ?? control.config.commandTtlMs;
    const f = fresh.check(clientAddress(ctx.req), b.ts, ttl);
    if (!f.fresh) {
      counters.staleDropped++;
      throw new EdgeError('CONTROL_STALE_COMMAND', `arrived ${f.ageMs} ms late (ttl ${ttl} ms): dropped, not executed`);
    }
  };

  const route = (method: string, path: string, fn: (ctx: RouteContext) => Promise<void>) =>
    router.route(method, path, async (ctx) => {
      try {
        await fn(ctx);
      } catch (e) {
        fail(e);
      }
    });

  route('GET', '/ptz/cameras', async (ctx) => ctx.json(200, { cameras: control.cameras() }));

  route('POST', '/ptz/:camera/move', async (ctx) => {
    const camera = param(ctx, 'camera', ID_RE);
    const b = parse(moveBody, await ctx.readJson(limit));
    checkFresh(ctx, b);
    const result = await control.ptzMove(camera, source(ctx), { pan: b.pan, tilt: b.tilt, zoom: b.zoom }, b.lease_ms);
    ctx.json(200, { ok: true, camera, result, leaseMs: b.lease_ms ?? control.config.leaseMs });
  });

  route('POST', '/ptz/:camera/stop', async (ctx) => {
    const camera = param(ctx, 'camera', ID_RE);
    await optionalJson(ctx, limit);
    await control.ptzStop(camera, source(ctx));
    ctx.json(200, { ok: true, camera, result: 'stopped' });
  });

  route('GET', '/ptz/:camera/status', async (ctx) => ctx.json(200, await control.ptzStatus(param(ctx, 'camera', ID_RE))));

  route('GET', '/ptz/:camera/presets', async (ctx) => {
    const camera = param(ctx, 'camera', ID_RE);
    ctx.json(200, { camera, presets: await control.ptzPresets(camera) });
  });

  route('POST', '/ptz/:camera/preset/:id', async (ctx) => {
    const camera = param(ctx, 'camera', ID_RE);
    const id = param(ctx, 'id', PRESET_RE);
    await optionalJson(ctx, limit);
    await control.ptzGotoPreset(camera, source(ctx), id);
    ctx.json(200, { ok: true, camera, preset: id });
  });

  route('POST', '/ptz/:camera/preset/:id/set', async (ctx) => {
    const camera = param(ctx, 'camera', ID_RE);
    const id = param(ctx, 'id', PRESET_RE);
    const b = parse(presetBody, await optionalJson(ctx, limit));
    await control.ptzSetPreset(camera, source(ctx), id, b.name);
    ctx.json(200, { ok: true, camera, preset: id });
  });

  route('POST', '/ptz/:camera/auth/reset', async (ctx) => {
    const camera = param(ctx, 'camera', ID_RE);
    await optionalJson(ctx, limit);
    ctx.json(200, { ok: true, camera, ...control.ptzAuthReset(camera) });
  });

  route('GET', '/motors', async (ctx) => ctx.json(200, { motors: control.motorList() }));

  route('POST', '/motors/:motor/drive', async (ctx) => {
    const motor = param(ctx, 'motor', ID_RE);
    const b = parse(driveBody, await ctx.readJson(limit));
    checkFresh(ctx, b);
    const result = await control.motorDrive(motor, source(ctx), { left: b.left, right: b.right }, b.lease_ms);
    ctx.json(200, { ok: true, motor, result, leaseMs: b.lease_ms ?? control.config.leaseMs });
  });

  route('POST', '/motors/:motor/stop', async (ctx) => {
    const motor = param(ctx, 'motor', ID_RE);
    await optionalJson(ctx, limit);
    await control.motorStop(motor, source(ctx));
    ctx.json(200, { ok: true, motor, result: 'stopped' });
  });

  route('GET', '/motors/:motor/status', async (ctx) => ctx.json(200, await control.motorStatus(param(ctx, 'motor', ID_RE))));
}
