// `moth-edge doctor`: checks this machine for what the runtime and its config need, each finding with
// what to fix. Checks only look: they open no device for writing, send no credentials, create no file.

import { execFile } from 'node:child_process';
import { constants, accessSync, existsSync, statSync, statfsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { dirname, resolve } from 'node:path';
import type { Config } from '../config/schema.js';
import { chooseEncoder, detectBoard, probeFfmpegEncoders, profileFor } from '../../board/index.js';
import { resolveFfmpeg } from '../../drivers/exec/ffmpeg.js';

export type Verdict = 'pass' | 'warn' | 'fail';

export interface Finding {
  verdict: Verdict;
  /** What was checked: "ffmpeg", "serial /dev/ttyUSB0", "upstream wss://…". */
  check: string;
  detail: string;
  /** What to do; absent on a pass. */
  fix?: string;
}

export interface DoctorOptions {
  config: Config;
  /** The config was given (else: the machine alone, with the embedded demo's needs). */
  configFile?: string;
  /** Per network probe. */
  timeoutMs?: number;
  /** Root of /sys, /proc for board detection (tests). */
  root?: string;
}

const pass = (check: string, detail: string): Finding => ({ verdict: 'pass', check, detail });
const warn = (check: string, detail: string, fix: string): Finding => ({ verdict: 'warn', check, detail, fix });
const fail = (check: string, detail: string, fix: string): Finding => ({ verdict: 'fail', check, detail, fix });

function run(cmd: string, args: string[], timeoutMs: number): Promise<{ ok: boolean; out: string }> {
  return new Promise((res) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 1 << 20 }, (err, stdout, stderr) => res({ ok: !err, out: `${stdout}${stderr}` }));
  });
}

/** Drivers and devices of the config, flattened. */
function drivers(config: Config) {
  return (config.channels ?? []).flatMap((ch) => ch.sources.map((s) => ({ where: `${ch.name ?? ch.id}/${s.name}/${s.driver.track}`, d: s.driver })));
}

export async function checkNode(): Promise<Finding[]> {
  const major = Number(process.versions.node.split('.')[0]);
  if (major < 20) return [fail('node', `Node.js ${process.version}`, 'install Node.js 20 or newer (NodeSource or the distribution\'s nodejs package)')];
  const out: Finding[] = [pass('node', `Node.js ${process.version} on ${process.platform}/${process.arch}`)];
  try {
    const req = createRequire(import.meta.url);
    const Database = req('better-sqlite3') as new (p: string) => { close(): void };
    new Database(':memory:').close();
    out.push(pass('better-sqlite3', 'loads (the recordings index)'));
  } catch (err) {
    out.push(fail('better-sqlite3', `does not load: ${(err as Error).message.split('\n')[0]}`, 'reinstall with a C/C++ toolchain present (apt-get install build-essential python3; npm rebuild better-sqlite3), or use the bundle built for this architecture'));
  }
  return out;
}

/** pm2 keeps the runtime up and starts it at boot; it is not a runtime dependency (README, board/README.md). */
export async function checkPm2(): Promise<Finding[]> {
  const w = await run('which', ['pm2'], 3000);
  if (w.ok) return [pass('pm2', `${w.out.trim()} (pm2 start ecosystem.config.js; pm2 save; pm2 startup)`)];
  return [warn('pm2', 'pm2 not on PATH: nothing restarts moth-edge after a crash or a reboot', 'sudo npm install -g pm2, then pm2 start ecosystem.config.js && pm2 save && pm2 startup')];
}

export async function checkFfmpeg(o: DoctorOptions): Promise<Finding[]> {
  const t = o.timeoutMs ?? 5000;
  const needs = drivers(o.config).some(({ d }) => d.kind === 'testpattern' || d.kind === 'v4l2' || ((d.kind === 'rtsp' || d.kind === 'onvif') && d.client === 'ffmpeg'));
  let bin;
  try {
    bin = resolveFfmpeg(o.config.ffmpeg.path);
  } catch (err) {
    const msg = (err as Error).message.replace(/^[A-Z_]+: /, '');
    const fix = o.config.ffmpeg.path ? `install ffmpeg at ${o.config.ffmpeg.path} or fix ffmpeg.path (Debian/Pi OS: apt-get install ffmpeg)` : 'apt-get install ffmpeg (Pi OS: the one with the hardware codecs), or set ffmpeg.path';
    return [needs ? fail('ffmpeg', msg, fix) : warn('ffmpeg', `${msg} (no configured camera needs it; stills and ?codec= transcoding do)`, fix)];
  }
  const v = await run(bin.path, ['-hide_banner', '-version'], t);
  if (!v.ok) return [fail('ffmpeg', `${bin.path} does not run: ${v.out.split('\n')[0]}`, 'reinstall ffmpeg or point ffmpeg.path at a working one')];
  const version = /ffmpeg version (\S+)/.exec(v.out)?.[1] ?? 'unknown version';
  const out = [pass('ffmpeg', `${bin.path} (${bin.source}), version ${version}`)];
  const encoders = new Set((await probeFfmpegEncoders(bin.path, t)) ?? []);
  const board = await detectBoard(o.root ?? '/');
  const profile = profileFor(board);
  const choice = chooseEncoder(profile, encoders);
  const have = [...encoders].join(', ') || 'none';
  const encodes = drivers(o.config).some(({ d }) => d.kind === 'testpattern' || (d.kind === 'v4l2' && d.inputFormat !== 'h264'));
  if (choice) out.push(pass('h264 encoders', `${have}; board ${board.id} uses ${choice}`));
  else if (encodes) out.push(fail('h264 encoders', `none of ${profile.encoders.filter((e) => e !== 'passthrough').join(', ')} in this ffmpeg (it has: ${have})`, 'install an ffmpeg built with libx264 (Debian: apt-get install ffmpeg) or, on a Pi, with h264_v4l2m2m'));
  else out.push(warn('h264 encoders', `none of ${profile.encoders.filter((e) => e !== 'passthrough').join(', ')} (it has: ${have}); passthrough cameras do not need one`, 'install an ffmpeg with libx264 before adding an encoding camera'));
  return out;
}

function deviceFinding(check: string, path: string, kind: 'serial' | 'camera' | 'input'): Finding {
  const groups = { serial: 'dialout', camera: 'video', input: 'input' }[kind];
  const list = { serial: 'ls -l /dev/serial/by-id/', camera: 'moth-edge devices', input: 'ls -l /dev/input/' }[kind];
  if (!existsSync(path)) return fail(check, `${path} does not exist`, `plug the device in, or fix the path (${list} shows what is there)`);
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    return fail(check, `${path}: ${(err as Error).message}`, `check the path (${list})`);
  }
  if (!st.isCharacterDevice()) return fail(check, `${path} is not a device`, `point it at the device node (${list})`);
  try {
    accessSync(path, constants.R_OK | constants.W_OK);
  } catch {
    return fail(check, `${path} is not readable and writable by this user`, `add the user to the "${groups}" group (usermod -aG ${groups} $USER, then log in again)`);
  }
  return pass(check, `${path} present and accessible`);
}

export async function checkDevices(o: DoctorOptions): Promise<Finding[]> {
  const out: Finding[] = [];
  for (const { where, d } of drivers(o.config)) {
    if (d.kind === 'gps' || d.kind === 'serial-lines') out.push(deviceFinding(`serial ${where}`, d.path, 'serial'));
    if (d.kind === 'v4l2') out.push(deviceFinding(`camera ${where}`, d.device, 'camera'));
    if (d.kind === 'rpicam') {
      const tools = d.tool === 'auto' ? ['rpicam-vid', 'libcamera-vid'] : [d.tool];
      const found = (await Promise.all(tools.map(async (x) => ((await run('which', [x], 3000)).ok ? x : null)))).filter(Boolean);
      out.push(found.length ? pass(`camera ${where}`, `${found[0]} found`) : fail(`camera ${where}`, `${tools.join(' / ')} not on PATH`, 'apt-get install rpicam-apps (Pi OS bookworm) or libcamera-apps'));
    }
  }
  const c = o.config.control;
  for (const p of c.ptz) if (p.kind === 'pelco-d') out.push(deviceFinding(`serial ptz/${p.name}`, p.path, 'serial'));
  for (const m of c.motors) out.push(deviceFinding(`serial motor/${m.name}`, m.path, 'serial'));
  for (const j of c.joysticks) out.push(deviceFinding(`joystick ${j.name}`, j.path, 'input'));
  if (out.some((f) => f.check.startsWith('serial')) && !(await run('which', ['udevadm'], 3000)).ok) {
    out.push(warn('udev', 'udevadm not found: serial port listing fails', 'apt-get install udev'));
  }
  return out;
}

/** The nearest existing folder of a path that may not exist yet. */
function existingAncestor(p: string): string {
  let cur = resolve(p);
  while (!existsSync(cur) && dirname(cur) !== cur) cur = dirname(cur);
  return cur;
}

export async function checkDisk(o: DoctorOptions): Promise<Finding[]> {
  const r = o.config.recordings;
  if (!r.enabled) return [pass('recordings disk', 'recordings are off')];
  const at = existingAncestor(r.root);
  try {
    accessSync(at, constants.W_OK);
  } catch {
    return [fail('recordings disk', `${r.root} cannot be created or written (${at} is not writable)`, `create it for this user: sudo install -d -o $USER ${resolve(r.root)}`)];
  }
  const fs = statfsSync(at);
  const free = Number(fs.bavail) * Number(fs.bsize);
  const floor = r.retention.minFreeBytes;
  const gib = (n: number) => `${(n / 1024 ** 3).toFixed(1)} GiB`;
  const detail = `${gib(free)} free on the filesystem of ${resolve(r.root)} (floor recordings.retention.minFreeBytes ${gib(floor)})`;
  if (free <= floor) return [fail('recordings disk', detail, 'free space, move recordings.root to a bigger disk, or lower minFreeBytes: below the floor retention deletes even unsynced segments')];
  if (free < floor * 4) return [warn('recordings disk', detail, 'little room above the floor: retention will delete soon; give recordings more space or set retention.maxBytes')];
  return [pass('recordings disk', detail)];
}

export async function checkClock(o: DoctorOptions, skews: Array<{ server: string; skewMs: number }>): Promise<Finding[]> {
  const out: Finding[] = [];
  // A Pi has no RTC: until NTP answers it runs from the last shutdown (or 1970).
  if (Date.now() < Date.UTC(2025, 0, 1)) {
    out.push(fail('clock', `the clock says ${new Date().toISOString()}`, 'the clock is not set: connect to a network with NTP (timedatectl set-ntp true) or fit an RTC; recordings and TLS depend on it'));
  }
  const t = await run('timedatectl', ['show', '-p', 'NTPSynchronized', '--value'], o.timeoutMs ?? 5000);
  const synced = t.ok ? t.out.trim() : existsSync('/run/systemd/timesync/synchronized') ? 'yes' : null;
  if (synced === 'yes') out.push(pass('clock sync', 'NTP synchronised'));
  else if (synced === 'no') out.push(warn('clock sync', 'not NTP synchronised', 'timedatectl set-ntp true (systemd-timesyncd) or install chrony; capture timestamps and recordings use the wall clock'));
  else {
    const c = await run('chronyc', ['-n', 'tracking'], o.timeoutMs ?? 5000);
    if (c.ok && /Leap status\s*:\s*Normal/.test(c.out)) out.push(pass('clock sync', 'chrony synchronised'));
    else out.push(warn('clock sync', 'cannot tell whether the clock is synchronised (no timedatectl answer, no chrony)', 'run systemd-timesyncd or chrony on the robot'));
  }
  for (const s of skews) {
    const sec = (s.skewMs / 1000).toFixed(1);
    if (Math.abs(s.skewMs) > 2000) out.push(warn('clock skew', `${sec} s against ${s.server}'s Date header`, 'synchronise the clock (NTP): recorded times and gap reports will be off by as much'));
    else out.push(pass('clock skew', `${sec} s against ${s.server}`));
  }
  return out;
}

function portFree(host: string, port: number): Promise<string | null> {
  return new Promise((res) => {
    const s = createServer();
    s.once('error', (e: NodeJS.ErrnoException) => res(e.code ?? e.message));
    s.listen({ host, port, exclusive: true }, () => s.close(() => res(null)));
  });
}

export async function checkPorts(o: DoctorOptions): Promise<Finding[]> {
  const want: Array<{ what: string; host: string; port: number; key: string }> = [{ what: 'HTTP/pang', host: o.config.server.host, port: o.config.server.port, key: 'server.port' }];
  if (o.config.rtmp) want.push({ what: 'RTMP', host: o.config.rtmp.host, port: o.config.rtmp.port, key: 'rtmp.port' });
  const out: Finding[] = [];
  for (const w of want) {
    const check = `port ${w.what}`;
    if (w.port === 0) {
      out.push(pass(check, `${w.host}:0 (any free port)`));
      continue;
    }
    const err = await portFree(w.host, w.port);
    if (!err) out.push(pass(check, `${w.host}:${w.port} free`));
    else if (err === 'EADDRINUSE') out.push(fail(check, `${w.host}:${w.port} is in use`, `stop what holds it (ss -ltnp 'sport = :${w.port}' shows it; another moth-edge under pm2?) or change ${w.key}`));
    else if (err === 'EACCES') out.push(fail(check, `${w.host}:${w.port}: permission denied`, `use a port above 1023 in ${w.key}, or grant CAP_NET_BIND_SERVICE`));
    else out.push(fail(check, `${w.host}:${w.port}: ${err}`, `${w.key}: is ${w.host} an address of this machine? (ip -br addr)`));
  }
  return out;
}

interface Target {
  what: string;
  url: string;
  caFile?: string | undefined;
  insecure?: boolean;
}

function targets(config: Config): Target[] {
  const out: Target[] = [];
  config.egress.upstream.forEach((u, i) => out.push({ what: `egress.upstream[${i}]`, url: u.url, caFile: u.caFile, insecure: u.insecure }));
  config.egress.pull.forEach((u, i) => out.push({ what: `egress.pull[${i}]`, url: u.url, caFile: u.caFile, insecure: u.insecure }));
  config.egress.whip.forEach((w, i) => out.push({ what: `egress.whip[${i}]`, url: w.url }));
  if (config.control.upstream) out.push({ what: 'control.upstream', url: config.control.upstream.url });
  const sync = config.recordings.enabled ? config.recordings.sync?.target : undefined;
  if (sync?.kind === 'webdav') out.push({ what: 'recordings.sync', url: sync.url, caFile: sync.caFile });
  else if (sync?.kind === 's3') out.push({ what: 'recordings.sync', url: sync.endpoint ?? `https://s3.${sync.region}.amazonaws.com`, caFile: sync.caFile });
  // one probe per server and TLS setting
  const seen = new Set<string>();
  return out.filter((t) => {
    const k = `${new URL(t.url).origin} ${t.caFile ?? ''} ${t.insecure ?? false}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

const TLS_FIX: Record<string, string> = {
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'caFile must hold the CA that ISSUED the server certificate (a Moth Lite mkcert leaf: its root CA from `mkcert -CAROOT`), not the certificate itself',
  SELF_SIGNED_CERT_IN_CHAIN: 'set caFile to the CA of that chain',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'a self-signed server certificate: set caFile to it, or insecure: true on a test bench only',
  CERT_HAS_EXPIRED: 'the server certificate expired, or this clock is wrong (see clock sync)',
  CERT_NOT_YET_VALID: 'this clock is behind (see clock sync) or the certificate is new',
  ERR_TLS_CERT_ALTNAME_INVALID: 'the URL host is not in the certificate: use the name the certificate was made for',
};

/** Reachability of one server: DNS, TCP, TLS with the configured CA; any HTTP answer counts. No credentials are sent. */
async function probe(t: Target, timeoutMs: number): Promise<{ finding: Finding; skewMs?: number }> {
  const u = new URL(t.url);
  const https = u.protocol === 'https:' || u.protocol === 'wss:';
  const origin = `${https ? 'https' : 'http'}://${u.host}/`;
  const check = `upstream ${t.what}`;
  const shown = `${u.protocol}//${u.host}`;
  let ca: string | undefined;
  if (t.caFile) {
    try {
      ca = await readFile(t.caFile, 'utf8');
    } catch (err) {
      return { finding: fail(check, `${shown}: caFile ${t.caFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'put the PEM file of the issuing CA there, readable by this user') };
    }
  }
  const mod = https ? await import('node:https') : await import('node:http');
  const t0 = Date.now();
  return new Promise((res) => {
    const req = mod.request(origin, { method: 'HEAD', timeout: timeoutMs, ...(https ? { ca, rejectUnauthorized: !t.insecure } : {}) }, (r) => {
      r.resume();
      const date = r.headers.date ? Date.parse(r.headers.date) : NaN;
      const ms = Date.now() - t0;
      res({
        finding: pass(check, `${shown} reachable (HTTP ${r.statusCode} in ${ms} ms${https ? (t.insecure ? ', TLS NOT verified: insecure is set' : ', TLS verified') : ''})`),
        ...(Number.isFinite(date) ? { skewMs: Date.now() - ms / 2 - date } : {}),
      });
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', (e: NodeJS.ErrnoException) => {
      const code = e.code ?? 'ERROR';
      let fix = 'check the URL, the network and the firewall between robot and server';
      if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') fix = `the name ${u.hostname} does not resolve: check DNS (resolvectl status) or use the server's IP address`;
      else if (code === 'ECONNREFUSED') fix = `nothing listens on ${u.host}: is the server running, and on that port?`;
      else if (code === 'ETIMEDOUT' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH') fix = `no route or a firewall drops it: ping ${u.hostname}; open TCP ${u.port || (https ? 443 : 80)} on the way`;
      else if (TLS_FIX[code]) fix = TLS_FIX[code]!;
      res({ finding: fail(check, `${shown}: ${code}${e.message && !e.message.includes(code) ? ` (${e.message})` : ''}`, fix) });
    });
    req.end();
  });
}

export async function checkUpstreams(o: DoctorOptions): Promise<{ findings: Finding[]; skews: Array<{ server: string; skewMs: number }> }> {
  const list = targets(o.config);
  const results = await Promise.all(list.map((t) => probe(t, o.timeoutMs ?? 5000)));
  return {
    findings: results.map((r) => r.finding),
    skews: results.flatMap((r, i) => (r.skewMs === undefined ? [] : [{ server: new URL(list[i]!.url).host, skewMs: r.skewMs }])),
  };
}

/** Every check, in the order a person fixes things: software, devices, disk, network, clock. */
export async function runDoctor(o: DoctorOptions): Promise<Finding[]> {
  const up = await checkUpstreams(o);
  return [
    ...(await checkNode()),
    ...(await checkPm2()),
    ...(await checkFfmpeg(o)),
    ...(await checkDevices(o)),
    ...(await checkDisk(o)),
    ...(await checkPorts(o)),
    ...up.findings,
    ...(await checkClock(o, up.skews)),
  ];
}
