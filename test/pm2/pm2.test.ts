// The real pm2 (PM2_HOME in a temp dir) running the compiled runtime through ecosystem.config.js:
// kill -9 → pm2 restarts it and it serves again; pm2 stop → graceful stop inside kill_timeout; no
// ffmpeg left behind either way; max_memory_restart comes from the board profile.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { TREES, writeTree } from '../board/fixtures.js';
import { skipUnlessCi } from '../support/peer.js';

/** The repo root, from test/pm2/ or from the compiled dist/test/pm2/. */
function findRepo(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(d, 'ecosystem.config.js'))) {
    const up = dirname(d);
    if (up === d) throw new Error('ecosystem.config.js not found above the test');
    d = up;
  }
  return d;
}
const repo = findRepo();
const cli = join(repo, 'dist/runtime/cli.js');

/** pm2 from the repo's devDependencies, else MOTH_PM2_BIN, else the dev-machine tool prefix. */
function findPm2(): string | null {
  const c = [process.env.MOTH_PM2_BIN, join(repo, 'node_modules/.bin/pm2'), '/tmp/pm2tool/node_modules/.bin/pm2'];
  return c.find((p): p is string => !!p && existsSync(p)) ?? null;
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
  });
}

/** Children of a pid (from /proc), with their command names. */
function children(pid: number): Array<{ pid: number; comm: string }> {
  const out: Array<{ pid: number; comm: string }> = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const ppid = Number(stat.slice(close + 2).split(' ')[1]);
      if (ppid === pid) out.push({ pid: Number(d), comm });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/\) Z /.test(st); // a zombie is dead, only not yet reaped
  } catch {
    return false;
  }
}

async function until<T>(what: string, fn: () => Promise<T | null | undefined> | T | null | undefined, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const v = await fn();
      if (v !== null && v !== undefined && v !== false) return v as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** One binary frame from the local pang server: proves the runtime serves video. */
function pangFrame(port: number, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise((res, rej) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/pang/ws/sub?channel=m0thedge000000000000&source=base&track=video`);
    const t = setTimeout(() => {
      ws.terminate();
      rej(new Error('no pang frame within timeout'));
    }, timeoutMs);
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) return;
      clearTimeout(t);
      ws.close();
      res(data);
    });
    ws.on('error', (e) => {
      clearTimeout(t);
      rej(e);
    });
  });
}

async function healthy(port: number): Promise<boolean> {
  const r = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(2000) });
  if (r.status !== 200) return false;
  const j = (await r.json()) as { drivers: Array<{ name: string; ready: boolean }> };
  return j.drivers.some((d) => d.name.endsWith('/video') && d.ready);
}

interface Pm2Proc {
  name: string;
  pid: number;
  pm2_env: { status: string; restart_time: number; max_memory_restart: number; kill_timeout: number; exp_backoff_restart_delay: number };
}

test('pm2: start, kill -9 → restarted and serving, stop → graceful, no orphan ffmpeg', async (t) => {
  const pm2 = findPm2();
  if (!pm2) {
    skipUnlessCi(t, 'pm2 is not installed (add it as a devDependency, or set MOTH_PM2_BIN)');
    return;
  }
  assert.ok(existsSync(cli), `compile the runtime first (npx tsc -p .): ${cli} missing`);
  const dir = await mkdtemp(join(tmpdir(), 'moth-pm2-'));
  const port = await freePort();
  const config = join(dir, 'config.json');
  await writeFile(
    config,
    JSON.stringify({
      server: { host: '127.0.0.1', port },
      log: { level: 'info' },
      channels: [
        {
          id: 'm0thedge000000000000',
          name: 'robot',
          sources: [{ name: 'base', driver: { kind: 'testpattern', width: 320, height: 240, fps: 15, bitrateKbps: 300 } }],
        },
      ],
    }),
  );
  // A Pi Zero 2 W tree: the ecosystem file must size pm2's memory limit from it.
  const fakeRoot = join(dir, 'root');
  await writeTree(fakeRoot, TREES['pi-zero-2w']!);
  const name = `moth-edge-test-${process.pid}`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PM2_HOME: join(dir, 'pm2'),
    MOTH_EDGE_CONFIG: config,
    MOTH_EDGE_LOG_DIR: join(dir, 'logs'),
    MOTH_EDGE_PM2_NAME: name,
    MOTH_EDGE_ROOT: fakeRoot,
  };
  const pm2run = (args: string[]): Promise<string> =>
    new Promise((res, rej) =>
      execFile(pm2, args, { env, cwd: repo, timeout: 60_000, maxBuffer: 8 << 20 }, (err, stdout, stderr) =>
        err ? rej(new Error(`pm2 ${args.join(' ')}: ${err.message}\n${stderr}`)) : res(stdout),
      ),
    );
  const jlist = async (): Promise<Pm2Proc | undefined> => (JSON.parse(await pm2run(['jlist'])) as Pm2Proc[]).find((p) => p.name === name);
  // One hook, in order: stop the daemon (it needs PM2_HOME), make sure it is gone, then delete.
  t.after(async () => {
    const pidFile = join(dir, 'pm2/pm2.pid');
    const daemon = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : 0;
    await pm2run(['kill']).catch(() => {});
    if (daemon > 0 && alive(daemon)) {
      try {
        process.kill(daemon, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await rm(dir, { recursive: true, force: true });
  });

  await pm2run(['start', join(repo, 'ecosystem.config.js')]);
  const first = await until('pm2 reports the app online', async () => {
    const p = await jlist();
    return p && p.pm2_env.status === 'online' && p.pid > 0 ? p : null;
  });
  assert.equal(first.pm2_env.max_memory_restart, 145 * 1024 * 1024, 'Pi Zero 2 W profile: 35 % of 417 MiB');
  assert.equal(first.pm2_env.kill_timeout, 8000);
  assert.equal(first.pm2_env.exp_backoff_restart_delay, 200);
  await until('healthz ok with a ready video driver', () => healthy(port));
  const f1 = await pangFrame(port);
  assert.equal(f1.subarray(0, 3).toString('hex').startsWith('0000'), true, 'Annex-B access unit');
  const ffmpeg1 = await until('the test pattern ffmpeg child', () => {
    const c = children(first.pid).filter((c) => c.comm.includes('ffmpeg'));
    return c.length ? c : null;
  });

  // kill -9: no graceful stop at all. pm2 must bring it back; the old ffmpeg must not linger.
  process.kill(first.pid, 'SIGKILL');
  const second = await until('pm2 restarts the runtime', async () => {
    const p = await jlist();
    return p && p.pid !== first.pid && p.pid > 0 && p.pm2_env.status === 'online' ? p : null;
  });
  assert.ok(second.pm2_env.restart_time >= 1);
  await until('healthz ok again', () => healthy(port));
  await pangFrame(port);
  await until(`old ffmpeg ${ffmpeg1.map((f) => f.pid).join(',')} gone`, () => ffmpeg1.every((f) => !alive(f.pid)), 15_000);
  const ffmpeg2 = await until('the new ffmpeg child', () => {
    const c = children(second.pid).filter((c) => c.comm.includes('ffmpeg'));
    return c.length ? c : null;
  });

  // pm2 stop: SIGINT (pm2's default) → the runtime stops itself (logs "stopped") before kill_timeout; no SIGKILL.
  await pm2run(['stop', name]);
  await until('runtime exited', () => !alive(second.pid), 15_000);
  await until('ffmpeg of the stopped runtime gone', () => ffmpeg2.every((f) => !alive(f.pid)), 15_000);
  const out = await readFile(join(dir, 'logs/moth-edge.out.log'), 'utf8');
  assert.match(out, /"msg":"SIG(INT|TERM): stopping"/);
  assert.match(out, /"msg":"stopped"/, 'graceful stop completed');
  const daemonLog = await readFile(join(dir, 'pm2/pm2.log'), 'utf8');
  assert.doesNotMatch(daemonLog, /still alive after \d+ms, sending SIGKILL/, 'pm2 did not have to SIGKILL');
  assert.equal((await jlist())?.pm2_env.status, 'stopped');
});
