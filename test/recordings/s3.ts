// A real S3-compatible server for the sync tests (s3rver, npm: signature V4 checked, objects on
// disk, ETag = MD5 of what it stored) and an HTTP proxy between the runtime and it that logs every
// request and can corrupt, cut or refuse chosen ones. Also: the S3 target taken from environment
// variables for running the same suite against a real MinIO / AWS S3.
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import type { TestContext } from 'node:test';
import S3rver from 's3rver';

export const S3RVER_KEY = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export interface S3Server {
  port: number;
  url: string;
  dir: string;
  /** The bytes s3rver stored for a key. */
  object(bucket: string, key: string): Buffer | null;
  close(): Promise<void>;
}

export async function startS3rver(t: TestContext, dir: string, buckets: string[] = ['rec']): Promise<S3Server> {
  fs.mkdirSync(dir, { recursive: true });
  const srv = new S3rver({ port: 0, address: '127.0.0.1', directory: dir, silent: true, configureBuckets: buckets.map((name) => ({ name })) });
  const addr = (await srv.run()) as net.AddressInfo;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    (srv as unknown as { httpServer: http.Server }).httpServer.closeAllConnections();
    await srv.close();
  };
  t.after(close);
  return {
    port: addr.port,
    url: `http://127.0.0.1:${addr.port}`,
    dir,
    object: (bucket, key) => {
      const f = path.join(dir, bucket, `${key}._S3rver_object`);
      return fs.existsSync(f) ? fs.readFileSync(f) : null;
    },
    close,
  };
}

export interface ProxyRule {
  /** Which requests (method, path with query): first match wins. */
  match(method: string, url: string): boolean;
  /** Flip one byte of the request body at this offset. */
  flipAt?: number;
  /** Cut both connections once this many body bytes went through. */
  cutAfter?: number;
  /** Answer this status with an S3 error body instead of forwarding. */
  refuse?: { status: number; code: string };
  /** How many more requests this rule applies to (default: all). */
  times?: number;
}

export interface S3Proxy {
  url: string;
  /** Every request seen, as "METHOD /path?query status". */
  log: string[];
  /** Bytes of request bodies forwarded, by "METHOD /path?query". */
  bodyBytes: number;
  rules: ProxyRule[];
  /** 'down': every connection is reset at once (the network is out). */
  mode: 'up' | 'down';
}

/** An HTTP proxy in front of an S3 endpoint (plain http) that can corrupt, cut, refuse or drop. */
export async function startS3Proxy(t: TestContext, upstreamPort: number): Promise<S3Proxy> {
  const p: S3Proxy = { url: '', log: [], bodyBytes: 0, rules: [], mode: 'up' };
  const server = http.createServer();
  // answer Expect: 100-continue ourselves only when forwarding (a refusal needs no body)
  server.on('checkContinue', (req, res) => server.emit('request', req, res));
  server.on('request', (req, res) => {
    const line = `${req.method} ${req.url}`;
    const rule = p.rules.find((r) => (r.times === undefined || r.times > 0) && r.match(req.method ?? '', req.url ?? ''));
    if (rule && rule.times !== undefined) rule.times--;
    if (rule?.refuse) {
      req.resume();
      p.log.push(`${line} ${rule.refuse.status}`);
      const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${rule.refuse.code}</Code><Message>refused by the test proxy</Message></Error>`;
      res.writeHead(rule.refuse.status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    if (req.headers.expect) res.writeContinue();
    const headers = { ...req.headers };
    delete headers.expect;
    const up = http.request({ host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers });
    let n = 0;
    req.on('data', (c: Buffer) => {
      if (rule?.flipAt !== undefined && rule.flipAt >= n && rule.flipAt < n + c.length) {
        c = Buffer.from(c);
        c[rule.flipAt - n] = c[rule.flipAt - n]! ^ 0xff;
      }
      n += c.length;
      p.bodyBytes += c.length;
      if (rule?.cutAfter !== undefined && n > rule.cutAfter) {
        p.log.push(`${line} CUT`);
        up.destroy();
        req.socket.destroy();
        return;
      }
      up.write(c);
    });
    req.on('end', () => up.end());
    up.on('response', (ur) => {
      p.log.push(`${line} ${ur.statusCode}`);
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => req.socket.destroy());
  });
  server.on('connection', (s) => {
    if (p.mode === 'down') s.resetAndDestroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });
  p.url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  return p;
}

/** A real S3 / MinIO from the environment, or why the suite against it is skipped. */
export function envS3(): { target: Record<string, unknown> } | { skip: string } {
  const e = process.env;
  const bucket = e.MOTH_TEST_S3_BUCKET;
  if (!bucket) return { skip: 'set MOTH_TEST_S3_BUCKET (and MOTH_TEST_S3_ENDPOINT, MOTH_TEST_S3_REGION, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) to run this suite against a real MinIO/S3' };
  return {
    target: {
      kind: 's3',
      bucket,
      region: e.MOTH_TEST_S3_REGION ?? 'us-east-1',
      ...(e.MOTH_TEST_S3_ENDPOINT ? { endpoint: e.MOTH_TEST_S3_ENDPOINT } : {}),
      prefix: `moth-edge-test/${Date.now()}/`,
    },
  };
}
