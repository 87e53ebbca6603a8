// `moth-edge doctor` on this machine, through the real CLI: a pass for every peer that is present
// (ffmpeg and its encoders, a serial GPS on a socat pty, a free port, a writable recordings disk, a
// real moth-edge as the pang upstream, an HTTPS sync target verified with its CA file) and a clear
// finding with a fix for each missing one (an ffmpeg path that does not exist, a port in use, a
// closed upstream port, a serial device that is not there, a TLS server without its CA).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer as createHttps } from 'node:https';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { selfSignedCert } from '../egress/helpers.js';
import { startPtyPair } from '../sensor/socat-pty.js';
import { cliCommand, closedPort, run, startApp, tempDir, writeFile } from '../support/app.js';

const cli = cliCommand();

interface Finding {
  verdict: 'pass' | 'warn' | 'fail';
  check: string;
  detail: string;
  fix?: string;
}

async function doctor(configFile: string): Promise<{ code: number; findings: Finding[]; text: string }> {
  const go = (args: string[]) =>
    run(cli.cmd, [...cli.args, 'doctor', '--config', configFile, ...args]).then(
      (r) => ({ code: 0, out: r.stdout }),
      (e: { code: number; stdout: string }) => ({ code: e.code, out: e.stdout }),
    );
  const [j, h] = await Promise.all([go(['--json', '--timeout', '3000']), go(['--timeout', '3000'])]);
  assert.equal(j.code, h.code);
  return { code: j.code, findings: (JSON.parse(j.out) as { findings: Finding[] }).findings, text: h.out };
}

test('doctor: a pass for every present peer, with the config that names them', { timeout: 90_000 }, async (t) => {
  const { dir, cleanup } = tempDir('moth-edge-doctor-');
  t.after(cleanup);
  const pty = await startPtyPair(join(dir, 'gps'), join(dir, 'gps-feed'));
  t.after(() => pty.kill());
  const moth = await startApp({ channels: [{ name: 'relay' }] }); // a real pang server as the upstream
  t.after(() => moth.close());
  const { certFile, keyFile } = await selfSignedCert(dir);
  const dav = createHttps({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, (_q, r) => r.writeHead(207, { date: new Date().toUTCString() }).end()).listen(0, '127.0.0.1');
  await once(dav, 'listening');
  t.after(() => dav.close());
  const cfg = writeFile(dir, 'robot.yaml', [
    `server: { port: ${await closedPort()} }`,
    'channels:',
    '  - name: robot',
    '    sources:',
    '      - driver: { kind: testpattern }',
    `      - driver: { kind: gps, path: ${pty.dev} }`,
    'egress:',
    '  upstream:',
    `    - { url: "ws://127.0.0.1:${moth.port}", instant: robot1, from: robot/base/video }`,
    'recordings:',
    `  root: ${join(dir, 'rec')}`,
    `  sync: { url: "https://127.0.0.1:${(dav.address() as AddressInfo).port}/dav/", caFile: ${certFile} }`,
  ].join('\n'));
  const r = await doctor(cfg);
  const byCheck = (re: RegExp) => r.findings.filter((f) => re.test(f.check));
  for (const re of [/^node$/, /^better-sqlite3$/, /^ffmpeg$/, /^h264 encoders$/, /^serial robot\/base\/gps$/, /^recordings disk$/, /^port HTTP\/pang$/, /^upstream egress\.upstream\[0\]$/, /^upstream recordings\.sync$/]) {
    const f = byCheck(re);
    assert.equal(f.length, 1, `one ${re} finding:\n${r.text}`);
    assert.equal(f[0]!.verdict, 'pass', `${re} passes:\n${r.text}`);
  }
  assert.match(byCheck(/^upstream recordings\.sync$/)[0]!.detail, /TLS verified/);
  assert.ok(byCheck(/^clock/).length >= 1, 'the clock is looked at');
  assert.ok(byCheck(/^clock skew$/).every((f) => f.verdict === 'pass'), 'same machine: no skew against the local servers');
  assert.deepEqual(r.findings.filter((f) => f.verdict === 'fail'), [], r.text);
  assert.equal(r.code, 0);
  assert.match(r.text, /^PASS {2}ffmpeg/m);
  assert.match(r.text, /\d+ passed, \d+ warning\(s\), 0 failed/);
});

test('doctor: each missing peer is a FAIL that says what to fix, and the exit code is 1', { timeout: 90_000 }, async (t) => {
  const { dir, cleanup } = tempDir('moth-edge-doctor-');
  t.after(cleanup);
  const held = createServer().listen(0, '127.0.0.1');
  await once(held, 'listening');
  t.after(() => held.close());
  const { certFile, keyFile } = await selfSignedCert(dir);
  const tls = createHttps({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, (_q, r) => r.end()).listen(0, '127.0.0.1');
  await once(tls, 'listening');
  t.after(() => tls.close());
  const cfg = writeFile(dir, 'broken.yaml', [
    `server: { port: ${(held.address() as AddressInfo).port} }`,
    'ffmpeg: { path: /nonexistent/bin/ffmpeg }',
    'channels:',
    '  - name: robot',
    '    sources:',
    '      - driver: { kind: testpattern }',
    `      - driver: { kind: gps, path: ${join(dir, 'no-such-tty')} }`,
    'egress:',
    '  upstream:',
    `    - { url: "ws://127.0.0.1:${await closedPort()}", instant: robot1, from: robot/base/video }`,
    `    - { url: "wss://127.0.0.1:${(tls.address() as AddressInfo).port}", instant: robot1, from: robot/base/gps }`,
    'recordings:',
    `  root: ${join(dir, 'rec')}`,
  ].join('\n'));
  const r = await doctor(cfg);
  const failed = (re: RegExp) => {
    const f = r.findings.find((x) => re.test(x.check) && x.verdict === 'fail');
    assert.ok(f, `a FAIL for ${re}:\n${r.text}`);
    assert.ok(f.fix && f.fix.length > 10, `${re} says what to fix`);
    return f;
  };
  assert.match(failed(/^ffmpeg$/).detail, /\/nonexistent\/bin\/ffmpeg/);
  assert.match(failed(/^ffmpeg$/).fix!, /apt-get install ffmpeg|ffmpeg\.path/);
  assert.match(failed(/^port HTTP\/pang$/).detail, /in use/);
  assert.match(failed(/^port HTTP\/pang$/).fix!, /ss -ltnp|server\.port/);
  assert.match(failed(/^serial robot\/base\/gps$/).detail, /does not exist/);
  assert.match(failed(/^upstream egress\.upstream\[0\]$/).detail, /ECONNREFUSED/);
  assert.match(failed(/^upstream egress\.upstream\[0\]$/).fix!, /nothing listens/);
  assert.match(failed(/^upstream egress\.upstream\[1\]$/).fix!, /self-signed|caFile/);
  assert.equal(r.code, 1);
  assert.match(r.text, /^FAIL {2}ffmpeg .*\n +fix: /m);
  // the rest of the machine still passes
  assert.equal(r.findings.find((f) => f.check === 'recordings disk')!.verdict, 'pass');
});

test('doctor: an invalid config exits 2 with the problems', async (t) => {
  const { dir, cleanup } = tempDir('moth-edge-doctor-');
  t.after(cleanup);
  const cfg = writeFile(dir, 'bad.yaml', 'server: { port: 99999 }\n');
  const r = await run(cli.cmd, [...cli.args, 'doctor', '--config', cfg]).then(
    () => ({ code: 0, err: '' }),
    (e: { code: number; stderr: string }) => ({ code: e.code, err: e.stderr }),
  );
  assert.equal(r.code, 2);
  assert.match(r.err, /server\.port: got 99999/);
});
