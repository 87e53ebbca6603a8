import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile, rename } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BOARD_IDS,
  PROFILES,
  chooseEncoder,
  createThermalMonitor,
  detectBoard,
  nextThermalLevel,
  parsePiRevision,
  parseThrottled,
  profileFor,
  runBoardCli,
  type BoardId,
} from '../../board/index.js';
import { TREES, setZone, writeTree } from './fixtures.js';

async function tmp(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'moth-board-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('every profile is detected from its fixture tree', async (t) => {
  const expect: Record<BoardId, { source: string; arch: string; memMb: number; extra?: Record<string, string> }> = {
    'pi-zero-2w': { source: 'device-tree', arch: 'arm64', memMb: 417, extra: { piRevision: '902120' } },
    pi3: { source: 'device-tree', arch: 'arm64', memMb: 923, extra: { piRevision: 'a020d3' } },
    pi4: { source: 'device-tree', arch: 'arm64', memMb: 3793, extra: { soc: 'bcm2711' } },
    pi5: { source: 'device-tree', arch: 'arm64', memMb: 8052, extra: { soc: 'bcm2712' } },
    'jetson-nano': { source: 'device-tree', arch: 'arm64', memMb: 3964, extra: { l4t: 'R32.7.4', soc: 'tegra210' } },
    'jetson-orin-nano': { source: 'device-tree', arch: 'arm64', memMb: 7651, extra: { l4t: 'R36.4.0', soc: 'tegra234' } },
    'generic-arm64': { source: 'arch', arch: 'arm64', memMb: 1963 },
    'generic-x86': { source: 'arch', arch: 'x64', memMb: 15932 },
  };
  assert.deepEqual(Object.keys(TREES).sort(), [...BOARD_IDS].sort());
  for (const id of BOARD_IDS) {
    const root = await tmp(t);
    await writeTree(root, TREES[id]!);
    const b = await detectBoard(root);
    const e = expect[id];
    assert.equal(b.id, id, `${id}: ${JSON.stringify(b)}`);
    assert.equal(b.source, e.source, id);
    assert.equal(b.arch, e.arch, id);
    assert.equal(b.memMb, e.memMb, id);
    for (const [k, v] of Object.entries(e.extra ?? {})) assert.equal((b as unknown as Record<string, string>)[k], v, `${id}.${k}`);
    assert.ok(!b.model.includes('\0'), 'NUL terminators stripped');
  }
});

test('fallbacks: cpuinfo revision without a device tree, L4T release only, unknown DT model', async (t) => {
  const pi = await tmp(t);
  await writeTree(pi, { files: { 'proc/cpuinfo': TREES.pi4!.files['proc/cpuinfo']!.replace(/Model\t\t: .*\n/, '') } });
  const b = await detectBoard(pi);
  assert.equal(b.id, 'pi4');
  assert.equal(b.source, 'cpuinfo');
  assert.equal(b.model, 'Raspberry Pi 4 Model B');
  assert.equal(b.memMb, 4096, 'RAM from the revision code when meminfo is absent');

  const jet = await tmp(t);
  await writeTree(jet, { files: { 'etc/nv_tegra_release': TREES['jetson-nano']!.files['etc/nv_tegra_release']!, 'proc/cpuinfo': 'CPU architecture: 8\n' } });
  const j = await detectBoard(jet);
  assert.equal(j.id, 'jetson-nano');
  assert.equal(j.source, 'nv_tegra_release');
  assert.equal(j.l4t, 'R32.7.4');

  const rock = await tmp(t);
  await writeTree(rock, { files: { 'proc/device-tree/model': 'Radxa ROCK 5B\0', 'proc/device-tree/compatible': 'radxa,rock-5b\0rockchip,rk3588\0', 'proc/cpuinfo': 'CPU architecture: 8\n' } });
  const r = await detectBoard(rock);
  assert.equal(r.id, 'generic-arm64');
  assert.equal(r.model, 'Radxa ROCK 5B');

  const orinNx = await tmp(t);
  await writeTree(orinNx, { files: { 'proc/device-tree/model': 'NVIDIA Jetson Orin NX Engineering Reference Developer Kit\0', 'proc/device-tree/compatible': 'nvidia,p3768-0000+p3767-0000\0nvidia,tegra234\0' } });
  assert.equal((await detectBoard(orinNx, { arch: 'arm64' })).id, 'generic-arm64', 'Orin NX is not an Orin Nano');

  const empty = await tmp(t);
  assert.equal((await detectBoard(empty, { arch: 'x64' })).id, 'generic-x86');
  assert.equal(parsePiRevision('0002'), null, 'old-style codes are not decoded');
  assert.deepEqual(parsePiRevision('d04170'), { type: 0x17, memMb: 8192 });
});

test('the machine itself is detected without error', async () => {
  const b = await detectBoard();
  assert.ok(BOARD_IDS.includes(b.id));
  assert.ok(b.memMb !== null && b.memMb > 0);
});

test('profiles: Pi 5 and Orin Nano have no hardware H.264; memory scales to the RAM present', () => {
  assert.equal(PROFILES.pi5.hardwareH264, null);
  assert.equal(PROFILES['jetson-orin-nano'].hardwareH264, null);
  assert.equal(PROFILES.pi4.hardwareH264, 'h264_v4l2m2m');
  for (const id of BOARD_IDS) {
    const p = PROFILES[id];
    assert.equal(p.encoders[0], 'passthrough', `${id}: camera H.264 passthrough comes first`);
    assert.ok(p.memory.nodeMaxOldSpaceMb < p.memory.pm2MaxMemoryRestartMb, `${id}: heap below the pm2 limit`);
    assert.ok(p.memory.engineBudgetMb < p.memory.nodeMaxOldSpaceMb, id);
    assert.ok(p.thermal.warmC < p.thermal.hotC && p.thermal.hotC < p.thermal.criticalC, id);
    for (let l = 1; l < 4; l++) assert.ok(p.thermal.steps[l]!.fpsScale <= p.thermal.steps[l - 1]!.fpsScale, `${id}: steps only go down`);
  }
  const small = profileFor({ id: 'pi4', memMb: 923 });
  assert.equal(small.memory.pm2MaxMemoryRestartMb, 323);
  assert.ok(small.memory.engineBudgetMb < PROFILES.pi4.memory.engineBudgetMb);
  assert.equal(profileFor({ id: 'pi4', memMb: 7800 }).memory.pm2MaxMemoryRestartMb, 600);
  assert.equal(profileFor({ id: 'pi-zero-2w', memMb: 417 }).memory.pm2MaxMemoryRestartMb, 145);
  assert.equal(PROFILES.pi4.memory.pm2MaxMemoryRestartMb, 600, 'profileFor does not mutate the table');

  assert.equal(chooseEncoder(PROFILES.pi4, new Set(['h264_v4l2m2m', 'libx264'])), 'h264_v4l2m2m');
  assert.equal(chooseEncoder(PROFILES.pi4, new Set(['libx264'])), 'libx264');
  assert.equal(chooseEncoder(PROFILES.pi5, new Set(['h264_v4l2m2m', 'libx264'])), 'libx264', 'Pi 5 ffmpeg may list v4l2m2m but has no encoder block');
  assert.equal(chooseEncoder(PROFILES.pi5, new Set(['libx264']), true), 'passthrough');
  assert.equal(chooseEncoder(PROFILES['generic-x86'], new Set()), null);
});

test('thermal policy: levels with hysteresis, firmware throttling holds level 1', () => {
  const p = PROFILES.pi4.thermal; // 72 / 78 / 82, hysteresis 3
  assert.equal(nextThermalLevel(0, 60, null, p), 0);
  assert.equal(nextThermalLevel(0, 72, null, p), 1);
  assert.equal(nextThermalLevel(0, 83, null, p), 3);
  assert.equal(nextThermalLevel(3, 80, null, p), 3, 'not below 82-3');
  assert.equal(nextThermalLevel(3, 78.9, null, p), 2);
  assert.equal(nextThermalLevel(2, 70, null, p), 1);
  assert.equal(nextThermalLevel(2, 60, null, p), 0);
  assert.equal(nextThermalLevel(1, 70, null, p), 1, 'inside the hysteresis band');
  assert.equal(nextThermalLevel(2, null, null, p), 2, 'no reading: keep the level');
  const thr = parseThrottled('throttled=0x50005\n')!;
  assert.equal(thr.underVoltage, true);
  assert.equal(thr.throttled, true);
  assert.equal(thr.underVoltageOccurred, true);
  assert.equal(thr.softTempLimit, false);
  assert.equal(nextThermalLevel(0, 50, thr, p), 1);
  assert.equal(nextThermalLevel(0, 50, parseThrottled('throttled=0x50000')!, p), 0, 'past events alone do not step down');
  assert.equal(parseThrottled('error=1'), null);
});

test('thermal monitor: fixture zones heat up and cool down; stats report the step-down', async (t) => {
  const root = await tmp(t);
  await writeTree(root, TREES['jetson-nano']!);
  const mon = createThermalMonitor({ profile: profileFor({ id: 'jetson-nano', memMb: 3964 }), root, autoStart: false });
  t.after(() => mon.close());
  const changes: number[] = [];
  mon.onChange((s) => changes.push(s.level));
  let s = await mon.sample();
  assert.equal(s.level, 0, 'PMIC-Die 100 °C is ignored');
  assert.equal(s.tempC, 43);
  await setZone(root, 1, 'CPU-therm', 86_500);
  s = await mon.sample();
  assert.equal(s.level, 2);
  assert.deepEqual(mon.adjust({ fps: 30, bitrateKbps: 4000 }), { fps: 15, bitrateKbps: 2000 });
  const st = mon.stats();
  assert.equal(st.level, 2);
  assert.equal(st.tempC, 86.5);
  assert.equal(st.fpsScale, 0.5);
  assert.equal(st.stepDowns, 1);
  assert.match(String(st.zone), /CPU-therm/);
  await setZone(root, 1, 'CPU-therm', 50_000);
  s = await mon.sample();
  assert.equal(s.level, 0);
  assert.deepEqual(changes, [2, 0]);
  assert.equal(mon.stats().stepUps, 1);
  mon.close();
  mon.close();
});

test('thermal monitor on a Pi: vcgencmd stand-in reports throttling; a missing vcgencmd is disabled once', async (t) => {
  const root = await tmp(t);
  await writeTree(root, TREES.pi4!);
  // A stand-in with the real tool's CLI and output format.
  const vc = join(root, 'vcgencmd');
  const state = join(root, 'throttled');
  await writeFile(state, '0x50005');
  await writeFile(vc, `#!/bin/sh\n[ "$1" = get_throttled ] || { echo "error=2 error_msg=\\"Command not registered\\""; exit 255; }\necho "throttled=$(cat ${state})"\n`);
  await chmod(vc, 0o755);
  const mon = createThermalMonitor({ profile: PROFILES.pi4, root, vcgencmd: vc, autoStart: false });
  t.after(() => mon.close());
  let s = await mon.sample();
  assert.equal(s.level, 1, 'throttled now → step down even at 48.7 °C');
  assert.equal(mon.stats().throttledRaw, '0x50005');
  assert.equal(mon.stats().underVoltage, true);
  await writeFile(state + '.new', '0x50000');
  await rename(state + '.new', state);
  s = await mon.sample();
  assert.equal(s.level, 0);
  assert.equal(mon.stats().firmwareThrottled, false);

  const none = createThermalMonitor({ profile: PROFILES.pi4, root, vcgencmd: join(root, 'no-such-vcgencmd'), autoStart: false });
  t.after(() => none.close());
  await none.sample();
  await none.sample();
  assert.equal(none.stats().vcgencmdErrors, 1);
  assert.equal(none.stats().vcgencmd, false);
  assert.equal(none.stats().tempC, 48.7);
});

test('thermal monitor polls on its own and close() stops it', async (t) => {
  const root = await tmp(t);
  await writeTree(root, TREES['generic-x86']!);
  const mon = createThermalMonitor({ profile: PROFILES['generic-x86'], root, intervalMs: 100 });
  t.after(() => mon.close());
  await new Promise<void>((resolve, reject) => {
    const t0 = setTimeout(() => reject(new Error('no 3 samples within 5 s')), 5000);
    const iv = setInterval(() => {
      if (Number(mon.stats().samples) >= 3) {
        clearInterval(iv);
        clearTimeout(t0);
        resolve();
      }
    }, 20);
  });
  mon.close();
  const n = Number(mon.stats().samples);
  await mon.sample();
  assert.equal(Number(mon.stats().samples), n, 'closed monitor does not sample');
});

test('moth-edge board: text and JSON output from a fixture tree, real ffmpeg probe', async (t) => {
  const root = await tmp(t);
  await writeTree(root, TREES.pi5!);
  let out = '';
  let err = '';
  const io = { out: (s: string) => (out += s), err: (s: string) => (err += s) };
  assert.equal(await runBoardCli(['--root', root], io), 0);
  assert.match(out, /board\s+pi5\s+\(Raspberry Pi 5 Model B Rev 1\.0\)/);
  assert.match(out, /hardware encoder: none/);
  assert.match(out, /pm2 max_memory_restart 800M/);
  assert.match(out, /61\.2 °C/);
  // Debian's ffmpeg lists h264_v4l2m2m too; the Pi 5 profile skips it (no encoder block).
  assert.match(out, /→ libx264/);
  out = '';
  assert.equal(await runBoardCli(['--root', root, '--json', '--no-probe'], io), 0);
  const j = JSON.parse(out) as { board: { id: string }; pm2MaxMemoryRestart: string; encoder: unknown; videoNow: { fps: number } };
  assert.equal(j.board.id, 'pi5');
  assert.equal(j.pm2MaxMemoryRestart, '800M');
  assert.equal(j.encoder, null);
  assert.equal(j.videoNow.fps, 30);
  assert.equal(await runBoardCli(['--bogus'], io), 2);
  assert.match(err, /unknown argument "--bogus"/);
});

test('board service: one component with stats() and an idempotent close()', async (t) => {
  const { createBoardService } = await import('../../board/index.js');
  const root = await tmp(t);
  await writeTree(root, TREES['jetson-orin-nano']!);
  const svc = await createBoardService({ root, thermalIntervalMs: 100 });
  t.after(() => svc.close());
  assert.equal(svc.info.id, 'jetson-orin-nano');
  await svc.thermal.sample();
  const s = svc.stats() as { id: string; hardwareH264: unknown; thermal: { tempC: number; level: number } };
  assert.equal(s.id, 'jetson-orin-nano');
  assert.equal(s.hardwareH264, null);
  assert.equal(s.thermal.tempC, 51.1, 'tj-thermal is the hottest; cv0 at -256 °C is ignored');
  assert.equal(s.thermal.level, 0);
  svc.close();
  svc.close();
});

test('fuzz: board parsers and detection never throw on arbitrary file contents', async (t) => {
  const fc = (await import('fast-check')).default;
  const { parseNvTegraRelease } = await import('../../board/index.js');
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), (s) => {
      parseThrottled(s);
      parsePiRevision(s);
      parseNvTegraRelease(s);
      parseThrottled(`throttled=0x${s}`);
    }),
    { numRuns: 2000 },
  );
  const root = await tmp(t);
  const { writeFile: wf, mkdir } = await import('node:fs/promises');
  await mkdir(join(root, 'proc/device-tree'), { recursive: true });
  await mkdir(join(root, 'etc'), { recursive: true });
  await fc.assert(
    fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 5, maxLength: 5 }), async (files) => {
      const names = ['proc/device-tree/model', 'proc/device-tree/compatible', 'proc/cpuinfo', 'etc/nv_tegra_release', 'proc/meminfo'];
      for (let i = 0; i < 5; i++) await wf(join(root, names[i]!), Buffer.from(files[i]!));
      const b = await detectBoard(root);
      assert.ok(BOARD_IDS.includes(b.id));
      profileFor(b);
    }),
    { numRuns: 200 },
  );
});
