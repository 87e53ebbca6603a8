// A separate process that runs the sync uploader over an index (for kill -9 mid-upload tests).
// argv: root, index path, sync config as JSON. Prints "started" and then stats lines each 100 ms.
import path from 'node:path';
import { syncConfigSchema } from '../../recordings/config.js';
import { IndexDb } from '../../recordings/index-db.js';
import { silentLog } from '../../recordings/log.js';
import { Uploader } from '../../recordings/sync.js';

const [root, index, cfgJson] = process.argv.slice(2);
const db = IndexDb.openWriter(path.resolve(index!));
const up = new Uploader(syncConfigSchema.parse(JSON.parse(cfgJson!)), path.resolve(root!), db, silentLog);
up.start();
process.stdout.write('started\n');
setInterval(() => process.stdout.write(`${JSON.stringify(up.stats())}\n`), 100);
