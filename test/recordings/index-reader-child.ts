// A separate reader process for the index-prune test (what the CLI or another tool is): opens the
// index read-only and queries it in a loop until stdin closes, then prints one JSON line with the
// number of queries and every error it saw. argv: indexFile
// stdout: `ready` once the first query succeeded; at the end `{"queries":N,"errors":[...]}`.
import { IndexDb } from '../../recordings/index-db.js';

const file = process.argv[2]!;
const db = IndexDb.openReader(file);
let queries = 0;
const errors: string[] = [];
let stop = false;
process.stdin.on('end', () => (stop = true));
process.stdin.on('close', () => (stop = true));
process.stdin.resume();
const count = db.db.prepare('SELECT COUNT(*) AS n FROM segments');
const loop = () => {
  // a few queries per turn, then let stdin events in
  for (let i = 0; i < 20 && !stop; i++) {
    try {
      db.list({ limit: 50 });
      count.get();
      queries++;
    } catch (err) {
      if (errors.length < 20) errors.push((err as Error).message);
    }
  }
  if (queries === 20) process.stdout.write('ready\n');
  if (stop) {
    db.close();
    process.stdout.write(`${JSON.stringify({ queries, errors })}\n`);
    return;
  }
  setImmediate(loop);
};
loop();
