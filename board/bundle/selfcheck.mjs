// Bundle self-check, run on the target (or under qemu): the native addons load for this CPU, the
// SQLite index opens, serial ports list, the board is detected. Prints one JSON line; exit 0 = ok.
//   node selfcheck.mjs [--db <file>]
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, 'package.json'));
const result = { ok: false, arch: process.arch, node: process.version, abi: process.versions.modules };
const dbArg = process.argv.indexOf('--db');
const tmp = mkdtempSync(join(tmpdir(), 'moth-selfcheck-'));
try {
  const Database = require('better-sqlite3');
  // Loaded the way the runtime loads it (recordings/sqlite.ts): node-gyp-build's prebuilds layout.
  const nativeBinding = require('node-gyp-build').path(dirname(require.resolve('better-sqlite3/package.json')));
  result.sqliteBinding = nativeBinding.slice(nativeBinding.indexOf('node_modules'));
  const file = dbArg > 0 ? process.argv[dbArg + 1] : join(tmp, 'index.sqlite');
  const db = new Database(file, { nativeBinding });
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE IF NOT EXISTS selfcheck (id INTEGER PRIMARY KEY, at TEXT)');
  db.prepare('INSERT INTO selfcheck (at) VALUES (?)').run(new Date().toISOString());
  result.sqlite = { version: db.prepare('SELECT sqlite_version() AS v').get().v, rows: db.prepare('SELECT count(*) AS n FROM selfcheck').get().n };
  db.close();

  // The recordings index through its own module (migrations, WAL, quick_check), when built in.
  try {
    const { IndexDb, SCHEMA_VERSION } = await import('./dist/recordings/index-db.js');
    const idx = IndexDb.openWriter(join(tmp, 'recordings-index.sqlite'));
    result.index = { schemaVersion: SCHEMA_VERSION };
    if (typeof idx.close === 'function') idx.close();
  } catch (err) {
    if (err && err.code === 'ERR_MODULE_NOT_FOUND') result.index = 'not in this build';
    else throw err;
  }

  const { SerialPort } = await import('serialport');
  const ports = await SerialPort.list();
  result.serialPorts = ports.map((p) => p.path);

  const { detectBoard } = await import('./dist/board/detect.js');
  const board = await detectBoard();
  result.board = { id: board.id, model: board.model };
  result.ok = true;
} catch (err) {
  result.error = err instanceof Error ? `${err.message}` : String(err);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(result) + '\n');
process.exit(result.ok ? 0 : 1);
