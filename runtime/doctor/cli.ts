// `moth-edge doctor [--config FILE] [--json] [--timeout MS]`: the findings, one per line, each
// failure with its fix. Exit 0 nothing failed, 1 something failed, 2 bad usage or invalid config.
import { ConfigError, loadConfig } from '../config/load.js';
import { commandHelp } from '../cli-help.js';
import { runDoctor, type Finding } from './checks.js';

export interface DoctorIo {
  out(s: string): void;
  err(s: string): void;
}

const LABEL = { pass: 'PASS', warn: 'WARN', fail: 'FAIL' } as const;

export function formatFindings(findings: Finding[]): string {
  const w = Math.min(28, Math.max(...findings.map((f) => f.check.length)));
  const lines = findings.map((f) => `${LABEL[f.verdict]}  ${f.check.padEnd(w)}  ${f.detail}${f.fix ? `\n${' '.repeat(w + 8)}fix: ${f.fix}` : ''}`);
  const n = (v: Finding['verdict']) => findings.filter((f) => f.verdict === v).length;
  return `${lines.join('\n')}\n\n${n('pass')} passed, ${n('warn')} warning(s), ${n('fail')} failed\n`;
}

export async function runDoctorCli(argv: string[], configFile: string | undefined, io: DoctorIo): Promise<number> {
  let json = false;
  let timeoutMs = 5000;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--json') json = true;
    else if (a === '--timeout' && /^\d{2,6}$/.test(argv[i + 1] ?? '')) timeoutMs = Number(argv[++i]);
    else {
      io.err(`doctor: unknown option ${a}\n\n${commandHelp('doctor')}`);
      return 2;
    }
  }
  let config;
  try {
    config = loadConfig(configFile);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.err(`${err.message}\n\nFAIL  config: fix the problems above (moth-edge --check-config --config ${configFile})\n`);
    return 2;
  }
  const findings = await runDoctor({ config, ...(configFile ? { configFile } : {}), timeoutMs });
  if (json) io.out(`${JSON.stringify({ config: configFile ?? null, findings }, null, 2)}\n`);
  else io.out(`moth-edge doctor — ${configFile ?? 'no config: the machine and the embedded demo'}\n\n${formatFindings(findings)}`);
  return findings.some((f) => f.verdict === 'fail') ? 1 : 0;
}
