import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { cliCommand, pidsMatching, run, tempDir, waitFor, writeFile } from '../support/app.js';

const cli = cliCommand();
const runCli = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  run(cli.cmd, [...cli.args, ...args], { env: { ...process.env, ...env } }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );

test('--help and --check-config of the embedded default', async () => {
  const h = await runCli(['--help']);
  assert.equal(h.code, 0);
  assert.match(h.stdout, /--check-config/);
  const c = await runCli(['--check-config']);
  assert.equal(c.code, 0);
  assert.match(c.stdout, /config ok/);
});

test('an invalid config names the key path, the value and what is allowed, and exits non-zero', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const f = writeFile(dir, 'bad.yaml', [
    'server:',
    '  port: 99999',
    '  hots: 0.0.0.0',
    'channels:',
    '  - id: not-an-xid',
    '    sources:',
    '      - driver: { kind: testpattern, fps: 500 }',
    '      - driver: { kind: warpdrive }',
  ].join('\n'));
  const r = await runCli(['--check-config', '--config', f]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /server\.port: got 99999; .*65535/);
  assert.match(r.stderr, /server: unknown key\(s\) "hots"/);
  assert.match(r.stderr, /channels\[0\]\.id: got "not-an-xid"; a 20-char xid/);
  assert.match(r.stderr, /channels\[0\]\.sources\[0\]\.driver\.fps: got 500/);
  assert.match(r.stderr, /channels\[0\]\.sources\[1\]\.driver\.kind: got "warpdrive"/);
  const y = writeFile(dir, 'broken.yaml', 'server: [unclosed');
  const r2 = await runCli(['--config', y]);
  assert.equal(r2.code, 2);
  assert.match(r2.stderr, /not valid YAML/);
  const open = writeFile(dir, 'open.yaml', 'server: { host: 0.0.0.0 }');
  const r3 = await runCli(['--check-config', '--config', open]);
  assert.equal(r3.code, 2, 'binding beyond loopback without a token is refused');
  assert.match(r3.stderr, /server\.token/);
});

test('--print-config fills defaults and hides secrets', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const f = writeFile(dir, 'c.yaml', 'channels:\n  - id: c0ffee00000000000000\n    key: hunter2-secret\n');
  const r = await runCli(['--print-config', '--config', f]);
  assert.equal(r.code, 0);
  assert.ok(!r.stdout.includes('hunter2-secret'), 'no secret printed');
  const cfg = JSON.parse(r.stdout) as { engine: { memoryCeiling: number | 'auto' }; channels: Array<{ key: string }> };
  assert.equal(cfg.channels[0]!.key, '***');
  assert.equal(cfg.engine.memoryCeiling, 'auto', 'the ceiling defaults to the board profile');
});

test('SIGTERM: drivers stopped, exit 0 within 5 s, no orphan ffmpeg', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  // A size nobody else uses — per process: other checkouts on a shared machine run this same test —
  // so the orphan check finds only our ffmpeg.
  const size = `${322 + 2 * (process.pid % 500)}x242`;
  const f = writeFile(dir, 'c.yaml', [
    'server: { port: 0 }',
    'log: { level: warn }',
    'channels:',
    '  - id: c0ffee00000000000000',
    '    sources:',
    `      - driver: { kind: testpattern, width: ${size.split('x')[0]}, height: 242, fps: 15 }`,
  ].join('\n'));
  // The ffmpeg of this run only: other runs on the machine start the same command line.
  const mark = `sigterm-${process.pid}-${Date.now()}`;
  const child = spawn(cli.cmd, [...cli.args, '--config', f], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MOTH_TEST_MARK: mark } });
  // A failed assertion must not leave the runtime (and the test file) running.
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  await waitFor(() => /stats:\s+http:\/\/127\.0\.0\.1:(\d+)/.test(out), 15_000, 'startup banner');
  const port = Number(/stats:\s+http:\/\/127\.0\.0\.1:(\d+)/.exec(out)![1]);
  await waitFor(async () => {
    const h = await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.json() as Promise<{ drivers: Array<{ ready: boolean }> }>, () => null);
    return !!h?.drivers.every((d) => d.ready);
  }, 15_000, 'driver ready');
  assert.equal((await pidsMatching(`size=${size}`, mark)).length, 1, 'one ffmpeg running');
  const t0 = Date.now();
  child.kill('SIGTERM');
  const code = await exited;
  const ms = Date.now() - t0;
  assert.equal(code, 0);
  assert.ok(ms < 5000, `stopped in ${ms} ms`);
  await waitFor(async () => (await pidsMatching(`size=${size}`, mark)).length === 0, 3000, 'ffmpeg gone');
});

test('every command and recordings subcommand has its own --help with examples; the top help says what is required', async () => {
  const top = await runCli(['--help']);
  assert.match(top.stdout, /recordings .*\(--config FILE \| --root DIR\)[\s\S]*REQUIRED/);
  assert.match(top.stdout, /doctor/);
  const cases: Array<[string[], RegExp]> = [
    [['run', '--help'], /^usage: moth-edge \[run\]/],
    [['--check-config', '--help'], /^usage: moth-edge --check-config/],
    [['--print-config', '--help'], /^usage: moth-edge --print-config/],
    [['config', '--help'], /^usage: moth-edge config schema/],
    [['doctor', '--help'], /^usage: moth-edge doctor/],
    [['recordings', '--help'], /^usage: moth-edge recordings <list\|verify\|sync\|export> \(--config FILE \| --root DIR\)[\s\S]*REQUIRED/],
    [['recordings', 'list', '--help'], /^usage: moth-edge recordings list/],
    [['recordings', 'verify', '--help'], /^usage: moth-edge recordings verify/],
    [['recordings', 'sync', '--help'], /^usage: moth-edge recordings sync --config FILE/],
    [['recordings', 'export', '--help'], /^usage: moth-edge recordings export[\s\S]*--from, --to and --out are required/],
    [['board', '--help'], /^usage: moth-edge board/],
    [['devices', '--help'], /^usage: moth-edge devices/],
    [['discover', '--help'], /^usage: moth-edge discover/],
    [['help', 'recordings', 'export'], /^usage: moth-edge recordings export/],
  ];
  for (const [args, re] of cases) {
    const r = await runCli(args);
    assert.equal(r.code, 0, args.join(' '));
    assert.match(r.stdout, re, args.join(' '));
    assert.match(r.stdout, /Examples:\n {2}(moth-edge|MOTH_EDGE_CONFIG)/, `${args.join(' ')} shows examples`);
  }
  const bad = await runCli(['frobnicate', '--help']);
  assert.equal(bad.code, 2);
});

test('config schema prints the whole JSON Schema (not cut at the pipe buffer)', async () => {
  const r = await runCli(['config', 'schema']);
  assert.equal(r.code, 0);
  const s = JSON.parse(r.stdout) as { $schema: string; properties: Record<string, { properties?: Record<string, { default?: unknown }> }>; additionalProperties: boolean };
  assert.match(s.$schema, /json-schema\.org\/draft\/2020-12/);
  for (const k of ['server', 'engine', 'channels', 'egress', 'recordings', 'control', 'rtmp']) assert.ok(s.properties[k], `schema has ${k}`);
  assert.equal(s.properties.server!.properties!.port!.default, 8276);
  assert.equal(s.additionalProperties, false, 'unknown keys are errors in the editor too');
  assert.ok(r.stdout.length > 65536, `${r.stdout.length} bytes`);
});
