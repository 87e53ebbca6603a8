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
// A move is a dead-man command: it holds for lease_ms (default control.leaseMs), then the device
// stops unless the client repeats it. Errors are {"error":{"code","message"}}. When the server is
// bound beyond loopback every route needs `Authorization: Bearer <token>`.

import type { IncomingMessage } from 'node:http';
import { z } from 'zod';
import { EdgeError } from '../engine/api.js';
import { HttpError, type RouteContext, type Router } from '../http/router.js';
import { bearerMatches } from '../http/auth.js';
import type { ControlService } from './service.js';
import type { CommandSource } from './router.js';

const unit = z.number().finite().min(-1).max(1);
const moveBody = z.object({ pan: unit.default(0), tilt: unit.default(0), zoom: unit.default(0), lease_ms: z.number().int().min(50).max(60_000).optional() }).strict();
const driveBody = z.object({ left: unit.default(0), right: unit.default(0), lease_ms: z.number().int().min(50).max(60_000).optional() }).strict();
const presetBody = z.object({ name: z.string().regex(/^[^<>&"'\u0000-\u001f]{1,64}$/).optional() }).strict();
const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const PRESET_RE = /^[A-Za-z0-9_.-]{1,64}$/;

/** EdgeError code → HTTP status. */
function statusOf(code: string): number {
  if (code === 'PTZ_UNKNOWN_CAMERA' || code === 'MOTOR_UNKNOWN' || code === 'CONTROL_UNKNOWN_DEVICE') return 404;
  if (code === 'CONTROL_BUSY') return 409;
  if (code === 'CONTROL_CANCELLED') return 409;
  if (code === 'PTZ_BAD_PRESET' || code === 'CONTROL_BAD_COMMAND') return 400;
  if (code === 'PTZ_NOT_SUPPORTED') return 501;
  if (code === 'PTZ_AUTH_FAILED' || code === 'PTZ_AUTH_LOCKED' || code.startsWith('DIGEST_')) return 502;
  if (code === 'PTZ_LINK_DOWN' || code === 'MOTOR_LINK_DOWN' || code === 'PTZ_TIMEOUT' || code === 'CONTROL_CLOSED') return 503;
  return 502;
}

function fail(e: unknown): never {
  if (e instanceof HttpError) throw e;
  if (e instanceof EdgeError) throw new HttpError(statusOf(e.code), e.code, e.detail);
  throw new HttpError(500, 'CONTROL_FAILED', String((e as Error)?.message ?? e).slice(0, 200));
}

function parse<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body ?? {});
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

export interface ControlRouteOptions {
  token?: string;
  bindIsLoopback: boolean;
}

export function registerControlRoutes(router: Router, control: ControlService, opts: ControlRouteOptions): void {
  const limit = control.config.maxBodyBytes;
  const token = opts.token ?? null;

  const authorize = (req: IncomingMessage): void => {
    if (opts.bindIsLoopback && !token) return;
    if (!token) throw new HttpError(401, 'CONTROL_AUTH_REQUIRED', 'server is bound beyond loopback and has no token: control is disabled');
    if (!bearerMatches(req.headers['authorization'], token)) {
      throw new HttpError(401, 'CONTROL_AUTH_REQUIRED', 'missing or wrong bearer token');
    }
  };

  const source = (ctx: RouteContext): CommandSource => ({ kind: 'api', session: `http:${ctx.req.socket.remoteAddress ?? '?'}` });

  const route = (method: string, path: string, fn: (ctx: RouteContext) => Promise<void>) =>
    router.route(method, path, async (ctx) => {
      authorize(ctx.req);
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

  route('GET', '/motors', async (ctx) => ctx.json(200, { motors: control.motorList() }));

  route('POST', '/motors/:motor/drive', async (ctx) => {
    const motor = param(ctx, 'motor', ID_RE);
    const b = parse(driveBody, await ctx.readJson(limit));
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
