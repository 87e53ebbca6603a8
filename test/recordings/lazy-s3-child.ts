// Starts the whole runtime (App) with the config in argv[2] (JSON), waits until the sync uploader
// ran a pass, and prints which S3 SDK modules this process loaded (none without an S3 target).
import { createRequire } from 'node:module';
import { App } from '../../runtime/app.js';
import { parseConfig } from '../../runtime/config/load.js';
import { createLogger } from '../../runtime/log.js';
import type { RecordingService } from '../../recordings/service.js';

const require = createRequire(import.meta.url);
const config = parseConfig(JSON.parse(process.argv[2]!));
const app = await App.start(config, createLogger('silent'));
const rec = app.components.get('recordings') as RecordingService | undefined;
const t0 = Date.now();
// the uploader's first pass builds its target (and, for S3, loads the SDK)
for (;;) {
  const st = rec?.stats().sync;
  if (st && (st.targetState !== 'starting' || st.where !== null)) break;
  if (Date.now() - t0 > 20_000) break;
  await new Promise((r) => setTimeout(r, 20));
}
const sdk = Object.keys(require.cache).filter((k) => /[\\/]node_modules[\\/]@(aws-sdk|smithy|aws-crypto)[\\/]/.test(k));
const st = rec?.stats().sync ?? null;
process.stdout.write(`${JSON.stringify({ sdkModules: sdk.length, target: st?.target ?? null, where: st?.where ?? null, rssMb: Math.round(process.memoryUsage().rss / 1048576) })}\n`);
await app.close();
process.exit(0);
