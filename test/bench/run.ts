// npm run bench: runs every test/bench/*.bench.js (or those matching argv filters), prints one
// table and writes the rows as JSON to bench-results/latest.json (and a timestamped copy).

import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { printTable, type BenchRow } from './harness.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const filters = process.argv.slice(2);
const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.js'))
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();

const rows: BenchRow[] = [];
const failures: string[] = [];
for (const f of files) {
  process.stderr.write(`bench ${f} …\n`);
  try {
    const mod = (await import(pathToFileURL(join(here, f)).href)) as { bench: () => Promise<BenchRow[]> };
    const r = await mod.bench();
    rows.push(...r);
    process.stderr.write(`${printTable(r)}\n\n`);
  } catch (err) {
    failures.push(`${f}: ${(err as Error).stack ?? String(err)}`);
    process.stderr.write(`bench ${f} failed: ${(err as Error).message}\n`);
  }
}
const outDir = fileURLToPath(new URL('../../../bench-results/', import.meta.url));
mkdirSync(outDir, { recursive: true });
const doc = { at: new Date().toISOString(), node: process.version, cpus: (await import('node:os')).cpus().length, rows, failures };
writeFileSync(join(outDir, 'latest.json'), JSON.stringify(doc, null, 2));
writeFileSync(join(outDir, `bench-${doc.at.replace(/[:.]/g, '-')}.json`), JSON.stringify(doc, null, 2));
// One table per bench: each has its own columns.
for (const name of [...new Set(rows.map((r) => r.bench))]) console.log(`\n${printTable(rows.filter((r) => r.bench === name))}`);
console.log(`\nresults: ${join(outDir, 'latest.json')}`);
if (failures.length) {
  console.error(`\n${failures.length} bench(es) failed:\n${failures.join('\n')}`);
  process.exit(1);
}
