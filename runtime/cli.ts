#!/usr/bin/env node
// moth-edge command line: run the runtime, check or print the config.

import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { App } from './app.js';
import { ConfigError, loadConfig } from './config/load.js';
import { runBoardCli } from '../board/index.js';
import { runDevicesCli } from '../drivers/camera/devices.js';
import { runDiscoverCli } from '../drivers/discovery/probe.js';
import { createLogger, redactUrl } from './log.js';
import { runRecordingsCli } from './recordings/cli.js';
import { commandHelp, TOP_HELP } from './cli-help.js';
import { runDoctorCli } from './doctor/cli.js';
import { configJsonSchema } from './config/json-schema.js';


function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    return pkg.version;
  } catch {
    return 'unknown';
  }
}

interface Args {
  command: string;
  /** The command was named (`moth-edge run --help` is run's help; `moth-edge --help` the top one). */
  named: boolean;
  config?: string;
  check: boolean;
  print: boolean;
  help: boolean;
  version: boolean;
  rest: string[];
}

export function parseArgs(argv: string[]): Args {
  const a: Args = { command: 'run', named: false, check: false, print: false, help: false, version: false, rest: [] };
  for (let i = 0; i < argv.length; i++) {
    const x = argv[i]!;
    if (x === '--config' || x === '-c') {
      const v = argv[++i];
      if (!v) throw new ConfigError('--config needs a file path', []);
      a.config = v;
    } else if (x.startsWith('--config=')) a.config = x.slice(9);
    else if (x === '--check-config') a.check = true;
    else if (x === '--print-config') a.print = true;
    else if (x === '--help' || x === '-h') a.help = true;
    else if (x === '--version' || x === '-v') a.version = true;
    else if (i === 0 && !x.startsWith('-')) {
      a.command = x;
      a.named = true;
    }
    else a.rest.push(x);
  }
  a.config ??= process.env.MOTH_EDGE_CONFIG || undefined;
  return a;
}

/** Secrets out of the printed config. */
function hideSecrets(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(hideSecrets);
  if (v && typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k] = /^(key|token|password|secret|secretAccessKey|sessionToken)$/i.test(k) && x !== undefined ? '***' : hideSecrets(x);
    return o;
  }
  return typeof v === 'string' ? redactUrl(v) : v;
}

/** --check-config / --print-config: a ConfigError thrown here exits 2 with every problem. */
function checkOrPrint(file: string | undefined, print: boolean): number {
  const config = loadConfig(file);
  process.stdout.write(print ? `${JSON.stringify(hideSecrets(config), null, 2)}\n` : `config ok: ${file ?? 'embedded default'}\n`);
  return 0;
}

/** `moth-edge config schema|check|print`. */
function configCli(args: Args): number {
  const sub = args.rest[0];
  if (sub === 'schema') {
    process.stdout.write(`${JSON.stringify(configJsonSchema(), null, 2)}\n`);
    return 0;
  }
  if (sub === 'check' || sub === 'print') return checkOrPrint(args.config, sub === 'print');
  process.stderr.write(`moth-edge config: ${sub ? `unknown subcommand "${sub}"` : 'which one?'}\n\n${commandHelp('config')}`);
  return 2;
}

async function run(args: Args): Promise<number> {
  const config = loadConfig(args.config);
  const log = createLogger(config.log.level);
  const app = await App.start(config, log);
  process.stdout.write(`\nmoth-edge ${version()} is running (${args.config ?? 'embedded demo: test pattern + simulated IMU'})\n`);
  for (const u of app.urls()) process.stdout.write(`  ${u}\n`);
  process.stdout.write('\n');
  return new Promise<number>((resolve) => {
    let stoppingSince = 0;
    const stop = (sig: string) => {
      if (stoppingSince) {
        // A signal to the process and to its group arrive together (timeout(1), service
        // managers): only a deliberate repeat, a second or more later, skips the flush.
        if (Date.now() - stoppingSince < 1000) return;
        log.warn(`${sig} again: exiting now`);
        process.exit(1);
      }
      stoppingSince = Date.now();
      log.info(`${sig}: stopping`);
      // A graceful stop that hangs must not outlive pm2's kill_timeout: hard cap 5 s.
      const cap = setTimeout(() => {
        log.error('graceful stop took over 5 s: exiting');
        resolve(1);
      }, 5000);
      cap.unref();
      app.close().then(
        () => {
          clearTimeout(cap);
          log.info('stopped');
          resolve(0);
        },
        (err) => {
          clearTimeout(cap);
          log.error({ err }, 'stop failed');
          resolve(1);
        },
      );
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  });
}

export async function main(argv: string[]): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(argv);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
  if (args.command === 'help') {
    const h = args.rest[0] ? commandHelp(args.rest[0], args.rest[1]) : TOP_HELP;
    process.stdout.write(h ?? `unknown command "${args.rest[0]}"\n\n${TOP_HELP}`);
    return h ? 0 : 2;
  }
  if (args.help) {
    // `moth-edge recordings export --help`: the subcommand's own help, examples included
    const h = args.check ? commandHelp('check') : args.print ? commandHelp('print') : !args.named ? TOP_HELP : commandHelp(args.command, args.rest[0]);
    process.stdout.write(h ?? `unknown command "${args.command}"\n\n${TOP_HELP}`);
    return h ? 0 : 2;
  }
  if (args.version) {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  try {
    if (args.check || args.print) return checkOrPrint(args.config, args.print);
    switch (args.command) {
      case 'run':
        return await run(args);
      case 'config':
        return configCli(args);
      case 'doctor':
        return await runDoctorCli(args.rest, args.config, { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) });
      case 'recordings':
        return await runRecordingsCli([...(args.config ? ['--config', args.config] : []), ...args.rest, ...(args.help ? ['--help'] : [])]);
      case 'board':
        return await runBoardCli(args.rest);
      case 'devices':
        return await runDevicesCli(args.rest);
      case 'discover':
        return await runDiscoverCli(args.rest);
      default:
        process.stderr.write(`unknown command "${args.command}"\n\n${TOP_HELP}`);
        return 2;
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return 2;
    }
    const e = err as { code?: string; message?: string };
    process.stderr.write(`moth-edge: ${e.message ?? String(err)}\n`);
    return 1;
  }
}

function isEntry(): boolean {
  try {
    const self = realpathSync(fileURLToPath(import.meta.url));
    // pm2's fork container imports the script: its path is in pm_exec_path, not argv[1].
    const candidates = [process.argv[1], process.env.pm_exec_path].filter((x): x is string => !!x);
    return candidates.some((c) => {
      try {
        return realpathSync(c) === self;
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

// Exit once stdout is flushed: a piped `config schema` (> 64 KiB) was cut at the pipe's buffer.
if (isEntry()) main(process.argv.slice(2)).then((code) => process.stdout.write('', () => process.exit(code)));
