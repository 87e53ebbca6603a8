// The config's JSON Schema, made from the zod schema that validates it (zod 4's toJSONSchema), so
// editors can complete and check a robot.yaml with the same rules as --check-config. It describes
// the input: sizes may be "64MiB" strings, defaults are shown where zod can state them.
import { z } from 'zod';
import { configSchema } from './schema.js';

export function configJsonSchema(): Record<string, unknown> {
  const s = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return {
    ...s,
    title: 'moth-edge config',
    description: 'moth-edge robot.yaml; `moth-edge --print-config` shows every default, README "Configure" every key.',
  };
}
