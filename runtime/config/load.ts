import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import type { z } from 'zod';
import { EdgeError } from '../engine/api.js';
import { crossCheck, pathText, resolveReferences } from './references.js';
import { configSchema, embeddedChannels, type Config } from './schema.js';

export class ConfigError extends EdgeError {
  constructor(
    message: string,
    readonly problems: string[],
  ) {
    super('CONFIG_INVALID', message, { problems });
    this.name = 'ConfigError';
  }
}


function valueAt(data: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let v: unknown = data;
  for (const p of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** Each problem names the key path, the bad value and what is allowed. */
export function describeIssues(issues: z.core.$ZodIssue[], data: unknown): string[] {
  return issues.map((i) => {
    const p = pathText(i.path);
    const code = i.code as string;
    if (code === 'unrecognized_keys') {
      const keys = (i as unknown as { keys: string[] }).keys;
      return `${p}: unknown key(s) ${keys.map((k) => `"${k}"`).join(', ')}`;
    }
    return `${p}: got ${show(valueAt(data, i.path))}; ${i.message}${suggestion(i)}`;
  });
}

/** What to do about a secret that is too short: the key path alone does not say how to make one. */
function suggestion(i: z.core.$ZodIssue): string {
  const last = String(i.path[i.path.length - 1] ?? '');
  if (i.code !== 'too_small' || !/^(key|token|password|secret)$/i.test(last)) return '';
  const min = Number((i as unknown as { minimum: number | bigint }).minimum);
  return ` — a ${last} needs at least ${min} characters; make one with \`openssl rand -hex ${Math.max(8, Math.ceil(min / 2))}\``;
}

export function parseConfig(data: unknown, origin = 'config'): Config {
  const r = configSchema.safeParse(data ?? {});
  if (!r.success) {
    const problems = describeIssues(r.error.issues, data ?? {});
    throw new ConfigError(`${origin} is invalid:\n  ${problems.join('\n  ')}`, problems);
  }
  const cfg = r.data;
  if (cfg.channels === undefined) cfg.channels = embeddedChannels();
  const traps = crossCheck(cfg);
  if (traps.length) {
    const problems = traps.map((t) => `${pathText(t.path)}: ${t.message}`);
    throw new ConfigError(`${origin} is invalid:\n  ${problems.join('\n  ')}`, problems);
  }
  return resolveReferences(cfg);
}

/** Read a YAML or JSON file. No file → the embedded default. */
export function loadConfig(file: string | undefined): Config {
  if (!file) return parseConfig({}, 'embedded default');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config ${file}: ${(err as Error).message}`, []);
  }
  let data: unknown;
  try {
    data = YAML.parse(text, { maxAliasCount: 100 });
  } catch (err) {
    throw new ConfigError(`config ${file} is not valid YAML/JSON: ${(err as Error).message}`, []);
  }
  return parseConfig(data ?? {}, file);
}
