// A small HTTP router: method + path pattern with :params, JSON helpers with size-limited
// bodies, and errors as {"error":{"code","message"}}. No framework: a Pi Zero has 512 MB.

import type { IncomingMessage, ServerResponse } from 'node:http';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface RouteContext {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  url: URL;
  json(status: number, body: unknown): void;
  /** Read the body as JSON, at most limitBytes (413 beyond); 400 on malformed JSON. */
  readJson<T = unknown>(limitBytes?: number): Promise<T>;
  /** Read the raw body, at most limitBytes. */
  readBody(limitBytes?: number): Promise<Buffer>;
}

export type RouteHandler = (ctx: RouteContext) => void | Promise<void>;

interface Route {
  method: string;
  parts: string[];
  handler: RouteHandler;
  prefix: boolean;
}

export const DEFAULT_BODY_LIMIT = 64 * 1024;

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(text);
}

export function sendError(res: ServerResponse, status: number, code: string, message: string): void {
  sendJson(res, status, { error: { code, message } });
}

export function readBody(req: IncomingMessage, limit = DEFAULT_BODY_LIMIT): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      reject(new HttpError(413, 'BODY_TOO_LARGE', `request body over ${limit} bytes`));
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new HttpError(413, 'BODY_TOO_LARGE', `request body over ${limit} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', (e) => reject(new HttpError(400, 'BODY_READ_FAILED', e.message)));
  });
}

export class Router {
  private readonly routes: Route[] = [];

  /** pattern: '/ptz/:camera/move'; a trailing '/*' matches any rest (params['*']). */
  route(method: string, pattern: string, handler: RouteHandler): void {
    const prefix = pattern.endsWith('/*');
    const parts = (prefix ? pattern.slice(0, -2) : pattern).split('/').filter(Boolean);
    this.routes.push({ method: method.toUpperCase(), parts, handler, prefix });
  }

  /** Returns false when no route matches the path (the caller answers 404). */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://local');
    } catch {
      sendError(res, 400, 'BAD_URL', 'malformed request URL');
      return true;
    }
    let segs: string[];
    try {
      segs = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    } catch {
      sendError(res, 400, 'BAD_URL', 'malformed percent-encoding in path');
      return true;
    }
    let pathMatched = false;
    for (const r of this.routes) {
      const params = match(r, segs);
      if (!params) continue;
      pathMatched = true;
      if (r.method !== req.method && !(r.method === 'GET' && req.method === 'HEAD')) continue;
      const ctx: RouteContext = {
        req,
        res,
        params,
        url,
        json: (status, body) => sendJson(res, status, body),
        readBody: (limit) => readBody(req, limit),
        readJson: async <T>(limit?: number) => {
          const buf = await readBody(req, limit);
          try {
            return JSON.parse(buf.toString('utf8')) as T;
          } catch {
            throw new HttpError(400, 'BAD_JSON', 'request body is not valid JSON');
          }
        },
      };
      try {
        await r.handler(ctx);
      } catch (err) {
        if (err instanceof HttpError) sendError(res, err.status, err.code, err.message);
        else {
          // An EdgeError's message starts with its code: answer the code once, the detail as the message.
          const e = err as { code?: string; message?: string; detail?: string };
          sendError(res, 500, typeof e?.code === 'string' ? e.code : 'INTERNAL', e?.detail ?? e?.message ?? String(err));
        }
      }
      return true;
    }
    if (pathMatched) {
      sendError(res, 405, 'METHOD_NOT_ALLOWED', `${req.method} not allowed on ${url.pathname}`);
      return true;
    }
    return false;
  }
}

function match(r: Route, segs: string[]): Record<string, string> | null {
  if (r.prefix ? segs.length < r.parts.length : segs.length !== r.parts.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < r.parts.length; i++) {
    const p = r.parts[i]!;
    if (p.startsWith(':')) params[p.slice(1)] = segs[i]!;
    else if (p !== segs[i]) return null;
  }
  if (r.prefix) params['*'] = segs.slice(r.parts.length).join('/');
  return params;
}
