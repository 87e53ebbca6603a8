// A real nginx (Debian nginx-light, WebDAV) on loopback for the sync tests, with its own config,
// plus a TCP proxy that cuts connections mid-upload and a target that keeps truncated files.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { waitFor } from './helpers.js';

export interface Nginx {
  port: number;
  url: string;
  www: string;
  /** Requests nginx logged, as "METHOD /path status". */
  log(): string[];
  /** The master and its worker processes (for CPU accounting in benches). */
  pids(): number[];
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export async function startNginx(t: TestContext, dir: string, opts: { workers?: number; tls?: { cert: string; key: string } } = {}): Promise<Nginx> {
  const port = await freePort();
  const www = path.join(dir, 'www');
  fs.mkdirSync(www, { recursive: true });
  fs.mkdirSync(path.join(www, 'auth'), { recursive: true });
  fs.mkdirSync(path.join(www, 'plain'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'htpasswd'), 'robot:{PLAIN}s3cret\n');
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(
    conf,
    `daemon off;
master_process ${opts.workers && opts.workers > 1 ? 'on' : 'off'};
user root;
worker_processes ${opts.workers ?? 1};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 64; }
http {
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  log_format req '$request_method $uri $status';
  access_log ${dir}/access.log req;
  # as in Debian's stock /etc/nginx/nginx.conf: a real target serves the verify GET with sendfile
  sendfile on;
  tcp_nopush on;
  server {
    listen 127.0.0.1:${port}${opts.tls ? ' ssl' : ''};
    ${opts.tls ? `ssl_certificate ${opts.tls.cert};\n    ssl_certificate_key ${opts.tls.key};` : ''}
    root ${www};
    client_max_body_size 0;
    location / {
      dav_methods PUT DELETE MKCOL;
      create_full_put_path on;
      dav_access user:rw group:r all:r;
    }
    location /auth/ {
      auth_basic "recordings";
      auth_basic_user_file ${dir}/htpasswd;
      dav_methods PUT DELETE MKCOL;
      create_full_put_path on;
    }
    location /plain/ {
      dav_methods PUT DELETE MKCOL;
    }
    location /broken/ {
      return 500;
    }
    # one track is refused (a path rule of the target), the rest is stored
    location /deny/ {
      location ~ /forbidden/ {
        return 403;
      }
      dav_methods PUT DELETE MKCOL;
      create_full_put_path on;
    }
  }
}
`,
  );
  const child: ChildProcess = spawn('/usr/sbin/nginx', ['-p', dir, '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()).length > 4096 && (stderr = stderr.slice(-4096)));
  let exited = false;
  child.once('exit', () => (exited = true));
  t.after(async () => {
    if (!exited) {
      child.kill('SIGTERM');
      await new Promise<void>((r) => (exited ? r() : child.once('exit', () => r())));
    }
  });
  await waitFor(
    () =>
      new Promise<boolean>((resolve) => {
        if (exited) throw new Error(`nginx exited: ${stderr}`);
        const s = net.connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
        s.on('error', () => resolve(false));
      }),
    'nginx to listen',
    10_000,
  );
  return {
    port,
    url: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    www,
    pids: () => {
      const master = child.pid;
      if (master === undefined || exited) return [];
      try {
        const kids = fs.readFileSync(`/proc/${master}/task/${master}/children`, 'utf8').trim();
        return [master, ...(kids ? kids.split(/\s+/).map(Number) : [])];
      } catch {
        return [master];
      }
    },
    log: () => {
      try {
        return fs.readFileSync(path.join(dir, 'access.log'), 'utf8').split('\n').filter(Boolean);
      } catch {
        return [];
      }
    },
  };
}

/** TCP proxy in front of nginx that cuts connections once they pass `afterBytes` upstream bytes, `cuts` times in all. */
export async function startCuttingProxy(t: TestContext, port: number, cuts: number, afterBytes: number): Promise<{ url: string; cut: () => number }> {
  let cutDone = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const up = net.connect(port, '127.0.0.1');
    sockets.add(client);
    sockets.add(up);
    let n = 0;
    client.on('data', (c: Buffer) => {
      n += c.length;
      // decided when the threshold is crossed, not at accept: concurrent uploads must not overshoot `cuts`
      if (n > afterBytes && cutDone < cuts) {
        cutDone++;
        client.destroy();
        up.destroy();
        return;
      }
      up.write(c);
    });
    up.on('data', (c: Buffer) => client.write(c));
    const end = () => (client.destroy(), up.destroy());
    client.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, cut: () => cutDone };
}

/** A WebDAV-ish target that answers 201 to every PUT but keeps only the first half of the body (or, `pad`, the body plus junk). */
export async function startTruncatingTarget(t: TestContext, mode: 'truncate' | 'pad' = 'truncate'): Promise<{ url: string; puts: () => number }> {
  const store = new Map<string, Buffer>();
  let puts = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = req.url ?? '/';
      if (req.method === 'MKCOL') return res.writeHead(201).end();
      if (req.method === 'PUT') {
        puts++;
        const body = Buffer.concat(chunks);
        store.set(url, mode === 'pad' ? Buffer.concat([body, Buffer.alloc(4096, 0x55)]) : body.subarray(0, Math.floor(body.length / 2)));
        return res.writeHead(201).end();
      }
      const b = store.get(url);
      if (!b) return res.writeHead(404).end();
      res.writeHead(200, { 'content-length': b.length });
      res.end(req.method === 'HEAD' ? undefined : b);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/up`, puts: () => puts };
}

/** A private CA and a server certificate for 127.0.0.1 (openssl CLI). */
export function makeCa(dir: string): { ca: string; cert: string; key: string } {
  fs.mkdirSync(dir, { recursive: true });
  const f = (n: string) => path.join(dir, n);
  const run = (args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=moth-test-ca']);
  run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('srv.key'), '-out', f('srv.csr'), '-subj', '/CN=127.0.0.1']);
  fs.writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  run(['x509', '-req', '-in', f('srv.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('srv.pem'), '-days', '2', '-extfile', f('ext.cnf')]);
  return { ca: f('ca.pem'), cert: f('srv.pem'), key: f('srv.key') };
}

/**
 * An in-memory WebDAV-ish target that holds each PUT's answer until another PUT is in progress
 * (or `holdMs` passes), so a test sees whether uploads overlap, and records the most at once.
 */
export async function startOverlapTarget(t: TestContext, holdMs = 5000): Promise<{ url: string; maxConcurrent: () => number; overlapped: () => number; puts: () => number }> {
  const store = new Map<string, Buffer>();
  let active = 0;
  let maxConcurrent = 0;
  let overlapped = 0;
  let puts = 0;
  const waiting = new Set<() => void>();
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    if (req.method !== 'PUT') {
      req.resume();
      const b = store.get(url);
      if (req.method === 'MKCOL') return res.writeHead(201).end();
      if (!b) return res.writeHead(404).end();
      res.writeHead(200, { 'content-length': b.length });
      return res.end(req.method === 'HEAD' ? undefined : b);
    }
    puts++;
    active++;
    maxConcurrent = Math.max(maxConcurrent, active);
    if (active > 1) {
      overlapped++;
      for (const w of waiting) w(); // another upload is in progress: release the held ones
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      store.set(url, Buffer.concat(chunks));
      const done = () => {
        waiting.delete(done);
        clearTimeout(timer);
        active--;
        res.writeHead(201).end();
      };
      const timer = setTimeout(done, holdMs);
      if (active > 1) done();
      else waiting.add(done);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(async () => {
    for (const w of [...waiting]) w();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/up`, maxConcurrent: () => maxConcurrent, overlapped: () => overlapped, puts: () => puts };
}

/** A TCP proxy in front of a port that counts the bytes clients send, and can be taken down (resets every connection). */
export async function startCountingProxy(t: TestContext, port: number): Promise<{ url: string; upBytes: () => number; setDown: (down: boolean) => void }> {
  let up = 0;
  let down = false;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    if (down) {
      client.resetAndDestroy();
      return;
    }
    const target = net.connect(port, '127.0.0.1');
    sockets.add(client);
    sockets.add(target);
    client.on('data', (c: Buffer) => {
      up += c.length;
      target.write(c);
    });
    target.on('data', (c: Buffer) => client.write(c));
    const end = () => (client.destroy(), target.destroy(), sockets.delete(client), sockets.delete(target));
    client.on('error', end).on('close', end);
    target.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    upBytes: () => up,
    setDown: (d) => {
      down = d;
      if (d) for (const s of sockets) s.resetAndDestroy();
    },
  };
}

/**
 * An in-memory PUT/GET target for answers nginx never gives: `chunked` answers every GET without a
 * Content-Length; `ignoreExpect` never sends 100 Continue (a listener for checkContinue turns off
 * Node's automatic one) and counts the requests that asked for it.
 */
export async function startMemoryTarget(t: TestContext, opts: { chunked?: boolean; ignoreExpect?: boolean } = {}): Promise<{ url: string; expects: () => number }> {
  const store = new Map<string, Buffer>();
  let expects = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = req.url ?? '/';
      if (req.method === 'PUT') return (store.set(url, Buffer.concat(chunks)), res.writeHead(201).end());
      const b = store.get(url);
      if (!b) return res.writeHead(404).end();
      if (!opts.chunked) return (res.writeHead(200, { 'content-length': b.length }), res.end(req.method === 'HEAD' ? undefined : b));
      res.writeHead(200, { 'content-type': 'application/octet-stream' }); // no length: chunked
      res.write(b.subarray(0, 10));
      res.end(b.subarray(10));
    });
  });
  if (opts.ignoreExpect) {
    server.on('checkContinue', (req, res) => {
      expects++;
      server.emit('request', req, res);
    });
  }
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/x`, expects: () => expects };
}
