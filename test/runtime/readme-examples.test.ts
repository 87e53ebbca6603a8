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

test('every yaml example in README.md passes moth-edge --check-config and its stated defaults hold', async () => {
  const { blocks, failures } = await checkMarkdown(readFileSync(README, 'utf8'), 'README.md');
  assert.ok(blocks.length >= 1, `README.md has ${blocks.length} yaml blocks`);
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
