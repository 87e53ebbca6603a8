// Bundle self-check, run on the target (or under qemu): the native addons load for this CPU, the
// SQLite index opens, moth-native SRTP-protects packets node:crypto can open, serial ports list,
// the board is detected. Prints one JSON line; exit 0 = ok.
//   node selfcheck.mjs [--db <file>]
import { createDecipheriv, createHmac, randomBytes } from 'node:crypto';
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
  // And the way a plugin or a user's script loads it: better-sqlite3's own default loader (the
  // `bindings` package, build/Release/better_sqlite3.node), no nativeBinding option.
  const plain = new Database(file, { readonly: true });
  result.sqliteDefaultLoader = { rows: plain.prepare('SELECT count(*) AS n FROM selfcheck').get().n };
  plain.close();

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

  // moth-native (runtime/native, prebuilds/linux-arm64): one packet per SRTP profile, opened here
  // with node:crypto (RFC 7714 GCM; RFC 3711 AES-CM + HMAC-SHA1-80) from the same session keys.
  const { nativeSrtp, nativeSrtpError } = await import('./dist/runtime/native/index.js');
  const native = nativeSrtp();
  if (!native) throw new Error(`moth-native did not load: ${nativeSrtpError()}`);
  const key = randomBytes(16);
  const salt = randomBytes(14);
  const auth = randomBytes(20);
  const payload = randomBytes(300);
  const hdr = { payloadType: 96, sequenceNumber: 4660, timestamp: 0x01020304, ssrc: 0x0a0b0c0d, marker: true };
  const roc = 2;
  const gcm = native.protect(native.createContext(7, key, salt, null), hdr, roc, payload);
  const iv = Buffer.alloc(12);
  iv.writeUInt32BE(hdr.ssrc, 2);
  iv.writeUInt32BE(roc, 6);
  iv.writeUInt16BE(hdr.sequenceNumber, 10);
  for (let i = 0; i < 12; i++) iv[i] ^= salt[i];
  const d = createDecipheriv('aes-128-gcm', key, iv);
  d.setAAD(gcm.subarray(0, 12));
  d.setAuthTag(gcm.subarray(gcm.length - 16));
  const gcmOk = Buffer.concat([d.update(gcm.subarray(12, gcm.length - 16)), d.final()]).equals(payload);
  const cm = native.protect(native.createContext(1, key, salt, auth), hdr, roc, payload);
  const rocBuf = Buffer.alloc(4);
  rocBuf.writeUInt32BE(roc);
  const tag = createHmac('sha1', auth).update(cm.subarray(0, cm.length - 10)).update(rocBuf).digest().subarray(0, 10);
  const ctr = Buffer.alloc(16);
  ctr.writeUInt32BE(hdr.ssrc, 4);
  ctr.writeUInt32BE(roc, 8);
  ctr.writeUInt16BE(hdr.sequenceNumber, 12);
  for (let i = 0; i < 14; i++) ctr[i] ^= salt[i];
  const cmOk = tag.equals(cm.subarray(cm.length - 10)) && createDecipheriv('aes-128-ctr', key, ctr).update(cm.subarray(12, cm.length - 10)).equals(payload);
  if (!gcmOk || !cmOk) throw new Error(`moth-native SRTP output does not open (gcm ${gcmOk}, aes-cm ${cmOk})`);
  result.nativeSrtp = { gcm: gcmOk, aesCm: cmOk };

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
