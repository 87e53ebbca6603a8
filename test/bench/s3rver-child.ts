// s3rver in its own process for the sync bench (its CPU is not ours): argv directory; prints the port.
import S3rver from 's3rver';

const dir = process.argv[2]!;
const srv = new S3rver({ port: 0, address: '127.0.0.1', directory: dir, silent: true, configureBuckets: [{ name: 'rec' }] });
const addr = await srv.run();
process.stdout.write(`${JSON.stringify({ port: addr.port })}\n`);
process.on('SIGTERM', () => process.exit(0));
