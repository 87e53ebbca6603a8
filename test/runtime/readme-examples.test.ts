// The README cannot drift from the code: every ```yaml block in it is run through the real
// `moth-edge --check-config`, and every `default: X` its comments claim is held to what the schema
// fills in. A refused block fails the test with its README line.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { parseConfig } from '../../runtime/config/load.js';
import { cliCommand, run, tempDir, writeFile } from '../support/app.js';
import { defaultClaims, valueAt, withKey, yamlBlocks, type YamlBlock } from '../support/readme.js';

const README = fileURLToPath(new URL('../../../README.md', import.meta.url));
const cli = cliCommand();

async function checkConfig(file: string): Promise<{ code: number; out: string }> {
  return run(cli.cmd, [...cli.args, '--check-config', '--config', file]).then(
    (r) => ({ code: 0, out: r.stdout + r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
  );
}

/** Failures of one block, each starting with `<name>:<line>:`. */
async function checkBlock(b: YamlBlock, dir: string, name: string): Promise<string[]> {
  const at = `${name}:${b.line}:`;
  let data: unknown;
  try {
    data = YAML.parse(b.text);
  } catch (err) {
    return [`${at} not valid YAML: ${(err as Error).message}`];
  }
  if (b.marker.kind === 'fragment') return [];
  const file = writeFile(dir, `readme-${b.line}.yaml`, b.text);
  const r = await checkConfig(file);
  if (b.marker.kind === 'refused') {
    if (r.code !== 2) return [`${at} shown as refused, but --check-config exited ${r.code}:\n${r.out}`];
    if (!r.out.includes(b.marker.says)) return [`${at} refused, but without "${b.marker.says}":\n${r.out}`];
    return [];
  }
  if (r.code !== 0) return [`${at} refused by moth-edge --check-config (exit ${r.code}):\n${r.out}`];
  const failures: string[] = [];
  for (const c of defaultClaims(b)) {
    claimsChecked++;
    const key = c.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`)).join('').slice(1);
    const filled = valueAt(parseConfig(withKey(data, c.path), 'without the key'), c.path);
    let claimed: unknown;
    if (c.claimed === 'none' || c.claimed === 'unset') claimed = undefined;
    else {
      try {
        claimed = valueAt(parseConfig(withKey(data, c.path, YAML.parse(c.claimed)), 'with the default'), c.path);
      } catch (err) {
        failures.push(`${name}:${c.line}: ${key} claims "default: ${c.claimed}", which the schema refuses: ${(err as Error).message}`);
        continue;
      }
    }
    if (JSON.stringify(filled) !== JSON.stringify(claimed)) {
      failures.push(`${name}:${c.line}: ${key} claims "default: ${c.claimed}" but left out it becomes ${JSON.stringify(filled)}`);
    }
  }
  return failures;
}

let claimsChecked = 0;

async function checkMarkdown(markdown: string, name: string): Promise<{ blocks: YamlBlock[]; failures: string[] }> {
  const blocks = yamlBlocks(markdown);
  const { dir, cleanup } = tempDir('moth-edge-readme-');
  try {
    const failures: string[] = [];
    // Two CLI processes at a time: the machine is shared.
    for (let i = 0; i < blocks.length; i += 2) {
      const rs = await Promise.all(blocks.slice(i, i + 2).map((b) => checkBlock(b, dir, name)));
      failures.push(...rs.flat());
    }
    return { blocks, failures };
  } finally {
    cleanup();
  }
}

test('every yaml example in README.md passes moth-edge --check-config and its stated defaults hold', async (t) => {
  claimsChecked = 0;
  const { blocks, failures } = await checkMarkdown(readFileSync(README, 'utf8'), 'README.md');
  t.diagnostic(`${blocks.length} yaml blocks, ${claimsChecked} "default:" claims checked`);
  assert.ok(blocks.length >= 10, `README.md has ${blocks.length} yaml blocks`);
  assert.ok(blocks.some((b) => b.marker.kind === 'whole'), 'at least one whole config');
  assert.deepEqual(failures, [], failures.join('\n\n'));
});

test('a refused example fails with its line; a wrong default claim and a trap without its refusal too', async () => {
  const md = [
    '# t', // 1
    '', // 2
    '```yaml', // 3
    'server: { port: 8276 }  # default: 8276', // 4
    '```', // 5
    '```yaml', // 6
    'server:', // 7
    '  port: 99999', // 8
    '```', // 9
    '<!-- fragment -->', // 10
    '```yaml', // 11
    'port: 1', // 12
    '```', // 13
    '```yaml', // 14
    'server:', // 15
    '  maxConnections: 10   # default: 10', // 16
    '```', // 17
    '<!-- refused: server.token -->', // 18
    '```yaml', // 19
    'server: { port: 1 }', // 20
    '```', // 21
  ].join('\n');
  const { blocks, failures } = await checkMarkdown(md, 'T.md');
  assert.deepEqual(blocks.map((b) => [b.line, b.marker.kind]), [[4, 'whole'], [7, 'whole'], [12, 'fragment'], [15, 'whole'], [20, 'refused']]);
  assert.equal(failures.length, 3, failures.join('\n'));
  assert.match(failures[0]!, /^T\.md:7: refused by moth-edge --check-config \(exit 2\):[\s\S]*server\.port: got 99999/);
  assert.match(failures[1]!, /^T\.md:16: server\.maxConnections claims "default: 10" but left out it becomes 256/);
  assert.match(failures[2]!, /^T\.md:20: shown as refused, but --check-config exited 0/);
});

/** Rows of the README's counters table: the stats paths it names (`a.b[].c`). */
function counterPaths(markdown: string): string[] {
  const at = markdown.indexOf('### Counters the README names');
  assert.ok(at >= 0, 'the README has its counters table');
  const lines = markdown.slice(at).split('\n');
  const start = lines.findIndex((l) => l.startsWith('|'));
  const end = lines.findIndex((l, i) => i > start && !l.startsWith('|'));
  const table = lines.slice(start, end).slice(2);
  return table.flatMap((row) => [...(row.split('|')[2] ?? '').matchAll(/`([A-Za-z0-9_.[\]-]+)`/g)].map((m) => m[1]!));
}

function hasPath(stats: unknown, path: string): boolean {
  const walk = (v: unknown, parts: string[]): boolean => {
    if (parts.length === 0) return v !== undefined;
    const [head, ...rest] = parts as [string, ...string[]];
    const m = /^(.+?)(\[\])?$/.exec(head)!;
    const next = v && typeof v === 'object' ? (v as Record<string, unknown>)[m[1]!] : undefined;
    if (!m[2]) return walk(next, rest);
    return Array.isArray(next) && next.some((x) => walk(x, rest));
  };
  return walk(stats, path.split('.'));
}

test('every counter the README names exists in a running runtime\'s /api/stats', { timeout: 60_000 }, async (t) => {
  const paths = counterPaths(readFileSync(README, 'utf8'));
  assert.ok(paths.length >= 8, `${paths.length} counters named`);
  const { dir, cleanup } = tempDir('moth-edge-counters-');
  t.after(cleanup);
  const { startApp, waitFor } = await import('../support/app.js');
  // Every component the table speaks of: a camera, a sensor, an RTSP camera over UDP (down: its
  // stats still have their shape), an upstream with backfill, recordings with a sync target.
  const app = await startApp({
    channels: [
      {
        name: 'robot',
        sources: [
          { driver: { kind: 'testpattern', width: 160, height: 120, fps: 5, bitrateKbps: 100 } },
          { driver: { kind: 'simulated', track: 'imu' } },
          { name: 'ipcam', driver: { kind: 'rtsp', url: 'rtsp://127.0.0.1:9/none', transport: 'udp' } },
        ],
      },
    ],
    recordings: { enabled: true, root: `${dir}/rec`, sync: { url: 'http://127.0.0.1:9/dav/' } },
    egress: { upstream: [{ url: 'ws://127.0.0.1:9', instant: 'r1', from: 'robot/base/imu' }] },
  });
  t.after(() => app.close());
  const base = `http://127.0.0.1:${app.port}`;
  await waitFor(async () => ((await (await fetch(`${base}/api/stats`)).json()) as { engine: { totals: { framesIn: number } } }).engine.totals.framesIn > 0, 20_000, 'frames in');
  const stats = await (await fetch(`${base}/api/stats`)).json();
  const missing = paths.filter((p) => !hasPath(stats, p));
  assert.deepEqual(missing, [], `README names counters /api/stats does not have: ${missing.join(', ')}`);
});
