// The runtime as a user runs it: the real CLI in its own process, with a YAML config. For tests
// that need to stop, freeze or kill it (SIGSTOP/SIGKILL), or that must run the shipped defaults
// in the process that ships them.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { cliCommand, waitFor } from './app.js';

export interface RuntimeProcess {
  child: ChildProcess;
  /** The local HTTP/pang port. */
  port: number;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
  /** GET a JSON API of the process. */
  api<T>(path: string): Promise<T>;
  /** SIGTERM and wait for the exit code. */
  stop(): Promise<number | null>;
  exited: Promise<number | null>;
}

/** A TCP port free right now on `host` (for a server that must come back on the same port). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, host, () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Start the CLI with `yaml` written to `dir/name`; resolves once the startup banner names the port. */
export async function startRuntime(t: TestContext, dir: string, name: string, yaml: string, env: NodeJS.ProcessEnv = {}): Promise<RuntimeProcess> {
  const file = join(dir, name);
  writeFileSync(file, yaml);
  const cli = cliCommand();
  const child = spawn(cli.cmd, [...cli.args, '--config', file], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  await waitFor(() => /stats:\s+http:\/\/[\d.]+:(\d+)/.test(out) || child.exitCode !== null, 20_000, `the runtime's banner (${name})`);
  const m = /stats:\s+http:\/\/[\d.]+:(\d+)/.exec(out);
  if (!m) throw new Error(`runtime ${name} exited: ${out.slice(-2000)}`);
  const port = Number(m[1]);
  return {
    child,
    port,
    output: () => out,
    api: async <T>(path: string): Promise<T> => {
      const r = await fetch(`http://127.0.0.1:${port}${path}`);
      if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
      return (await r.json()) as T;
    },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
    exited,
  };
}
